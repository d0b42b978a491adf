//! The quantized depthwise op against tract's own quantized convolution, on the shipped int8
//! embedder (every depthwise layer of EfficientNet-Lite0: kernels 3 and 5, strides 1 and 2).

use sporeprint_shared::qdepthwise;
use std::path::Path;
use tract_onnx::prelude::*;

fn model() -> TypedModel {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default/embedder.int8.onnx");
    tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap()
        .with_input_fact(0, f32::fact([1, 3, 224, 224]).into())
        .unwrap()
        .into_typed()
        .unwrap()
        .into_decluttered()
        .unwrap()
}

fn embed(model: TypedModel, input: &Tensor) -> Vec<f32> {
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let out = plan.run(tvec!(input.clone().into())).unwrap();
    out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

#[test]
fn the_rewritten_model_embeds_as_tracts_own() {
    let reference = model();
    let mut rewritten = model();
    qdepthwise::rewriter().rewrite(&(), &mut rewritten).unwrap();
    let ours = rewritten.nodes.iter().filter(|n| n.op.name() == "QDepthwise").count();
    assert!(ours >= 10, "the depthwise layers were not swapped: {ours}");
    let values: Vec<f32> = (0..3 * 224 * 224).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let input = Tensor::from_shape(&[1, 3, 224, 224], &values).unwrap();
    let (a, b) = (embed(reference, &input), embed(rewritten, &input));
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cosine = dot / (norm(&a) * norm(&b));
    println!("{ours} depthwise layers swapped; cosine to tract's own {cosine}");
    assert!(cosine > 0.999, "cosine {cosine}");
}

/// Not a speed check (benchmarks do that): prints the per-photo time of both plans, for a look.
#[test]
#[ignore]
fn print_both_plans_times() {
    let values: Vec<f32> = (0..3 * 224 * 224).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let input: TValue = Tensor::from_shape(&[1, 3, 224, 224], &values).unwrap().into();
    let mut rewritten = model();
    qdepthwise::rewriter().rewrite(&(), &mut rewritten).unwrap();
    for (name, m) in [("tract's own", model()), ("with QDepthwise", rewritten)] {
        let plan = m.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(input.clone())).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..5 {
            plan.run(tvec!(input.clone())).unwrap();
        }
        println!("{name}: {:?} per photo", started.elapsed() / 5);
    }
}
