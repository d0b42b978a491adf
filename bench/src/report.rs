//! BENCHMARKS.md: every measurement of a run as tables, with the targets they are held to.

use crate::cli::Latency;
use crate::floor::Peak;
use crate::machine::Machine;
use crate::paired::{FP32_RATIO_MAX, Paired};
use crate::pi;
use crate::pipeline::Pipeline;
use crate::profile::Profile;
use crate::search::SearchTime;
use crate::timing::{Spread, ms};
use crate::training::Training;
use serde::Serialize;
use std::fmt::Write;

/// Targets the numbers are held to.
pub const PIPELINE_OVERHEAD_MAX: f64 = 0.30;
pub const SEARCH_10K_MAX_MS: f64 = 1.0;
pub const PEAK_RSS_MAX_MB: f64 = 100.0;

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub runs: usize,
    pub warmup: usize,
    pub peaks: Vec<Peak>,
    pub latencies: Vec<Latency>,
    /// Paired rounds per model family: the goal verdicts.
    pub paired: Vec<Paired>,
    pub profiles: Vec<Profile>,
    pub pipelines: Vec<Pipeline>,
    /// (variant, MB) of `sporeprint-device identify`.
    pub memory: Vec<(String, f64)>,
    pub searches: Vec<SearchTime>,
    pub training: Option<Training>,
    pub onnx_runtime_version: Option<String>,
}

impl Results {
    fn peak(&self, threads: usize) -> Option<&Peak> {
        self.peaks.iter().find(|p| p.threads == threads)
    }

    /// The shortest possible latency of `l`'s model on `threads` threads: its FLOPs at the peak
    /// rate of its arithmetic (i8 products for int8 models, f32 otherwise).
    fn floor_ms(&self, l: &Latency, threads: usize) -> Option<f64> {
        let rate = |p: &Peak| if l.model.is_int8() { p.i8_gops } else { p.f32_gflops };
        self.peak(threads).map(|p| l.flops / (rate(p) * 1e9) * 1e3)
    }
}

/// The head of a Markdown table with a group of numeric columns per thread count: the first
/// column left-aligned, every other one right-aligned.
fn table_head<const N: usize>(
    leading: &[&str],
    threads: &[usize],
    per_thread: impl Fn(usize) -> [String; N],
    trailing: &[&str],
) -> String {
    let mut names: Vec<String> = leading.iter().map(|c| c.to_string()).collect();
    names.extend(threads.iter().flat_map(|&t| per_thread(t)));
    names.extend(trailing.iter().map(|c| c.to_string()));
    let rule: String = (0..names.len()).map(|i| if i == 0 { "---|" } else { "---:|" }).collect();
    format!("| {} |\n|{rule}\n", names.join(" | "))
}

