//! [`QPointwise`]: a quantized 1x1 convolution (a matrix product over the channels) with the
//! requantization fused; the rule that swaps tract's quantized `EinSum` for it.

use super::{input_bytes, konst, output_range, output_tensor, per_channel, per_channel_f32, raw_i32, requantize};
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
    /// `output`).
    ///
    /// Vectorised by the compiler: the output is computed in tiles of 4 channels x 256 pixels
    /// whose i32 accumulators stay in the L1 cache; each input row slice is read once per tile
    /// and added, times each channel's weight, to the 4 accumulator rows.
    pub fn run(&self, input: &[u8], signed: bool, out: &mut [u8]) {
        assert_eq!(input.len(), self.input_channels * self.pixels, "QPointwise: input size");
        assert_eq!(out.len(), self.output_channels * self.pixels, "QPointwise: output size");
        let x: Vec<i16> = match signed {
            true => input.iter().map(|&b| b as i8 as i16 - self.x_zero as i16).collect(),
            false => input.iter().map(|&b| b as i16 - self.x_zero as i16).collect(),
        };
        multiply(self, &x, out)
    }
}

const TILE_CHANNELS: usize = 4;
const TILE_PIXELS: usize = 256;

/// [`QPointwise::run`]'s product, compiled for each listed instruction set and picked at run time.
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
    let pointwise = match (&image[..], &result[..]) {
        (&[n, c2, h, w], &[n2, o2, h2, w2]) => n == n2 && c2 == c && o2 == o && (h, w) == (h2, w2),
        (&[c2, h, w], &[o2, h2, w2]) => c2 == c && o2 == o && (h, w) == (h2, w2),
        _ => false,
    };
    let bias_axes = labels(&ins[2]);
    // Zero points and scales are scalars, or (the kernel's) vectors.
    if !pointwise || !(bias_axes.is_empty() || bias_axes == [o]) || ins[3..].iter().any(|s| s.chars().count() > 1) {
        return Ok(None);
    }
    let consts: Option<Vec<Arc<Tensor>>> = node.inputs[1..].iter().map(|&i| konst(model, i)).collect();
    let Some(consts) = consts else { return Ok(None) };
    let [weights, bias, x0, x_scale, k0, k_scale, y0, y_scale] = &consts[..] else { return Ok(None) };
    let input = model.outlet_fact(node.inputs[0])?;
    let result_fact = model.outlet_fact(node.id.into())?;
    let (Some(in_shape), Some(out_shape)) = (input.shape.as_concrete(), result_fact.shape.as_concrete()) else {
        return Ok(None);
    };
    if (image.len() == 4 && in_shape[0] != 1) || weights.rank() != 2 {
        return Ok(None);
    }
    let (inputs, outputs) = (weights.shape()[1], weights.shape()[0]);
    let pixels: usize = in_shape[in_shape.len() - 2..].iter().product();
    if in_shape[in_shape.len() - 3] != inputs || out_shape[out_shape.len() - 3] != outputs {
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
