//! The embedder: an exported ONNX model, run by tract, from photo to unit embedding.
//!
//! The exporter builds the prototype table by calling exactly this code on every training photo,
//! and the device identifies with it, so the table and the device's embeddings come from one
//! function. The model file is read once: its fingerprint is the SHA-256 of the bytes tract
//! parsed, never of a file that might have changed in between.

use crate::fingerprint::ModelFingerprint;
use crate::image_io::{self, ImageError, PhotoInfo};
use crate::preprocess::PreprocessSpec;
use crate::vector;
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    #[error("{}: cannot read the model: {problem}", path.display())]
    Read { path: PathBuf, problem: std::io::Error },
    #[error("{}: not a usable embedding model (truncated, corrupt or not ONNX?): {problem}", path.display())]
    Model { path: PathBuf, problem: String },
    #[error("{}: the model's output has shape {shape:?}, expected [1, D]", path.display())]
    Output { path: PathBuf, shape: Vec<usize> },
    #[error("input of {got} values, the model takes 3 x {size} x {size} = {}", 3 * size * size)]
    Input { got: usize, size: usize },
    #[error("the model failed on this input: {0}")]
    Run(String),
    /// A damaged or wrong model file: its numbers must never become a species name.
    #[error("{}: the model's {what} for this photo is not a finite number ({value}); the model file is damaged or not a sporeprint embedder", model.display())]
    NotFinite { model: PathBuf, what: &'static str, value: f32 },
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// What the model says about one photo.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Unit length.
    pub embedding: Vec<f32>,
    /// How unlike the model's training photos the photo looks as a whole, in embedding distance
    /// units (0 for a typical photo, negative for a very typical one); 0 when the model has no
    /// such output. The open-set rule adds it to the nearest prototype's distance
    /// ([`crate::table::Table::identify_with`]).
    pub atypicality: f32,
}

/// A loaded, optimised embedding model with the preprocessing it expects.
#[derive(Clone)]
pub struct Embedder {
    plan: Arc<TypedRunnableModel>,
    spec: PreprocessSpec,
    dim: usize,
    /// The model has a second output, `[1, 1]`: the photo's atypicality.
    atypicality: bool,
    fingerprint: ModelFingerprint,
    /// The model file, for errors about what it computes (empty when loaded from bytes).
    path: PathBuf,
}

impl core::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Embedder").field("dim", &self.dim).field("fingerprint", &self.fingerprint).finish()
    }
}

impl Embedder {
    /// Loads the ONNX model at `path` for a fixed `1 x 3 x S x S` input (S from `spec`) and
    /// optimises it for that shape.
    pub fn load(path: &Path, spec: PreprocessSpec) -> Result<Embedder, EmbedderError> {
        let bytes = std::fs::read(path).map_err(|problem| EmbedderError::Read { path: path.into(), problem })?;
        let embedder = Embedder::from_bytes(&bytes, spec).map_err(|e| match e {
            EmbedderError::Model { problem, .. } => EmbedderError::Model { path: path.into(), problem },
            EmbedderError::Output { shape, .. } => EmbedderError::Output { path: path.into(), shape },
            other => other,
        })?;
        Ok(Embedder { path: path.into(), ..embedder })
    }

