//! [`FloatPointwise`]: a float 1x1 convolution (a matrix product over the channels) laid out
//! channels first, with its bias and clamp fused; the rule that swaps tract's float `EinSum`
//! (and the `Add`, `Max` and `Min` after it) for it.
//!
//! tract runs such a layer as an `OptMatMul` that packs the image into panels first
//! (`OptMatMulPack`, a pass over every layer's input); channels first, each input channel's
//! pixels are already contiguous, which is what a panel is. On x86-64 with AVX2 and FMA the
//! kernel reads them in place. Only channels first: on aarch64 tract lays float graphs out
//! channels last, and the rule leaves those alone.

use super::depthwise::activation;
use super::pointwise::{Layer, layer};
use super::{clamp_number, per_channel_f32};
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::Add;

/// Output channels per tile of the AVX2 kernel: 6 channels x 16 pixels are 12 registers of sums.
const CHANNELS: usize = 6;

/// One float 1x1 layer: `[input_channels, pixels]` in, `[output_channels, pixels]` out.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatPointwise {
    pub input_channels: usize,
    pub output_channels: usize,
    /// Height x width.
    pub pixels: usize,
    /// The weights as the kernel reads them: tiles of [`CHANNELS`] output channels, each
    /// `[input channel][CHANNELS]`, the last tile padded with zeros.
    pub packed: Vec<f32>,
    /// Per output channel, padded with zeros to whole tiles.
    pub bias: Vec<f32>,
    /// Every output clamped to `[low, high]` (the ReLU6 after the expansion layers), `(-inf,
    /// inf)` for none.
    pub clamp: (f32, f32),
    /// The output's shape as tract declared it (with or without a batch axis of 1).
    pub output_shape: Vec<usize>,
}

// Ops are compared to merge duplicates; weights loaded from a model are never NaN.
impl Eq for FloatPointwise {}

impl std::hash::Hash for FloatPointwise {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.input_channels, self.output_channels, self.pixels).hash(state);
        self.packed.iter().for_each(|w| w.to_bits().hash(state));
    }
}

impl FloatPointwise {
    /// `weights`: `[output_channels, input_channels]`, row-major.
    pub fn new(
        weights: &[f32],
        input_channels: usize,
        pixels: usize,
        bias: &[f32],
        clamp: (f32, f32),
        output_shape: Vec<usize>,
    ) -> FloatPointwise {
        let output_channels = bias.len();
        assert_eq!(weights.len(), output_channels * input_channels, "FloatPointwise: weights");
        let tiles = output_channels.div_ceil(CHANNELS);
        let mut packed = vec![0f32; tiles * input_channels * CHANNELS];
        for (o, row) in weights.chunks_exact(input_channels.max(1)).enumerate() {
            let (t, j) = (o / CHANNELS, o % CHANNELS);
            for (c, &w) in row.iter().enumerate() {
                packed[(t * input_channels + c) * CHANNELS + j] = w;
            }
        }
        let mut bias = bias.to_vec();
        bias.resize(tiles * CHANNELS, 0.0);
        FloatPointwise { input_channels, output_channels, pixels, packed, bias, clamp, output_shape }
    }

    /// The weight of input channel `c` in output channel `o`.
    fn weight(&self, o: usize, c: usize) -> f32 {
        self.packed[(o / CHANNELS * self.input_channels + c) * CHANNELS + o % CHANNELS]
    }

