//! The whole identification as the device runs it (decode, resize, embed, search), and the
//! memory the `sporeprint-device identify` process needs.

use anyhow::{Context, bail};
use serde::Serialize;
use sporeprint_device::bench::{self, Report};
use sporeprint_device::model::Model;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
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
    let child = Command::new(device)
        .arg("identify")
        .arg("--model")
        .arg(model_dir)
        .arg("--table")
        .arg(table.path().join("table.bin"))
        .arg(format!("--{variant}"))
        .arg(photo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{}: cannot start", device.display()))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals above.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if pid < 0 {
        bail!("waiting for {}: {}", device.display(), std::io::Error::last_os_error());
    }
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut stderr);
        }
        bail!("{} identify {}: {status}: {}", device.display(), photo.display(), stderr.trim());
    }
    // Linux reports ru_maxrss in kilobytes.
    Ok(usage.ru_maxrss as f64 / 1024.0)
}
