//! Our ops: each against a plain reference loop (the quantized direct convolution on every
//! stride, kernel, padding, grouping, zero point and signedness, the quantized 1x1 one, both with
//! per-channel scales of very different magnitudes; the float depthwise one on every stride,
//! kernel and padding), and the rewritten models against tract's own convolutions on the shipped
//! embedders (int8: the stem, every depthwise layer of EfficientNet-Lite0, kernels 3 and 5,
//! strides 1 and 2, and every 1x1 layer; fp32: every depthwise layer).

use proptest::prelude::*;
use sporeprint_shared::ops::residual::Dequantize;
use sporeprint_shared::ops::{
    self, DirectConv, FloatPointwise, QAdd, QConv, QPointwise, Quantize, direct::Geometry, pointwise::Taps,
};
use std::path::Path;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The convolution as its definition says, one output value at a time (what the op must equal).
fn reference(op: &QConv, input: &[i32]) -> Vec<i32> {
    let ((h, w), (oh, ow), (kh, kw)) = (op.geometry.input_hw, op.geometry.output_hw, op.geometry.kernel);
    let (inputs, outputs) =
        (op.geometry.input_channels / op.geometry.group, op.geometry.output_channels / op.geometry.group);
    let (lo, hi) = if op.output.unquantized() == u8::datum_type() { (0, 255) } else { (-128, 127) };
    let mut out = vec![];
    for o in 0..op.geometry.output_channels {
        let g = o / outputs;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = op.bias[o];
                for i in 0..inputs {
                    let c = g * inputs + i;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * op.geometry.stride.0 + ky) as isize - op.geometry.pad_before.0 as isize;
                            let ix = (ox * op.geometry.stride.1 + kx) as isize - op.geometry.pad_before.1 as isize;
                            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                let x = input[c * h * w + iy as usize * w + ix as usize] - op.x_zero;
                                acc += x * op.taps[((o * inputs + i) * kh + ky) * kw + kx];
                            }
                        }
                    }
                }
                let y = (acc as f32 * op.multiplier[o]).round_ties_even() as i32 + op.y_zero;
                out.push(y.clamp(lo, hi));
            }
        }
    }
    out
}

/// A convolution's output size, from its input size, kernel, stride and padding.
fn output_hw(
    input_hw: (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    pad_before: (usize, usize),
    pad_after: (usize, usize),
) -> (usize, usize) {
    let size = |i: usize, k: usize, before: usize, after: usize, s: usize| (i + before + after - k) / s + 1;
    (
        size(input_hw.0, kernel.0, pad_before.0, pad_after.0, stride.0),
        size(input_hw.1, kernel.1, pad_before.1, pad_after.1, stride.1),
    )
}

/// A layer and an input for it, every parameter drawn from `seed`: depthwise, dense (like the
/// stem) or grouped in between.
fn layer(seed: u64) -> (QConv, Vec<i32>, bool) {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move |n: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % n) as i32
    };
    let group = 1 + next(4) as usize;
    let (inputs, outputs) = (1 + next(3) as usize, 1 + next(3) as usize);
    let (input_channels, output_channels) = (group * inputs, group * outputs);
    let kernel = ([1, 3, 5][next(3) as usize], [1, 3, 5][next(3) as usize]);
    let stride = (1 + next(2) as usize, 1 + next(3) as usize);
    let input_hw = (kernel.0 + next(9) as usize, kernel.1 + next(13) as usize);
    let pad_before = (next(kernel.0 as u64) as usize, next(kernel.1 as u64) as usize);
    let pad_after = (next(kernel.0 as u64) as usize, next(kernel.1 as u64) as usize);
    let output_hw = output_hw(input_hw, kernel, stride, pad_before, pad_after);
    let (signed_in, signed_out) = (next(2) == 0, next(2) == 0);
    let value = |next: &mut dyn FnMut(u64) -> i32, signed: bool| next(256) - if signed { 128 } else { 0 };
    // Weights less their zero point span -255..=255 (uint8 weights with a zero point).
    let taps = (0..output_channels * inputs * kernel.0 * kernel.1).map(|_| next(511) - 255).collect();
    // Scales from 1e-6 to 10 per channel: some channels saturate, some round to a few levels.
    let multiplier = (0..output_channels).map(|_| 10f32.powi(next(8) - 6) * (1.0 + next(100) as f32 / 100.0)).collect();
    let geometry = Geometry { input_channels, output_channels, group, input_hw, output_hw, kernel, stride, pad_before };
    let op = QConv {
        geometry,
        x_zero: value(&mut next, signed_in),
        taps,
        bias: (0..output_channels).map(|_| next(20001) - 10000).collect(),
        multiplier,
        y_zero: value(&mut next, signed_out),
        output: if signed_out { i8::datum_type() } else { u8::datum_type() },
        format: DataFormat::CHW,
    };
    let input = (0..input_channels * input_hw.0 * input_hw.1).map(|_| value(&mut next, signed_in)).collect();
    (op, input, signed_in)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn the_conv_op_equals_the_reference_loop(seed in any::<u64>()) {
        let (op, input, signed) = layer(seed);
        let bytes: Vec<u8> = input.iter().map(|&x| x as u8).collect();
        let mut out = vec![0u8; op.geometry.output_channels * op.geometry.output_hw.0 * op.geometry.output_hw.1];
        op.run(&bytes, signed, &mut out);
        let signed_out = op.output.unquantized() == i8::datum_type();
        let ours: Vec<i32> = out.iter().map(|&b| if signed_out { b as i8 as i32 } else { b as i32 }).collect();
        prop_assert_eq!(ours, reference(&op, &input), "{:?}", op);
    }
}