    /// Multiplies one `[input_channels, pixels]` image into `out` (`[output_channels, pixels]`):
    /// the AVX2 and FMA kernel where the CPU has both, else [`FloatPointwise::run_portable`].
    pub fn run(&self, input: &[f32], out: &mut [f32]) {
        self.check_sizes(input, out);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked on the line above.
            return unsafe { avx2::multiply(self, input, out) };
        }
        self.run_portable(input, out)
    }

    /// [`FloatPointwise::run`] without the AVX2 kernel (public so that tests compare the two).
    pub fn run_portable(&self, input: &[f32], out: &mut [f32]) {
        self.check_sizes(input, out);
        let (low, high) = self.clamp;
        for (o, out) in out.chunks_exact_mut(self.pixels.max(1)).enumerate().take(self.output_channels) {
            out.fill(self.bias[o]);
            for (c, x) in input.chunks_exact(self.pixels.max(1)).enumerate() {
                let w = self.weight(o, c);
                out.iter_mut().zip(x).for_each(|(y, &x)| *y += w * x);
            }
            out.iter_mut().for_each(|y| *y = clamp_number(*y, low, high));
        }
    }

    fn check_sizes(&self, input: &[f32], out: &[f32]) {
        assert_eq!(input.len(), self.input_channels * self.pixels, "FloatPointwise: input size");
        assert_eq!(out.len(), self.output_channels * self.pixels, "FloatPointwise: output size");
        assert_eq!(self.packed.len(), self.output_channels.div_ceil(CHANNELS) * self.input_channels * CHANNELS);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{CHANNELS, FloatPointwise};
    use crate::ops::avx2::first_lanes;
    use core::arch::x86_64::*;

    /// Pixels per step: two registers.
    const PIXELS: usize = 16;

    /// Pixels per chunk: the tiles of output channels go over one chunk before the next, so
    /// its input values stay in the L1/L2 cache for all of them and each output row is written
    /// in runs of 2 KB (pixel block by pixel block over all 96 rows of a layer came out at
    /// 12 GMAC/s on the 112x112 layers).
    const CHUNK: usize = 512;

    /// Chunks of pixels by tiles of 6 output channels by blocks of 16 pixels: for each input
    /// channel, its 16 pixels (two loads, in place) times each of the 6 weights (broadcast)
    /// added to 12 registers of sums; then bias, clamp, store. A last block of at most 8 pixels
    /// (the 7x7 layers' 49th) takes one register, masked; of 9 to 15, two.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the sizes as [`FloatPointwise::check_sizes`] checks.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn multiply(op: &FloatPointwise, input: &[f32], out: &mut [f32]) {
        let pixels = op.pixels;
        for c0 in (0..pixels).step_by(CHUNK) {
            let end = pixels.min(c0 + CHUNK);
            for t in 0..op.output_channels.div_ceil(CHANNELS) {
                let mut p0 = c0;
                // SAFETY (the calls): as this function's; the pixels each call's mask selects
                // (all 16 when whole) are below `end`.
                while p0 + PIXELS <= end {
                    unsafe { tile::<2>(op, input, out, t, p0, [first_lanes(8); 2], true) };
                    p0 += PIXELS;
                }
                let n = end - p0;
                if n > PIXELS / 2 {
                    unsafe { tile::<2>(op, input, out, t, p0, [first_lanes(8), first_lanes(n - 8)], false) };
                } else if n > 0 {
                    unsafe { tile::<1>(op, input, out, t, p0, [first_lanes(n), first_lanes(0)], false) };
                }
            }
        }
    }

    /// Tile `t` of output channels, `8 * R` pixels from `p0`; `mask` says which exist when not
    /// `whole`.
    ///
    /// # Safety
    /// As [`multiply`]'s; the pixels `mask` (or, when `whole`, all `8 * R`) selects exist.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize>(
        op: &FloatPointwise,
        input: &[f32],
        out: &mut [f32],
        t: usize,
        p0: usize,
        mask: [__m256i; 2],
        whole: bool,
    ) {
        let (inputs, outputs, pixels) = (op.input_channels, op.output_channels, op.pixels);
        let w = op.packed[t * inputs * CHANNELS..][..inputs * CHANNELS].as_ptr();
        let x = input.as_ptr();
        // SAFETY: the loads read pixels p0.. of input channel c < inputs (masked when not
        // whole), the broadcasts weight c * 6 + j of this tile's inputs * 6.
        let acc = unsafe {
            let mut acc: [[__m256; R]; CHANNELS] =
                std::array::from_fn(|j| [_mm256_set1_ps(op.bias[t * CHANNELS + j]); R]);
            for c in 0..inputs {
                let at = x.add(c * pixels + p0);
                let v: [__m256; R] = std::array::from_fn(|r| {
                    if whole { _mm256_loadu_ps(at.add(8 * r)) } else { _mm256_maskload_ps(at.add(8 * r), mask[r]) }
                });
                let w = w.add(c * CHANNELS);
                for (j, acc) in acc.iter_mut().enumerate() {
                    let w = _mm256_broadcast_ss(&*w.add(j));
                    for r in 0..R {
                        acc[r] = _mm256_fmadd_ps(w, v[r], acc[r]);
                    }
                }
            }
            acc
        };
        let (low, high) = (_mm256_set1_ps(op.clamp.0), _mm256_set1_ps(op.clamp.1));
        for (j, acc) in acc.iter().enumerate().take(outputs - t * CHANNELS) {
            let row = out[(t * CHANNELS + j) * pixels + p0..].as_mut_ptr();
            for (r, &acc) in acc.iter().enumerate() {
                // Compare and select, as `clamp_number`.
                let v = _mm256_min_ps(_mm256_max_ps(acc, low), high);
                // SAFETY: pixels p0.. of output channel t * 6 + j (masked when not whole).
                unsafe {
                    if whole {
                        _mm256_storeu_ps(row.add(8 * r), v)
                    } else {
                        _mm256_maskstore_ps(row.add(8 * r), mask[r], v)
                    }
                }
            }
        }
    }
}

