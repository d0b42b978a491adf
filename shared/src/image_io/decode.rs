//! Bytes to pixels, with bounds: a file the device meets may be anything (a directory, a FIFO, a
//! HEIC from a phone renamed `.jpg`, a PNG that declares a billion pixels in 100 bytes), and none
//! of it may hang the device, exhaust its memory or be taken for a photo.
//!
//! - The format is recognised from the bytes, never from the file name.
//! - Sizes are checked from the header, before any pixel is allocated: a file of at most
//!   [`MAX_FILE_BYTES`], a shorter side of at least [`MIN_SIDE`], an aspect ratio no wider than
//!   [`MAX_ASPECT_RATIO`] and a pixel budget ([`Budget`]).
//! - A large JPEG is decoded at 1/2, 1/4 or 1/8 of its size (the DCT scales for free), never
//!   below the size preprocessing resizes to; see [`super::jpeg`].
//! - The EXIF orientation a phone writes instead of rotating the pixels is applied, so a portrait
//!   photo is seen upright.

use super::jpeg;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use serde::Serialize;
use std::io::Read;
use std::path::Path;

/// Largest photo file read, in bytes: a 100-megapixel JPEG is about 40 MB.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Smallest shorter side, in pixels: below it there is no mushroom to see, only a colour.
pub const MIN_SIDE: u32 = 32;
/// Widest aspect ratio accepted (longer side / shorter side). Cameras make 4:3, 3:2, 16:9, 21:9;
/// beyond 4:1 is a panorama or not a photo at all, and a shape that preprocessing would resize
/// into a huge strip.
pub const MAX_ASPECT_RATIO: u32 = 4;

/// How many pixels a photo may have, by how it is decoded.
#[derive(Clone, Copy, Debug)]
pub struct Budget;

impl Budget {
    /// Formats decoded at full size (PNG, WebP, progressive JPEG, and every JPEG small enough
    /// to decode whole): 2048 x 2048. Decoded, that is 16 MB as RGBA, 12 MB as RGB.
    pub const FULL_DECODE_PIXELS: u64 = 2048 * 2048;
    /// A baseline JPEG, decoded at up to 1/8 scale: 100 MP decodes to at most 1.6 MP.
    pub const SCALED_JPEG_PIXELS: u64 = 100_000_000;
}

/// A decoded photo and what was read besides its pixels.
#[derive(Clone, Debug)]
pub struct Photo {
    /// Upright (EXIF orientation applied), possibly decoded at a reduced scale.
    pub image: RgbImage,
    pub info: PhotoInfo,
}

/// How a photo was stored and read (reported by `identify --json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PhotoInfo {
    pub format: PhotoFormat,
    /// Size as stored, before the orientation was applied.
    pub width: u32,
    pub height: u32,
    /// What the EXIF orientation asked for and was done (`upright` when nothing).
    pub orientation: Rotation,
    /// The JPEG was decoded at 1 / this of its size (1, 2, 4 or 8).
    pub decode_scale: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotoFormat {
    Jpeg,
    Png,
    Webp,
}

/// The EXIF orientation, as the turn that makes the photo upright.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Rotation {
    #[serde(rename = "upright")]
    Upright,
    #[serde(rename = "rotated-90-clockwise")]
    Rotated90Clockwise,
    #[serde(rename = "rotated-180")]
    Rotated180,
    #[serde(rename = "rotated-90-counter-clockwise")]
    Rotated90CounterClockwise,
    #[serde(rename = "mirrored")]
    Mirrored,
    #[serde(rename = "mirrored-vertically")]
    MirroredVertically,
    #[serde(rename = "mirrored-rotated-90-clockwise")]
    MirroredAndRotated90Clockwise,
    #[serde(rename = "mirrored-rotated-90-counter-clockwise")]
    MirroredAndRotated90CounterClockwise,
}

