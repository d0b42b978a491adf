//! The embedder: an exported ONNX model, run by tract, from photo to unit embedding.
//!
//! The exporter builds the prototype table by calling exactly this code on every training photo,
//! and the device identifies with it, so the table and the device's embeddings come from one
//! function. The model file is read once: its fingerprint is the SHA-256 of the bytes tract
//! parsed, never of a file that might have changed in between.

use crate::fingerprint::ModelFingerprint;
use crate::image_io::{self, ImageError};
use crate::preprocess::PreprocessSpec;
use crate::vector;
use image::RgbImage;
use std::format;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::sync::Arc;
use std::vec;
use std::vec::Vec;
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
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// A loaded, optimised embedding model with the preprocessing it expects.
#[derive(Clone)]
pub struct Embedder {
    plan: Arc<TypedRunnableModel>,
    spec: PreprocessSpec,
    dim: usize,
    fingerprint: ModelFingerprint,
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
        Embedder::from_bytes(&bytes, spec).map_err(|e| match e {
            EmbedderError::Model { problem, .. } => EmbedderError::Model { path: path.into(), problem },
            EmbedderError::Output { shape, .. } => EmbedderError::Output { path: path.into(), shape },
            other => other,
        })
    }

    /// As [`Embedder::load`], from the model file's bytes (errors name no file).
    pub fn from_bytes(bytes: &[u8], spec: PreprocessSpec) -> Result<Embedder, EmbedderError> {
        let size = spec.input_size as usize;
        let model_error = |e: TractError| EmbedderError::Model { path: PathBuf::new(), problem: format!("{e:#}") };
        let model = tract_onnx::onnx()
            .model_for_read(&mut &*bytes)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, size, size]).into()))
            .and_then(|m| m.into_optimized())
            .map_err(model_error)?;
        let output = model.output_fact(0).map_err(model_error)?;
        let shape: Vec<usize> = output.shape.as_concrete().map(|s| s.to_vec()).ok_or_else(|| EmbedderError::Model {
            path: PathBuf::new(),
            problem: "the output's shape depends on unknown dimensions".to_string(),
        })?;
        if shape.len() != 2 || shape[0] != 1 || shape[1] == 0 {
            return Err(EmbedderError::Output { path: PathBuf::new(), shape });
        }
        let plan = model.into_runnable().map_err(model_error)?;
        Ok(Embedder { plan, spec, dim: shape[1], fingerprint: ModelFingerprint::of_bytes(bytes) })
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

    /// The unit embedding of a preprocessed input (`3 x S x S`, channel-major, as
    /// [`image_io::to_tensor`] makes it).
    pub fn embed_input(&self, input: &[f32]) -> Result<Vec<f32>, EmbedderError> {
        let size = self.spec.input_size as usize;
        if input.len() != 3 * size * size {
            return Err(EmbedderError::Input { got: input.len(), size });
        }
        let tensor = Tensor::from_shape(&[1, 3, size, size], input).map_err(|e| EmbedderError::Run(e.to_string()))?;
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(|e| EmbedderError::Run(format!("{e:#}")))?;
        let view = outputs[0].to_plain_array_view::<f32>().map_err(|e| EmbedderError::Run(e.to_string()))?;
        let mut embedding: Vec<f32> = view.iter().copied().collect();
        // The graph normalises already; again here so a model without that step is still safe.
        vector::l2_normalize(&mut embedding);
        Ok(embedding)
    }

    /// The unit embedding of a decoded photo (the spec's resize, crop and normalisation first).
    pub fn embed_image(&self, image: &RgbImage) -> Result<Vec<f32>, EmbedderError> {
        self.embed_input(&image_io::to_tensor(image, &self.spec))
    }

    /// The unit embedding of the photo file at `path`.
    pub fn embed_file(&self, path: &Path) -> Result<Vec<f32>, EmbedderError> {
        self.embed_image(&image_io::open_rgb(path)?)
    }
}
