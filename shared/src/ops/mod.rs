//! Convolutions of our own for tract, each one fused pass, and the rules that swap them in.
//!
//! tract 0.23.9 runs every quantized convolution as an (im2col and) int8 matrix product, then
//! requantizes in separate passes over the int32 result (Scale, add zero point, Min, Max, Cast);
//! a per-channel scale stays a Scale that nothing fuses. Depthwise convolutions become a grouped
//! product with one output row per group, which its 8-row kernels waste; and on an AVX2 machine
//! without VNNI its int8 kernel runs at about 1 GOP/s (BENCHMARKS.md, "The machine's limit").
//! Its float depthwise convolution vectorises on x86-64 only at stride 1, output channel by
//! output channel. Our ops:
//! - [`QConv`]: quantized direct convolutions that read few input values per output value
//!   (depthwise layers and the stem), any kernel, stride and padding: int8/uint8 in, the zero
//!   points folded in, the per-channel requantization fused, int8/uint8 out;
//! - [`DirectConv`]: the same direct convolution in f32, for float depthwise layers laid out
//!   channels first (x86-64; on aarch64 tract lays float graphs out channels last and has a
//!   NEON kernel for them);
//! - [`QPointwise`]: quantized 1x1 convolutions (which tract's declutter has made `EinSum`s);
//! - [`FloatPointwise`]: float 1x1 convolutions laid out channels first, their bias and clamp
//!   fused, the image read in place (tract packs it first);
//! - [`Quantize`] and [`QAdd`]: `QuantizeLinear` vectorised, and a residual addition's
//!   dequantize, add and quantize in one pass.
//!
//! The direct convolutions share one register-blocked loop ([`direct`]). All are plain Rust
//! loops that the compiler vectorises (row-contiguous accumulation), compiled per instruction set
//! by `multiversion` (AVX2 on x86-64, NEON on aarch64) and picked at run time; on x86-64
//! [`QPointwise`] and the direct convolutions' column sums have AVX2 intrinsics kernels besides
//! (`pointwise::avx2`, `direct::avx2`), where LLVM's vectorisation of the plain loops was poor.
//! [`rewriter`] swaps tract's nodes for them on a decluttered model; the ONNX file stays
//! standard (`Conv`, `QLinearConv`), so ONNX Runtime and Netron keep opening it.
//!
//! Depends on tract's internal API (`tract_core::internal`, `Conv`, `EinSum`, `PoolSpec`,
//! `Rewriter`): the crate pins tract to one version. On an upgrade re-check the quantized
//! inputs' order (`Conv::wire_as_quant_im2col` and `EinSum::q_params`: x, kernel, bias, x0,
//! x_scale, k0, k_scale, y0, y_scale; a float `Conv`'s: x, kernel, bias),
//! `Conv::declutter_as_einsum`'s axes (input `[n] c h w`, kernel `o c`, output `[n] o h w`), the
//! `PaddingSpec::compute` signature, that `codegen` still leaves unknown ops alone, and that
//! `QuantizeLinearU8`/`I8` (`tract_core::ops::quant`) still keep the reciprocal scale and round
//! as [`residual`] says.

pub mod conv;
pub mod depthwise;
pub mod direct;
pub mod float_pointwise;
pub mod pointwise;
pub mod residual;

pub use conv::QConv;
pub use depthwise::DirectConv;
pub use float_pointwise::FloatPointwise;
pub use pointwise::QPointwise;
pub use residual::{QAdd, Quantize};

use direct::Geometry;
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::model::Rewriter;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The rewriter a model goes through between declutter and optimisation.
pub fn rewriter() -> Rewriter<()> {
    Rewriter::default()
        .with_rule_for("quantized-conv", conv::rule)
        .with_rule_for("float-depthwise", depthwise::rule)
        .with_rule_for("quantized-pointwise", pointwise::rule)
        .with_rule_for("float-pointwise", float_pointwise::rule)
        .with_rule_for("quantize", residual::rule)
}

