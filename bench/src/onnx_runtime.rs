//! The same ONNX files through ONNX Runtime (the reference client), via the venv's Python:
//! the `ort` crate would download its own runtime, which this project's machines cannot.

use crate::embedder::ModelFile;
use crate::timing::Spread;
use anyhow::{Context, ensure};
use std::path::Path;

/// Latency of ONNX Runtime (all graph optimisations, sequential execution) on `threads` intra-op
/// threads; the script times the runs and this side takes their spread.
pub fn latency(
    python: &Path,
    script: &Path,
    model: &ModelFile,
    threads: usize,
    warmup: usize,
    runs: usize,
) -> anyhow::Result<Spread> {
    let size = model.spec().input_size;
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(&model.path)
        .args([size.to_string(), threads.to_string(), warmup.to_string(), runs.to_string()])
        .output()
        .with_context(|| format!("{}: cannot run (scripts/setup.sh makes the venv)", python.display()))?;
    ensure!(
        output.status.success(),
        "{}: ONNX Runtime failed on {}: {}",
        script.display(),
        model.path.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let times: Vec<f64> = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{}: expected a JSON list of milliseconds", script.display()))?;
    ensure!(!times.is_empty(), "{}: no timings", script.display());
    Ok(Spread::of(times))
}

/// The venv's ONNX Runtime version; `None` when it has none.
pub fn version(python: &Path) -> Option<String> {
    let output = std::process::Command::new(python)
        .args(["-c", "import onnxruntime; print(onnxruntime.__version__)"])
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