impl Op for FloatPointwise {
    fn name(&self) -> StaticName {
        "FloatPointwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} -> {} channels, {} pixels", self.input_channels, self.output_channels, self.pixels)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for FloatPointwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
        ensure!(input.len() == self.input_channels * self.pixels, "FloatPointwise: input size");
        // SAFETY: any bits are an f32, and `run` writes every output value.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.output_shape)? };
        self.run(input, output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for FloatPointwise {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&self.output_shape)))
    }

    as_op!();
}

/// The rule: a float `EinSum` that is a 1x1 convolution channels first (input `[n] c h w`,
/// constant kernel `o c`, output `[n] o h w`, batch 1), with the bias `Add` and clamp after it
/// when there are, becomes a [`FloatPointwise`]; anything else is left to tract.
pub fn rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    _name: &str,
    einsum: &EinSum,
) -> TractResult<Option<TypedModelPatch>> {
    if einsum.q_params.is_some()
        || node.inputs.len() != 2
        || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
    {
        return Ok(None);
    }
    let Some(weights) = model.outlet_fact(node.inputs[1])?.konst.clone() else { return Ok(None) };
    if weights.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    let Some(Layer { inputs, outputs, pixels, output_shape }) = layer(model, node, einsum, &weights)? else {
        return Ok(None);
    };
    let (bias, after_bias) = match bias_add(model, node, outputs)? {
        Some((bias, add)) => (bias, add),
        None => (vec![0.0; outputs], node),
    };
    let (clamp, last) = activation(model, after_bias)?;
    let weights = weights.try_as_plain_ram()?.as_slice::<f32>()?;
    let op = FloatPointwise::new(weights, inputs, pixels, &bias, clamp, output_shape);
    let mut patch = TypedModelPatch::default();
    let input = patch.tap_model(model, node.inputs[0])?;
    let output = patch.wire_node(&node.name, op, &[input])?[0];
    patch.shunt_outside(model, last.into(), output)?;
    Ok(Some(patch))
}

/// When `node`'s only reader adds a constant of one value per output channel (shaped to
/// broadcast along the channel axis, as tract's declutter wires a 1x1 convolution's bias) and
/// leaves the shape as it is: those values and the reader.
fn bias_add<'m>(
    model: &'m TypedModel,
    node: &TypedNode,
    outputs: usize,
) -> TractResult<Option<(Vec<f32>, &'m TypedNode)>> {
    let Some(next) = model.single_succ(node.id)? else { return Ok(None) };
    let Some(bin) = next.op_as::<TypedBinOp>() else { return Ok(None) };
    if !bin.0.is::<Add>() || next.inputs.len() != 2 || next.outputs.len() != 1 {
        return Ok(None);
    }
    let ours = OutletId::new(node.id, 0);
    let Some(other) = next.inputs.iter().find(|&&i| i != ours) else { return Ok(None) };
    let other = model.outlet_fact(*other)?;
    let Some(konst) = other.konst.as_ref() else { return Ok(None) };
    let shape = model.outlet_fact(ours)?.shape.as_concrete().map(|s| s.to_vec());
    let Some(shape) = shape else { return Ok(None) };
    // The channel axis is the third from the end ([n] o h w); every other axis of the bias 1.
    let k = konst.shape();
    let along_channels = k.len() <= shape.len()
        && k.iter().rev().enumerate().all(|(i, &d)| d == 1 || (i == 2 && d == outputs))
        && k.iter().product::<usize>() == outputs;
    if konst.datum_type() != f32::datum_type()
        || !along_channels
        || model.outlet_fact(next.id.into())?.shape != model.outlet_fact(ours)?.shape
    {
        return Ok(None);
    }
    Ok(Some((per_channel_f32(konst, outputs)?, next)))
}
