//! [`QPointwise`]: a quantized 1x1 convolution (a matrix product over the channels) with the
//! requantization fused; the rule that swaps tract's quantized `EinSum` for it.

use super::{
    input_bytes, output_range, output_tensor, per_channel, per_channel_f32, quantized_constants, raw_i32, requantize,
};
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

/// One 1x1 layer's shapes and constants: `[input_channels, pixels]` in, `[output_channels,
/// pixels]` out (channel-first, batch 1).
#[derive(Debug, Clone, PartialEq)]
pub struct QPointwise {
    pub input_channels: usize,
    pub output_channels: usize,
    /// Height x width.
    pub pixels: usize,
    pub x_zero: i32,
    /// `[output_channels, input_channels]`, the weights less their zero point.
    pub taps: Vec<i32>,
    pub bias: Vec<i32>,
    /// `x_scale * k_scale[o] / y_scale`.
    pub multiplier: Vec<f32>,
    pub y_zero: i32,
    pub output: DatumType,
    /// The output's shape as tract declared it (with or without a batch axis of 1).
    pub output_shape: Vec<usize>,
}

// Ops are compared to merge duplicates; the f32 multipliers are never NaN (scales are finite).
impl Eq for QPointwise {}

impl std::hash::Hash for QPointwise {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.input_channels, self.output_channels, self.pixels).hash(state);
        self.taps.hash(state);
    }
}

impl QPointwise {
    /// Multiplies one image. `input` holds the stored bytes of a `[input_channels, pixels]`
    /// tensor, int8 when `signed`, else uint8; `out` receives the output's (int8 or uint8, per
    /// `output`). AVX2 machines get [`avx2::multiply`]; the others [`QPointwise::run_portable`].
    pub fn run(&self, input: &[u8], signed: bool, out: &mut [u8]) {
        self.check_sizes(input, out);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked on the line above.
            return unsafe { avx2::multiply(self, &self.values(input, signed), out) };
        }
        self.run_portable(input, signed, out)
    }

    /// [`QPointwise::run`] without x86-64's AVX2 kernel: plain Rust that the compiler
    /// vectorises (NEON on aarch64, where it widens and accumulates 16-bit products natively).
    /// Public so that tests compare it with the AVX2 kernel on x86-64.
    pub fn run_portable(&self, input: &[u8], signed: bool, out: &mut [u8]) {
        self.check_sizes(input, out);
        multiply(self, &self.values(input, signed), out)
    }

    fn check_sizes(&self, input: &[u8], out: &[u8]) {
        assert_eq!(input.len(), self.input_channels * self.pixels, "QPointwise: input size");
        assert_eq!(out.len(), self.output_channels * self.pixels, "QPointwise: output size");
    }

    /// The input values less their zero point, `[input_channels, pixels]` (they fit in 16 bits).
    fn values(&self, input: &[u8], signed: bool) -> Vec<i16> {
        let x_zero = self.x_zero as i16;
        match signed {
            true => input.iter().map(|&b| b as i8 as i16 - x_zero).collect(),
            false => input.iter().map(|&b| b as i16 - x_zero).collect(),
        }
    }
}

const TILE_CHANNELS: usize = 4;
const TILE_PIXELS: usize = 256;

/// [`QPointwise::run_portable`]'s product, compiled for each listed instruction set and picked at
/// run time: tiles of 4 channels x 256 pixels whose i32 accumulators stay in the L1 cache; each
/// input row slice is read once per tile and added, times each channel's weight, to the 4 rows.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn multiply(op: &QPointwise, x: &[i16], out: &mut [u8]) {
    let (inputs, outputs, pixels) = (op.input_channels, op.output_channels, op.pixels);
    let range = output_range(op.output);
    let mut acc = [[0i32; TILE_PIXELS]; TILE_CHANNELS];
    for p0 in (0..pixels).step_by(TILE_PIXELS) {
        let width = TILE_PIXELS.min(pixels - p0);
        for o0 in (0..outputs).step_by(TILE_CHANNELS) {
            let rows = TILE_CHANNELS.min(outputs - o0);
            for (j, a) in acc[..rows].iter_mut().enumerate() {
                a[..width].fill(op.bias[o0 + j]);
            }
            for i in 0..inputs {
                let row = &x[i * pixels + p0..][..width];
                for (j, a) in acc[..rows].iter_mut().enumerate() {
                    let tap = op.taps[(o0 + j) * inputs + i];
                    a[..width].iter_mut().zip(row).for_each(|(a, &x)| *a += tap * x as i32);
                }
            }
            for (j, a) in acc[..rows].iter().enumerate() {
                let o = o0 + j;
                requantize(&a[..width], op.multiplier[o], op.y_zero, range, &mut out[o * pixels + p0..][..width]);
            }
        }
    }
}

