//! The shifted variant of a photo: what the same mushroom looks like when the photo comes from
//! another source than the data set (a small web or phone photo, framed and lit otherwise).
//!
//! The shared data set's held-out photos come from the same source and framing as its training
//! photos, so accuracy measured on them says little about a forager's photos. No other photo set
//! is at hand, so every query photo also gets a shifted copy, made from it by what differs
//! between sources, each drawn at random (seeded, so a run can be repeated):
//! - an off-centre crop covering 50-90% of the frame's area (other framing);
//! - mirrored, half of the time;
//! - a mild colour cast, each channel scaled by 0.9-1.1 (other light, other white balance);
//! - the shorter side resized to 180-300 px (web and messenger photos), then
//! - JPEG re-compression at quality 50-80.
//!
//! The result is decoded again, as a photo file would be, and then preprocessed as any photo.

use image::codecs::jpeg::JpegEncoder;
use image::{RgbImage, imageops};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The ranges the degradations are drawn from.
pub const CROP_AREA: (f64, f64) = (0.5, 0.9);
pub const SHORTER_SIDE: (u32, u32) = (180, 300);
pub const JPEG_QUALITY: (u8, u8) = (50, 80);
pub const COLOUR_CAST: (f32, f32) = (0.9, 1.1);

/// The shifted variant of `photo`, drawn with `seed` (use the photo's index in a fixed order,
/// plus a run seed, so each photo always gets the same variant).
pub fn shifted(photo: &RgbImage, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (width, height) = photo.dimensions();

    let side = rng.random_range(CROP_AREA.0..=CROP_AREA.1).sqrt();
    let (crop_w, crop_h) = (((width as f64 * side) as u32).max(1), ((height as f64 * side) as u32).max(1));
    let (x, y) = (rng.random_range(0..=width - crop_w), rng.random_range(0..=height - crop_h));
    let mut image = imageops::crop_imm(photo, x, y, crop_w, crop_h).to_image();

    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut image);
    }

    let cast: [f32; 3] = std::array::from_fn(|_| rng.random_range(COLOUR_CAST.0..=COLOUR_CAST.1));
    for pixel in image.pixels_mut() {
        for (value, factor) in pixel.0.iter_mut().zip(cast) {
            *value = (*value as f32 * factor).round().clamp(0.0, 255.0) as u8;
        }
    }

    let shorter = rng.random_range(SHORTER_SIDE.0..=SHORTER_SIDE.1);
    let scale = shorter as f64 / crop_w.min(crop_h) as f64;
    let (new_w, new_h) =
        (((crop_w as f64 * scale).round() as u32).max(1), ((crop_h as f64 * scale).round() as u32).max(1));
    let image = imageops::resize(&image, new_w, new_h, imageops::FilterType::Triangle);

    let quality = rng.random_range(JPEG_QUALITY.0..=JPEG_QUALITY.1);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality).encode_image(&image).expect("encoding into memory cannot fail");
    image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).expect("a JPEG just encoded decodes").to_rgb8()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> RgbImage {
        RgbImage::from_fn(512, 384, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]))
    }

    #[test]
    fn a_shifted_photo_is_small_and_the_same_for_the_same_seed() {
        let original = photo();
        let a = shifted(&original, 7);
        assert_eq!(a, shifted(&original, 7));
        assert_ne!(a, shifted(&original, 8));
        for seed in 0..20 {
            let s = shifted(&original, seed);
            let shorter = s.width().min(s.height());
            assert!((SHORTER_SIDE.0..=SHORTER_SIDE.1 + 1).contains(&shorter), "{seed}: {shorter}");
            // The crop keeps the frame's aspect ratio (4:3), within rounding.
            let aspect = s.width() as f64 / s.height() as f64;
            assert!((aspect - 4.0 / 3.0).abs() < 0.02, "{seed}: {aspect}");
        }
    }
}