impl Rotation {
    /// In words: "rotated 90° clockwise".
    pub fn describe(self) -> &'static str {
        match self {
            Rotation::Upright => "upright",
            Rotation::Rotated90Clockwise => "rotated 90° clockwise",
            Rotation::Rotated180 => "rotated 180°",
            Rotation::Rotated90CounterClockwise => "rotated 90° counter-clockwise",
            Rotation::Mirrored => "mirrored",
            Rotation::MirroredVertically => "mirrored vertically",
            Rotation::MirroredAndRotated90Clockwise => "mirrored and rotated 90° clockwise",
            Rotation::MirroredAndRotated90CounterClockwise => "mirrored and rotated 90° counter-clockwise",
        }
    }

    fn of(orientation: Orientation) -> Rotation {
        match orientation {
            Orientation::NoTransforms => Rotation::Upright,
            Orientation::Rotate90 => Rotation::Rotated90Clockwise,
            Orientation::Rotate180 => Rotation::Rotated180,
            Orientation::Rotate270 => Rotation::Rotated90CounterClockwise,
            Orientation::FlipHorizontal => Rotation::Mirrored,
            Orientation::FlipVertical => Rotation::MirroredVertically,
            Orientation::Rotate90FlipH => Rotation::MirroredAndRotated90Clockwise,
            Orientation::Rotate270FlipH => Rotation::MirroredAndRotated90CounterClockwise,
        }
    }
}

// The messages already say what went wrong underneath, so the errors name no `source`: a
// report that walks the chain (`{:#}`) would otherwise say it twice or three times.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read the file: {0}")]
    Io(std::io::Error),
    #[error("{0}, not a photo file")]
    NotAFile(&'static str),
    #[error("the file is {bytes} bytes; photos of more than {} MB are not read", MAX_FILE_BYTES >> 20)]
    FileTooLarge { bytes: u64 },
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("a {format} file, which sporeprint does not read (JPEG, PNG and WebP only): {hint}")]
    Unsupported { format: &'static str, hint: &'static str },
    #[error("not an image (neither JPEG, PNG nor WebP by its first bytes)")]
    NotAnImage,
    #[error("{width}x{height} pixels is {} MP; at most {} MP {what}", mp(*width as u64 * *height as u64), mp(*limit))]
    TooManyPixels { width: u32, height: u32, limit: u64, what: &'static str },
    #[error("{width}x{height} pixels is too small to show a mushroom (at least {MIN_SIDE} pixels on the shorter side)")]
    TooSmall { width: u32, height: u32 },
    #[error(
        "{width}x{height} pixels is a {}:1 strip, a shape no camera photo has (at most {MAX_ASPECT_RATIO}:1): crop the mushroom out first",
        width.max(height) / width.min(height).max(&1)
    )]
    AspectRatio { width: u32, height: u32 },
    #[error("corrupt or truncated JPEG: {0}")]
    Jpeg(String),
    #[error("corrupt or truncated {format}: {problem}")]
    Image { format: &'static str, problem: image::ImageError },
}

fn mp(pixels: u64) -> String {
    format!("{:.1}", pixels as f64 / 1e6)
}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> DecodeError {
        DecodeError::Io(e)
    }
}

/// Reads a photo file whole, after checking from its metadata that it is a regular file of a
/// readable size: opening a FIFO would block until someone writes to it, and a huge file would
/// be read into memory before anything looked at it.
pub fn read_photo_file(path: &Path) -> Result<Vec<u8>, DecodeError> {
    let metadata = std::fs::metadata(path)?;
    if metadata.is_dir() {
        return Err(DecodeError::NotAFile("a directory"));
    }
    if !metadata.is_file() {
        return Err(DecodeError::NotAFile("a FIFO, socket or device"));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(DecodeError::FileTooLarge { bytes: metadata.len() });
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // Bounded again while reading: the file may have grown since its metadata was read.
    std::fs::File::open(path)?.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DecodeError::FileTooLarge { bytes: bytes.len() as u64 });
    }
    Ok(bytes)
}

