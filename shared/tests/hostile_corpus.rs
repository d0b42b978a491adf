//! Every file of the hostile corpus (tests/hostile/, made by scripts/make_hostile_corpus.py)
//! gets either a correct decode or its own named error, and nothing hangs or allocates by what
//! a header claims. The device's peak memory on them is measured in device/tests/hostile.rs.

use image::RgbImage;
use sporeprint_shared::PreprocessSpec;
use sporeprint_shared::image_io::{self, DecodeError, PhotoFormat, Rotation};
use std::path::{Path, PathBuf};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile").join(name)
}

const SPEC: PreprocessSpec = PreprocessSpec::EFFICIENTNET_LITE;

fn open(name: &str) -> Result<image_io::Photo, DecodeError> {
    let path = corpus(name);
    image_io::open(&path, &SPEC).map_err(|e| {
        assert_eq!(e.path, path, "the error names the file");
        assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
        e.problem
    })
}

/// Mean absolute difference per channel value of two images of one size.
fn difference(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn photos_in_odd_encodings_decode_to_the_same_picture() {
    let normal = open("normal.jpg").unwrap();
    assert_eq!((normal.info.format, normal.info.orientation), (PhotoFormat::Jpeg, Rotation::Upright));
    assert_eq!(normal.image.dimensions(), (320, 240));
    for (name, format, most) in [
        ("progressive.jpg", PhotoFormat::Jpeg, 3.0),
        ("cmyk.jpg", PhotoFormat::Jpeg, 8.0),
        ("rgb16.png", PhotoFormat::Png, 3.0),
        ("palette.png", PhotoFormat::Png, 8.0),
        ("webp-renamed.jpg", PhotoFormat::Webp, 8.0),
    ] {
        let photo = open(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(photo.info.format, format, "{name}");
        let off = difference(&photo.image, &normal.image);
        assert!(off < most, "{name} differs from normal.jpg by {off:.1} per value");
    }
    // Grey: every pixel grey, and as bright as the photo is.
    let grey = open("grey.png").unwrap();
    assert!(grey.image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn a_portrait_photo_is_turned_upright_by_its_exif_orientation() {
    let normal = open("normal.jpg").unwrap();
    let portrait = open("portrait-exif6.jpg").unwrap();
    // Stored 240 x 320 (on its side), seen 320 x 240 with the cap on top like normal.jpg.
    assert_eq!((portrait.info.width, portrait.info.height), (240, 320));
    assert_eq!(portrait.info.orientation, Rotation::Rotated90Clockwise);
    let off = difference(&portrait.image, &normal.image);
    assert!(off < 3.0, "upright portrait differs from normal.jpg by {off:.1} per value");
}

#[test]
fn damaged_and_foreign_files_each_get_their_own_error() {
    // File, which error it must be, words its message must contain.
    type Case = (&'static str, fn(&DecodeError) -> bool, &'static str);
    let cases: [Case; 10] = [
        ("empty.jpg", |e| matches!(e, DecodeError::Empty), "empty"),
        ("truncated.jpg", |e| matches!(e, DecodeError::Jpeg(_)), "truncated JPEG"),
        ("truncated.png", |e| matches!(e, DecodeError::Image { format: "PNG", .. }), "truncated PNG"),
        ("wrong-length-marker.jpg", |e| matches!(e, DecodeError::Jpeg(_)), "corrupt"),
        ("one-pixel.png", |e| matches!(e, DecodeError::TooSmall { width: 1, height: 1 }), "too small"),
        ("strip-20000x1.png", |e| matches!(e, DecodeError::AspectRatio { width: 20000, height: 1 }), "strip"),
        ("bomb.png", |e| matches!(e, DecodeError::TooManyPixels { width: 100000, .. }), "10000.0 MP"),
        ("bomb.jpg", |e| matches!(e, DecodeError::TooManyPixels { width: 65000, .. }), "4225.0 MP"),
        ("gif-renamed.jpg", |e| matches!(e, DecodeError::Unsupported { format: "GIF", .. }), "GIF"),
        ("heic-renamed.jpg", |e| matches!(e, DecodeError::Unsupported { format: "HEIC/HEIF", .. }), "JPEG"),
    ];
    for (name, expected, words) in cases {
        let error = open(name).err().unwrap_or_else(|| panic!("{name} decoded"));
        assert!(expected(&error), "{name}: {error:?}");
        assert!(error.to_string().contains(words), "{name}: {error}");
    }
}

#[test]
fn a_directory_and_a_fifo_are_refused_without_being_opened() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("photos.jpg");
    std::fs::create_dir(&folder).unwrap();
    let error = image_io::open(&folder, &SPEC).unwrap_err();
    assert!(matches!(error.problem, DecodeError::NotAFile("a directory")), "{error}");

    let fifo = dir.path().join("camera.jpg");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    // Opening a FIFO for reading blocks until a writer comes: this returns at once or hangs.
    let error = image_io::open(&fifo, &SPEC).unwrap_err();
    assert!(matches!(error.problem, DecodeError::NotAFile(_)), "{error}");
    assert!(error.to_string().contains("FIFO"), "{error}");
}

#[test]
fn a_large_jpeg_is_decoded_at_a_reduced_scale_still_above_the_resize() {
    // 4096 x 3072 (12.6 MP, a phone photo): 1/8 scale keeps the shorter side at 384 >= 256.
    let big = RgbImage::from_fn(4096, 3072, |x, y| image::Rgb([(x / 16) as u8, (y / 12) as u8, 90]));
    let mut bytes = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80).encode_image(&big).unwrap();
    let photo = image_io::decode(&bytes, SPEC.resize_shorter_to).unwrap();
    assert_eq!(photo.info.decode_scale, 8);
    assert_eq!((photo.info.width, photo.info.height), (4096, 3072));
    assert_eq!(photo.image.dimensions(), (512, 384));
    // The same picture: a pixel of the scaled decode is the mean of an 8 x 8 block.
    let expected = big.get_pixel(8 * 200 + 4, 8 * 100 + 4);
    let got = photo.image.get_pixel(200, 100);
    for c in 0..3 {
        assert!(got[c].abs_diff(expected[c]) <= 6, "{got:?} vs {expected:?}");
    }
    // Cut short, the scaled path refuses it as the strict path does.
    let error = image_io::decode(&bytes[..bytes.len() * 2 / 3], SPEC.resize_shorter_to).unwrap_err();
    assert!(error.to_string().contains("truncated"), "{error}");
}