fn at(series: &[(usize, Spread)], threads: usize) -> Option<&Spread> {
    series.iter().find(|(t, _)| *t == threads).map(|(_, s)| s)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let threads: Vec<usize> = r.peaks.iter().map(|p| p.threads).collect();
    let _ = writeln!(md, "# sporeprint benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `bench/run.sh` (which runs `sporeprint-bench`; see bench/README.md). Machine: {}. tract {}, \
         ONNX Runtime {}. Latencies are medians of {} runs after {} warm-up runs, with the 10th-90th percentile \
         range in brackets, in milliseconds; everything below comes from one run of the harness.\n",
        r.machine.describe(),
        env!("TRACT_VERSION"),
        r.onnx_runtime_version.as_deref().unwrap_or("(not available)"),
        r.runs,
        r.warmup
    );

    let _ = writeln!(md, "## Embedder latency, 1x3x224x224\n");
    let per_thread = |t| [format!("tract {t}T"), format!("ONNX Runtime {t}T"), format!("tract / ORT {t}T")];
    md.push_str(&table_head(&["model", "file MB", "GFLOP"], &threads, per_thread, &["tract 1T / floor"]));
    for l in &r.latencies {
        let _ = write!(md, "| {} | {:.1} | {:.2} |", l.model.label(), l.model.bytes as f64 / 1e6, l.flops / 1e9);
        for &t in &threads {
            let tract = at(&l.tract, t);
            let ort = at(&l.onnx_runtime, t);
            let cell = |s: Option<&Spread>| s.map_or("-".to_string(), Spread::cell);
            let ratio = match (tract, ort) {
                (Some(a), Some(b)) => format!("{:.2}", a.median_ms / b.median_ms),
                _ => "-".into(),
            };
            let _ = write!(md, " {} | {} | {ratio} |", cell(tract), cell(ort));
        }
        let multiple = match (at(&l.tract, 1), r.floor_ms(l, 1)) {
            (Some(s), Some(floor)) => format!("{:.1}x", s.median_ms / floor),
            _ => "-".into(),
        };
        let _ = writeln!(md, " {multiple} |");
    }
    let _ = writeln!(
        md,
        "\nT = threads. GFLOP: multiply-adds x 2 of the graph, from tract's cost model. The floor is GFLOP / this \
         machine's single-thread matrix-product peak in the model's arithmetic (f32, or i8 for int8 models; below).\n"
    );

    let _ = writeln!(md, "### Goal: int8 on tract at least as fast as ONNX Runtime fp32\n");
    let families: Vec<&str> = {
        let mut f: Vec<&str> = r.latencies.iter().map(|l| l.model.family.as_str()).collect();
        f.dedup();
        f
    };
    let _ = writeln!(
        md,
        "| model | threads | fastest tract int8 | ONNX Runtime fp32 | tract fp32 | goal |\n|---|---:|---|---:|---:|---|"
    );
    for family in &families {
        let of =
            |int8: bool| r.latencies.iter().filter(move |l| l.model.family == *family && l.model.is_int8() == int8);
        for &t in &threads {
            let int8 = of(true)
                .filter_map(|l| at(&l.tract, t).map(|s| (l, s)))
                .min_by(|a, b| a.1.median_ms.total_cmp(&b.1.median_ms));
            let ort_fp32 = of(false).find_map(|l| at(&l.onnx_runtime, t));
            let tract_fp32 = of(false).find_map(|l| at(&l.tract, t));
            if let (Some((l, s)), Some(o)) = (int8, ort_fp32) {
                let _ = writeln!(
                    md,
                    "| {family} | {t} | {} ({}) | {} | {} | {} |",
                    ms(s.median_ms),
                    l.model.variant,
                    ms(o.median_ms),
                    tract_fp32.map_or("-".into(), |s| ms(s.median_ms)),
                    verdict(s.median_ms <= o.median_ms)
                );
            }
        }
    }

    md.push('\n');
    paired_section(&mut md, &r.paired);
    for family in &families {
        for finding in findings(r, family) {
            let _ = writeln!(md, "- {finding}");
        }
    }

    let _ = writeln!(md, "\n## Where tract's time goes (single thread, optimised plan)\n");
    for p in &r.profiles {
        let total: f64 = p.ops.iter().map(|o| o.ms_per_run).sum();
        let _ = writeln!(
            md,
            "**{}**: {} ms summed over operators; {} layout node(s) left in the optimised plan{}.\n",
            p.model,
            ms(total),
            p.layout_nodes.len(),
            if p.layout_nodes.is_empty() { String::new() } else { format!(" ({})", p.layout_nodes.join(", ")) }
        );
        let _ = writeln!(md, "| operator | nodes | ms | share |\n|---|---:|---:|---:|");
        for o in p.ops.iter().take(8) {
            let _ = writeln!(md, "| {} | {} | {} | {:.1}% |", o.op, o.nodes, ms(o.ms_per_run), 100.0 * o.share);
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## The machine's limit\n");
    let products = r.peaks.first().map_or(0, |p| p.runs);
    let _ = writeln!(md, "tract's own kernels on a 1024x1024x1024 matrix product (median of {products}):\n");
    let _ = writeln!(md, "| threads | f32 GFLOP/s | i8 x i8 -> i32 GOP/s |\n|---:|---:|---:|");
    for p in &r.peaks {
        let _ = writeln!(md, "| {} | {:.1} | {:.1} |", p.threads, p.f32_gflops, p.i8_gops);
    }
    md.push('\n');
    let per_thread = |t| [format!("floor {t}T (ms)"), format!("tract {t}T / floor")];
    md.push_str(&table_head(&["model"], &threads, per_thread, &[]));
    for l in &r.latencies {
        let _ = write!(md, "| {} |", l.model.label());
        for &t in &threads {
            match (r.floor_ms(l, t), at(&l.tract, t)) {
                (Some(f), Some(s)) => {
                    let _ = write!(md, " {} | {:.1}x |", ms(f), s.median_ms / f);
                }
                _ => md.push_str(" - | - |"),
            }
        }
        md.push('\n');
    }

    let _ = writeln!(md, "\n## Identification end to end\n");
    let _ = writeln!(
        md,
        "`sporeprint-device identify` stage by stage on a {} with the shipped model (`shared`'s functions, the \
         device's code path); target: decode + resize + search <= {:.0}% of embed.\n",
        r.pipelines.first().map_or("photo", |p| p.stages.photo.as_str()),
        100.0 * PIPELINE_OVERHEAD_MAX
    );
    let _ = writeln!(
        md,
        "| variant | decode | resize | embed | search | total | overhead / embed | target |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for p in &r.pipelines {
        let s = &p.stages;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1}% | {} |",
            s.variant,
            ms(s.decode_ms),
            ms(s.resize_ms),
            ms(s.embed_ms),
            ms(s.search_ms),
            ms(s.total_ms),
            100.0 * p.overhead,
            verdict(p.overhead <= PIPELINE_OVERHEAD_MAX)
        );
    }

    let _ = writeln!(md, "\n## Prototype search\n");
    let _ = writeln!(
        md,
        "`Table::identify(query, 3)` (distances to every prototype, top 3, open-set decision), single thread; target < {SEARCH_10K_MAX_MS} ms at 10 000 species.\n"
    );
    let _ = writeln!(md, "| species | D=64 | D=128 |\n|---:|---:|---:|");
    let mut sizes: Vec<usize> = r.searches.iter().map(|s| s.species).collect();
    sizes.dedup();
    for n in sizes {
        let cell = |d: usize| {
            r.searches.iter().find(|s| s.species == n && s.dim == d).map_or("-".into(), |s| s.latency.cell())
        };
        let _ = writeln!(md, "| {n} | {} | {} |", cell(64), cell(128));
    }
    if let Some(worst) = r.searches.iter().filter(|s| s.species == 10_000).map(|s| s.latency.median_ms).reduce(f64::max)
    {
        let _ = writeln!(md, "\nAt 10 000 species: {} ms, target {}.", ms(worst), verdict(worst < SEARCH_10K_MAX_MS));
    }

    let _ = writeln!(md, "\n## Memory\n");
    let _ = writeln!(
        md,
        "Peak resident memory of one `sporeprint-device identify PHOTO` process (kernel's `ru_maxrss`); target <= {PEAK_RSS_MAX_MB:.0} MB (a Pi Zero 2 W has 512 MB).\n"
    );
    let _ = writeln!(md, "| variant | peak RSS (MB) | target |\n|---|---:|---|");
    for (variant, mb) in &r.memory {
        let _ = writeln!(md, "| {variant} | {mb:.0} | {} |", verdict(*mb <= PEAK_RSS_MAX_MB));
    }

    let _ = writeln!(md, "\n## Training throughput\n");
    match &r.training {
        Some(t) => {
            let _ = writeln!(
                md,
                "EfficientNet-Lite0 + head, 224x224, batch {}, batch-hard loss + Adam, CPU ({} threads), {} steps \
                 (`cargo bench -p sporeprint-host --bench train_throughput`).\n",
                t.batch, t.threads, t.steps
            );
            let _ = writeln!(md, "| trainer | images/s |\n|---|---:|");
            let _ = writeln!(md, "| Rust (tch), preloaded batch | {:.2} |", t.preloaded_images_per_s);
            let _ = writeln!(md, "| Rust (tch), through the data pipeline | {:.2} |", t.pipeline_images_per_s);
            match t.pytorch_images_per_s {
                Some(py) => {
                    let _ = writeln!(md, "| PyTorch, same network, loss and optimizer | {py:.2} |");
                    let _ = writeln!(md, "\nRust / PyTorch: {:.2}.", t.preloaded_images_per_s / py);
                }
                None => md.push_str("| PyTorch | not run (no venv) |\n"),
            }
        }
        None => md.push_str("Not measured in this run (`--training`).\n"),
    }

    let _ = writeln!(md, "\n## Raspberry Pi: ESTIMATES, not measurements\n");
    let _ = writeln!(
        md,
        "Nothing here ran on a Pi. Each estimate carries this machine's measured efficiency (floor / tract latency, \
         single thread) over to a Pi core's assumed sustained f32 matrix-product rate; tract's ARM kernels are its \
         most tuned, so the real ratio may be better, and memory bandwidth (much lower on a Pi) may make it worse. \
         fp32 only: a Pi 4's Cortex-A72 has no int8 dot-product instructions, so this machine's int8 efficiency \
         says nothing about it. The depthwise layers run other code there: here (x86-64, channels first) \
         `shared::ops`' DirectDepthwise, on aarch64 tract {} lays the float graph out channels last and runs \
         its own NEON kernel (`depthwise_c_f32`) on all but the first.\n",
        env!("TRACT_VERSION")
    );
    let mut header = "| model |".to_string();
    let mut rule = "|---|".to_string();
    for b in &pi::BOARDS {
        let _ = write!(header, " {} 1T (est.) |", b.board);
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for l in r.latencies.iter().filter(|l| !l.model.is_int8()) {
        let (Some(s), Some(floor)) = (at(&l.tract, 1), r.floor_ms(l, 1)) else { continue };
        let efficiency = floor / s.median_ms;
        let _ = write!(md, "| {} |", l.model.label());
        for b in &pi::BOARDS {
            let _ = write!(md, " ~{} ms |", ms(pi::estimate_ms(b, l.flops, efficiency)));
        }
        md.push('\n');
    }
    md.push('\n');
    for b in &pi::BOARDS {
        let _ = writeln!(
            md,
            "- {}: {} x {}, assumed {:.1} GFLOP/s per core ({}).",
            b.board, b.cores, b.core, b.f32_gflops_per_core, b.basis
        );
    }
    md
}

/// What the profiles say about the goal, per family: the operator that costs tract the most
/// against ONNX Runtime's whole fp32 embedding.
/// The goal verdicts from paired rounds (see [`crate::paired`]); nothing without them.
fn paired_section(md: &mut String, paired: &[Paired]) {
    if paired.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Paired rounds (the verdicts to go by on a machine whose speed drifts): each round times tract int8, ONNX \
         Runtime fp32 and tract fp32 back to back, one thread, medians of its runs; the ratios are medians over the \
         rounds. Targets: tract int8 <= ONNX Runtime fp32, tract fp32 <= {FP32_RATIO_MAX} x ONNX Runtime fp32.\n"
    );
    let _ = writeln!(
        md,
        "| model | rounds x runs | tract int8 / ORT fp32 | rounds int8 faster | goal | tract fp32 / ORT fp32 | target |\n\
         |---|---:|---:|---:|---|---:|---|"
    );
    for p in paired {
        let _ = writeln!(
            md,
            "| {} ({}) | {} x {} | {:.2} | {} of {} | {} | {:.2} | {} |",
            p.family,
            p.int8_variant,
            p.rounds.len(),
            p.runs_per_round,
            p.int8_ratio(),
            p.int8_wins(),
            p.rounds.len(),
            verdict(p.int8_met()),
            p.fp32_ratio(),
            verdict(p.fp32_met())
        );
    }
    md.push('\n');
}