/// A bias beyond 2^23: the op must not start its f32 sums from it. Here nine products of 1 on a
/// bias of 2^25, where f32's spacing is 4: added one by one in f32 each rounds away (the sum
/// stays 2^25), added as integers they make 2^25 + 9, which the multiplier puts just past a
/// rounding boundary (0.5).
#[test]
fn a_large_bias_is_added_as_an_integer() {
    let bias = 1 << 25;
    let op = QConv {
        geometry: Geometry {
            input_channels: 1,
            output_channels: 1,
            group: 1,
            input_hw: (3, 3),
            output_hw: (1, 1),
            kernel: (3, 3),
            stride: (1, 1),
            pad_before: (0, 0),
        },
        x_zero: 0,
        taps: vec![1; 9],
        bias: vec![bias],
        multiplier: vec![0.5 / (bias as f32 + 4.0)],
        y_zero: 0,
        output: i8::datum_type(),
        format: DataFormat::CHW,
    };
    let input = vec![1i32; 9];
    assert_eq!(reference(&op, &input), [1], "the exact sum rounds up");
    let mut out = [0u8; 1];
    op.run(&[1u8; 9], true, &mut out);
    assert_eq!(out, [1]);
}

/// The float convolution as its definition says (CHW, OIHW taps), in f64, with each output's
/// sum of absolute terms (what bounds the op's f32 rounding).
fn float_reference(g: &Geometry, taps: &[f32], bias: &[f32], input: &[f32]) -> Vec<(f64, f64)> {
    let ((h, w), (oh, ow), (kh, kw)) = (g.input_hw, g.output_hw, g.kernel);
    let (inputs, outputs) = (g.input_channels / g.group, g.output_channels / g.group);
    let mut out = vec![];
    for o in 0..g.output_channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut sum, mut magnitude) = (bias[o] as f64, (bias[o] as f64).abs());
                for i in 0..inputs {
                    let c = o / outputs * inputs + i;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * g.stride.0 + ky) as isize - g.pad_before.0 as isize;
                            let ix = (ox * g.stride.1 + kx) as isize - g.pad_before.1 as isize;
                            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                let x = input[c * h * w + iy as usize * w + ix as usize] as f64;
                                let term = x * taps[((o * inputs + i) * kh + ky) * kw + kx] as f64;
                                (sum, magnitude) = (sum + term, magnitude + term.abs());
                            }
                        }
                    }
                }
                out.push((sum, magnitude));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn the_float_depthwise_op_equals_the_reference_loop(
        channels in 1usize..6,
        kernel in (prop::sample::select(vec![1usize, 3, 5]), prop::sample::select(vec![1usize, 3, 5])),
        stride in (1usize..3, 1usize..4),
        extra in (0usize..9, 0usize..40),
        pads in (0usize..5, 0usize..5, 0usize..5, 0usize..5),
        seed: u64,
    ) {
        let (pad_before, pad_after) = ((pads.0 % kernel.0, pads.1 % kernel.1), (pads.2 % kernel.0, pads.3 % kernel.1));
        let input_hw = (kernel.0 + extra.0, kernel.1 + extra.1);
        let output_hw = output_hw(input_hw, kernel, stride, pad_before, pad_after);
        let geometry = Geometry {
            input_channels: channels, output_channels: channels, group: channels,
            input_hw, output_hw, kernel, stride, pad_before,
        };
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // Weights of very different magnitudes per channel, as batch-norm folding makes them.
        let taps: Vec<f32> = (0..channels * kernel.0 * kernel.1).map(|i| next() * 10f32.powi((i / (kernel.0 * kernel.1)) as i32 - 2)).collect();
        let bias: Vec<f32> = (0..channels).map(|_| next()).collect();
        let input: Vec<f32> = (0..geometry.input_len()).map(|_| 4.0 * next()).collect();
        let expected = float_reference(&geometry, &taps, &bias, &input);
        // A clamp (the fused activation) in some cases, wide or cutting into the outputs.
        let clamp = match seed % 3 { 0 => (f32::NEG_INFINITY, f32::INFINITY), 1 => (0.0, 6.0), _ => (-0.5, 0.25) };
        let expected: Vec<(f64, f64)> = expected.into_iter().map(|(v, m)| (v.max(clamp.0 as f64).min(clamp.1 as f64), m)).collect();
        let op = DirectConv { geometry, taps, bias, format: DataFormat::CHW, clamp };
        let mut out = vec![f32::NAN; op.geometry.output_len()];
        op.run(&input, &mut out);
        for (i, (&ours, &(exact, magnitude))) in out.iter().zip(&expected).enumerate() {
            prop_assert!((ours as f64 - exact).abs() <= 1e-6 * magnitude + 1e-30, "output {}: {} vs {} ({:?})", i, ours, exact, op.geometry);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn the_float_pointwise_op_equals_the_definition(
        (inputs, outputs, pixels) in (1usize..40, 1usize..20, 1usize..1200),
        seed: u64,
    ) {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // Weights of very different magnitudes per output channel, as batch-norm folding makes.
        let weights: Vec<f32> = (0..outputs * inputs).map(|i| next() * 10f32.powi((i / inputs % 5) as i32 - 2)).collect();
        let bias: Vec<f32> = (0..outputs).map(|_| next()).collect();
        let input: Vec<f32> = (0..inputs * pixels).map(|_| 4.0 * next()).collect();
        let clamp = match seed % 3 { 0 => (f32::NEG_INFINITY, f32::INFINITY), 1 => (0.0, 6.0), _ => (-0.5, 0.25) };
        let op = FloatPointwise::new(&weights, inputs, pixels, &bias, clamp, vec![outputs, pixels]);
        let (mut fast, mut portable) = (vec![f32::NAN; outputs * pixels], vec![f32::NAN; outputs * pixels]);
        op.run(&input, &mut fast);
        op.run_portable(&input, &mut portable);
        for o in 0..outputs {
            for p in 0..pixels {
                let (mut sum, mut magnitude) = (bias[o] as f64, (bias[o] as f64).abs());
                for c in 0..inputs {
                    let term = weights[o * inputs + c] as f64 * input[c * pixels + p] as f64;
                    (sum, magnitude) = (sum + term, magnitude + term.abs());
                }
                let exact = sum.max(clamp.0 as f64).min(clamp.1 as f64);
                for (name, ours) in [("run", fast[o * pixels + p]), ("run_portable", portable[o * pixels + p])] {
                    prop_assert!((ours as f64 - exact).abs() <= 1e-6 * magnitude + 1e-30,
                        "{} output {} pixel {}: {} vs {}", name, o, p, ours, exact);
                }
            }
        }
    }
}

/// The 1x1 convolution as its definition says.
fn pointwise_reference(op: &QPointwise, input: &[i32]) -> Vec<i32> {
    let (lo, hi) = if op.output.unquantized() == u8::datum_type() { (0, 255) } else { (-128, 127) };
    let mut out = vec![];
    for o in 0..op.output_channels {
        for p in 0..op.pixels {
            let mut acc = op.bias[o];
            for i in 0..op.input_channels {
                acc += (input[i * op.pixels + p] - op.x_zero) * op.taps.get(o, i);
            }
            let y = (acc as f32 * op.multiplier[o]).round_ties_even() as i32 + op.y_zero;
            out.push(y.clamp(lo, hi));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn the_pointwise_op_equals_the_reference_loop(
        (inputs, outputs, pixels) in (1usize..40, 1usize..11, 1usize..600),
        signed_in: bool,
        signed_out: bool,
        byte_weights: bool,
        seed: u64,
    ) {
        let mut state = seed;
        let mut next = move |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % n) as i32
        };
        let offset = |signed: bool| if signed { 128 } else { 0 };
        let op = QPointwise {
            input_channels: inputs,
            output_channels: outputs,
            pixels,
            x_zero: next(256) - offset(signed_in),
            // Weights less their zero point span -255..=255 (uint8 weights with a zero point),
            // or -128..=127 (symmetric int8 ones, which the VNNI kernel takes).
            taps: Taps::new(
                &(0..inputs * outputs)
                    .map(|_| if byte_weights { next(256) - 128 } else { next(511) - 255 })
                    .collect::<Vec<_>>(),
                inputs,
            ),
            bias: (0..outputs).map(|_| next(200_001) - 100_000).collect(),
            // Scales from 1e-6 to 20 per channel: some channels saturate, some round to a few levels.
            multiplier: (0..outputs).map(|_| 10f32.powi(next(8) - 6) * (1.0 + next(100) as f32 / 100.0)).collect(),
            y_zero: next(256) - offset(signed_out),
            output: if signed_out { i8::datum_type() } else { u8::datum_type() },
            output_shape: vec![outputs, pixels],
        };
        let input: Vec<i32> = (0..inputs * pixels).map(|_| next(256) - offset(signed_in)).collect();
        let bytes: Vec<u8> = input.iter().map(|&x| x as u8).collect();
        let mut out = vec![0u8; outputs * pixels];
        let expected = pointwise_reference(&op, &input);
        let decode = |out: &[u8]| -> Vec<i32> { out.iter().map(|&b| if signed_out { b as i8 as i32 } else { b as i32 }).collect() };
        // (The wider range may still draw only bytes.)
        prop_assert!(!byte_weights || op.taps.are_bytes());
        op.run(&bytes, signed_in, &mut out);
        prop_assert_eq!(decode(&out), expected.clone(), "run (the best kernel the CPU has)");
        op.run_portable(&bytes, signed_in, &mut out);
        prop_assert_eq!(decode(&out), expected.clone(), "run_portable");
        #[cfg(target_arch = "x86_64")]
        {
            use sporeprint_shared::ops::pointwise::{avx2, vnni};
            if std::is_x86_feature_detected!("avx2") {
                out.fill(0);
                // SAFETY: the CPU has AVX2.
                unsafe { avx2::multiply(&op, &bytes, signed_in, &mut out) };
                prop_assert_eq!(decode(&out), expected.clone(), "AVX2 kernel");
            }
            if byte_weights && vnni::available() {
                out.fill(0);
                // SAFETY: the CPU has AVX-512F and VNNI.
                unsafe { vnni::multiply(&op, &bytes, signed_in, &mut out) };
                prop_assert_eq!(decode(&out), expected, "VNNI kernel");
            }
        }
    }
}

/// tract's own quantization of one value (`QuantizeLinearU8`/`I8`'s), as a stored byte.
fn tracts_quantize(x: f32, scale: f32, zero: i32, signed: bool) -> u8 {
    use tract_onnx::tract_core::ops::quant::{quantize_linear_f32_i8, quantize_linear_f32_u8};
    if signed { quantize_linear_f32_i8(x, scale, zero) as u8 } else { quantize_linear_f32_u8(x, scale, zero) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// Inputs spread over and beyond the output range (some saturate, many sit on rounding ties
    /// at scales that are powers of two), NaN included, every length's vector tail.
    #[test]
    fn quantize_equals_tracts_quantize_linear(
        values in prop::collection::vec(prop_oneof![-600.0f32..600.0, (-1200i32..1200).prop_map(|h| h as f32 / 2.0), Just(f32::NAN)], 0..100),
        scale in prop_oneof![0.01f32..8.0, Just(1.0), Just(0.5), Just(2.0)],
        zero in 0i32..256,
        signed: bool,
    ) {
        let zero = if signed { zero - 128 } else { zero };
        let output = if signed { i8::datum_type() } else { u8::datum_type() };
        let op = Quantize { scale, zero_point: zero, output };
        let mut out = vec![0u8; values.len()];
        op.run(&values, &mut out);
        let expected: Vec<u8> = values.iter().map(|&x| tracts_quantize(x, scale, zero, signed)).collect();
        prop_assert_eq!(out, expected);
    }

    /// A residual addition against tract's three steps: each input dequantized as
    /// `DequantizeLinearF32` does, added in f32, quantized as `QuantizeLinear` does.
    #[test]
    fn qadd_equals_dequantize_add_quantize(
        pairs in prop::collection::vec((any::<u8>(), any::<u8>()), 0..100),
        scales in (0.01f32..1.0, 0.01f32..1.0, 0.1f32..8.0),
        zeros in (0i32..256, 0i32..256, 0i32..256),
        signed in (any::<bool>(), any::<bool>(), any::<bool>()),
    ) {
        let shift = |zero: i32, signed: bool| if signed { zero - 128 } else { zero };
        let a = Dequantize { scale: scales.0, zero_point: shift(zeros.0, signed.0), signed: signed.0 };
        let b = Dequantize { scale: scales.1, zero_point: shift(zeros.1, signed.1), signed: signed.1 };
        let output = if signed.2 { i8::datum_type() } else { u8::datum_type() };
        let sum = Quantize { scale: scales.2, zero_point: shift(zeros.2, signed.2), output };
        let op = QAdd { a, b, sum: sum.clone() };
        let (xs, ys): (Vec<u8>, Vec<u8>) = pairs.iter().copied().unzip();
        let mut out = vec![0u8; xs.len()];
        op.run(&xs, &ys, &mut out);
        // DequantizeLinearF32::eval_t: (x.as_() - zero_point) as f32 * scale.
        let dequantize = |d: &Dequantize, byte: u8| {
            let x = if d.signed { byte as i8 as i32 } else { byte as i32 };
            (x - d.zero_point) as f32 * d.scale
        };
        let expected: Vec<u8> = pairs
            .iter()
            .map(|&(x, y)| tracts_quantize(dequantize(&a, x) + dequantize(&b, y), sum.scale, sum.zero_point, signed.2))
            .collect();
        prop_assert_eq!(out, expected);
    }
}

/// The shipped int8 embedder, decluttered.
fn model() -> TypedModel {
    shipped("embedder.int8.onnx")
}

fn shipped(file: &str) -> TypedModel {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default").join(file);
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

/// The model's input for the whole-model tests: a fixed pattern over [-1, 1).
fn test_input() -> Tensor {
    let values: Vec<f32> = (0..3 * 224 * 224).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    Tensor::from_shape(&[1, 3, 224, 224], &values).unwrap()
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
    ops::rewriter().rewrite(&(), &mut rewritten).unwrap();
    let count = |name: &str| rewritten.nodes.iter().filter(|n| n.op.name() == name).count();
    let (stem, depthwise, pointwise) = (count("QConv"), count("QDepthwise"), count("QPointwise"));
    // EfficientNet-Lite0: the 3x3 stem, 16 depthwise layers; 1x1 layers: 15 expansions, 16
    // projections, the head. Nothing quantized is left to tract's im2col.
    assert_eq!((stem, depthwise, pointwise), (1, 16, 32), "layers not swapped");
    let left = rewritten.nodes.iter().filter(|n| n.op_as::<tract_onnx::tract_core::ops::cnn::Conv>().is_some()).count();
    assert_eq!(left, 0, "convolutions left to tract");
    // The image's quantization and the 9 residual additions (every block but the first of the
    // stages with 2, 2, 3, 3 and 4 blocks: 1 + 1 + 2 + 2 + 3): no quantization left to tract.
    assert_eq!((count("Quantize"), count("QAdd")), (1, 9), "quantizations not swapped");
    let input = test_input();
    let (a, b) = (embed(reference, &input), embed(rewritten, &input));
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cosine = dot / (norm(&a) * norm(&b));
    println!("{stem} stem, {depthwise} depthwise and {pointwise} 1x1 layers swapped; cosine to tract's own {cosine}");
    assert!(cosine > 0.999, "cosine {cosine}");
}

#[test]
fn the_rewritten_fp32_model_embeds_as_tracts_own() {
    let reference = shipped("embedder.onnx");
    let mut rewritten = shipped("embedder.onnx");
    ops::rewriter().rewrite(&(), &mut rewritten).unwrap();
    let swapped = rewritten.nodes.iter().filter(|n| n.op.name() == "DirectDepthwise").count();
    let depthwise = |model: &TypedModel, channels_last: bool| {
        let is = |n: &TypedNode| {
            n.op_as::<tract_onnx::tract_core::ops::cnn::Conv>()
                .is_some_and(|c| c.group > 1 && c.pool_spec.data_format.c_is_last() == channels_last)
        };
        model.nodes.iter().filter(|&n| is(n)).count()
    };
    // tract lays float graphs out channels first on x86-64, where the rule takes all 16
    // depthwise layers of EfficientNet-Lite0; on aarch64 it moves all but the first (next to
    // the stem) to channels last, which the rule leaves to tract's NEON kernel.
    let expected = if cfg!(target_arch = "aarch64") { (1, 15) } else { (16, 0) };
    assert_eq!((depthwise(&reference, false), depthwise(&reference, true)), expected, "layouts");
    assert_eq!(swapped, expected.0, "depthwise layers swapped");
    assert_eq!(depthwise(&rewritten, false), 0, "channels-first depthwise layers left to tract");
    // Every depthwise layer of EfficientNet-Lite is followed by a ReLU6 (Max 0, then Min 6).
    let clamped = rewritten.nodes.iter().filter_map(|n| n.op_as::<DirectConv>()).filter(|op| op.clamp == (0.0, 6.0));
    assert_eq!(clamped.count(), swapped, "ReLU6 fused into every swapped layer");
    // Channels first (x86-64), the 1x1 layers too: 32 of them, 16 followed by a ReLU6 (the 15
    // expansions and the head's 320 -> 1280). On aarch64 tract moves most of the graph to
    // channels last, which the rule leaves to tract: what stays channels first is swapped.
    let pointwise: Vec<FloatPointwise> =
        rewritten.nodes.iter().filter_map(|n| n.op_as::<FloatPointwise>()).cloned().collect();
    let relu6 = pointwise.iter().filter(|op| op.clamp == (0.0, 6.0)).count();
    if cfg!(target_arch = "x86_64") {
        assert_eq!((pointwise.len(), relu6), (32, 16), "1x1 layers swapped, ReLU6 fused");
    }
    let unclamped = pointwise.iter().filter(|op| op.clamp == (f32::NEG_INFINITY, f32::INFINITY)).count();
    assert_eq!(unclamped + relu6, pointwise.len(), "no other clamp");
    let maxes = |m: &TypedModel| m.nodes.iter().filter(|n| n.op.name() == "Max").count();
    assert_eq!(maxes(&reference) - maxes(&rewritten), swapped + relu6, "the fused ReLU6s are gone from the graph");
    let adds = |m: &TypedModel| m.nodes.iter().filter(|n| n.op.name() == "Add").count();
    assert_eq!(adds(&reference) - adds(&rewritten), pointwise.len(), "every swapped 1x1 layer's bias fused");
    let input = test_input();
    let (a, b) = (embed(reference, &input), embed(rewritten, &input));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    println!(
        "{swapped} depthwise and {} 1x1 layers swapped; largest difference to tract's own embedding {worst:e}",
        pointwise.len()
    );
    // Both are f32 sums of the same terms in other orders (ours with fused multiply-adds on
    // x86-64): a few units of the last place.
    assert!(worst < 1e-5, "largest difference {worst}");
}

/// The features the int8 layers hand to the float head for the test input, as a SHA-256.
const INT8_FEATURES_SHA256: &str = "d1fbe672889aeba74c962b07ecc9d6aac73f0e256373c0db4aad9b0dc095b393";

/// The last int8 layer's output (the 1280-channel 1x1 convolution before pooling) depends only
/// on integer arithmetic and IEEE f32 multiplications, so it must be the same bytes on every
/// machine: this pins x86-64 (AVX2 kernels) and aarch64 (the portable ones, NEON; CI runs this
/// under qemu) to one answer.
#[test]
fn the_int8_features_are_the_same_bytes_on_every_machine() {
    use sha2::{Digest, Sha256};
    let mut m = model();
    ops::rewriter().rewrite(&(), &mut m).unwrap();
    let last = m.nodes.iter().rev().find(|n| n.op.name() == "QPointwise").unwrap().id;
    m.select_output_outlets(&[last.into()]).unwrap();
    let plan = m.into_optimized().unwrap().into_runnable().unwrap();
    let out = plan.run(tvec!(test_input().into())).unwrap();
    assert_eq!(out[0].len(), 1280 * 7 * 7, "{:?}", out[0].shape());
    let hash: String = Sha256::digest(out[0].as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hash, INT8_FEATURES_SHA256, "int8 features differ from the pinned ones");
}

/// Not a speed check (benchmarks do that): prints the per-photo time of both plans, for a look.
#[test]
#[ignore]
fn print_both_plans_times() {
    let input: TValue = test_input().into();
    let mut rewritten = model();
    ops::rewriter().rewrite(&(), &mut rewritten).unwrap();
    for (name, m) in [("tract's own", model()), ("with our ops", rewritten)] {
        let plan = m.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(input.clone())).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..5 {
            plan.run(tvec!(input.clone())).unwrap();
        }
        println!("{name}: {:?} per photo", started.elapsed() / 5);
    }
}
