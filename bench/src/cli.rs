//! The benchmark run: every measurement in one process, so the ratios hold on a noisy machine.

use crate::embedder::{self, ModelFile};
use crate::floor::{self, Peak};
use crate::machine::Machine;
use crate::onnx_runtime;
use crate::paired::{self, Paired};
use crate::pipeline::{self, Pipeline};
use crate::profile::{self, Profile};
use crate::report::{self, Results};
use crate::search::{self, SearchTime};
use crate::timing::Spread;
use crate::training;
use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sporeprint_shared::manifest::Manifest;
use sporeprint_shared::store;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(name = "sporeprint-bench", version, about = "Benchmarks of the device pipeline; writes BENCHMARKS.md")]
pub struct Cli {
    /// An ONNX embedder to time, as FAMILY:VARIANT=PATH (repeat). Default: the shipped model's
    /// fp32 and int8 files.
    #[arg(long = "model")]
    pub models: Vec<ModelFile>,
    /// Model folder for the identification pipeline and its memory (model.toml and tables).
    #[arg(long, default_value = "models/default")]
    pub model_dir: PathBuf,
    /// Timed runs per measurement (after warm-up runs).
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Photo for the pipeline (default: a generated 512x512 JPEG, the data set's size).
    #[arg(long)]
    pub photo: Option<PathBuf>,
    /// Python with onnxruntime (the project's venv).
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
    /// The `sporeprint-device` binary whose peak memory is measured (default: next to this one).
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// JSON written by the host's train_throughput bench (SPOREPRINT_BENCH_JSON).
    #[arg(long)]
    pub training: Option<PathBuf>,
    /// Table sizes (species) for the search benchmark, each at most a table's capacity
    /// (`shared::table::MAX_SPECIES`, 10 000).
    #[arg(long, value_delimiter = ',', default_values_t = [200, 1_000, 10_000])]
    pub species: Vec<usize>,
    /// Paired rounds (tract int8, ONNX Runtime fp32, tract fp32 back to back) per model family
    /// for the goal verdicts; 0 skips them.
    #[arg(long, default_value_t = 9)]
    pub rounds: usize,
    /// Markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Also write every number as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One embedder's latencies.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub model: ModelFile,
    pub flops: f64,
    pub tract: Vec<(usize, Spread)>,
    pub onnx_runtime: Vec<(usize, Spread)>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    search::check_sizes(&cli.species)?;
    let machine = Machine::this();
    let thread_counts: Vec<usize> = if machine.threads > 1 { vec![1, machine.threads] } else { vec![1] };
    let manifest = Manifest::read(&cli.model_dir)?;
    let models = if cli.models.is_empty() { shipped_models(&cli.model_dir, &manifest)? } else { cli.models.clone() };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ort_latency.py");
    let onnx_runtime_version = onnx_runtime::version(&cli.python);
    let with_ort = onnx_runtime_version.is_some();
    if !with_ort {
        eprintln!(
            "{}: no onnxruntime; ONNX Runtime columns stay empty (scripts/setup.sh installs it)",
            cli.python.display()
        );
    }

    let variants: Vec<String> = manifest.variants.keys().cloned().collect();
    // Each family with an fp32 and an int8 file gets paired rounds (with ONNX Runtime only):
    // its first int8 file against its fp32 one.
    let mut pairs: Vec<(&ModelFile, &ModelFile)> = vec![];
    for int8 in models.iter().filter(|m| with_ort && m.is_int8()) {
        let fp32 = models.iter().find(|m| m.family == int8.family && !m.is_int8());
        if let Some(fp32) = fp32.filter(|_| !pairs.iter().any(|(i, _)| i.family == int8.family)) {
            pairs.push((int8, fp32));
        }
    }
    let steps = models.len() * (1 + thread_counts.len() * (1 + usize::from(with_ort)))
        + pairs.len() * cli.rounds
        + thread_counts.len()
        + variants.len() * 2
        + cli.species.len() * 2;
    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}").expect("valid template"),
    );
    let step = |what: String| bar.set_message(what);

    let (jpeg, photo_name) = match &cli.photo {
        Some(path) => (
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?,
            path.display().to_string(),
        ),
        None => (sporeprint_device::bench::synthetic_jpeg(), "generated 512x512 JPEG".to_string()),
    };
    let scratch = tempfile::tempdir()?;
    let photo_path = match &cli.photo {
        Some(path) => path.clone(),
        None => {
            let path = scratch.path().join("photo.jpg");
            std::fs::write(&path, &jpeg)?;
            path
        }
    };
    // First, while this process is small: a child's ru_maxrss also counts the memory of the
    // parent it was forked from until it executes the new program.
    let device = cli.device.clone().unwrap_or_else(|| sibling("sporeprint-device"));
    let mut memory: Vec<(String, f64)> = vec![];
    for variant in &variants {
        step(format!("peak memory of identify, {variant}"));
        memory.push((variant.clone(), pipeline::identify_peak_rss_mb(&device, &cli.model_dir, variant, &photo_path)?));
        bar.inc(1);
    }

    let mut peaks: Vec<Peak> = vec![];
    for &threads in &thread_counts {
        step(format!("matrix-product peak, {threads} thread(s)"));
        peaks.push(floor::peak(threads, cli.runs.min(10))?);
        bar.inc(1);
    }

    let mut latencies = vec![];
    let mut profiles: Vec<Profile> = vec![];
    for model in &models {
        step(format!("profiling {}", model.label()));
        let profile = profile::profile(model, 10.min(cli.runs))?;
        bar.inc(1);
        let mut tract = vec![];
        let mut ort = vec![];
        for &threads in &thread_counts {
            step(format!("tract {} on {threads} thread(s)", model.label()));
            tract.push((threads, embedder::tract_latency(model, threads, cli.warmup, cli.runs)?));
            bar.inc(1);
            if with_ort {
                step(format!("ONNX Runtime {} on {threads} thread(s)", model.label()));
                ort.push((threads, onnx_runtime::latency(&cli.python, &script, model, threads, cli.warmup, cli.runs)?));
                bar.inc(1);
            }
        }
        latencies.push(Latency { model: model.clone(), flops: profile.flops, tract, onnx_runtime: ort });
        profiles.push(profile);
    }

    let mut paired_rounds: Vec<Paired> = vec![];
    if cli.rounds > 0 {
        for &(int8, fp32) in &pairs {
            step(format!("paired rounds, {}", int8.family));
            let rounds = (cli.rounds, cli.warmup, cli.runs);
            paired_rounds.push(paired::measure((int8, fp32), (&cli.python, &script), rounds, || bar.inc(1))?);
        }
    }

    let mut pipelines: Vec<Pipeline> = vec![];
    for variant in &variants {
        step(format!("identify pipeline, {variant}"));
        pipelines.push(pipeline::pipeline(&cli.model_dir, variant, &jpeg, &photo_name, cli.runs)?);
        bar.inc(1);
    }

    let mut searches: Vec<SearchTime> = vec![];
    for &species in &cli.species {
        for dim in [64, 128] {
            step(format!("search {species} x {dim}"));
            searches.push(search::search_time(species, dim, cli.runs.max(100))?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let training = cli.training.as_deref().map(training::read).transpose()?;
    let results = Results {
        machine,
        runs: cli.runs,
        warmup: cli.warmup,
        peaks,
        latencies,
        paired: paired_rounds,
        profiles,
        pipelines,
        memory,
        searches,
        training,
        onnx_runtime_version,
    };
    store::write_atomically(&cli.out, report::markdown(&results).as_bytes())
        .with_context(|| format!("{}: cannot write", cli.out.display()))?;
    println!("{}", cli.out.display());
    if let Some(path) = &cli.json {
        store::write_atomically(path, serde_json::to_string_pretty(&results)?.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// The shipped model folder's variants, as models to time.
fn shipped_models(dir: &Path, manifest: &Manifest) -> anyhow::Result<Vec<ModelFile>> {
    manifest
        .variants
        .iter()
        .map(|(name, variant)| format!("efficientnet-lite0:{name}={}", dir.join(&variant.embedder).display()).parse())
        .collect()
}

/// A binary built next to this one (cargo puts a workspace's binaries in one folder).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(name))).unwrap_or_else(|| name.into())
}