    /// As [`Embedder::load`], from the model file's bytes (errors name no file).
    pub fn from_bytes(bytes: &[u8], spec: PreprocessSpec) -> Result<Embedder, EmbedderError> {
        let size = spec.input_size as usize;
        let model_error = |e: TractError| EmbedderError::Model { path: PathBuf::new(), problem: format!("{e:#}") };
        let model = tract_onnx::onnx()
            .model_for_read(&mut &*bytes)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, size, size]).into()))
            .and_then(|m| m.into_typed())
            .and_then(optimise)
            .map_err(model_error)?;
        let output = model.output_fact(0).map_err(model_error)?;
        let shape: Vec<usize> = output.shape.as_concrete().map(|s| s.to_vec()).ok_or_else(|| EmbedderError::Model {
            path: PathBuf::new(),
            problem: "the output's shape depends on unknown dimensions".to_string(),
        })?;
        if shape.len() != 2 || shape[0] != 1 || shape[1] == 0 {
            return Err(EmbedderError::Output { path: PathBuf::new(), shape });
        }
        let atypicality = match model.outputs.len() {
            1 => false,
            2 => {
                let second = model.output_fact(1).map_err(model_error)?;
                let shape: Vec<usize> = second.shape.as_concrete().map(|s| s.to_vec()).unwrap_or_default();
                if shape != [1, 1] {
                    return Err(EmbedderError::Output { path: PathBuf::new(), shape });
                }
                true
            }
            n => {
                return Err(EmbedderError::Model {
                    path: PathBuf::new(),
                    problem: format!("{n} outputs; an embedder has the embedding and at most an atypicality"),
                });
            }
        };
        let plan = model.into_runnable().map_err(model_error)?;
        Ok(Embedder {
            plan,
            spec,
            dim: shape[1],
            atypicality,
            fingerprint: ModelFingerprint::of_bytes(bytes),
            path: PathBuf::new(),
        })
    }

    /// Whether the model reports each photo's atypicality (see [`Observation::atypicality`]).
    pub fn has_atypicality(&self) -> bool {
        self.atypicality
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// SHA-256 of the model file: what prototype tables are tied to.
    pub fn fingerprint(&self) -> ModelFingerprint {
        self.fingerprint
    }

    /// The unit embedding and atypicality of a preprocessed input (`3 x S x S`, channel-major,
    /// as [`image_io::to_tensor`] makes it).
    pub fn observe_input(&self, input: &[f32]) -> Result<Observation, EmbedderError> {
        let size = self.spec.input_size as usize;
        if input.len() != 3 * size * size {
            return Err(EmbedderError::Input { got: input.len(), size });
        }
        let tensor = Tensor::from_shape(&[1, 3, size, size], input).map_err(|e| EmbedderError::Run(e.to_string()))?;
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(|e| EmbedderError::Run(format!("{e:#}")))?;
        let values = |i: usize| -> Result<Vec<f32>, EmbedderError> {
            let view = outputs[i].to_plain_array_view::<f32>().map_err(|e| EmbedderError::Run(e.to_string()))?;
            Ok(view.iter().copied().collect())
        };
        let not_finite = |what, value| EmbedderError::NotFinite { model: self.path.clone(), what, value };
        let mut embedding = values(0)?;
        if let Some(&value) = embedding.iter().find(|x| !x.is_finite()) {
            return Err(not_finite("embedding", value));
        }
        // The graph normalises already; again here so a model without that step is still safe.
        // A zero vector has no direction to compare: as unusable as a NaN.
        let length = vector::norm(&embedding);
        if !(length > 0.0 && length.is_finite()) {
            return Err(not_finite("embedding length", length));
        }
        vector::l2_normalize(&mut embedding);
        let atypicality = if self.atypicality { values(1)?[0] } else { 0.0 };
        if !atypicality.is_finite() {
            return Err(not_finite("atypicality", atypicality));
        }
        Ok(Observation { embedding, atypicality })
    }

    /// The unit embedding of a preprocessed input (see [`Embedder::observe_input`]).
    pub fn embed_input(&self, input: &[f32]) -> Result<Vec<f32>, EmbedderError> {
        Ok(self.observe_input(input)?.embedding)
    }

    /// [`Embedder::observe_input`] of a decoded photo (the spec's resize, crop and
    /// normalisation first).
    pub fn observe_image(&self, image: &RgbImage) -> Result<Observation, EmbedderError> {
        self.observe_input(&image_io::to_tensor(image, &self.spec))
    }

    /// The unit embedding of a decoded photo.
    pub fn embed_image(&self, image: &RgbImage) -> Result<Vec<f32>, EmbedderError> {
        Ok(self.observe_image(image)?.embedding)
    }

    /// [`Embedder::observe_input`] of the photo file at `path`, with how the file was read. The
    /// decoded photo is gone before the model runs, so the two never hold memory at once.
    pub fn observe_file(&self, path: &Path) -> Result<(Observation, PhotoInfo), EmbedderError> {
        let (input, info) = {
            let photo = image_io::open(path, &self.spec)?;
            (image_io::to_tensor(&photo.image, &self.spec), photo.info)
        };
        Ok((self.observe_input(&input)?, info))
    }

    /// The unit embedding of the photo file at `path`.
    pub fn embed_file(&self, path: &Path) -> Result<Vec<f32>, EmbedderError> {
        Ok(self.observe_file(path)?.0.embedding)
    }
}

/// A typed model as the embedder runs it: decluttered, our ops swapped in (depthwise layers, the
/// quantized stem and 1x1 convolutions as one fused pass each, [`crate::ops`]), then optimised by
/// tract. The bench's per-operator profile goes through this too, so it profiles what the device
/// runs.
pub fn optimise(model: TypedModel) -> TractResult<TypedModel> {
    let mut model = model.into_decluttered()?;
    crate::ops::rewriter().rewrite(&(), &mut model)?;
    model.into_optimized()
}