/// Adding 1.5 * 2^23 rounds an f32 of magnitude below 2^22 to the nearest integer, ties to even
/// (the FPU's default mode), and leaves that integer in the sum's low mantissa bits: what
/// `round_ties_even` and a cast do, in plain arithmetic the compiler vectorises on any x86-64 or
/// aarch64 (no SSE4.1 `roundps` needed).
const ROUNDING: f32 = 12_582_912.0;

/// An f32 of magnitude below 2^22, rounded half to even, as an i32: the [`ROUNDING`] trick (in
/// [2^23, 2^24) the f32 spacing is 1, so the sum is `v` rounded, its mantissa 2^22 + it), which
/// vectorises where a saturating `as i32` needs NaN and overflow fix-ups.
#[inline(always)]
pub(crate) fn exact_integer(v: f32) -> i32 {
    (v + ROUNDING).to_bits() as i32 - ROUNDING.to_bits() as i32
}

/// The geometry of a `Conv` the direct convolutions can run (a concrete input shape, batch 1,
/// OIHW kernel, two spatial axes, no dilation) and the layout of its tensors; `None` for any
/// other.
pub(crate) fn conv_geometry(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<(Geometry, DataFormat)>> {
    let (input_channels, output_channels, group) = (conv.input_channels(), conv.output_channels(), conv.group);
    let spec = &conv.pool_spec;
    if group == 0
        || input_channels % group != 0
        || output_channels % group != 0
        || conv.kernel_fmt != KernelFormat::OIHW
        || spec.kernel_shape.len() != 2
        || spec.dilations.as_ref().is_some_and(|d| d.iter().any(|&d| d != 1))
    {
        return Ok(None);
    }
    let input = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = input.shape.as_concrete() else { return Ok(None) };
    let format = spec.data_format;
    let shape = format.shape(shape)?;
    if shape.hw_rank() != 2 || shape.n().is_some_and(|&n| n != 1) || *shape.c() != input_channels {
        return Ok(None);
    }
    let (h, w) = (shape.hw_dims()[0], shape.hw_dims()[1]);
    let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
    let strides = spec.strides.clone().unwrap_or_else(|| tvec!(1, 1));
    let padded = spec.padding.compute(&[h, w], &[kh, kw], &[1, 1], &strides);
    let geometry = Geometry {
        input_channels,
        output_channels,
        group,
        input_hw: (h, w),
        output_hw: (padded[0].convoluted, padded[1].convoluted),
        kernel: (kh, kw),
        stride: (strides[0], strides[1]),
        pad_before: (padded[0].pad_before, padded[1].pad_before),
    };
    Ok(Some((geometry, format)))
}

/// The values an output of type `dt` (int8 or uint8, quantized) can hold.
pub(crate) fn output_range(dt: DatumType) -> (i32, i32) {
    if dt.unquantized() == u8::datum_type() { (0, 255) } else { (-128, 127) }
}

/// One row of i32 accumulators requantized into output bytes: `acc * multiplier`, rounded half
/// to even, plus the zero point, clamped to `range`; each byte is the value for uint8, its two's
/// complement for int8. Inlined into the callers' per-instruction-set versions.
#[inline(always)]
pub(crate) fn requantize(acc: &[i32], multiplier: f32, y_zero: i32, range: (i32, i32), out: &mut [u8]) {
    let bounds = requantized_bounds(y_zero, range);
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = requantized(a, multiplier, y_zero, bounds);
    }
}

/// One accumulator requantized, as [`requantize`] says, `bounds` from [`requantized_bounds`].
#[inline(always)]
pub(crate) fn requantized(acc: i32, multiplier: f32, y_zero: i32, bounds: (f32, f32)) -> u8 {
    requantized_sum(acc as f32, multiplier, y_zero, bounds)
}