fn findings(r: &Results, family: &str) -> Vec<String> {
    let ort_fp32 = r
        .latencies
        .iter()
        .filter(|l| l.model.family == family && !l.model.is_int8())
        .find_map(|l| at(&l.onnx_runtime, 1))
        .map(|s| s.median_ms);
    let Some(ort_fp32) = ort_fp32 else { return vec![] };
    r.profiles
        .iter()
        .filter(|p| r.latencies.iter().any(|l| l.model.label() == p.model && l.model.family == family))
        .filter_map(|p| {
            let top = p.ops.first()?;
            let compared = if top.ms_per_run > ort_fp32 { "more than" } else { "less than" };
            Some(format!(
                "{}: its costliest operator, {} ({} nodes), takes {} ms a run on one thread, {compared} ONNX Runtime's \
                 whole fp32 embedding ({} ms).",
                p.model,
                top.op,
                top.nodes,
                ms(top.ms_per_run),
                ms(ort_fp32)
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Pipeline;

    fn spread(median_ms: f64) -> Spread {
        Spread { median_ms, p10_ms: median_ms, p90_ms: median_ms, runs: 1 }
    }

    fn results() -> Results {
        let model = |variant: &str| crate::embedder::ModelFile {
            family: "net".into(),
            variant: variant.into(),
            path: "net.onnx".into(),
            bytes: 1_000_000,
        };
        Results {
            machine: Machine { cpu: "test CPU".into(), threads: 1, vector_isa: vec![], arch: "x86_64".into() },
            runs: 1,
            warmup: 0,
            peaks: vec![Peak { threads: 1, runs: 10, f32_gflops: 100.0, i8_gops: 400.0 }],
            latencies: vec![
                Latency {
                    model: model("fp32"),
                    flops: 1e9,
                    tract: vec![(1, spread(20.0))],
                    onnx_runtime: vec![(1, spread(10.0))],
                },
                Latency {
                    model: model("int8"),
                    flops: 1e9,
                    tract: vec![(1, spread(8.0))],
                    onnx_runtime: vec![(1, spread(4.0))],
                },
            ],
            paired: vec![],
            profiles: vec![],
            pipelines: vec![],
            memory: vec![("fp32".into(), 120.0)],
            searches: vec![SearchTime { species: 10_000, dim: 128, latency: spread(1.5) }],
            training: None,
            onnx_runtime_version: None,
        }
    }

    #[test]
    fn targets_are_judged_from_the_numbers() {
        let md = markdown(&results());
        // int8 on tract (8 ms) beats ONNX Runtime fp32 (10 ms).
        assert!(md.contains("| net | 1 | 8.00 (int8) | 10.0 | 20.0 | met |"), "{md}");
        assert!(md.contains("At 10 000 species: 1.50 ms, target NOT met."), "{md}");
        assert!(md.contains("| fp32 | 120 | NOT met |"), "{md}");
        // Floors: 1 GFLOP at 100 GFLOP/s = 10 ms (fp32), at 400 GOP/s = 2.5 ms (int8).
        assert!(md.contains("| net fp32 | 10.0 | 2.0x |"), "{md}");
        assert!(md.contains("| net int8 | 2.50 | 3.2x |"), "{md}");
        // Table heads carry one column group per measured thread count.
        assert!(md.contains(
            "| model | file MB | GFLOP | tract 1T | ONNX Runtime 1T | tract / ORT 1T | tract 1T / floor |\n|---|---:|---:|---:|---:|---:|---:|\n"
        ), "{md}");
        assert!(md.contains("\n| model | floor 1T (ms) | tract 1T / floor |\n|---|---:|---:|\n"), "{md}");
        // Pi estimates for fp32 only.
        assert!(md.contains("| net fp32 | ~") && !md.contains("| net int8 | ~"), "{md}");
    }

    #[test]
    fn paired_rounds_give_the_goal_verdicts() {
        use crate::paired::Round;
        let mut r = results();
        assert!(!markdown(&r).contains("Paired rounds"), "no section without rounds");
        let round = |tract_int8, ort_fp32, tract_fp32| Round { tract_int8, ort_fp32, tract_fp32 };
        r.paired = vec![Paired {
            family: "net".into(),
            int8_variant: "int8".into(),
            runs_per_round: 15,
            rounds: vec![round(9.0, 10.0, 14.0), round(11.0, 10.0, 16.0), round(9.5, 10.0, 15.0)],
        }];
        let md = markdown(&r);
        assert!(md.contains("| net (int8) | 3 x 15 | 0.95 | 2 of 3 | met | 1.50 | met |"), "{md}");
    }

    #[test]
    fn an_overhead_above_the_target_is_flagged() {
        let mut r = results();
        let stages = sporeprint_device::bench::Report {
            model: "m".into(),
            variant: "fp32".into(),
            species: 200,
            photo: "p.jpg".into(),
            runs: 1,
            load_ms: 0.0,
            decode_ms: 4.0,
            resize_ms: 4.0,
            embed_ms: 20.0,
            search_ms: 0.1,
            total_ms: 28.1,
            peak_rss_mb: None,
        };
        r.pipelines.push(Pipeline { stages, overhead: 8.1 / 20.0 });
        assert!(markdown(&r).contains("| 40.5% | NOT met |"));
    }
}
