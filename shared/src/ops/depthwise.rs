//! [`DirectConv`]: a float depthwise convolution ([`super::direct`]) with its bias added, and
//! the rule that swaps tract's float depthwise `Conv` for it.
//!
//! Only depthwise layers, and only channels first (tract's layout for float graphs on x86-64):
//! there tract's `DepthWise` vectorises at stride 1 only, one output channel at a time. A
//! dense float convolution with few inputs (the stem) already gets tract's own direct kernel
//! (`DirectSpatialConv`), and on aarch64 (the device) tract moves float graphs to channels last,
//! where its `DepthWise` runs a NEON kernel over blocks of 16 channels
//! (`arm64simd_depthwise_c_f32`): the loop this op would be, so the rule leaves it alone.

use super::direct::{Floats, Geometry, MAX_REDUCTION, Plan};
use super::per_channel_f32;
use super::{clamp_number, conv_geometry};
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::math::{Max, Min};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// One float depthwise convolution's geometry and constants.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectConv {
    pub geometry: Geometry,
    /// `[channels, 1, kh, kw]`.
    pub taps: Vec<f32>,
    pub bias: Vec<f32>,
    /// NCHW with N = 1, or CHW: channels first.
    pub format: DataFormat,
    /// Every output clamped to `[low, high]`: the activation that followed the convolution in
    /// the model (ReLU6 in EfficientNet-Lite), fused; `(-inf, inf)` for none.
    pub clamp: (f32, f32),
}

// Ops are compared to merge duplicates; weights loaded from a model are never NaN, and two
// ops with the same bits are the same op.
impl Eq for DirectConv {}

impl std::hash::Hash for DirectConv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.geometry.hash(state);
        self.taps.iter().for_each(|t| t.to_bits().hash(state));
        (self.clamp.0.to_bits(), self.clamp.1.to_bits()).hash(state);
    }
}

impl DirectConv {
    /// Convolves one `[channels, h, w]` image into `out`, `[channels, oh, ow]`.
    pub fn run(&self, input: &[f32], out: &mut [f32]) {
        assert!(self.geometry.is_depthwise(), "DirectConv: depthwise layers only");
        assert_eq!(input.len(), self.geometry.input_len(), "DirectConv: input size");
        assert_eq!(out.len(), self.geometry.output_len(), "DirectConv: output size");
        convolve(self, &Plan::new(&self.geometry), input, out)
    }
}

/// [`DirectConv::run`]'s loop, compiled for each listed instruction set and picked at run time.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn convolve(op: &DirectConv, plan: &Plan, input: &[f32], out: &mut [f32]) {
    let geometry = &op.geometry;
    let (per_channel, plane) = (geometry.reduction(), geometry.output_hw.0 * geometry.output_hw.1);
    let avx2 = multiversion::target::target_cfg_f!(all(target_feature = "avx2", target_feature = "fma"));
    let mut phases = plan.phases();
    for c in 0..geometry.group {
        plan.split(input, c, &Floats, &mut phases, avx2);
        let taps = &op.taps[c * per_channel..][..per_channel];
        let out = &mut out[c * plane..][..plane];
        plan.accumulate(&phases, taps, op.bias[c], 0..geometry.output_hw.0, out, avx2);
        // Still in cache: a second pass costs little next to the convolution.
        let (low, high) = op.clamp;
        // clamp_number gives a NaN the low bound, as f32::max/min do, in fewer instructions.
        out.iter_mut().for_each(|v| *v = clamp_number(*v, low, high));
    }
}

impl Op for DirectConv {
    fn name(&self) -> StaticName {
        "DirectDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![self.geometry.describe()])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DirectConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        // Checked here as an error; `run` asserts it for its direct callers.
        ensure!(input.len() == self.geometry.input_len(), "DirectConv: input size");
        // SAFETY: any bits are an f32, and `run` writes every output value (not zeroed first, as
        // in `output_tensor`).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.geometry.output_shape(self.format))? };
        self.run(input, output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for DirectConv {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(self.geometry.output_shape(self.format))))
    }

    as_op!();
}

/// The rule: a float depthwise `Conv` (f32, NCHW or CHW, OIHW kernel, no dilation, constant kernel and
/// bias) of at most [`MAX_REDUCTION`] taps becomes a [`DirectConv`], with the clamp after it
/// (ReLU6) fused; anything else is left to tract.
pub fn rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    _name: &str,
    conv: &Conv,
) -> TractResult<Option<TypedModelPatch>> {
    if conv.q_params.is_some()
        || node.inputs.len() != 3
        || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
    {
        return Ok(None);
    }
    let Some((geometry, format)) = conv_geometry(model, node, conv)? else { return Ok(None) };
    if format.c_is_last() || !geometry.is_depthwise() || geometry.reduction() > MAX_REDUCTION {
        return Ok(None);
    }
    let constant = |i: usize| model.outlet_fact(node.inputs[i]).map(|f| f.konst.clone());
    let (Some(kernel), Some(bias)) = (constant(1)?, constant(2)?) else { return Ok(None) };
    let taps = kernel.cast_to::<f32>()?.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    let bias = per_channel_f32(&bias, geometry.output_channels)?;
    if taps.len() != geometry.output_channels * geometry.reduction() || bias.len() != geometry.output_channels {
        return Ok(None);
    }
    let (clamp, last) = activation(model, node)?;
    let op = DirectConv { geometry, taps, bias, format, clamp };
    let mut patch = TypedModelPatch::default();
    let input = patch.tap_model(model, node.inputs[0])?;
    let output = patch.wire_node(&node.name, op, &[input])?[0];
    patch.shunt_outside(model, last.into(), output)?;
    Ok(Some(patch))
}

/// The clamp that follows `node` in `model` (a `Max` with a constant, then optionally a `Min`
/// with one: ReLU, ReLU6, each the only reader of the one before), and the last node it
/// covers: `((-inf, inf), node)` when none does.
pub(crate) fn activation(model: &TypedModel, node: &TypedNode) -> TractResult<((f32, f32), usize)> {
    let (mut clamp, mut last) = ((f32::NEG_INFINITY, f32::INFINITY), node.id);
    if let Some((low, max)) = bound::<Max>(model, node)? {
        (clamp.0, last) = (low, max.id);
        if let Some((high, min)) = bound::<Min>(model, max)? {
            (clamp.1, last) = (high, min.id);
        }
    }
    Ok((clamp, last))
}

/// When `node`'s only reader is a binary `Op` (`Max` or `Min`) of its output and a uniform f32
/// constant that leaves the shape as it is: that constant and the reader.
fn bound<'m, Op: BinMiniOp>(model: &'m TypedModel, node: &TypedNode) -> TractResult<Option<(f32, &'m TypedNode)>> {
    let Some(next) = model.single_succ(node.id)? else { return Ok(None) };
    let Some(bin) = next.op_as::<TypedBinOp>() else { return Ok(None) };
    if !bin.0.is::<Op>() || next.inputs.len() != 2 || next.outputs.len() != 1 {
        return Ok(None);
    }
    let ours = OutletId::new(node.id, 0);
    let Some(other) = next.inputs.iter().find(|&&i| i != ours) else { return Ok(None) };
    let Some(value) = model.outlet_fact(*other)?.konst.as_ref().and_then(|k| k.as_uniform()) else {
        return Ok(None);
    };
    if value.datum_type() != f32::datum_type()
        || model.outlet_fact(next.id.into())?.shape != model.outlet_fact(ours)?.shape
    {
        return Ok(None);
    }
    Ok(Some((value.cast_to_scalar::<f32>()?, next)))
}
