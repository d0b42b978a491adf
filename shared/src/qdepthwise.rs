//! A quantized depthwise convolution for tract (work in progress, issue 18).
//!
//! tract 0.23.9 sends every quantized convolution, depthwise included, through an im2col and a
//! grouped int8 matrix product with one output row per group, then requantizes in separate
//! passes (Scale, add zero point, Min, Max, Cast). [`QDepthwise`] does the whole depthwise
//! convolution in one pass per channel: int8/uint8 in, the accumulation in i32 with the zero
//! points folded in, and the per-channel requantization fused into the same loop.
//!
//! [`rewriter`] swaps tract's quantized depthwise `Conv` nodes for it on a decluttered model;
//! the ONNX file stays standard (`QLinearConv`).
//!
//! Depends on tract's internal API (`tract_core::internal`, `Conv`, `PoolSpec`, `Rewriter`):
//! the crate pins tract to one version; on an upgrade re-check `Conv`'s input order
//! (`wire_as_quant_im2col`: x, kernel, bias, x0, x_scale, k0, k_scale, y0, y_scale), the
//! `PaddingSpec::compute` signature, and that `codegen` still leaves unknown ops alone.

use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::model::Rewriter;
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
    /// The convolution of one image (`[channels, h, w]` as i32 values), requantized.
    pub fn run(&self, input: &[i32]) -> Vec<i32> {
        let (h, w) = self.input_hw;
        let (oh, ow) = self.output_hw;
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.pad_before;
        let (lo, hi) = if self.output.unquantized() == u8::datum_type() { (0, 255) } else { (-128, 127) };
        let mut out = vec![0i32; self.channels * oh * ow];
        for c in 0..self.channels {
            let plane = &input[c * h * w..][..h * w];
            let taps = &self.weights[c * kh * kw..][..kh * kw];
            let (k0, bias, m) = (self.k_zero[c], self.bias[c], self.multiplier[c]);
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias;
                    for ky in 0..kh {
                        let iy = (oy * sh + ky) as isize - ph as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * sw + kx) as isize - pw as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let x = plane[iy as usize * w + ix as usize] - self.x_zero;
                            acc += x * (taps[ky * kw + kx] - k0);
                        }
                    }
                    let y = (acc as f32 * m).round_ties_even() as i32 + self.y_zero;
                    out[c * oh * ow + oy * ow + ox] = y.clamp(lo, hi);
                }
            }
        }
        out
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
        let input = raw_i32(&inputs[0])?;
        ensure!(input.len() == self.channels * self.input_hw.0 * self.input_hw.1, "QDepthwise: input size");
        let out = self.run(&input);
        let tensor = Tensor::from_shape(&self.output_shape(), &out)?;
        let tensor = match self.output.unquantized() {
            dt if dt == u8::datum_type() => tensor.cast_to::<u8>()?.into_owned(),
            _ => tensor.cast_to::<i8>()?.into_owned(),
        };
        let mut tensor = tensor;
        // Same storage type (u8 or i8); only the quantization parameters are attached.
        unsafe { tensor.set_datum_type(self.output) };
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for QDepthwise {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output.fact(self.output_shape())))
    }

    as_op!();
}

fn konst(model: &TypedModel, outlet: OutletId) -> Option<Arc<Tensor>> {
    model.outlet_fact(outlet).ok()?.konst.clone()
}

/// Per-channel values of a scalar-or-vector constant, as f32.
fn per_channel_f32(t: &Tensor, channels: usize) -> TractResult<Vec<f32>> {
    let t = t.cast_to::<f32>()?;
    Ok(per_channel(t.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(), channels))
}

/// The stored integers of an (u)int8 or int32 tensor, quantized or not (never dequantized).
fn raw_i32(t: &Tensor) -> TractResult<Vec<i32>> {
    let mut t = t.clone();
    unsafe { t.set_datum_type(t.datum_type().unquantized()) };
    let t = t.cast_to::<i32>()?;
    Ok(t.try_as_plain_ram()?.as_slice::<i32>()?.to_vec())
}

fn per_channel<T: Copy>(v: Vec<T>, channels: usize) -> Vec<T> {
    if v.len() == 1 { vec![v[0]; channels] } else { v }
}

/// The rule: a quantized depthwise `Conv` (NCHW, OIHW kernel, no dilation, constants for all
/// but the image) becomes a [`QDepthwise`]; anything else is left to tract.
pub fn depthwise_rule(
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
    let consts: Option<Vec<Arc<Tensor>>> = node.inputs[1..].iter().map(|&o| konst(model, o)).collect();
    let Some(consts) = consts else { return Ok(None) };
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

/// The rewriter a model goes through between declutter and optimisation.
pub fn rewriter() -> Rewriter<()> {
    Rewriter::default().with_rule_for("quantized-depthwise", depthwise_rule)
}
