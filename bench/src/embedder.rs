//! Embedder latency through tract, with the device's own code (`shared::embedder`).

use crate::threads::with_tract_threads;
use crate::timing::{Spread, measure};
use anyhow::{Context, bail};
use serde::Serialize;
use sporeprint_shared::PreprocessSpec;
use sporeprint_shared::embedder::Embedder;
use std::path::PathBuf;
use std::str::FromStr;

/// One ONNX file to time: `FAMILY:VARIANT=PATH` on the command line.
#[derive(Clone, Debug, Serialize)]
pub struct ModelFile {
    /// The network (`efficientnet-lite0`, `resnet50`).
    pub family: String,
    /// What was done to it (`fp32`, `int8`, `int8 per-tensor`).
    pub variant: String,
    pub path: PathBuf,
    pub bytes: u64,
}

impl FromStr for ModelFile {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<ModelFile> {
        let Some((label, path)) = text.split_once('=') else { bail!("{text}: expected FAMILY:VARIANT=PATH") };
        let Some((family, variant)) = label.split_once(':') else { bail!("{text}: expected FAMILY:VARIANT=PATH") };
        let path = PathBuf::from(path);
        let bytes =
            std::fs::metadata(&path).with_context(|| format!("{}: cannot read the model", path.display()))?.len();
        Ok(ModelFile { family: family.into(), variant: variant.into(), path, bytes })
    }
}

impl ModelFile {
    pub fn is_int8(&self) -> bool {
        self.variant.starts_with("int8")
    }

    pub fn label(&self) -> String {
        format!("{} {}", self.family, self.variant)
    }

    /// The preprocessing (hence input size) of the file's family.
    pub fn spec(&self) -> PreprocessSpec {
        match self.family.as_str() {
            f if f.starts_with("resnet") => PreprocessSpec::IMAGENET,
            _ => PreprocessSpec::EFFICIENTNET_LITE,
        }
    }
}

/// A fixed, image-like network input for `spec`.
pub fn input_for(spec: &PreprocessSpec) -> Vec<f32> {
    (0..spec.tensor_len()).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect()
}

/// Latency of one embedding (input tensor to unit vector) by tract on `threads` threads.
pub fn tract_latency(model: &ModelFile, threads: usize, warmup: usize, runs: usize) -> anyhow::Result<Spread> {
    let spec = model.spec();
    let embedder = Embedder::load(&model.path, spec)?;
    let input = input_for(&spec);
    with_tract_threads(threads, || measure(warmup, runs, || embedder.embed_input(&input).map(drop)))
        .with_context(|| format!("{}: tract failed", model.path.display()))
}
