//! The direct convolution both [`super::QConv`] (int8) and [`super::DirectConv`] (f32) run: each
//! output row accumulated in blocks of `BLOCK` columns held in registers, every kernel tap
//! adding `tap * (a contiguous slice of an input row)`, in f32.
//!
//! f32 for the int8 layers too: their products (a weight less its zero point times an input
//! less its zero point, each within ±255) and every partial sum of at most [`MAX_REDUCTION`] of
//! them are integers below 2^24 in magnitude, which f32 holds exactly whatever the order of the
//! additions, so the sums are the i32 ones to the bit. And f32 multiplies are what every SIMD
//! unit does fast: a 32-bit integer vector multiply is slow on x86-64 (`vpmulld`, 10 cycles
//! latency) and absent from its baseline.

use std::vec::Vec;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The most input values (input channels per group x kernel taps) one output value may read for
/// the rules to take a convolution: a depthwise 5x5 reads 25, the stem 3 x 3x3 = 27. A direct
/// convolution does each of them as one pass over an output row; beyond a few dozen, tract's
/// im2col and matrix product (or a 1x1 layer's [`super::QPointwise`]) reuse the input better.
/// Also what keeps the int8 sums exact in f32 (32 x 255 x 255 < 2^24, see the module doc).
pub const MAX_REDUCTION: usize = 32;

/// Output columns accumulated together: 16 f32 (two AVX2 registers, four NEON ones).
const BLOCK: usize = 16;

/// A 2-D convolution's shape: OIHW kernel, batch 1, no dilation (the layout of its tensors is
/// the op's `DataFormat`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Geometry {
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
}

impl Geometry {
    /// Whether each output channel reads one input channel of its own.
    pub fn is_depthwise(&self) -> bool {
        self.group == self.input_channels && self.group == self.output_channels
    }

    /// Input values each output value reads.
    pub fn reduction(&self) -> usize {
        self.input_channels / self.group * self.kernel.0 * self.kernel.1
    }

    pub fn input_len(&self) -> usize {
        self.input_channels * self.input_hw.0 * self.input_hw.1
    }

    pub fn output_len(&self) -> usize {
        self.output_channels * self.output_hw.0 * self.output_hw.1
    }

    /// The output's shape in `format` (batch 1 where it has one).
    pub(crate) fn output_shape(&self, format: DataFormat) -> Vec<usize> {
        let (oh, ow) = self.output_hw;
        format.from_n_c_hw(1, self.output_channels, [oh, ow]).expect("2-D shape").shape.to_vec()
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} -> {} channels in {} groups, kernel {:?}, stride {:?}, {:?} -> {:?}",
            self.input_channels,
            self.output_channels,
            self.group,
            self.kernel,
            self.stride,
            self.input_hw,
            self.output_hw
        )
    }
}

/// Where a convolution reads: each input row split into its stride's phases (columns `p, p + s,
/// p + 2s, ...`) with zero margins where the padding is, so that every tap reads a contiguous,
/// in-bounds slice; and, per output row, the flat list of those reads.
#[derive(Debug)]
pub(crate) struct Plan {
    geometry: Geometry,
    /// Length of one phase of one row: the zero margin, then the input values, then zeros up to
    /// what the last block of output columns reads.
    len: usize,
    /// One input row's phases together: `stride` phases of `len` values.
    row_len: usize,
    /// Input values start at this index of a phase (a left padding of `pw` columns is
    /// `ceil(pw / s)` zeros in every phase).
    margin: usize,
    /// For each output row, where each of its taps reads for output column 0 (an index into
    /// the group's phase-split rows) and which tap it is (an index into an output channel's
    /// taps): the same for every output channel, rows `reads[starts[oy]..starts[oy + 1]]`.
    reads: Vec<(usize, usize)>,
    starts: Vec<usize>,
}