/// Decodes a photo (JPEG, PNG or WebP, recognised by its bytes) to upright 8-bit RGB. A large
/// JPEG is decoded at a reduced scale whose shorter side is still at least `min_shorter_side`
/// (preprocessing's resize target), so what comes out is never smaller than what it needs.
pub fn decode(bytes: &[u8], min_shorter_side: u32) -> Result<Photo, DecodeError> {
    let format = sniff(bytes)?;
    let (image, orientation, width, height, decode_scale) = match format {
        PhotoFormat::Jpeg => {
            let decoded = jpeg::decode(bytes, min_shorter_side)?;
            (decoded.image, decoded.orientation, decoded.width, decoded.height, decoded.scale)
        }
        PhotoFormat::Png | PhotoFormat::Webp => {
            let (image, orientation, width, height) = decode_whole(bytes, format)?;
            (image, orientation, width, height, 1)
        }
    };
    let mut image = DynamicImage::ImageRgb8(image);
    image.apply_orientation(orientation);
    let info = PhotoInfo { format, width, height, orientation: Rotation::of(orientation), decode_scale };
    Ok(Photo { image: image.into_rgb8(), info })
}

/// Refuses a stored size before anything is decoded (see the module docs).
pub(super) fn check_size(width: u32, height: u32, limit: u64, what: &'static str) -> Result<(), DecodeError> {
    let (shorter, longer) = (width.min(height), width.max(height));
    if shorter < MIN_SIDE {
        // A 20000 x 1 strip is refused for its shape, not its size: that says what is wrong.
        return Err(if shorter > 0 && longer / shorter > MAX_ASPECT_RATIO {
            DecodeError::AspectRatio { width, height }
        } else {
            DecodeError::TooSmall { width, height }
        });
    }
    if longer as u64 > MAX_ASPECT_RATIO as u64 * shorter as u64 {
        return Err(DecodeError::AspectRatio { width, height });
    }
    if width as u64 * height as u64 > limit {
        return Err(DecodeError::TooManyPixels { width, height, limit, what });
    }
    Ok(())
}

fn sniff(bytes: &[u8]) -> Result<PhotoFormat, DecodeError> {
    const HEIF_BRANDS: [&[u8; 4]; 7] = [b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1"];
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let unsupported = |format, hint| Err(DecodeError::Unsupported { format, hint });
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(PhotoFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(PhotoFormat::Png);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(PhotoFormat::Webp);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return unsupported("GIF", "GIF is for graphics and animations; save the photo as JPEG");
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = &bytes[8..12];
        if HEIF_BRANDS.iter().any(|b| b.as_slice() == brand) {
            return unsupported(
                "HEIC/HEIF",
                "the iPhone's default photo format; export it as JPEG (iPhone: Settings > Camera > Formats > Most Compatible)",
            );
        }
        if brand == b"avif" || brand == b"avis" {
            return unsupported("AVIF", "save the photo as JPEG");
        }
    }
    match image::guess_format(bytes) {
        Ok(ImageFormat::Bmp) => unsupported("BMP", "save the photo as JPEG"),
        Ok(ImageFormat::Tiff) => unsupported("TIFF", "save the photo as JPEG"),
        _ => Err(DecodeError::NotAnImage),
    }
}

/// PNG and WebP through `image`, with its limits set from our budget: the size is checked from
/// the header before the decoder allocates.
fn decode_whole(bytes: &[u8], format: PhotoFormat) -> Result<(RgbImage, Orientation, u32, u32), DecodeError> {
    let (image_format, name) = match format {
        PhotoFormat::Png => (ImageFormat::Png, "PNG"),
        PhotoFormat::Webp => (ImageFormat::WebP, "WebP"),
        PhotoFormat::Jpeg => unreachable!("JPEG has its own decoder"),
    };
    let error = |problem| DecodeError::Image { format: name, problem };
    let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), image_format);
    let mut limits = Limits::default();
    // RGBA at 16 bits per channel plus the RGB copy: what the largest accepted photo needs.
    limits.max_alloc = Some(Budget::FULL_DECODE_PIXELS * (8 + 3));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(error)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, Budget::FULL_DECODE_PIXELS, "are decoded from a PNG or WebP")?;
    let orientation = decoder.orientation().map_err(error)?;
    let image = DynamicImage::from_decoder(decoder).map_err(error)?;
    Ok((image.into_rgb8(), orientation, width, height))
}