/// [`requantized`] for an accumulator already in f32 (an integer of magnitude below 2^24, so
/// the same value `acc as f32` gives).
#[inline(always)]
pub(crate) fn requantized_sum(acc: f32, multiplier: f32, y_zero: i32, (low, high): (f32, f32)) -> u8 {
    // The rounded value read from the sum's bits rather than by a saturating `as i32`: no NaN
    // or overflow fix-ups, none needed here (the product is finite and clamped).
    let v = clamp_number(acc * multiplier, low, high);
    (exact_integer(v) + y_zero) as u8
}

/// `v` clamped to `[low, high]`, for a `v` that is not NaN, as a compare and select each side:
/// what x86-64's `maxps`/`minps` compute, so one instruction each. `f32::max`/`min` (and
/// `clamp`) also define the answer for a NaN, which costs a compare and a blend more per side
/// (seen in the requantization loops' profile).
#[inline(always)]
pub(crate) fn clamp_number(v: f32, low: f32, high: f32) -> f32 {
    let v = if v > low { v } else { low };
    if v < high { v } else { high }
}

/// What `acc * multiplier` is clamped to before it is rounded and the zero point added: the
/// output range less the zero point. Both are integers, so clamping before rounding gives what
/// rounding, adding the zero point and then clamping to `range` gives, in one step fewer (and
/// well inside [`exact_integer`]'s range).
#[inline(always)]
pub(crate) fn requantized_bounds(y_zero: i32, range: (i32, i32)) -> (f32, f32) {
    ((range.0 - y_zero) as f32, (range.1 - y_zero) as f32)
}

/// x86-64 pieces the kernels share.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::requantized_bounds;
    use core::arch::x86_64::*;

    /// All ones in the first `n` of eight 32-bit lanes (all of them from 8 on), zeros after: the
    /// mask of a row's last, partial vector.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn first_lanes(n: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), lanes)
    }

    /// 16 scaled values (two registers: accumulators times their multiplier) as the bytes
    /// [`super::requantize`] makes of them, in registers: the bounds clamp before rounding
    /// ([`requantized_bounds`]), rounding is the CPU's own (`vcvtps2dq` rounds half to even, the
    /// default mode), and the clamped values fit the saturating packs to 16 and then 8 bits
    /// exactly.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn bytes(scaled: [__m256; 2], y_zero: i32, range: (i32, i32)) -> __m128i {
        let (low, high) = requantized_bounds(y_zero, range);
        let (low, high, zero) = (_mm256_set1_ps(low), _mm256_set1_ps(high), _mm256_set1_epi32(y_zero));
        let value = |v: __m256| _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, low), high)), zero);
        // packs works within 128-bit lanes: [a0-3 b0-3 | a4-7 b4-7], put back in order.
        let words = _mm256_packs_epi32(value(scaled[0]), value(scaled[1]));
        let words = _mm256_permute4x64_epi64::<0b11_01_10_00>(words);
        let (first, second) = (_mm256_castsi256_si128(words), _mm256_extracti128_si256::<1>(words));
        if range.0 < 0 { _mm_packs_epi16(first, second) } else { _mm_packus_epi16(first, second) }
    }
}

/// The stored bytes of an int8 or uint8 input, and whether they are signed.
pub(crate) fn input_bytes<'a>(input: &'a TValue, op: &str) -> TractResult<(&'a [u8], bool)> {
    let signed = match input.datum_type().unquantized() {
        dt if dt == i8::datum_type() => true,
        dt if dt == u8::datum_type() => false,
        dt => bail!("{op}: input of type {dt:?}, not int8 or uint8"),
    };
    Ok((input.as_bytes(), signed))
}

