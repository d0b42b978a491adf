//! Training throughput of EfficientNet-Lite0 at 224x224 with batch-hard loss and Adam:
//! (1) on a preloaded tensor batch, (2) through the real data pipeline (cached photos,
//! augmentation on the producer thread), (3) the same network, loss and optimizer in PyTorch.
//! Prints a table; the pipeline must cost < 10% and Rust/PyTorch stay within 1.2x.
//!
//! `cargo bench -p sporeprint-host --bench train_throughput` (photos from SPOREPRINT_DATA when
//! set, else generated; STEPS and BATCH override the defaults; SPOREPRINT_BENCH_JSON=FILE also
//! writes the numbers for `sporeprint-bench`).

use image::{Rgb, RgbImage};
use sporeprint_host::model::BackboneKind;
use sporeprint_host::photos::data::Sample;
use sporeprint_host::photos::pipeline::{self, Augment, BatchPlan, PhotoCache};
use sporeprint_host::train::Network;
use sporeprint_host::train::adam::Adam;
use sporeprint_host::train::loss;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn photos(count: usize, scratch: &Path) -> Vec<PathBuf> {
    if let Some(root) = std::env::var_os("SPOREPRINT_DATA") {
        let mut all: Vec<PathBuf> = std::fs::read_dir(Path::new(&root).join("images"))
            .unwrap()
            .flat_map(|species| std::fs::read_dir(species.unwrap().path()).unwrap().map(|p| p.unwrap().path()))
            .collect();
        all.sort();
        return all.into_iter().take(count).collect();
    }
    (0..count)
        .map(|i| {
            let path = scratch.join(format!("photo_{i}.jpg"));
            RgbImage::from_fn(512, 512, |x, y| Rgb([(x + i as u32) as u8, y as u8, (x * y / 97) as u8]))
                .save(&path)
                .unwrap();
            path
        })
        .collect()
}

fn main() {
    let batch = env_or("BATCH", 32);
    let steps = env_or("STEPS", 4);
    let Network { vs, net } = Network::pretrained(BackboneKind::EfficientNetLite0, 128, Device::Cpu).unwrap();
    let params = vs.trainable_variables().into_iter().enumerate().map(|(i, t)| (i.to_string(), t)).collect();
    let mut adam = Adam::new(params, 1e-4);
    let labels = Tensor::arange(batch as i64, (Kind::Int64, Device::Cpu)) / 4;
    let mut train_step = |images: &Tensor| {
        adam.zero_grad();
        loss::batch_hard(&net.forward_t(images, true), &labels, 0.5).loss.backward();
        adam.step();
    };

    // (1) preloaded batch
    let images = Tensor::randn([batch as i64, 3, 224, 224], (Kind::Float, Device::Cpu));
    train_step(&images); // warm-up
    let started = Instant::now();
    for _ in 0..steps {
        train_step(&images);
    }
    let preloaded = (batch * steps) as f64 / started.elapsed().as_secs_f64();

    // (2) through the pipeline
    let scratch = tempfile::tempdir().unwrap();
    let samples: Vec<Sample> = photos(batch * 2, scratch.path())
        .into_iter()
        .enumerate()
        .map(|(i, path)| Sample { path, label: i / 4 })
        .collect();
    let cache = PhotoCache::load(&samples, BackboneKind::EfficientNetLite0.preprocess(), "decoding");
    let plans: Vec<BatchPlan> = (0..steps)
        .map(|s| BatchPlan {
            photos: (0..batch).map(|i| (s * batch + i) % cache.len()).collect(),
            seeds: (0..batch as u64).map(|i| s as u64 * 1000 + i).collect(),
        })
        .collect();
    let augment = Augment::default();
    let started = Instant::now();
    pipeline::for_each_batch(&cache, &plans, Some(&augment), |_, images| {
        train_step(&images);
        true
    });
    let with_pipeline = (batch * steps) as f64 / started.elapsed().as_secs_f64();

    // (3) PyTorch: same network, loss, optimizer and batch
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pytorch = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("bench/train_throughput.py"))
        .args([batch.to_string(), steps.to_string()])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.split_whitespace().last().and_then(|v| v.parse::<f64>().ok()));

    println!(
        "\nTraining throughput, EfficientNet-Lite0 224x224, batch {batch}, {steps} steps, batch-hard + Adam, CPU ({} threads)\n",
        tch::get_num_threads()
    );
    println!("| setup | images/s | vs preloaded |");
    println!("|---|---:|---:|");
    println!("| Rust (tch), preloaded batch | {preloaded:.2} | 1.00 |");
    println!("| Rust (tch), data pipeline | {with_pipeline:.2} | {:.2} |", with_pipeline / preloaded);
    match pytorch {
        Some(py) => println!("| PyTorch (same net, loss, optimizer) | {py:.2} | {:.2} |", py / preloaded),
        None => println!("| PyTorch | not run (no .venv: run scripts/setup.sh) | |"),
    }
    println!("\npipeline cost: {:.1}% (target < 10%)", 100.0 * (1.0 - with_pipeline / preloaded));
    if let Some(py) = pytorch {
        println!("Rust / PyTorch throughput: {:.2} (target within 1.2x)", preloaded / py);
    }
    if let Some(path) = std::env::var_os("SPOREPRINT_BENCH_JSON") {
        let numbers = serde_json::json!({
            "batch": batch,
            "steps": steps,
            "threads": tch::get_num_threads(),
            "preloaded_images_per_s": preloaded,
            "pipeline_images_per_s": with_pipeline,
            "pytorch_images_per_s": pytorch,
        });
        sporeprint_shared::store::write_atomically(Path::new(&path), numbers.to_string().as_bytes()).unwrap();
    }
}
