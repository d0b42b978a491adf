//! How a photo becomes the network's input tensor. Training, export and the device all call this
//! code, so the device sees exactly the pixels training saw.
//!
//! Geometry: scale so the shorter side is `resize_shorter_to`, then cut the centred
//! `input_size` x `input_size` square. Values: `(pixel / 255 - mean[c]) / std[c]`, laid out
//! channel-major (1 x 3 x H x W, RGB).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// Side of the square network input, in pixels.
    pub input_size: u32,
    /// The shorter image side is scaled to this before the centre crop (>= `input_size`).
    pub resize_shorter_to: u32,
    /// Per-channel (RGB) mean and standard deviation on the [0, 1] pixel scale.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub filter: ResizeFilter,
}

/// The resampling filter for the resize step; both sides must use the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeFilter {
    Nearest,
    /// Bilinear.
    Triangle,
    CatmullRom,
}

/// A rectangle inside an image, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl PreprocessSpec {
    /// torchvision's ImageNet convention (ResNet): 256 -> 224, ImageNet mean/std.
    pub const IMAGENET: PreprocessSpec = PreprocessSpec {
        input_size: 224,
        resize_shorter_to: 256,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        filter: ResizeFilter::Triangle,
    };

    /// EfficientNet-Lite0's input: see [`PreprocessSpec::efficientnet_lite`].
    pub const EFFICIENTNET_LITE: PreprocessSpec = PreprocessSpec::efficientnet_lite(224);

    /// EfficientNet-Lite's convention at `input_size` (224 for Lite0, 240 for Lite1, 260 for
    /// Lite2): `(p - 127) / 128` for a pixel `p` in 0..=255; the shorter side resized to 32 px more
    /// than the centre crop, as EfficientNet's own evaluation does.
    pub const fn efficientnet_lite(input_size: u32) -> PreprocessSpec {
        PreprocessSpec {
            input_size,
            resize_shorter_to: input_size + 32,
            mean: [127.0 / 255.0; 3],
            std: [128.0 / 255.0; 3],
            filter: ResizeFilter::Triangle,
        }
    }

    /// Why this spec cannot be used, if it cannot: an empty input, a resize smaller than the
    /// crop, a mean that is not a number, a standard deviation that is not a positive number.
    pub fn problem(&self) -> Option<&'static str> {
        if self.input_size == 0 {
            return Some("the network input size is 0");
        }
        if self.resize_shorter_to < self.input_size {
            return Some("images are resized smaller than the network input they are cropped to");
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Some("a channel mean is not a finite number");
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Some("a channel standard deviation is not a positive number");
        }
        None
    }

    /// Number of floats in one preprocessed image (3 x size x size).
    pub fn tensor_len(&self) -> usize {
        3 * self.input_size as usize * self.input_size as usize
    }

    /// Size after the aspect-preserving resize of a `width` x `height` image. The shorter side
    /// becomes exactly `resize_shorter_to`; the longer is rounded, and never below the crop.
    pub fn resized_dims(&self, width: u32, height: u32) -> (u32, u32) {
        let target = self.resize_shorter_to.max(self.input_size);
        let scale_longer = |longer: u32, shorter: u32| {
            let scaled = (longer as u64 * target as u64 + shorter as u64 / 2) / shorter.max(1) as u64;
            (scaled as u32).max(target)
        };
        if width <= height { (target, scale_longer(height, width)) } else { (scale_longer(width, height), target) }
    }

    /// The centred `input_size` square inside an image of the resized size.
    pub fn center_crop(&self, resized_width: u32, resized_height: u32) -> CropBox {
        let size = self.input_size;
        CropBox {
            x: resized_width.saturating_sub(size) / 2,
            y: resized_height.saturating_sub(size) / 2,
            width: size,
            height: size,
        }
    }

    /// The four corner squares of `input_size` inside an image of the resized size (top-left,
    /// top-right, bottom-left, bottom-right). With the centre crop they are the five views an
    /// enrollment photo is embedded from (see `image_io::enrollment_views`).
    pub fn corner_crops(&self, resized_width: u32, resized_height: u32) -> [CropBox; 4] {
        let size = self.input_size;
        let (right, bottom) = (resized_width.saturating_sub(size), resized_height.saturating_sub(size));
        [(0, 0), (right, 0), (0, bottom), (right, bottom)].map(|(x, y)| CropBox { x, y, width: size, height: size })
    }

    /// Normalises an `input_size` x `input_size` RGB8 image (row-major, interleaved) into `out`
    /// (channel-major). Camera frames and decoded files both end here.
    ///
    /// Panics when the buffer sizes do not match the spec: that is a programming error.
    pub fn normalize_into(&self, rgb: &[u8], out: &mut [f32]) {
        let plane = self.input_size as usize * self.input_size as usize;
        assert_eq!(rgb.len(), 3 * plane, "RGB buffer does not match the input size");
        assert_eq!(out.len(), 3 * plane, "tensor buffer does not match the input size");
        let (red, rest) = out.split_at_mut(plane);
        let (green, blue) = rest.split_at_mut(plane);
        let scale = self.std.map(|s| 1.0 / (255.0 * s));
        let offset = [0, 1, 2].map(|c| self.mean[c] / self.std[c]);
        for (i, pixel) in rgb.chunks_exact(3).enumerate() {
            red[i] = pixel[0] as f32 * scale[0] - offset[0];
            green[i] = pixel[1] as f32 * scale[1] - offset[1];
            blue[i] = pixel[2] as f32 * scale[2] - offset[2];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn shorter_side_is_scaled_then_centre_cropped() {
        let spec = PreprocessSpec::IMAGENET;
        assert_eq!(spec.resized_dims(512, 512), (256, 256));
        assert_eq!(spec.resized_dims(640, 480), (341, 256));
        assert_eq!(spec.resized_dims(480, 640), (256, 341));
        assert_eq!(spec.resized_dims(10000, 10), (256000, 256));
        assert_eq!(spec.center_crop(341, 256), CropBox { x: 58, y: 16, width: 224, height: 224 });
    }

    #[test]
    fn efficientnet_lite_normalisation_is_p_minus_127_over_128() {
        let spec = PreprocessSpec { input_size: 1, ..PreprocessSpec::EFFICIENTNET_LITE };
        let mut out = vec![0.0; 3];
        spec.normalize_into(&[0, 127, 255], &mut out);
        let expected = [-127.0 / 128.0, 0.0, 1.0];
        for (got, want) in out.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn output_is_channel_major() {
        let spec = PreprocessSpec { input_size: 2, mean: [0.0; 3], std: [1.0; 3], ..PreprocessSpec::IMAGENET };
        let rgb: [u8; 12] = [255, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255];
        let mut out = vec![0.0; 12];
        spec.normalize_into(&rgb, &mut out);
        assert_eq!(out, vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }
}