/// A tensor of type `dt` (int8 or uint8, quantized) and `shape`, its bytes written by `fill`,
/// which must write every one of them (each op's `run` does: it fills whole output planes).
pub(crate) fn output_tensor(dt: DatumType, shape: &[usize], fill: impl FnOnce(&mut [u8])) -> TractResult<TVec<TValue>> {
    // SAFETY: bytes have no invalid values, and `fill` writes them all. Not zeroed first: that
    // was a pass over a few MB a photo, all overwritten (tract's own ops allocate so too).
    let mut output = unsafe { Tensor::uninitialized::<u8>(shape)? };
    fill(output.as_bytes_mut());
    // Same storage (one byte a value); the type carries signedness and quantization.
    unsafe { output.set_datum_type(dt) };
    Ok(tvec!(output.into_tvalue()))
}

/// The constants behind a quantized node's inputs after the image (kernel, bias, x0, x_scale,
/// k0, k_scale, y0, y_scale), if every one is a constant.
pub(crate) fn quantized_constants(model: &TypedModel, node: &TypedNode) -> Option<Vec<Arc<Tensor>>> {
    node.inputs[1..].iter().map(|&outlet| model.outlet_fact(outlet).ok()?.konst.clone()).collect()
}

/// What requantizes a quantized layer's i32 sums, read from its constants: the same for the
/// direct convolutions and the 1x1 layers.
pub(crate) struct Requantization {
    pub x_zero: i32,
    /// Per output channel.
    pub k_zero: Vec<i32>,
    pub bias: Vec<i32>,
    /// `x_scale * k_scale[o] / y_scale`.
    pub multiplier: Vec<f32>,
    pub y_zero: i32,
}

impl Requantization {
    /// From the constants after the kernel (bias, x0, x_scale, k0, k_scale, y0, y_scale), each
    /// a scalar or one value per output channel; `None` (left to tract) when a vector has
    /// another length.
    pub fn read(consts: &[Arc<Tensor>], outputs: usize) -> TractResult<Option<Requantization>> {
        let [bias, x0, x_scale, k0, k_scale, y0, y_scale] = consts else { return Ok(None) };
        let (k_zero, bias) = (per_channel(raw_i32(k0)?, outputs), per_channel(raw_i32(bias)?, outputs));
        let (xs, ks, ys) =
            (per_channel_f32(x_scale, 1)?[0], per_channel_f32(k_scale, outputs)?, per_channel_f32(y_scale, 1)?[0]);
        if k_zero.len() != outputs || bias.len() != outputs || ks.len() != outputs {
            return Ok(None);
        }
        Ok(Some(Requantization {
            x_zero: raw_i32(x0)?[0],
            k_zero,
            bias,
            multiplier: ks.iter().map(|k| xs * k / ys).collect(),
            y_zero: raw_i32(y0)?[0],
        }))
    }

    /// `weights` (`[output channels, per output channel]`, row-major) less their output
    /// channel's zero point.
    pub fn taps(&self, weights: &[i32]) -> Vec<i32> {
        // No output channels: no weights either (the rules check the lengths), nothing to divide.
        let per_output = weights.len().checked_div(self.k_zero.len()).unwrap_or(0);
        weights.iter().enumerate().map(|(i, &k)| k - self.k_zero[i / per_output]).collect()
    }
}

/// Per-channel values of a scalar-or-vector constant, as f32.
pub(crate) fn per_channel_f32(t: &Tensor, channels: usize) -> TractResult<Vec<f32>> {
    let t = t.cast_to::<f32>()?;
    Ok(per_channel(t.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(), channels))
}

/// The stored integers of an (u)int8 or int32 tensor, quantized or not (never dequantized).
pub(crate) fn raw_i32(t: &Tensor) -> TractResult<Vec<i32>> {
    let mut t = t.clone();
    unsafe { t.set_datum_type(t.datum_type().unquantized()) };
    let t = t.cast_to::<i32>()?;
    Ok(t.try_as_plain_ram()?.as_slice::<i32>()?.to_vec())
}

/// A scalar-or-vector value, one per channel.
pub(crate) fn per_channel<T: Copy>(v: Vec<T>, channels: usize) -> Vec<T> {
    if v.len() == 1 { vec![v[0]; channels] } else { v }
}
