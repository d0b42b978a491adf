//! [`DirectConv`]: a float depthwise convolution ([`super::direct`]) with its bias added, and
//! the rule that swaps tract's float depthwise `Conv` for it.
//!
//! Only depthwise layers, and only channels first (tract's layout for float graphs on x86-64):
//! there tract's `DepthWise` vectorises at stride 1 only, one output channel at a time. A
//! dense float convolution with few inputs (the stem) already gets tract's own direct kernel
//! (`DirectSpatialConv`), and on aarch64 (the device) tract moves float graphs to channels last,
//! where its `DepthWise` runs a NEON kernel over blocks of 16 channels
//! (`arm64simd_depthwise_c_f32`): the loop this op would be, so the rule leaves it alone.

use super::conv_geometry;
use super::direct::{Geometry, MAX_REDUCTION, Plan};
use super::per_channel_f32;
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::Conv;
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
}

// Ops are compared to merge duplicates; weights loaded from a model are never NaN, and two
// ops with the same bits are the same op.
impl Eq for DirectConv {}

impl std::hash::Hash for DirectConv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.geometry.hash(state);
        self.taps.iter().for_each(|t| t.to_bits().hash(state));
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
    let mut phases = plan.phases();
    for c in 0..geometry.group {
        plan.split(input, c, |x: f32| x, &mut phases);
        let taps = &op.taps[c * per_channel..][..per_channel];
        plan.accumulate(&phases, taps, op.bias[c], &mut out[c * plane..][..plane]);
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
        let mut output = Tensor::zero::<f32>(&self.geometry.output_shape(self.format))?;
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
/// bias) of at most [`MAX_REDUCTION`] taps becomes a [`DirectConv`]; anything else is left to
/// tract.
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
    let op = DirectConv { geometry, taps, bias, format };
    Ok(Some(TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?))
}
