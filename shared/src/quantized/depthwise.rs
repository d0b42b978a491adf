//! [`QDepthwise`]: a quantized depthwise convolution, one pass per channel with the
//! requantization fused; the rule that swaps tract's quantized depthwise `Conv` for it.

use super::{
    input_bytes, output_range, output_tensor, per_channel, per_channel_f32, quantized_constants, raw_i32, requantize,
};
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// One depthwise layer's geometry and constants, NCHW, batch 1.
#[derive(Debug, Clone, PartialEq)]
pub struct QDepthwise {
    pub channels: usize,
    pub input_hw: (usize, usize),
    pub output_hw: (usize, usize),
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    /// Zeros added above and to the left (below and right follow from the output size).
    pub pad_before: (usize, usize),
    pub x_zero: i32,
    /// `[channels, kh * kw]`, row-major (i8 or u8 values).
    pub weights: Vec<i32>,
    pub k_zero: Vec<i32>,
    pub bias: Vec<i32>,
    /// `x_scale * k_scale[c] / y_scale`.
    pub multiplier: Vec<f32>,
    pub y_zero: i32,
    pub output: DatumType,
    /// NCHW with N = 1 (else CHW: tract's declutter drops a batch axis of 1).
    pub batch_axis: bool,
}

// Ops are compared to merge duplicates; the f32 multipliers are never NaN (scales are finite).
impl Eq for QDepthwise {}

impl std::hash::Hash for QDepthwise {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.channels, self.input_hw, self.kernel, self.stride, self.pad_before).hash(state);
        self.weights.hash(state);
    }
}

impl QDepthwise {
    /// Convolves one image. `input` holds the stored bytes of a `[channels, h, w]` tensor, int8
    /// when `signed`, else uint8; `out` receives the output's (int8 or uint8, per `output`).
    ///
    /// Vectorised by the compiler, without intrinsics: each output row is accumulated whole, one
    /// kernel tap at a time, as `row += tap * (a contiguous slice of an input row)`. With stride
    /// `s`, each input row is first split into its `s` phases (columns `p, p + s, p + 2s, ...`) so
    /// that the slice a tap reads stays contiguous.
    pub fn run(&self, input: &[u8], signed: bool, out: &mut [u8]) {
        convolve(self, input, signed, out)
    }
}

/// [`QDepthwise::run`]'s loop, compiled for each listed instruction set and picked at run time
/// (a free function: `multiversion` does not take methods).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn convolve(op: &QDepthwise, input: &[u8], signed: bool, out: &mut [u8]) {
    let (h, w) = op.input_hw;
    let (oh, ow) = op.output_hw;
    let (kh, kw) = op.kernel;
    let (sh, sw) = op.stride;
    let (ph, pw) = op.pad_before;
    assert_eq!(input.len(), op.channels * h * w, "QDepthwise: input size");
    assert_eq!(out.len(), op.channels * oh * ow, "QDepthwise: output size");
    let phase_len = w.div_ceil(sw);
    // Row y, phase p starts at (y * sw + p) * phase_len; unused tails stay 0 and are never read.
    let mut phases = vec![0i32; h * sw * phase_len];
    let mut acc = vec![0i32; ow];
    let mut taps = vec![0i32; kh * kw];
    // For each kernel column: output column ox reads input column sw * ox + kx - pw, which is
    // index ox + q of phase p; (p, first index read, first and end output column) where valid.
    let columns: Vec<(usize, usize, usize, usize)> = (0..kw)
        .map(|kx| {
            let d = kx as isize - pw as isize;
            let (p, q) = (d.rem_euclid(sw as isize) as usize, d.div_euclid(sw as isize));
            let valid = w.saturating_sub(p).div_ceil(sw) as isize;
            let start = (-q).max(0) as usize;
            let end = ((valid - q).clamp(0, ow as isize) as usize).max(start);
            // An empty range reads nothing: index 0, always in bounds.
            let first = if end > start { (start as isize + q) as usize } else { 0 };
            (p, first, start, end)
        })
        .collect();
    let range = output_range(op.output);
    for c in 0..op.channels {
        let plane = &input[c * h * w..][..h * w];
        let value = |x: u8| if signed { x as i8 as i32 } else { x as i32 } - op.x_zero;
        if sw == 1 {
            // One phase: the plane itself (a plain loop the compiler vectorises).
            phases.iter_mut().zip(plane).for_each(|(d, &x)| *d = value(x));
        } else {
            for (y, row) in plane.chunks_exact(w).enumerate() {
                for p in 0..sw {
                    let dst = &mut phases[(y * sw + p) * phase_len..][..phase_len];
                    dst.iter_mut().zip(row.iter().skip(p).step_by(sw)).for_each(|(d, &x)| *d = value(x));
                }
            }
        }
        let k0 = op.k_zero[c];
        taps.iter_mut().zip(&op.weights[c * kh * kw..]).for_each(|(t, &k)| *t = k - k0);
        let (bias, m) = (op.bias[c], op.multiplier[c]);
        for oy in 0..oh {
            acc.fill(bias);
            for ky in 0..kh {
                let Some(iy) = (oy * sh + ky).checked_sub(ph).filter(|&iy| iy < h) else { continue };
                for (kx, &(p, first, start, end)) in columns.iter().enumerate() {
                    let row = &phases[(iy * sw + p) * phase_len + first..];
                    let tap = taps[ky * kw + kx];
                    acc[start..end].iter_mut().zip(row).for_each(|(a, &x)| *a += tap * x);
                }
            }
            requantize(&acc, m, op.y_zero, range, &mut out[(c * oh + oy) * ow..][..ow]);
        }
    }
}

