//! The harness end to end on the shipped model, with few runs: every section is measured and
//! written, the numbers are plausible, and the targets are judged from them.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn a_short_run_measures_every_section_and_writes_both_reports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let device = Path::new(env!("CARGO_BIN_EXE_sporeprint-bench")).with_file_name("sporeprint-device");
    assert!(device.exists(), "{}: build the device first (cargo test --workspace does)", device.display());
    let out = tempfile::tempdir().unwrap();
    let (md, json) = (out.path().join("BENCHMARKS.md"), out.path().join("results.json"));
    let status = Command::new(env!("CARGO_BIN_EXE_sporeprint-bench"))
        .current_dir(&root)
        .args(["--runs", "3", "--warmup", "1", "--species", "200"])
        .arg("--device")
        .arg(&device)
        .arg("--out")
        .arg(&md)
        .arg("--json")
        .arg(&json)
        .status()
        .unwrap();
    assert!(status.success());

    let results: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let latencies = results["latencies"].as_array().unwrap();
    assert_eq!(latencies.len(), 2, "the shipped model's fp32 and int8 files");
    let with_ort = root.join(".venv/bin/python").exists();
    for l in latencies {
        // EfficientNet-Lite0 at 224x224: 0.39 G multiply-adds.
        let gflop = l["flops"].as_f64().unwrap() / 1e9;
        assert!((0.7..0.85).contains(&gflop), "{gflop} GFLOP");
        for (_, spread) in l["tract"].as_array().unwrap().iter().map(|p| (p[0].clone(), p[1].clone())) {
            assert!(spread["median_ms"].as_f64().unwrap() > 0.0);
            assert_eq!(spread["runs"], 3);
        }
        if with_ort {
            assert!(!l["onnx_runtime"].as_array().unwrap().is_empty(), "ONNX Runtime was not timed");
        }
    }
    let peak = &results["peaks"][0];
    // Measured and finite, whatever the machine's speed (a test does not time the machine).
    let measured = |key: &str| peak[key].as_f64().is_some_and(|x| x.is_finite() && x > 0.0);
    assert!(measured("f32_gflops") && measured("i8_gops"), "{peak}");
    let ops = results["profiles"][0]["ops"].as_array().unwrap();
    let shares: f64 = ops.iter().map(|o| o["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "operator shares sum to {shares}");
    for pipeline in results["pipelines"].as_array().unwrap() {
        let stages = &pipeline["stages"];
        let parts: f64 =
            ["decode_ms", "resize_ms", "embed_ms", "search_ms"].iter().map(|k| stages[*k].as_f64().unwrap()).sum();
        assert!(parts > 0.0 && parts <= stages["total_ms"].as_f64().unwrap() * 1.5);
    }
    for (variant, mb) in results["memory"].as_array().unwrap().iter().map(|m| (m[0].clone(), m[1].as_f64().unwrap())) {
        // The model alone is several MB; a whole machine's memory would mean a wrong measure.
        assert!((5.0..2000.0).contains(&mb), "{variant}: {mb} MB");
    }
    assert_eq!(results["searches"].as_array().unwrap().len(), 2, "200 species x D=64 and D=128");

    let text = std::fs::read_to_string(&md).unwrap();
    for section in [
        "## Embedder latency",
        "## Where tract's time goes",
        "## The machine's limit",
        "## Identification end to end",
        "## Prototype search",
        "## Memory",
        "## Raspberry Pi: ESTIMATES",
    ] {
        assert!(text.contains(section), "missing {section}");
    }
}
