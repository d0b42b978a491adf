//! [`QConv`]: a quantized direct convolution ([`super::direct`]) with the requantization fused,
//! and the rule that swaps tract's quantized `Conv` for it where that wins: depthwise layers and
//! the stem (few input values per output value).

use super::direct::{Bytes, Geometry, MAX_REDUCTION, Plan};
use super::{Requantization, exact_integer, input_bytes, output_range, output_tensor, quantized_constants, raw_i32};
use super::{conv_geometry, requantized, requantized_bounds, requantized_sum};
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
    let (oh, ow) = geometry.output_hw;
    // A group with several output channels (the stem) goes band of rows by band of rows, every
    // output channel's sums for one band before the next: the band's input rows stay in the
    // cache for all of them, where whole planes (the stem's 650 KB of phases) came from memory
    // once per output channel.
    let band = if outputs > 1 { BAND.min(oh) } else { oh };
    let (mut phases, mut sums) = (plan.phases(), vec![0f32; band * ow]);
    let avx2 = multiversion::target::target_cfg_f!(all(target_feature = "avx2", target_feature = "fma"));
    let (range, x_zero) = (output_range(op.output), op.x_zero);
    for g in 0..geometry.group {
        plan.split(input, g, &Bytes { signed, x_zero }, &mut phases, avx2);
        for first in (0..oh).step_by(band.max(1)) {
            let rows = first..oh.min(first + band);
            let sums = &mut sums[..rows.len() * ow];
            for o in g * outputs..(g + 1) * outputs {
                let taps = &taps[o * per_output..][..per_output];
                let (bias, multiplier) = (op.bias[o], op.multiplier[o]);
                let out = &mut out[o * plane + first * ow..][..sums.len()];
                if bias.unsigned_abs() <= EXACT_BIAS {
                    // The sums start from the bias: exact in f32 (see EXACT_BIAS), one pass less.
                    plan.accumulate(&phases, taps, bias as f32, rows.clone(), sums, avx2);
                    requantize_sums(sums, multiplier, op.y_zero, range, out, avx2);
                } else {
                    plan.accumulate(&phases, taps, 0.0, rows.clone(), sums, avx2);
                    let bounds = requantized_bounds(op.y_zero, range);
                    for (y, &s) in out.iter_mut().zip(sums.iter()) {
                        *y = requantized(exact_integer(s) + bias, multiplier, op.y_zero, bounds);
                    }
                }
            }
        }
    }
}

/// Output rows per band of a group with several output channels: one row group (4 rows), whose
/// input rows stay in the L1 cache (the stem's 4 rows read 9 rows of 3 channels' phases, about
/// 25 KB). Measured on the stem (`cargo bench ... --bench ops QConv`): 8 rows 0.77x the time of
/// whole planes, 4 rows 0.70x.
const BAND: usize = 4;

/// The largest bias the sums may start from: with at most [`MAX_REDUCTION`] products of at most
/// 255 x 255 (below 2^21 together), every partial sum stays below 2^24, which f32 holds exactly.
const EXACT_BIAS: u32 = 1 << 23;

/// One output plane's sums (exact integers in f32) requantized as [`super::requantize`] does,
/// to the same bytes: 16 at a time in AVX2 registers when `avx2` (true only in code that runs
/// on CPUs with AVX2, as `Plan::accumulate`'s).
#[inline(always)]
fn requantize_sums(sums: &[f32], multiplier: f32, y_zero: i32, range: (i32, i32), out: &mut [u8], avx2: bool) {
    // SAFETY: the CPU has AVX2 (this function's doc).
    #[cfg(target_arch = "x86_64")]
    let done = if avx2 { unsafe { avx2::requantize_sums(sums, multiplier, y_zero, range, out) } } else { 0 };
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = avx2; // Only x86-64 has the kernel.
        0
    };
    let bounds = requantized_bounds(y_zero, range);
    for (y, &s) in out[done..].iter_mut().zip(&sums[done..]) {
        *y = requantized_sum(s, multiplier, y_zero, bounds);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::*;

    /// [`super::requantize_sums`]' whole blocks of 16; returns how many values it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requantize_sums(
        sums: &[f32],
        multiplier: f32,
        y_zero: i32,
        range: (i32, i32),
        out: &mut [u8],
    ) -> usize {
        let m = _mm256_set1_ps(multiplier);
        let blocks = sums.len().min(out.len()) / 16;
        for b in 0..blocks {
            let (sums, out) = (&sums[16 * b..][..16], &mut out[16 * b..][..16]);
            // SAFETY: 16 values of `sums`, 16 bytes of `out` (the slices above).
            unsafe {
                let scaled = [
                    _mm256_mul_ps(_mm256_loadu_ps(sums.as_ptr()), m),
                    _mm256_mul_ps(_mm256_loadu_ps(sums.as_ptr().add(8)), m),
                ];
                _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, crate::ops::avx2::bytes(scaled, y_zero, range));
            }
        }
        16 * blocks
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