impl QDepthwise {
    fn output_shape(&self) -> Vec<usize> {
        let chw = [self.channels, self.output_hw.0, self.output_hw.1];
        if self.batch_axis { [&[1][..], &chw].concat() } else { chw.to_vec() }
    }
}

impl Op for QDepthwise {
    fn name(&self) -> StaticName {
        "QDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} channels, kernel {:?}, stride {:?}, {:?} -> {:?}",
            self.channels, self.kernel, self.stride, self.input_hw, self.output_hw
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for QDepthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (bytes, signed) = input_bytes(&inputs[0], "QDepthwise")?;
        ensure!(bytes.len() == self.channels * self.input_hw.0 * self.input_hw.1, "QDepthwise: input size");
        output_tensor(self.output, &self.output_shape(), |out| self.run(bytes, signed, out))
    }
}

impl TypedOp for QDepthwise {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output.fact(self.output_shape())))
    }

    as_op!();
}

/// The rule: a quantized depthwise `Conv` (NCHW, OIHW kernel, no dilation, constants for all
/// but the image) becomes a [`QDepthwise`]; anything else is left to tract.
pub fn rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    _name: &str,
    conv: &Conv,
) -> TractResult<Option<TypedModelPatch>> {
    let Some(output) = conv.q_params else { return Ok(None) };
    let channels = conv.input_channels();
    let spec = &conv.pool_spec;
    if conv.group != channels
        || conv.output_channels() != channels
        || channels < 2
        || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
        || conv.kernel_fmt != KernelFormat::OIHW
        || spec.kernel_shape.len() != 2
        || spec.dilations.as_ref().is_some_and(|d| d.iter().any(|&d| d != 1))
        || node.inputs.len() != 9
    {
        return Ok(None);
    }
    let Some(consts) = quantized_constants(model, node) else { return Ok(None) };
    let [kernel, bias, x0, x_scale, k0, k_scale, y0, y_scale] = &consts[..] else { return Ok(None) };
    let input = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = input.shape.as_concrete() else { return Ok(None) };
    let batch_axis = spec.data_format == DataFormat::NCHW;
    let chw = match (batch_axis, shape) {
        (true, &[1, c, h, w]) | (false, &[c, h, w]) => [c, h, w],
        _ => return Ok(None),
    };
    let [c, h, w] = chw;
    if c != channels {
        return Ok(None);
    }
    let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
    let strides = spec.strides.clone().unwrap_or_else(|| tvec!(1, 1));
    let padded = spec.padding.compute(&[h, w], &[kh, kw], &[1, 1], &strides);
    let weights = raw_i32(kernel)?;
    if weights.len() != channels * kh * kw {
        return Ok(None);
    }
    let (xs, ks, ys) =
        (per_channel_f32(x_scale, 1)?[0], per_channel_f32(k_scale, channels)?, per_channel_f32(y_scale, 1)?[0]);
    let op = QDepthwise {
        channels,
        input_hw: (h, w),
        output_hw: (padded[0].convoluted, padded[1].convoluted),
        kernel: (kh, kw),
        stride: (strides[0], strides[1]),
        pad_before: (padded[0].pad_before, padded[1].pad_before),
        x_zero: raw_i32(x0)?[0],
        weights,
        k_zero: per_channel(raw_i32(k0)?, channels),
        bias: per_channel(raw_i32(bias)?, channels),
        multiplier: ks.iter().map(|k| xs * k / ys).collect(),
        y_zero: raw_i32(y0)?[0],
        output,
        batch_axis,
    };
    Ok(Some(TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?))
}
