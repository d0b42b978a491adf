//! Our tract ops on EfficientNet-Lite0's layer shapes (224 px input), one image, one thread:
//! `cargo bench -p sporeprint-shared --features tract --bench ops`. Throughput is in
//! multiply-adds, so a layer's GMAC/s compares with the machine's peak (BENCHMARKS.md).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sporeprint_shared::ops::direct::Geometry;
use sporeprint_shared::ops::pointwise::Taps;
use sporeprint_shared::ops::{DirectConv, QConv, QPointwise};
use std::hint::black_box;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Deterministic bytes: what the weights and images are does not change the time.
fn bytes(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7919 + seed * 104_729) % 251) as u8).collect()
}

/// A depthwise layer: channels, input side, kernel, stride ("same" padding, as Lite0's).
fn depthwise(channels: usize, side: usize, kernel: usize, stride: usize) -> Geometry {
    let out = side.div_ceil(stride);
    let pad = ((out - 1) * stride + kernel).saturating_sub(side) / 2;
    Geometry {
        input_channels: channels,
        output_channels: channels,
        group: channels,
        input_hw: (side, side),
        output_hw: (out, out),
        kernel: (kernel, kernel),
        stride: (stride, stride),
        pad_before: (pad, pad),
    }
}

/// Lite0's depthwise layers, one of each shape.
const DEPTHWISE: [(usize, usize, usize, usize); 11] = [
    (32, 112, 3, 1),
    (96, 112, 3, 2),
    (144, 56, 3, 1),
    (144, 56, 5, 2),
    (240, 28, 5, 1),
    (240, 28, 3, 2),
    (480, 14, 3, 1),
    (672, 14, 5, 1),
    (672, 14, 5, 2),
    (1152, 7, 5, 1),
    (1152, 7, 3, 1),
];

fn macs(g: &Geometry) -> u64 {
    (g.output_len() * g.reduction()) as u64
}

fn quantized_depthwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("QDepthwise");
    for (channels, side, kernel, stride) in DEPTHWISE {
        let geometry = depthwise(channels, side, kernel, stride);
        group.throughput(Throughput::Elements(macs(&geometry)));
        let op = QConv {
            taps: bytes(channels * kernel * kernel, 1).iter().map(|&b| b as i8 as i32).collect(),
            bias: vec![100; channels],
            multiplier: vec![1e-3; channels],
            x_zero: 0,
            y_zero: 0,
            output: i8::datum_type(),
            format: DataFormat::CHW,
            geometry: geometry.clone(),
        };
        let (input, mut out) = (bytes(geometry.input_len(), 2), vec![0u8; geometry.output_len()]);
        let id = BenchmarkId::from_parameter(geometry.describe());
        group.bench_function(id, |b| b.iter(|| op.run(black_box(&input), true, &mut out)));
    }
    group.finish();
}

/// Lite0's stem: 3 -> 32 channels, 3x3, stride 2, 224 -> 112 (a dense direct convolution).
fn quantized_stem(c: &mut Criterion) {
    let mut group = c.benchmark_group("QConv");
    let geometry = Geometry {
        input_channels: 3,
        output_channels: 32,
        group: 1,
        input_hw: (224, 224),
        output_hw: (112, 112),
        kernel: (3, 3),
        stride: (2, 2),
        pad_before: (0, 0),
    };
    group.throughput(Throughput::Elements(macs(&geometry)));
    let op = QConv {
        taps: bytes(32 * 27, 1).iter().map(|&b| b as i8 as i32).collect(),
        bias: vec![100; 32],
        multiplier: vec![1e-3; 32],
        x_zero: 0,
        y_zero: 0,
        output: i8::datum_type(),
        format: DataFormat::CHW,
        geometry: geometry.clone(),
    };
    let (input, mut out) = (bytes(geometry.input_len(), 2), vec![0u8; geometry.output_len()]);
    group.bench_function(BenchmarkId::from_parameter(geometry.describe()), |b| {
        b.iter(|| op.run(black_box(&input), true, &mut out))
    });
    group.finish();
}

fn float_depthwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("DirectDepthwise");
    for (channels, side, kernel, stride) in DEPTHWISE {
        let geometry = depthwise(channels, side, kernel, stride);
        group.throughput(Throughput::Elements(macs(&geometry)));
        let op = DirectConv {
            taps: bytes(channels * kernel * kernel, 1).iter().map(|&b| b as f32 / 255.0).collect(),
            bias: vec![0.1; channels],
            format: DataFormat::CHW,
            clamp: (0.0, 6.0),
            geometry: geometry.clone(),
        };
        let input: Vec<f32> = bytes(geometry.input_len(), 2).iter().map(|&b| b as f32 / 64.0).collect();
        let mut out = vec![0f32; geometry.output_len()];
        let id = BenchmarkId::from_parameter(geometry.describe());
        group.bench_function(id, |b| b.iter(|| op.run(black_box(&input), &mut out)));
    }
    group.finish();
}

/// Lite0's 1x1 layers, a few of its shapes: input channels, output channels, side.
const POINTWISE: [(usize, usize, usize); 5] =
    [(32, 16, 112), (16, 96, 112), (144, 24, 56), (240, 80, 14), (1152, 320, 7)];

fn quantized_pointwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("QPointwise");
    for (inputs, outputs, side) in POINTWISE {
        let pixels = side * side;
        group.throughput(Throughput::Elements((inputs * outputs * pixels) as u64));
        let plain: Vec<i32> = bytes(inputs * outputs, 1).iter().map(|&b| b as i8 as i32 / 2).collect();
        let op = QPointwise {
            input_channels: inputs,
            output_channels: outputs,
            pixels,
            x_zero: 0,
            taps: Taps::new(&plain, inputs),
            bias: vec![100; outputs],
            multiplier: vec![1e-3; outputs],
            y_zero: 0,
            output: i8::datum_type(),
            output_shape: vec![outputs, side, side],
        };
        let (input, mut out) = (bytes(inputs * pixels, 2), vec![0u8; outputs * pixels]);
        let id = BenchmarkId::from_parameter(format!("{inputs} -> {outputs}, {side}x{side}"));
        group.bench_function(id, |b| b.iter(|| op.run(black_box(&input), true, &mut out)));
    }
    group.finish();
}

criterion_group!(benches, quantized_depthwise, quantized_stem, float_depthwise, quantized_pointwise);
criterion_main!(benches);
