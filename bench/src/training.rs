//! Training throughput, measured by `cargo bench -p sporeprint-host --bench train_throughput`
//! (it needs libtorch, which this crate does not link) and read back from its JSON.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Training {
    pub batch: usize,
    pub steps: usize,
    pub threads: usize,
    pub preloaded_images_per_s: f64,
    pub pipeline_images_per_s: f64,
    pub pytorch_images_per_s: Option<f64>,
}

pub fn read(path: &Path) -> anyhow::Result<Training> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not the train_throughput bench's JSON", path.display()))
}
