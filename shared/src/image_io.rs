//! Photos to network inputs: decode, then [`PreprocessSpec`]'s resize, centre crop and
//! normalisation. The trainer, the exporter and the device all go through here.
//!
//! JPEGs are decoded by `zune-jpeg` in strict mode rather than through `image`: `image` decodes
//! a truncated JPEG without complaint (the missing part comes out grey), and a half-received
//! photo must be an error, not a confident answer about a grey blur.

use crate::preprocess::{PreprocessSpec, ResizeFilter};
use image::RgbImage;
use image::imageops::{self, FilterType};
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

// The messages already say what went wrong underneath, so the errors name no `source`: a
// report that walks the chain (`{:#}`) would otherwise say it twice or three times.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ImageError {
    pub path: PathBuf,
    pub problem: DecodeError,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read the file: {0}")]
    Io(std::io::Error),
    #[error("corrupt or truncated JPEG: {0}")]
    Jpeg(String),
    #[error("not a decodable image: {0}")]
    Image(image::ImageError),
}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> DecodeError {
        DecodeError::Io(e)
    }
}

impl From<image::ImageError> for DecodeError {
    fn from(e: image::ImageError) -> DecodeError {
        DecodeError::Image(e)
    }
}

/// Decodes an encoded photo (JPEG, PNG; recognised by content) to 8-bit RGB.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let options = DecoderOptions::default().set_strict_mode(true).jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        let pixels = decoder.decode().map_err(|e| DecodeError::Jpeg(std::format!("{e:?}")))?;
        let (width, height) = decoder.dimensions().ok_or_else(|| DecodeError::Jpeg("no image size".to_string()))?;
        return RgbImage::from_raw(width as u32, height as u32, pixels)
            .ok_or_else(|| DecodeError::Jpeg("decoded pixels do not match the image size".to_string()));
    }
    Ok(image::load_from_memory(bytes)?.into_rgb8())
}

/// Reads and decodes the photo at `path`.
pub fn open_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let error = |problem| ImageError { path: path.into(), problem };
    let bytes = std::fs::read(path).map_err(|e| error(e.into()))?;
    decode_rgb(&bytes).map_err(error)
}

/// The spec's aspect-preserving resize: the shorter side becomes `resize_shorter_to`.
pub fn resize_shorter(image: &RgbImage, spec: &PreprocessSpec) -> RgbImage {
    let (width, height) = spec.resized_dims(image.width(), image.height());
    resize(image, width, height, spec)
}

/// Resize to exactly `width` x `height` with the spec's filter.
pub fn resize(image: &RgbImage, width: u32, height: u32, spec: &PreprocessSpec) -> RgbImage {
    imageops::resize(image, width, height, filter_type(spec.filter))
}

/// The spec's centre crop of an image already resized by [`resize_shorter`].
pub fn center_crop(resized: &RgbImage, spec: &PreprocessSpec) -> RgbImage {
    let crop = spec.center_crop(resized.width(), resized.height());
    imageops::crop_imm(resized, crop.x, crop.y, crop.width, crop.height).to_image()
}

/// The views an enrollment photo is embedded from, their embeddings averaged: the centre crop
/// and the four corner crops of the resized photo, each also mirrored (10 views). A prototype
/// built from a few photos is then less at the mercy of how each was framed.
pub fn enrollment_views(resized: &RgbImage, spec: &PreprocessSpec) -> Vec<RgbImage> {
    let boxes = core::iter::once(spec.center_crop(resized.width(), resized.height()))
        .chain(spec.corner_crops(resized.width(), resized.height()));
    boxes
        .flat_map(|b| {
            let crop = imageops::crop_imm(resized, b.x, b.y, b.width, b.height).to_image();
            let mirror = imageops::flip_horizontal(&crop);
            [crop, mirror]
        })
        .collect()
}

/// The spec's resize and centre crop: an `input_size` square RGB image.
pub fn resize_and_crop(image: &RgbImage, spec: &PreprocessSpec) -> RgbImage {
    center_crop(&resize_shorter(image, spec), spec)
}

/// The network input (1 x 3 x size x size, channel-major) for a decoded photo.
pub fn to_tensor(image: &RgbImage, spec: &PreprocessSpec) -> Vec<f32> {
    let square = resize_and_crop(image, spec);
    let mut tensor = std::vec![0.0; spec.tensor_len()];
    spec.normalize_into(square.as_raw(), &mut tensor);
    tensor
}

/// Decode + preprocess the photo at `path`.
pub fn load_tensor(path: &Path, spec: &PreprocessSpec) -> Result<Vec<f32>, ImageError> {
    Ok(to_tensor(&open_rgb(path)?, spec))
}

fn filter_type(filter: ResizeFilter) -> FilterType {
    match filter {
        ResizeFilter::Nearest => FilterType::Nearest,
        ResizeFilter::Triangle => FilterType::Triangle,
        ResizeFilter::CatmullRom => FilterType::CatmullRom,
    }
}
