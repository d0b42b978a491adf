//! Decoding and preprocessing of real image files (generated here, written as JPEG/PNG).

use image::{Rgb, RgbImage};
use sporeprint_shared::PreprocessSpec;
use sporeprint_shared::image_io::{self, load_tensor};
use std::path::Path;

fn write(image: &RgbImage, path: &Path) {
    image.save(path).unwrap();
}

#[test]
fn a_solid_jpeg_becomes_the_normalised_colour_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("solid.jpg");
    write(&RgbImage::from_pixel(512, 384, Rgb([200, 100, 50])), &path);
    let spec = PreprocessSpec::EFFICIENTNET_LITE;
    let tensor = load_tensor(&path, &spec).unwrap();
    assert_eq!(tensor.len(), 3 * 224 * 224);
    let plane = 224 * 224;
    for (channel, value) in [200.0f32, 100.0, 50.0].into_iter().enumerate() {
        let expected = (value - 127.0) / 128.0;
        let slice = &tensor[channel * plane..(channel + 1) * plane];
        // JPEG's chroma quantisation moves a solid colour by a few levels at most.
        assert!(slice.iter().all(|v| (v - expected).abs() < 4.0 / 128.0), "channel {channel}");
    }
}

#[test]
fn wide_photos_are_centre_cropped_after_resizing() {
    // 640x480: red on the left 100 columns, blue on the right 100, green between. Resized to
    // 341x256 the red band is 53 columns wide, and the centre crop starts at column 58: no red
    // or blue survives, only green.
    let image = RgbImage::from_fn(640, 480, |x, _| match x {
        0..100 => Rgb([255, 0, 0]),
        540.. => Rgb([0, 0, 255]),
        _ => Rgb([0, 255, 0]),
    });
    let square = image_io::resize_and_crop(&image, &PreprocessSpec::IMAGENET);
    assert_eq!(square.dimensions(), (224, 224));
    for x in [0, 111, 223] {
        assert_eq!(square.get_pixel(x, 100), &Rgb([0, 255, 0]), "column {x}");
    }
    // A narrower crop band keeps the sides: 400x300 is resized to 341x256 too.
    let image = RgbImage::from_fn(400, 300, |x, _| if x < 100 { Rgb([255, 0, 0]) } else { Rgb([0, 255, 0]) });
    let square = image_io::resize_and_crop(&image, &PreprocessSpec::IMAGENET);
    assert_eq!(square.get_pixel(0, 100), &Rgb([255, 0, 0]));
}

#[test]
fn png_and_jpeg_are_recognised_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("actually_png.jpg");
    RgbImage::from_pixel(300, 300, Rgb([10, 20, 30])).save_with_format(&png, image::ImageFormat::Png).unwrap();
    let tensor = load_tensor(&png, &PreprocessSpec::IMAGENET).unwrap();
    let expected = (10.0 / 255.0 - 0.485) / 0.229;
    assert!((tensor[0] - expected).abs() < 1e-5);
}

#[test]
fn bad_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PreprocessSpec::EFFICIENTNET_LITE;

    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, "this is not a photo").unwrap();
    let message = load_tensor(&text, &spec).unwrap_err().to_string();
    assert!(message.contains("notes.jpg"), "{message}");

    let good = dir.path().join("good.jpg");
    write(&RgbImage::from_fn(256, 256, |x, y| Rgb([x as u8, y as u8, 0])), &good);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let message = load_tensor(&truncated, &spec).unwrap_err().to_string();
    assert!(message.contains("truncated.jpg"), "{message}");

    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_tensor(&empty, &spec).unwrap_err().to_string().contains("empty.jpg"));

    let missing = dir.path().join("missing.jpg");
    assert!(load_tensor(&missing, &spec).unwrap_err().to_string().contains("missing.jpg"));
}

/// Strict JPEG decoding must not refuse real camera photos. Needs the real data set: set
/// `SPOREPRINT_DATA` to the folder holding `images/` (skipped when unset).
#[test]
fn every_real_photo_decodes() {
    let Some(root) = std::env::var_os("SPOREPRINT_DATA") else {
        eprintln!("SPOREPRINT_DATA not set: skipping the real-photo check");
        return;
    };
    // On aarch64 the tests run under qemu (scripts/test.sh), some 15x slower: there one photo of
    // each species checks the decoder on the Pi's architecture, and x86-64 decodes them all.
    let per_species = if cfg!(target_arch = "aarch64") { 1 } else { usize::MAX };
    let mut decoded = 0;
    for species in std::fs::read_dir(Path::new(&root).join("images")).unwrap() {
        let mut photos: Vec<_> =
            std::fs::read_dir(species.unwrap().path()).unwrap().map(|p| p.unwrap().path()).collect();
        photos.sort();
        for path in photos.into_iter().take(per_species) {
            let tensor = load_tensor(&path, &PreprocessSpec::EFFICIENTNET_LITE).unwrap();
            assert!(tensor.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
            decoded += 1;
        }
    }
    println!("{decoded} real photos decoded");
    assert!(decoded > 0, "no photos under {}", Path::new(&root).display());
}

#[test]
fn enrollment_views_are_the_centre_and_corner_crops_and_their_mirrors() {
    use sporeprint_shared::PreprocessSpec;
    let spec = PreprocessSpec { input_size: 4, resize_shorter_to: 6, ..PreprocessSpec::IMAGENET };
    // 8 x 6 "resized" image whose red channel is x and green channel is y.
    let resized = image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([x as u8, y as u8, 0]));
    let views = sporeprint_shared::image_io::enrollment_views(&resized, &spec);
    assert_eq!(views.len(), 10);
    let corner = |v: &image::RgbImage| (v.get_pixel(0, 0)[0], v.get_pixel(0, 0)[1]);
    // centre (2, 1), then top-left, top-right, bottom-left, bottom-right; each followed by its mirror.
    let origins: Vec<(u8, u8)> = views.iter().step_by(2).map(corner).collect();
    assert_eq!(origins, [(2, 1), (0, 0), (4, 0), (0, 2), (4, 2)]);
    for pair in views.chunks(2) {
        assert_eq!(pair[1], image::imageops::flip_horizontal(&pair[0]));
        assert_eq!(pair[0].dimensions(), (4, 4));
    }
}

#[test]
fn photo_files_are_told_by_their_extension_whatever_its_case() {
    use sporeprint_shared::image_io::is_photo_file;
    for photo in ["a.jpg", "b.JPG", "c.Jpeg", "d.jpeg", "e.png", "f.PNG", "dir/g.jpg"] {
        assert!(is_photo_file(Path::new(photo)), "{photo}");
    }
    for other in ["notes.txt", "no_extension", "h.jpg.bak", ".jpg", "i.gif", "j.webp"] {
        assert!(!is_photo_file(Path::new(other)), "{other}");
    }
}
