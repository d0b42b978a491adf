//! The whole identification as the device runs it (decode, resize, embed, search), and the
//! memory the `sporeprint-device identify` process needs.

use anyhow::{Context, bail};
use serde::Serialize;
use sporeprint_device::bench::{self, Report};
use sporeprint_device::model::Model;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct Pipeline {
    pub stages: Report,
    /// (decode + resize + search) / embed: what identification adds to the network.
    pub overhead: f64,
}

/// Stage medians of `runs` identifications of `jpeg` with the model folder's `variant`.
pub fn pipeline(model_dir: &Path, variant: &str, jpeg: &[u8], photo: &str, runs: usize) -> anyhow::Result<Pipeline> {
    let started = Instant::now();
    let model = Model::open(model_dir, Some(variant))?;
    let table = model.open_table(&model.shipped_table())?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let stages = bench::run(&model, &table, jpeg, photo, runs, load_ms)?;
    let overhead = (stages.decode_ms + stages.resize_ms + stages.search_ms) / stages.embed_ms;
    Ok(Pipeline { stages, overhead })
}

/// Peak resident memory (MB) of one `sporeprint-device identify PHOTO` with the model folder's
/// `variant`, from the kernel's accounting of the finished child (`wait4`'s `ru_maxrss`).
pub fn identify_peak_rss_mb(device: &Path, model_dir: &Path, variant: &str, photo: &Path) -> anyhow::Result<f64> {
    let table = tempfile::tempdir()?;
    let mut command = Command::new(device);
    command
        .arg("identify")
        .arg("--model")
        .arg(model_dir)
        .arg("--table")
        .arg(table.path().join("table.bin"))
        .arg(format!("--{variant}"))
        .arg(photo);
    let run = bench::measure_child(command).with_context(|| format!("{}: cannot run", device.display()))?;
    if !run.status.success() {
        bail!("{} identify {}: {}: {}", device.display(), photo.display(), run.status, run.stderr.trim());
    }
    Ok(run.peak_rss_mb)
}
