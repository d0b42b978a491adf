//! [`QConv`]: a quantized direct convolution, each output row accumulated in blocks of 16
//! columns held in registers, with the requantization fused; the rule that swaps tract's
//! quantized `Conv` for it where that wins: depthwise layers and the stem (few input values per
//! output value).

use super::{Requantization, input_bytes, output_range, output_tensor, quantized_constants, raw_i32, requantize};
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The most input values (input channels per group x kernel taps) one output value may read for
/// the rule to take a convolution: a depthwise 5x5 reads 25, the stem 3 x 3x3 = 27. A direct
/// convolution does each of them as one pass over an output row; beyond a few dozen, tract's
/// im2col and matrix product (or a 1x1 layer's [`super::QPointwise`]) reuse the input better.
pub const MAX_REDUCTION: usize = 32;

/// One convolution's geometry and constants, NCHW, batch 1, OIHW kernel, no dilation.
#[derive(Debug, Clone, PartialEq)]
pub struct QConv {
    pub input_channels: usize,
    pub output_channels: usize,
    /// Channel groups: `input_channels` for a depthwise layer, 1 for a dense one.
    pub group: usize,
    pub input_hw: (usize, usize),
    pub output_hw: (usize, usize),
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    /// Zeros added above and to the left (below and right follow from the output size).
    pub pad_before: (usize, usize),
    pub x_zero: i32,
    /// `[output_channels, input_channels / group, kh, kw]`, the weights less their zero point.
    pub taps: Vec<i32>,
    pub bias: Vec<i32>,
    /// `x_scale * k_scale[o] / y_scale`.
    pub multiplier: Vec<f32>,
    pub y_zero: i32,
    pub output: DatumType,
    /// NCHW with N = 1 (else CHW: tract's declutter drops a batch axis of 1).
    pub batch_axis: bool,
}

// Ops are compared to merge duplicates; the f32 multipliers are never NaN (scales are finite).
impl Eq for QConv {}

impl std::hash::Hash for QConv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.input_channels, self.output_channels, self.group, self.input_hw).hash(state);
        (self.kernel, self.stride, self.pad_before).hash(state);
        self.taps.hash(state);
    }
}

impl QConv {
    /// Convolves one image. `input` holds the stored bytes of a `[input_channels, h, w]` tensor,
    /// int8 when `signed`, else uint8; `out` receives the `[output_channels, oh, ow]` output's
    /// (int8 or uint8, per `output`).
    ///
    /// Vectorised by the compiler, without intrinsics: [`BLOCK`] output columns at a time are
    /// accumulated in registers over every tap, each tap adding `tap * (a contiguous slice of
    /// an input row)`. For that slice to be contiguous and in bounds, each input row is first
    /// copied (less the zero point, as i32) into its stride's phases (columns `p, p + s, p + 2s,
    /// ...`), each with zero margins where the padding is.
    pub fn run(&self, input: &[u8], signed: bool, out: &mut [u8]) {
        assert_eq!(input.len(), self.input_channels * self.input_hw.0 * self.input_hw.1, "QConv: input size");
        assert_eq!(out.len(), self.output_channels * self.output_hw.0 * self.output_hw.1, "QConv: output size");
        convolve(self, &Rows::new(self), input, signed, out)
    }

    /// Whether each output channel reads one input channel of its own.
    pub fn is_depthwise(&self) -> bool {
        self.group == self.input_channels && self.group == self.output_channels
    }
}

/// Output columns accumulated together: 16 i32 (two AVX2 registers, four NEON ones).
const BLOCK: usize = 16;

/// How the phase-split input rows are laid out, and where each kernel column reads in them.
#[derive(Debug)]
struct Rows {
    /// Length of one phase of one row: the zero margin, then the input values, then zeros up to
    /// what the last block of output columns reads.
    len: usize,
    /// Input values start at this index of a phase (a left padding of `pw` columns is
    /// `ceil(pw / s)` zeros in every phase).
    margin: usize,
    /// For each output row, where each of its taps reads for output column 0 (an index into
    /// the group's phase-split rows) and which tap it is (an index into an output channel's
    /// taps): the same for every output channel, rows `reads[starts[oy]..starts[oy + 1]]`.
    reads: Vec<(usize, usize)>,
    starts: Vec<usize>,
}

