//! The machine's limit: the throughput of tract's own matrix-product kernels on a large, square,
//! cache-friendly product. No network layer can beat it, so FLOPs / this rate is the floor of an
//! embedding's latency.

use crate::threads::with_tract_threads;
use crate::timing::measure;
use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

/// Side of the square product: 2 x 1024^3 = 2.1 G operations, long enough to time, packed
/// weights that fit in the caches' reach.
const SIDE: usize = 1024;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Peak {
    pub threads: usize,
    /// Products timed (the rates are their medians).
    pub runs: usize,
    /// f32 multiply-adds x 2 per second.
    pub f32_gflops: f64,
    /// i8 x i8 -> i32 multiply-adds x 2 per second.
    pub i8_gops: f64,
}

fn product(dt: DatumType, acc: DatumType) -> TractResult<Arc<TypedRunnableModel>> {
    let mut model = TypedModel::default();
    let a = model.add_source("a", dt.fact([SIDE, SIDE]))?;
    let weights = Tensor::zero_dt(dt, &[SIDE, SIDE])?;
    let b = model.add_const("b", weights)?;
    let c = model.wire_node("product", EinSum::new("mk,kn->mn".parse()?, acc), &[a, b])?;
    model.select_output_outlets(&c)?;
    model.into_optimized()?.into_runnable()
}

/// Peak rates on `threads` threads, medians of `runs` products.
pub fn peak(threads: usize, runs: usize) -> TractResult<Peak> {
    let ops = 2.0 * (SIDE * SIDE * SIDE) as f64;
    let rate = |dt: DatumType, acc: DatumType| -> TractResult<f64> {
        let plan = product(dt, acc)?;
        let values: Vec<f32> = (0..SIDE * SIDE).map(|i| (i % 7) as f32).collect();
        let input = Tensor::from_shape(&[SIDE, SIDE], &values)?.cast_to_dt(dt)?.into_owned().into_tvalue();
        let spread = with_tract_threads(threads, || measure(2, runs, || plan.run(tvec!(input.clone())).map(drop)))?;
        Ok(ops / (spread.median_ms / 1e3) / 1e9)
    };
    Ok(Peak {
        threads,
        runs,
        f32_gflops: rate(f32::datum_type(), f32::datum_type())?,
        i8_gops: rate(i8::datum_type(), i32::datum_type())?,
    })
}