impl Plan {
    pub(crate) fn new(geometry: &Geometry) -> Plan {
        let (w, sw, pw) = (geometry.input_hw.1, geometry.stride.1, geometry.pad_before.1);
        let margin = pw.div_ceil(sw);
        // Output column ox, kernel column kx reads input column sw * ox + kx - pw: index ox + q
        // of phase p, with kx - pw = q * sw + p.
        let taps: Vec<(usize, usize)> = (0..geometry.kernel.1)
            .map(|kx| {
                let d = kx as isize - pw as isize;
                let (p, q) = (d.rem_euclid(sw as isize) as usize, d.div_euclid(sw as isize));
                (p, (margin as isize + q) as usize)
            })
            .collect();
        let last_read =
            taps.iter().map(|&(_, first)| first).max().unwrap_or(0) + geometry.output_hw.1.next_multiple_of(BLOCK);
        let len = last_read.max(margin + w.div_ceil(sw));
        let (h, (kh, kw), sh, ph) = (geometry.input_hw.0, geometry.kernel, geometry.stride.0, geometry.pad_before.0);
        let row_len = sw * len;
        let (mut reads, mut starts) = (vec![], vec![0]);
        for oy in 0..geometry.output_hw.0 {
            // Rows above and below the image are padding: zeros, skipped.
            for ky in (0..kh).filter(|ky| (oy * sh + ky).checked_sub(ph).is_some_and(|iy| iy < h)) {
                let iy = oy * sh + ky - ph;
                for i in 0..geometry.input_channels / geometry.group {
                    for (kx, &(p, first)) in taps.iter().enumerate() {
                        reads.push(((i * h + iy) * row_len + p * len + first, (i * kh + ky) * kw + kx));
                    }
                }
            }
            starts.push(reads.len());
        }
        Plan { geometry: geometry.clone(), len, row_len, margin, reads, starts }
    }

    /// A buffer for one group's phase-split input rows, zero where nothing is written.
    pub(crate) fn phases(&self) -> Vec<f32> {
        let g = &self.geometry;
        vec![0.0; g.input_channels / g.group * g.input_hw.0 * self.row_len]
    }

    /// Writes group `g`'s input channels (`values(c, x)` for channel `c` of the image, `x` one
    /// of its stored values) into `phases`, split as [`Plan`] says. Margins and tails are
    /// never written: they stay zero.
    #[inline(always)]
    pub(crate) fn split<T: Copy>(&self, input: &[T], g: usize, value: impl Fn(T) -> f32, phases: &mut [f32]) {
        let geometry = &self.geometry;
        let ((h, w), sw) = (geometry.input_hw, geometry.stride.1);
        let inputs = geometry.input_channels / geometry.group;
        let row_len = self.row_len;
        for (i, plane) in input[g * inputs * h * w..][..inputs * h * w].chunks_exact(h * w).enumerate() {
            for (y, row) in plane.chunks_exact(w).enumerate() {
                let split = &mut phases[(i * h + y) * row_len..][..row_len];
                if sw == 1 {
                    // Contiguous: a plain loop the compiler vectorises (step_by(1) is not one).
                    let dst = &mut split[self.margin..][..w];
                    dst.iter_mut().zip(row).for_each(|(d, &x)| *d = value(x));
                } else if sw == 2 {
                    // Even and odd columns from pairs: a de-interleave the compiler vectorises
                    // (step_by(2) stays scalar).
                    let (even, odd) = split.split_at_mut(self.len);
                    let (even, odd) = (&mut even[self.margin..], &mut odd[self.margin..]);
                    for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
                        (*e, *o) = (value(pair[0]), value(pair[1]));
                    }
                    if w % 2 == 1 {
                        even[w / 2] = value(row[w - 1]);
                    }
                } else {
                    for p in 0..sw {
                        let dst = &mut split[p * self.len + self.margin..];
                        dst.iter_mut().zip(row.iter().skip(p).step_by(sw)).for_each(|(d, &x)| *d = value(x));
                    }
                }
            }
        }
    }

    /// One output channel: `out[oy * ow + ox] = init + sum of taps x inputs`, from its group's
    /// `phases` and its `taps` (`[inputs per group, kh, kw]`). Inlined into the callers'
    /// per-instruction-set versions, where the accumulators stay in registers.
    ///
    /// `avx2`: sum with the AVX2 and FMA kernel ([`avx2`]). Callers pass true only from their
    /// AVX2+FMA version (`multiversion`'s `target_cfg_f!`), which runs only on CPUs with both.
    #[inline(always)]
    pub(crate) fn accumulate(&self, phases: &[f32], taps: &[f32], init: f32, out: &mut [f32], avx2: bool) {
        let (oh, ow) = self.geometry.output_hw;
        for oy in 0..oh {
            // One flat list of reads per row: the loop below keeps `W` sums, nothing else.
            let reads = &self.reads[self.starts[oy]..self.starts[oy + 1]];
            let row = &mut out[oy * ow..][..ow];
            // Rows of at most half a block (EfficientNet's 7x7 layers) take half a block, which
            // wastes less of each vector. (Two blocks at once, for more independent sums, was
            // measured no faster.)
            if ow <= BLOCK / 2 {
                sum_columns::<{ BLOCK / 2 }>(reads, phases, taps, init, 0, row, avx2);
            } else {
                // A plain loop: `step_by(..).for_each` calls a `fold` that is not inlined, so
                // it would be compiled for the baseline instruction set, not the caller's.
                let mut column = 0;
                while column < ow {
                    sum_columns::<BLOCK>(reads, phases, taps, init, column, row, avx2);
                    column += BLOCK;
                }
            }
        }
    }
}

