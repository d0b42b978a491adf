//! [`QConv`]: a quantized direct convolution ([`super::direct`]) with the requantization fused,
//! and the rule that swaps tract's quantized `Conv` for it where that wins: depthwise layers and
//! the stem (few input values per output value).

use super::direct::{Geometry, MAX_REDUCTION, Plan};
use super::{Requantization, exact_integer, input_bytes, output_range, output_tensor, quantized_constants, raw_i32};
use super::{conv_geometry, requantized, requantized_bounds};
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// One quantized convolution's geometry and constants.
#[derive(Debug, Clone, PartialEq)]
pub struct QConv {
    pub geometry: Geometry,
    pub x_zero: i32,
    /// `[output_channels, input_channels / group, kh, kw]`, the weights less their zero point.
    pub taps: Vec<i32>,
    pub bias: Vec<i32>,
    /// `x_scale * k_scale[o] / y_scale`.
    pub multiplier: Vec<f32>,
    pub y_zero: i32,
    pub output: DatumType,
    /// NCHW with N = 1, or CHW (tract's declutter drops a batch axis of 1): channels first.
    pub format: DataFormat,
}

// Ops are compared to merge duplicates; the f32 multipliers are never NaN (scales are finite).
impl Eq for QConv {}

impl std::hash::Hash for QConv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.geometry.hash(state);
        self.taps.hash(state);
    }
}

impl QConv {
    /// Convolves one image. `input` holds the stored bytes of a `[input_channels, h, w]` tensor,
    /// int8 when `signed`, else uint8; `out` receives the `[output_channels, oh, ow]` output's
    /// (int8 or uint8, per `output`).
    pub fn run(&self, input: &[u8], signed: bool, out: &mut [u8]) {
        assert_eq!(input.len(), self.geometry.input_len(), "QConv: input size");
        assert_eq!(out.len(), self.geometry.output_len(), "QConv: output size");
        // Exact: the taps are within ±255 (see `direct`).
        let taps: Vec<f32> = self.taps.iter().map(|&t| t as f32).collect();
        convolve(self, &Plan::new(&self.geometry), &taps, input, signed, out)
    }
}

/// [`QConv::run`]'s loop, compiled for each listed instruction set and picked at run time (a
/// free function: `multiversion` does not take methods).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn convolve(op: &QConv, plan: &Plan, taps: &[f32], input: &[u8], signed: bool, out: &mut [u8]) {
    let geometry = &op.geometry;
    let outputs = geometry.output_channels / geometry.group;
    let (per_output, plane) = (geometry.reduction(), geometry.output_hw.0 * geometry.output_hw.1);
    let (mut phases, mut sums) = (plan.phases(), vec![0f32; plane]);
    let avx2 = multiversion::target::target_cfg_f!(all(target_feature = "avx2", target_feature = "fma"));
    let (bounds, x_zero) = (requantized_bounds(op.y_zero, output_range(op.output)), op.x_zero);
    for g in 0..geometry.group {
        if signed {
            plan.split(input, g, |x: u8| (x as i8 as i32 - x_zero) as f32, &mut phases);
        } else {
            plan.split(input, g, |x: u8| (x as i32 - x_zero) as f32, &mut phases);
        }
        for o in g * outputs..(g + 1) * outputs {
            plan.accumulate(&phases, &taps[o * per_output..][..per_output], 0.0, &mut sums, avx2);
            // The sums are exact integers in f32 (see `direct`): read, biased and requantized
            // in one pass.
            let (bias, multiplier) = (op.bias[o], op.multiplier[o]);
            for (y, &s) in out[o * plane..][..plane].iter_mut().zip(&sums) {
                *y = requantized(exact_integer(s) + bias, multiplier, op.y_zero, bounds);
            }
        }
    }
}

impl Op for QConv {
    /// "QDepthwise" for a depthwise layer, so that profiles tell the two kinds apart.
    fn name(&self) -> StaticName {
        if self.geometry.is_depthwise() { "QDepthwise".into() } else { "QConv".into() }
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![self.geometry.describe()])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for QConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (bytes, signed) = input_bytes(&inputs[0], "QConv")?;
        // Checked here as an error; `run` asserts it for its direct callers.
        ensure!(bytes.len() == self.geometry.input_len(), "QConv: input size");
        output_tensor(self.output, &self.geometry.output_shape(self.format), |out| self.run(bytes, signed, out))
    }
}

impl TypedOp for QConv {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output.fact(self.geometry.output_shape(self.format))))
    }

    as_op!();
}

/// The rule: a quantized `Conv` (NCHW or CHW, OIHW kernel, no dilation, constants for all but the
/// image) whose output values each read at most [`MAX_REDUCTION`] input values becomes a
/// [`QConv`]; anything else is left to tract.
pub fn rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    _name: &str,
    conv: &Conv,
) -> TractResult<Option<TypedModelPatch>> {
    let Some(output) = conv.q_params else { return Ok(None) };
    if node.inputs.len() != 9 {
        return Ok(None);
    }
    let Some((geometry, format)) = conv_geometry(model, node, conv)? else { return Ok(None) };
    // Channels first only: tract 0.23.9 keeps the int8 graphs so on x86-64 and aarch64 alike
    // (it moves float ones to channels last on aarch64; the tests run both).
    if format.c_is_last() || geometry.reduction() > MAX_REDUCTION {
        return Ok(None);
    }
    let Some(consts) = quantized_constants(model, node) else { return Ok(None) };
    let Some(q) = Requantization::read(&consts[1..], geometry.output_channels)? else { return Ok(None) };
    let weights = raw_i32(&consts[0])?;
    if weights.len() != geometry.output_channels * geometry.reduction() {
        return Ok(None);
    }
    let op = QConv {
        geometry,
        x_zero: q.x_zero,
        taps: q.taps(&weights),
        bias: q.bias,
        multiplier: q.multiplier,
        y_zero: q.y_zero,
        output,
        format,
    };
    Ok(Some(TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?))
}