/// The x86-64 kernel: AVX2's 16-bit multiply-add (`vpmaddwd`) multiplies 16 pairs of 16-bit
/// values and adds each pair into a 32-bit lane, so two input channels go through one
/// instruction. The compiler does not find that pairing in the portable loop (it widens to
/// 32 bits and multiplies 8 lanes at a time), hence intrinsics here.
#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::{QPointwise, output_range, requantize};
    use core::arch::x86_64::*;
    use std::vec::Vec;

    /// Pixels per step: two registers of eight 32-bit accumulators for each of 4 channels.
    const PIXELS: usize = 16;
    const CHANNELS: usize = 4;

    /// `x`: the input values less their zero point, `[input_channels, pixels]`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn multiply(op: &QPointwise, x: &[i16], out: &mut [u8]) {
        let (inputs, outputs, pixels) = (op.input_channels, op.output_channels, op.pixels);
        let range = output_range(op.output);
        // Channels 2q and 2q + 1 interleaved pixel by pixel, [pairs][padded pixels][2]; an odd
        // last channel is paired with zeros, the pixels padded with zeros to whole steps.
        let (pairs, padded) = (inputs.div_ceil(2), pixels.next_multiple_of(PIXELS));
        let mut interleaved = vec![0i16; pairs * padded * 2];
        for (c, row) in x.chunks_exact(pixels).enumerate() {
            let pair = &mut interleaved[(c / 2) * padded * 2..];
            for (p, &v) in row.iter().enumerate() {
                pair[2 * p + c % 2] = v;
            }
        }
        // Each pair of weights (less their zero point: they fit in 16 bits) packed into one
        // 32-bit value, [output channels padded to whole steps][pairs].
        let channels = outputs.next_multiple_of(CHANNELS);
        let mut taps = vec![0i32; channels * pairs];
        for (o, row) in op.taps.chunks_exact(inputs).enumerate() {
            for (c, &t) in row.iter().enumerate() {
                let shift = 16 * (c % 2);
                taps[o * pairs + c / 2] |= ((t as i16 as u16 as u32) << shift) as i32;
            }
        }
        let mut bias: Vec<i32> = op.bias.clone();
        bias.resize(channels, 0);

        let mut block = [0i32; PIXELS];
        for p0 in (0..pixels).step_by(PIXELS) {
            let valid = PIXELS.min(pixels - p0);
            for o0 in (0..outputs).step_by(CHANNELS) {
                // SAFETY: AVX2 is enabled for this function; every load reads 16 values of
                // `interleaved` at (q * padded + p0) * 2 with p0 + 16 <= padded, in bounds.
                let acc = unsafe {
                    let mut acc = [[_mm256_setzero_si256(); 2]; CHANNELS];
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = [_mm256_set1_epi32(bias[o0 + j]); 2];
                    }
                    for q in 0..pairs {
                        let at = interleaved.as_ptr().add((q * padded + p0) * 2);
                        let low = _mm256_loadu_si256(at as *const __m256i);
                        let high = _mm256_loadu_si256(at.add(16) as *const __m256i);
                        for (j, a) in acc.iter_mut().enumerate() {
                            let w = _mm256_set1_epi32(taps[(o0 + j) * pairs + q]);
                            a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(low, w));
                            a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(high, w));
                        }
                    }
                    acc
                };
                for (j, a) in acc.iter().enumerate().take(outputs - o0) {
                    // SAFETY: `block` holds 16 i32, two unaligned 8-lane stores.
                    unsafe {
                        _mm256_storeu_si256(block.as_mut_ptr() as *mut __m256i, a[0]);
                        _mm256_storeu_si256(block.as_mut_ptr().add(8) as *mut __m256i, a[1]);
                    }
                    let o = o0 + j;
                    requantize(
                        &block[..valid],
                        op.multiplier[o],
                        op.y_zero,
                        range,
                        &mut out[o * pixels + p0..][..valid],
                    );
                }
            }
        }
    }
}

