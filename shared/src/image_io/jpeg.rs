//! JPEG decoding, two ways.
//!
//! - Up to [`Budget::FULL_DECODE_PIXELS`], and for every progressive JPEG: `zune-jpeg` in strict
//!   mode, whole. Not through `image`: `image` decodes a truncated JPEG without complaint (the
//!   missing part comes out grey), and a half-received photo must be an error, not a confident
//!   answer about a grey blur. Every photo of the data set is read this way, so the pixels the
//!   shipped model was trained on do not depend on the scaled path.
//! - A larger baseline JPEG (a phone's 12 MP photo): `jpeg-decoder`, which can decode at 1/2,
//!   1/4 or 1/8 scale in the DCT (`zune-jpeg` cannot), so a 48 MP photo costs a 0.75 MP buffer.
//!   That decoder pads a truncated scan with zeros, so [`check_complete`] first walks the file's
//!   segments and refuses one that ends before its end-of-image marker.

use super::decode::{Budget, DecodeError, check_size};
use image::RgbImage;
use image::metadata::Orientation;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

pub(super) struct Decoded {
    pub image: RgbImage,
    pub orientation: Orientation,
    pub width: u32,
    pub height: u32,
    pub scale: u32,
}

pub(super) fn decode(bytes: &[u8], min_shorter_side: u32) -> Result<Decoded, DecodeError> {
    let jpeg_error = |e: zune_jpeg::errors::DecodeErrors| DecodeError::Jpeg(format!("{e:?}"));
    // zune's own size limit is left wide open: ours says more about why a size is refused.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(jpeg_error)?;
    let info = decoder.info().ok_or_else(|| DecodeError::Jpeg("no image size".to_string()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let orientation =
        info.exif_data.as_deref().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    let pixels = width as u64 * height as u64;
    let progressive = !info.sof.is_sequential_dct();
    let scale = scale_for(width.min(height), min_shorter_side);
    if pixels <= Budget::FULL_DECODE_PIXELS || scale == 1 || progressive {
        let what = if progressive { "are decoded from a progressive JPEG" } else { "are decoded at full size" };
        check_size(width, height, Budget::FULL_DECODE_PIXELS, what)?;
        let rgb = decoder.decode().map_err(jpeg_error)?;
        let image = RgbImage::from_raw(width, height, rgb)
            .ok_or_else(|| DecodeError::Jpeg("decoded pixels do not match the image size".to_string()))?;
        return Ok(Decoded { image, orientation, width, height, scale: 1 });
    }
    check_size(width, height, Budget::SCALED_JPEG_PIXELS, "are decoded from a JPEG")?;
    check_complete(bytes).map_err(DecodeError::Jpeg)?;
    let image = decode_scaled(bytes, width, height, scale)?;
    Ok(Decoded { image, orientation, width, height, scale })
}

/// The largest of 1, 2, 4, 8 that keeps the shorter side at least `min_shorter_side`.
fn scale_for(shorter_side: u32, min_shorter_side: u32) -> u32 {
    [8, 4, 2].into_iter().find(|s| shorter_side / s >= min_shorter_side.max(1)).unwrap_or(1)
}

fn decode_scaled(bytes: &[u8], width: u32, height: u32, scale: u32) -> Result<RgbImage, DecodeError> {
    let error = |e: jpeg_decoder::Error| DecodeError::Jpeg(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
    // `scale` picks the smallest DCT scale reaching the requested size; asking for exactly
    // 1/scale of each side gets that scale.
    let (w, h) = (width.div_ceil(scale) as u16, height.div_ceil(scale) as u16);
    let (w, h) = decoder.scale(w, h).map_err(error)?;
    decoder.set_max_decoding_buffer_size(4 * w as usize * h as usize);
    let pixels = decoder.decode().map_err(error)?;
    let format = decoder.info().ok_or_else(|| DecodeError::Jpeg("no image size".to_string()))?.pixel_format;
    let rgb: Vec<u8> = match format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        other => {
            return Err(DecodeError::Jpeg(format!(
                "{other:?} pixels in a JPEG this large; convert it to an RGB JPEG of at most {} MP",
                Budget::FULL_DECODE_PIXELS / 1_000_000
            )));
        }
    };
    RgbImage::from_raw(u32::from(w), u32::from(h), rgb)
        .ok_or_else(|| DecodeError::Jpeg("decoded pixels do not match the image size".to_string()))
}

/// Walks a JPEG's marker segments and its scans' entropy-coded data up to the end-of-image
/// marker: `Err` when the file ends first (truncated) or a segment's length runs past its end.
/// Inside entropy-coded data a 0xFF byte is always followed by 0x00 (stuffing) or a restart
/// marker, so the next real marker is found without decoding.
pub fn check_complete(bytes: &[u8]) -> Result<(), String> {
    let truncated = |at: usize| format!("the file ends at byte {at} before the end-of-image marker (truncated)");
    let n = bytes.len();
    let mut i = 2;
    loop {
        if i >= n {
            return Err(truncated(n));
        }
        if bytes[i] != 0xFF {
            return Err(format!("expected a marker at byte {i}, found 0x{:02X}", bytes[i]));
        }
        while i < n && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else { return Err(truncated(n)) };
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(length) = bytes.get(i..i + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
            return Err(truncated(n));
        };
        if length < 2 {
            return Err(format!("a segment at byte {i} declares a length of {length}"));
        }
        i += length;
        if i > n {
            return Err(format!("a segment at byte {} runs {} bytes past the end of the file", i - length, i - n));
        }
        if marker == 0xDA {
            while i + 1 < n && !(bytes[i] == 0xFF && bytes[i + 1] != 0 && !(0xD0..=0xD7).contains(&bytes[i + 1])) {
                i += 1;
            }
            if i + 1 >= n {
                return Err(truncated(n));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_keeps_the_shorter_side_above_the_resize_target() {
        assert_eq!(scale_for(3000, 256), 8);
        assert_eq!(scale_for(2000, 256), 4);
        assert_eq!(scale_for(1024, 256), 4);
        assert_eq!(scale_for(1023, 256), 2);
        assert_eq!(scale_for(300, 256), 1);
    }

    #[test]
    fn segments_are_walked_to_the_end_of_image() {
        // SOI, an APP0 of 4 bytes, SOS of 2 with entropy data holding a stuffed 0xFF and a restart.
        let whole = [0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xDA, 0, 2, 7, 0xFF, 0, 8, 0xFF, 0xD3, 9, 0xFF, 0xD9];
        assert_eq!(check_complete(&whole), Ok(()));
        for cut in 3..whole.len() - 1 {
            assert!(check_complete(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = whole;
        long[5] = 200;
        assert!(check_complete(&long).unwrap_err().contains("past the end"));
    }
}