/// `W` output columns from `column` on: `init` plus every read's tap times the `W` phase
/// values it starts at, stored into `row` (as many of the `W` as it has). The phases hold
/// `ow` rounded up to a [`BLOCK`] past every read's start (`Plan::new`), so `W` values are
/// always there.
#[inline(always)]
fn sum_columns<const W: usize>(
    reads: &[(usize, usize)],
    phases: &[f32],
    taps: &[f32],
    init: f32,
    column: usize,
    row: &mut [f32],
    avx2: bool,
) {
    let acc = column_sums::<W>(reads, phases, taps, init, column, avx2);
    let n = W.min(row.len() - column);
    row[column..][..n].copy_from_slice(&acc[..n]);
}

/// [`sum_columns`]' sums, by the AVX2 kernel when `avx2`, else by the portable loop.
#[inline(always)]
fn column_sums<const W: usize>(
    reads: &[(usize, usize)],
    phases: &[f32],
    taps: &[f32],
    init: f32,
    column: usize,
    avx2: bool,
) -> [f32; W] {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only in code that runs on CPUs with AVX2 and FMA (see
        // `Plan::accumulate`).
        return unsafe { avx2::sum_columns::<W>(reads, phases, taps, init, column) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx2; // Only x86-64 has the kernel.
    let mut acc = [init; W];
    for &(at, t) in reads {
        let tap = taps[t];
        let x: &[f32; W] = phases[at + column..][..W].try_into().unwrap();
        acc.iter_mut().zip(x).for_each(|(a, &x)| *a += tap * x);
    }
    acc
}

/// [`sum_columns`] in AVX2 registers of 8 with fused multiply-adds: LLVM vectorises the
/// portable loop's 16 sums as pieces of 8, 1, 4, 2 and 1 with register moves between reads
/// (seen in objdump), twice the instructions. FMA rounds once where the portable loop rounds
/// twice: the int8 sums are exact either way (see the module doc).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum_columns<const W: usize>(
        reads: &[(usize, usize)],
        phases: &[f32],
        taps: &[f32],
        init: f32,
        column: usize,
    ) -> [f32; W] {
        const { assert!(W == 8 || W == 16, "8 or 16 columns") };
        let (mut low, mut high) = (_mm256_set1_ps(init), _mm256_set1_ps(init));
        for &(at, t) in reads {
            let tap = _mm256_set1_ps(taps[t]);
            let x: &[f32; W] = phases[at + column..][..W].try_into().unwrap();
            // SAFETY: `x` holds W values: 8 at 0 and, when W is 16, 8 more at 8.
            low = _mm256_fmadd_ps(tap, unsafe { _mm256_loadu_ps(x.as_ptr()) }, low);
            if W == 16 {
                high = _mm256_fmadd_ps(tap, unsafe { _mm256_loadu_ps(x.as_ptr().add(8)) }, high);
            }
        }
        let mut sums = [0f32; W];
        // SAFETY: as above, for `sums`.
        unsafe {
            _mm256_storeu_ps(sums.as_mut_ptr(), low);
            if W == 16 {
                _mm256_storeu_ps(sums.as_mut_ptr().add(8), high);
            }
        }
        sums
    }
}