impl Op for QPointwise {
    fn name(&self) -> StaticName {
        "QPointwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} -> {} channels, {} pixels", self.input_channels, self.output_channels, self.pixels)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for QPointwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (bytes, signed) = input_bytes(&inputs[0], "QPointwise")?;
        ensure!(bytes.len() == self.input_channels * self.pixels, "QPointwise: input size");
        output_tensor(self.output, &self.output_shape, |out| self.run(bytes, signed, out))
    }
}

impl TypedOp for QPointwise {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output.fact(&self.output_shape)))
    }

    as_op!();
}

/// The rule: a quantized `EinSum` that is a 1x1 convolution (input `[n] c h w`, constant kernel
/// `o c`, output `[n] o h w`, batch 1, constants for all but the image) becomes a
/// [`QPointwise`]; anything else is left to tract.
pub fn rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    _name: &str,
    einsum: &EinSum,
) -> TractResult<Option<TypedModelPatch>> {
    let Some(output) = einsum.q_params else { return Ok(None) };
    if node.inputs.len() != 9 {
        return Ok(None);
    }
    let (ins, outs) = einsum.axes.to_strs();
    let labels = |s: &str| s.chars().collect::<Vec<char>>();
    let (image, kernel, result) = (labels(&ins[0]), labels(&ins[1]), labels(&outs[0]));
    let [o, c] = kernel[..] else { return Ok(None) };
    // Declutter drops a batch axis of 1 on either side or both (a block's first layer reads an
    // image without it, the head's output gets it back): with batch 1, each is the same product.
    let without_batch = |axes: &[char]| if axes.len() == 4 { axes[1..].to_vec() } else { axes.to_vec() };
    let pointwise = match (&without_batch(&image)[..], &without_batch(&result)[..]) {
        (&[c2, h, w], &[o2, h2, w2]) => c2 == c && o2 == o && (h, w) == (h2, w2),
        _ => false,
    };
    let bias_axes = labels(&ins[2]);
    // Zero points and scales are scalars, or (the kernel's) vectors.
    if !pointwise || !(bias_axes.is_empty() || bias_axes == [o]) || ins[3..].iter().any(|s| s.chars().count() > 1) {
        return Ok(None);
    }
    let Some(consts) = quantized_constants(model, node) else { return Ok(None) };
    let [weights, bias, x0, x_scale, k0, k_scale, y0, y_scale] = &consts[..] else { return Ok(None) };
    let input = model.outlet_fact(node.inputs[0])?;
    let result_fact = model.outlet_fact(node.id.into())?;
    let (Some(in_shape), Some(out_shape)) = (input.shape.as_concrete(), result_fact.shape.as_concrete()) else {
        return Ok(None);
    };
    if weights.rank() != 2 {
        return Ok(None);
    }
    let (inputs, outputs) = (weights.shape()[1], weights.shape()[0]);
    let pixels: usize = in_shape[in_shape.len() - 2..].iter().product();
    let batch_of_one = |shape: &[usize]| shape.len() == 3 || shape[0] == 1;
    if in_shape[in_shape.len() - 3] != inputs
        || out_shape[out_shape.len() - 3] != outputs
        || !batch_of_one(in_shape)
        || !batch_of_one(out_shape)
        || out_shape.iter().product::<usize>() != outputs * pixels
    {
        return Ok(None);
    }
    let (k_zero, bias) = (per_channel(raw_i32(k0)?, outputs), per_channel(raw_i32(bias)?, outputs));
    let (xs, ks, ys) =
        (per_channel_f32(x_scale, 1)?[0], per_channel_f32(k_scale, outputs)?, per_channel_f32(y_scale, 1)?[0]);
    if k_zero.len() != outputs || bias.len() != outputs || ks.len() != outputs {
        return Ok(None);
    }
    let raw = raw_i32(weights)?;
    let op = QPointwise {
        input_channels: inputs,
        output_channels: outputs,
        pixels,
        x_zero: raw_i32(x0)?[0],
        taps: raw.iter().enumerate().map(|(i, &k)| k - k_zero[i / inputs]).collect(),
        bias,
        multiplier: ks.iter().map(|k| xs * k / ys).collect(),
        y_zero: raw_i32(y0)?[0],
        output,
        output_shape: out_shape.to_vec(),
    };
    Ok(Some(TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?))
}
