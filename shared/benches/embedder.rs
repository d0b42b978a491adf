//! Embedder latency through tract: `SPOREPRINT_BENCH_MODELS=a.onnx:b.onnx cargo bench -p
//! sporeprint-shared --features tract --bench embedder`. Medians of 30 runs after 5 warm-ups,
//! single thread (tract's default), EfficientNet-Lite preprocessing (224 x 224). Prints a
//! Markdown table; without models it says so and exits.

use sporeprint_shared::PreprocessSpec;
use sporeprint_shared::embedder::Embedder;
use std::time::Instant;

fn main() {
    let Some(models) = std::env::var_os("SPOREPRINT_BENCH_MODELS") else {
        eprintln!("SPOREPRINT_BENCH_MODELS not set: nothing to measure");
        return;
    };
    let runs: usize = std::env::var("SPOREPRINT_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(30);
    let spec = PreprocessSpec::EFFICIENTNET_LITE;
    let input: Vec<f32> = (0..spec.tensor_len()).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
    println!("| model | size (MB) | median (ms) | p10 | p90 |\n|---|---|---|---|---|");
    for path in std::env::split_paths(&models) {
        let embedder = Embedder::load(&path, spec).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..5 {
            embedder.embed_input(&input).unwrap();
        }
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                embedder.embed_input(&input).unwrap();
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        let mb = std::fs::metadata(&path).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
        println!("| {} | {mb:.1} | {:.1} | {:.1} | {:.1} |", path.display(), at(0.5), at(0.1), at(0.9));
    }
}