impl Rows {
    fn new(op: &QConv) -> Rows {
        let (w, sw, pw) = (op.input_hw.1, op.stride.1, op.pad_before.1);
        let margin = pw.div_ceil(sw);
        // Output column ox, kernel column kx reads input column sw * ox + kx - pw: index ox + q
        // of phase p, with kx - pw = q * sw + p.
        let taps: Vec<(usize, usize)> = (0..op.kernel.1)
            .map(|kx| {
                let d = kx as isize - pw as isize;
                let (p, q) = (d.rem_euclid(sw as isize) as usize, d.div_euclid(sw as isize));
                (p, (margin as isize + q) as usize)
            })
            .collect();
        let last_read =
            taps.iter().map(|&(_, first)| first).max().unwrap_or(0) + op.output_hw.1.next_multiple_of(BLOCK);
        let len = last_read.max(margin + w.div_ceil(sw));
        let (h, (kh, kw), sh, ph) = (op.input_hw.0, op.kernel, op.stride.0, op.pad_before.0);
        let row_len = sw * len;
        let (mut reads, mut starts) = (vec![], vec![0]);
        for oy in 0..op.output_hw.0 {
            // Rows above and below the image are padding: zeros, skipped.
            for ky in (0..kh).filter(|ky| (oy * sh + ky).checked_sub(ph).is_some_and(|iy| iy < h)) {
                let iy = oy * sh + ky - ph;
                for i in 0..op.input_channels / op.group {
                    for (kx, &(p, first)) in taps.iter().enumerate() {
                        reads.push(((i * h + iy) * row_len + p * len + first, (i * kh + ky) * kw + kx));
                    }
                }
            }
            starts.push(reads.len());
        }
        Rows { len, margin, reads, starts }
    }
}

/// [`QConv::run`]'s loop, compiled for each listed instruction set and picked at run time (a
/// free function: `multiversion` does not take methods).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn convolve(op: &QConv, rows: &Rows, input: &[u8], signed: bool, out: &mut [u8]) {
    let (h, w) = op.input_hw;
    let (oh, ow) = op.output_hw;
    let (kh, kw) = op.kernel;
    let sw = op.stride.1;
    let (inputs, outputs) = (op.input_channels / op.group, op.output_channels / op.group);
    let row_len = sw * rows.len;
    // Input channel i of the group, row y, phase p starts at (i * h + y) * row_len + p *
    // rows.len; margins and tails stay 0 (the zero point, subtracted).
    let mut phases = vec![0i32; inputs * h * row_len];
    let range = output_range(op.output);
    let value = |x: u8| if signed { x as i8 as i32 } else { x as i32 } - op.x_zero;
    for g in 0..op.group {
        for (i, plane) in input[g * inputs * h * w..][..inputs * h * w].chunks_exact(h * w).enumerate() {
            for (y, row) in plane.chunks_exact(w).enumerate() {
                let split = &mut phases[(i * h + y) * row_len..][..row_len];
                if sw == 1 {
                    // Contiguous: a plain loop the compiler vectorises (step_by(1) is not one).
                    let dst = &mut split[rows.margin..][..w];
                    dst.iter_mut().zip(row).for_each(|(d, &x)| *d = value(x));
                } else {
                    for p in 0..sw {
                        let dst = &mut split[p * rows.len + rows.margin..];
                        dst.iter_mut().zip(row.iter().skip(p).step_by(sw)).for_each(|(d, &x)| *d = value(x));
                    }
                }
            }
        }
        for o in g * outputs..(g + 1) * outputs {
            let taps = &op.taps[o * inputs * kh * kw..][..inputs * kh * kw];
            let (bias, m) = (op.bias[o], op.multiplier[o]);
            for oy in 0..oh {
                // One flat list of reads, so that the block's accumulators stay in registers.
                let reads = &rows.reads[rows.starts[oy]..rows.starts[oy + 1]];
                for column in (0..ow).step_by(BLOCK) {
                    let mut acc = [bias; BLOCK];
                    for &(at, t) in reads {
                        let tap = taps[t];
                        let x: &[i32; BLOCK] = phases[at + column..][..BLOCK].try_into().unwrap();
                        for j in 0..BLOCK {
                            acc[j] += tap * x[j];
                        }
                    }
                    let n = BLOCK.min(ow - column);
                    requantize(&acc[..n], m, op.y_zero, range, &mut out[(o * oh + oy) * ow + column..][..n]);
                }
            }
        }
    }
}

