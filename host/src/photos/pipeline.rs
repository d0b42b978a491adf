//! Photos to training batches, fast enough that the model never waits.
//!
//! - Every photo is decoded once, in parallel, and cached resized (shorter side to the spec's
//!   `resize_shorter_to`), exactly as `shared::image_io` does it for the device.
//! - Evaluation inputs are the spec's centre crop of the cached image: the device's pixels.
//! - Training inputs get a random resized crop, a horizontal flip and colour jitter, each from
//!   its own seed, so a batch is the same whatever the thread schedule.
//! - Batches are built on a producer thread (images in parallel with rayon) one or two steps
//!   ahead of the training loop.

use crate::photos::data::Sample;
use image::RgbImage;
use image::imageops;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sporeprint_shared::PreprocessSpec;
use sporeprint_shared::image_io;
use std::path::PathBuf;
use tch::Tensor;

/// Random training-time transformations.
#[derive(Clone, Copy, Debug)]
pub struct Augment {
    /// Range of the crop's share of the image area.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f32, f32),
    /// Brightness, contrast and saturation each scaled by a factor in [1 - jitter, 1 + jitter].
    pub jitter: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Augment { scale: (0.35, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), jitter: 0.2 }
    }
}

/// Decoded, resized photos, in the order of the samples they were loaded for.
pub struct PhotoCache {
    pub spec: PreprocessSpec,
    pub images: Vec<RgbImage>,
    pub samples: Vec<Sample>,
    /// Files that could not be decoded, with the reason; their samples are not in the cache.
    pub skipped: Vec<(PathBuf, String)>,
}

impl PhotoCache {
    pub fn load(samples: &[Sample], spec: PreprocessSpec, label: &str) -> PhotoCache {
        Self::load_with(samples, spec, label, |_, image| image)
    }

    /// The shifted variants ([`crate::photos::shift`]) of the photos: photo `i` of `samples` shifted
    /// with seed `seed + i`.
    pub fn load_shifted(samples: &[Sample], spec: PreprocessSpec, label: &str, seed: u64) -> PhotoCache {
        Self::load_with(samples, spec, label, |i, image| crate::photos::shift::shifted(&image, seed + i as u64))
    }

