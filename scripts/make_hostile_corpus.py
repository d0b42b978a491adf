#!/usr/bin/env python3
"""Writes the hostile-input corpus of shared/tests/hostile/ (committed; rerun only to change it).

Each file is something a forager's device may meet: damaged, odd or not a photo at all. The
expected answer for each is in shared/tests/hostile_corpus.rs. Needs Pillow (any recent one):
    python3 -m venv /tmp/pil && /tmp/pil/bin/pip install pillow && /tmp/pil/bin/python scripts/make_hostile_corpus.py
A directory and a FIFO are made by the test itself (git keeps neither).
"""
import io
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "shared" / "tests" / "hostile"


def cap_and_stem(width, height):
    """A brown cap over a pale stem on green: something shaped like a find, and cheap to store."""
    img = Image.new("RGB", (width, height), (60, 110, 50))
    px = img.load()
    cx, cy, r = width // 2, height * 2 // 5, min(width, height) // 3
    for y in range(height):
        for x in range(width):
            if (x - cx) ** 2 + ((y - cy) * 2) ** 2 < r * r and y < cy:
                px[x, y] = (140, 80, 40)
            elif abs(x - cx) < r // 4 and cy <= y < cy + r:
                px[x, y] = (225, 215, 190)
    return img


def jpeg(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85, **kw)
    return buf.getvalue()


def png(img):
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_rgb16(img):
    """16 bits per channel RGB (Pillow writes 16-bit grey only): by hand, each 8-bit value doubled."""
    width, height = img.size
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for x in range(width):
            for v in img.getpixel((x, y)):
                raw += struct.pack(">H", v * 257)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + png_chunk(b"IEND", b"")
    )


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    photo = cap_and_stem(320, 240)
    files = {}
    files["normal.jpg"] = jpeg(photo)
    files["empty.jpg"] = b""
    whole = jpeg(photo)
    files["truncated.jpg"] = whole[: len(whole) // 2]
    files["truncated.png"] = png(photo)[:600]
    # The first segment after SOI (APP0, JFIF) claims 60000 bytes: past the end of the file.
    bad = bytearray(whole)
    assert bad[2:4] == b"\xff\xe0"
    bad[4:6] = struct.pack(">H", 60000)
    files["wrong-length-marker.jpg"] = bytes(bad)
    files["progressive.jpg"] = jpeg(photo, progressive=True)
    files["cmyk.jpg"] = jpeg(photo.convert("CMYK"))
    files["grey.png"] = png(photo.convert("L"))
    files["palette.png"] = png(photo.convert("P", palette=Image.ADAPTIVE, colors=32))
    files["rgb16.png"] = png_rgb16(photo)
    files["one-pixel.png"] = png(Image.new("RGB", (1, 1), (140, 80, 40)))
    files["strip-20000x1.png"] = png(Image.new("RGB", (20000, 1), (140, 80, 40)))
    # Decompression bomb: the header says 100000 x 100000 RGB, the data is a few bytes.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    files["bomb.png"] = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + png_chunk(b"IEND", b"")
    )
    # The same for JPEG: a real 320x240 file whose frame header claims 65000 x 65000.
    bomb = bytearray(whole)
    sof = bomb.find(b"\xff\xc0")
    bomb[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
    files["bomb.jpg"] = bytes(bomb)
    # A portrait photo as a phone stores it: the pixels landscape (the cap on the left, the
    # stem to the right), EXIF orientation 6 ("turn 90 degrees clockwise to view").
    stored = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    files["portrait-exif6.jpg"] = jpeg(stored, exif=exif.tobytes())
    buf = io.BytesIO()
    photo.save(buf, "GIF")
    files["gif-renamed.jpg"] = buf.getvalue()
    buf = io.BytesIO()
    photo.save(buf, "WEBP", quality=80)
    files["webp-renamed.jpg"] = buf.getvalue()
    # What an iPhone writes: an ISO-BMFF 'ftyp' box of brand heic (the rest does not matter:
    # the format is refused from these bytes).
    files["heic-renamed.jpg"] = struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + b"\0" * 64
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        print(f"{name:28} {len(data):>7} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