impl QConv {
    fn output_shape(&self) -> Vec<usize> {
        let chw = [self.output_channels, self.output_hw.0, self.output_hw.1];
        if self.batch_axis { [&[1][..], &chw].concat() } else { chw.to_vec() }
    }
}

impl Op for QConv {
    /// "QDepthwise" for a depthwise layer, so that profiles tell the two kinds apart.
    fn name(&self) -> StaticName {
        if self.is_depthwise() { "QDepthwise".into() } else { "QConv".into() }
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels in {} groups, kernel {:?}, stride {:?}, {:?} -> {:?}",
            self.input_channels,
            self.output_channels,
            self.group,
            self.kernel,
            self.stride,
            self.input_hw,
            self.output_hw
        )])
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
        ensure!(bytes.len() == self.input_channels * self.input_hw.0 * self.input_hw.1, "QConv: input size");
        output_tensor(self.output, &self.output_shape(), |out| self.run(bytes, signed, out))
    }
}

impl TypedOp for QConv {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output.fact(self.output_shape())))
    }

    as_op!();
}

/// The rule: a quantized `Conv` (NCHW, OIHW kernel, no dilation, constants for all but the
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
    let (input_channels, output_channels, group) = (conv.input_channels(), conv.output_channels(), conv.group);
    let spec = &conv.pool_spec;
    if group == 0
        || input_channels % group != 0
        || output_channels % group != 0
        || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
        || conv.kernel_fmt != KernelFormat::OIHW
        || spec.kernel_shape.len() != 2
        || spec.dilations.as_ref().is_some_and(|d| d.iter().any(|&d| d != 1))
        || node.inputs.len() != 9
    {
        return Ok(None);
    }
    let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
    let reduction = input_channels / group * kh * kw;
    if reduction > MAX_REDUCTION {
        return Ok(None);
    }
    let Some(consts) = quantized_constants(model, node) else { return Ok(None) };
    let Some(q) = Requantization::read(&consts[1..], output_channels)? else { return Ok(None) };
    let input = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = input.shape.as_concrete() else { return Ok(None) };
    let batch_axis = spec.data_format == DataFormat::NCHW;
    let [c, h, w] = match (batch_axis, shape) {
        (true, &[1, c, h, w]) | (false, &[c, h, w]) => [c, h, w],
        _ => return Ok(None),
    };
    if c != input_channels {
        return Ok(None);
    }
    let strides = spec.strides.clone().unwrap_or_else(|| tvec!(1, 1));
    let padded = spec.padding.compute(&[h, w], &[kh, kw], &[1, 1], &strides);
    let weights = raw_i32(&consts[0])?;
    if weights.len() != output_channels * reduction {
        return Ok(None);
    }
    let op = QConv {
        input_channels,
        output_channels,
        group,
        input_hw: (h, w),
        output_hw: (padded[0].convoluted, padded[1].convoluted),
        kernel: (kh, kw),
        stride: (strides[0], strides[1]),
        pad_before: (padded[0].pad_before, padded[1].pad_before),
        x_zero: q.x_zero,
        taps: q.taps(&weights),
        bias: q.bias,
        multiplier: q.multiplier,
        y_zero: q.y_zero,
        output,
        batch_axis,
    };
    Ok(Some(TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?))
}