    fn load_with(
        samples: &[Sample],
        spec: PreprocessSpec,
        label: &str,
        change: impl Fn(usize, RgbImage) -> RgbImage + Sync,
    ) -> PhotoCache {
        let bar = progress(samples.len() as u64, label);
        let decoded: Vec<Result<RgbImage, String>> = samples
            .par_iter()
            .enumerate()
            .map(|(i, sample)| {
                let image = image_io::open_rgb(&sample.path, &spec).map_err(|e| e.problem.to_string());
                bar.inc(1);
                image.map(|image| image_io::resize_shorter(&change(i, image), &spec))
            })
            .collect();
        bar.finish_and_clear();
        let mut cache = PhotoCache { spec, images: vec![], samples: vec![], skipped: vec![] };
        for (sample, image) in samples.iter().zip(decoded) {
            match image {
                Ok(image) => {
                    cache.images.push(image);
                    cache.samples.push(sample.clone());
                }
                Err(problem) => cache.skipped.push((sample.path.clone(), problem)),
            }
        }
        cache
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn labels(&self) -> Vec<usize> {
        self.samples.iter().map(|s| s.label).collect()
    }

    /// `[N, 3, S, S]` batch of the given photos: centre crops when `augment` is `None`, else
    /// augmented with one seed per photo.
    pub fn batch(&self, indices: &[usize], augment: Option<(&Augment, &[u64])>) -> Tensor {
        self.tensor(indices, |i, image| match augment {
            None => image_io::center_crop(image, &self.spec),
            Some((augment, seeds)) => augmented(image, &self.spec, augment, seeds[i]),
        })
    }

    /// `[N, 3, S, S]` batch of the mirror images of the given photos' centre crops (for
    /// test-time flip averaging).
    pub fn mirrored_batch(&self, indices: &[usize]) -> Tensor {
        self.tensor(indices, |_, image| imageops::flip_horizontal(&image_io::center_crop(image, &self.spec)))
    }

    /// `[N, 3, S, S]` batch of view `view` (of [`image_io::enrollment_views`]) of each photo.
    pub fn view_batch(&self, indices: &[usize], view: usize) -> Tensor {
        self.tensor(indices, |_, image| image_io::enrollment_views(image, &self.spec).swap_remove(view))
    }

    fn tensor(&self, indices: &[usize], square: impl Fn(usize, &RgbImage) -> RgbImage + Sync) -> Tensor {
        let len = self.spec.tensor_len();
        let size = self.spec.input_size as i64;
        let mut data = vec![0.0f32; len * indices.len()];
        data.par_chunks_mut(len).enumerate().for_each(|(i, out)| {
            self.spec.normalize_into(square(i, &self.images[indices[i]]).as_raw(), out);
        });
        Tensor::from_slice(&data).view([indices.len() as i64, 3, size, size])
    }
}

/// One training step's photos (indices into a [`PhotoCache`]) and their augmentation seeds.
pub struct BatchPlan {
    pub photos: Vec<usize>,
    pub seeds: Vec<u64>,
}

/// Runs `step` on the batch of every plan, in order, while the next batch is assembled on
/// another thread. `step` returns `false` to stop early.
pub fn for_each_batch(
    cache: &PhotoCache,
    plans: &[BatchPlan],
    augment: Option<&Augment>,
    mut step: impl FnMut(&BatchPlan, Tensor) -> bool,
) {
    std::thread::scope(|scope| {
        let (sender, batches) = std::sync::mpsc::sync_channel::<Tensor>(1);
        scope.spawn(move || {
            for plan in plans {
                let images = cache.batch(&plan.photos, augment.map(|a| (a, plan.seeds.as_slice())));
                if sender.send(images).is_err() {
                    break; // the consumer stopped early
                }
            }
        });
        for (plan, images) in plans.iter().zip(batches) {
            if !step(plan, images) {
                break;
            }
        }
    });
}

/// A random resized crop, flip and colour jitter of `image`, as an `input_size` square.
pub fn augmented(image: &RgbImage, spec: &PreprocessSpec, augment: &Augment, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (width, height) = (image.width() as f32, image.height() as f32);
    let area = width * height * rng.random_range(augment.scale.0..=augment.scale.1);
    let ratio = rng.random_range(augment.ratio.0.ln()..=augment.ratio.1.ln()).exp();
    let crop_w = ((area * ratio).sqrt().round() as u32).clamp(1, image.width());
    let crop_h = ((area / ratio).sqrt().round() as u32).clamp(1, image.height());
    let x = rng.random_range(0..=image.width() - crop_w);
    let y = rng.random_range(0..=image.height() - crop_h);
    let crop = imageops::crop_imm(image, x, y, crop_w, crop_h).to_image();
    let mut square = image_io::resize(&crop, spec.input_size, spec.input_size, spec);
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut square);
    }
    let mut factor = || rng.random_range(1.0 - augment.jitter..=1.0 + augment.jitter);
    let (brightness, contrast, saturation) = (factor(), factor(), factor());
    jitter(&mut square, brightness, contrast, saturation);
    square
}

/// torchvision-style colour jitter: brightness scales, contrast blends with the mean grey,
/// saturation blends each pixel with its own grey.
fn jitter(image: &mut RgbImage, brightness: f32, contrast: f32, saturation: f32) {
    let grey = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let pixels = image.pixels().len() as f32;
    let mean_grey = image.pixels().map(|p| grey(&p.0.map(|c| c as f32 * brightness))).sum::<f32>() / pixels;
    for pixel in image.pixels_mut() {
        let mut p = pixel.0.map(|c| c as f32 * brightness);
        p = p.map(|c| (c - mean_grey) * contrast + mean_grey);
        let g = grey(&p);
        pixel.0 = p.map(|c| (g + (c - g) * saturation).round().clamp(0.0, 255.0) as u8);
    }
}

pub fn progress(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn augmentation_is_a_function_of_its_seed() {
        let image = RgbImage::from_fn(300, 256, |x, y| Rgb([x as u8, y as u8, (x + y) as u8]));
        let spec = PreprocessSpec::EFFICIENTNET_LITE;
        let a = augmented(&image, &spec, &Augment::default(), 7);
        assert_eq!(a.dimensions(), (224, 224));
        assert_eq!(a, augmented(&image, &spec, &Augment::default(), 7));
        assert_ne!(a, augmented(&image, &spec, &Augment::default(), 8));
    }

    #[test]
    fn jitter_of_one_changes_nothing() {
        let mut image = RgbImage::from_fn(16, 16, |x, y| Rgb([x as u8 * 9, y as u8 * 5, 77]));
        let original = image.clone();
        jitter(&mut image, 1.0, 1.0, 1.0);
        assert_eq!(image, original);
        jitter(&mut image, 1.0, 1.0, 0.0);
        assert!(image.pixels().all(|p| p.0[0].abs_diff(p.0[1]) <= 1 && p.0[1].abs_diff(p.0[2]) <= 1), "greyscale");
    }
}
