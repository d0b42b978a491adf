//! Photos to network inputs: decode ([`decode`]: bounded, EXIF orientation applied), then
//! [`PreprocessSpec`]'s resize, centre crop and normalisation. The trainer, the exporter and the
//! device all go through here.
//!
//! The crop comes after the resize, on the whole resized photo, because enrollment embeds its
//! corner crops too ([`enrollment_views`]); the resize stays small because [`decode`] refuses
//! shapes wider than [`MAX_ASPECT_RATIO`]: at most 4 x 256 x 256 pixels.

mod decode;
mod jpeg;

pub use decode::{
    Budget, DecodeError, MAX_ASPECT_RATIO, MAX_FILE_BYTES, MIN_SIDE, Photo, PhotoFormat, PhotoInfo, Rotation, decode,
    read_photo_file,
};
pub use jpeg::check_complete as check_jpeg_complete;

use crate::preprocess::{PreprocessSpec, ResizeFilter};
use image::RgbImage;
use image::imageops::{self, FilterType};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ImageError {
    pub path: PathBuf,
    pub problem: DecodeError,
}

/// The photo files sporeprint reads, by extension whatever its case: JPEG and PNG. One rule for
/// the trainer's data folders, the exporter's calibration photos and the device's camera folder.
pub fn is_photo_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Decodes an encoded photo to upright 8-bit RGB, at least as large as `spec` resizes to.
pub fn decode_rgb(bytes: &[u8], spec: &PreprocessSpec) -> Result<RgbImage, DecodeError> {
    Ok(decode(bytes, spec.resize_shorter_to)?.image)
}

/// Reads and decodes the photo at `path` (see [`decode`] and [`read_photo_file`]).
pub fn open(path: &Path, spec: &PreprocessSpec) -> Result<Photo, ImageError> {
    let error = |problem| ImageError { path: path.into(), problem };
    let bytes = read_photo_file(path).map_err(error)?;
    decode(&bytes, spec.resize_shorter_to).map_err(error)
}

/// [`open`]'s pixels.
pub fn open_rgb(path: &Path, spec: &PreprocessSpec) -> Result<RgbImage, ImageError> {
    Ok(open(path, spec)?.image)
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
    let mut tensor = vec![0.0; spec.tensor_len()];
    spec.normalize_into(square.as_raw(), &mut tensor);
    tensor
}

/// Decode + preprocess the photo at `path`.
pub fn load_tensor(path: &Path, spec: &PreprocessSpec) -> Result<Vec<f32>, ImageError> {
    Ok(to_tensor(&open_rgb(path, spec)?, spec))
}

fn filter_type(filter: ResizeFilter) -> FilterType {
    match filter {
        ResizeFilter::Nearest => FilterType::Nearest,
        ResizeFilter::Triangle => FilterType::Triangle,
        ResizeFilter::CatmullRom => FilterType::CatmullRom,
    }
}
