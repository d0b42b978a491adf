//! The direct convolution both [`super::QConv`] (int8) and [`super::DirectConv`] (f32) run: the
//! output rows accumulated four at a time (`ROWS`) in blocks of `BLOCK` columns held in
//! registers, every kernel tap adding `tap * (a contiguous slice of an input row)`, in f32.
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

    /// The shape in words, for profiles and benches.
    pub fn describe(&self) -> String {
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
/// p + 2s, ...`) with zero margins where the padding is, and zero rows above and below the image
/// where the padding is, so that every tap of every output row reads a contiguous, in-bounds
/// slice, at the same offset from its row's start: output row `oy` reads rows `oy * sh ..
/// oy * sh + kh` of the padded phases. So one list of offsets, one per tap, serves every row.
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
    /// Rows of one input channel's padded phases: the top padding's zero rows, the image's
    /// rows, zero rows below up to what the last output row reads.
    rows: usize,
    /// Where each tap (`[inputs per group, kh, kw]` order, as an output channel's taps) reads
    /// for output row 0, column 0: an index into the group's padded phases.
    reads: Vec<usize>,
}

impl Plan {
    pub(crate) fn new(geometry: &Geometry) -> Plan {
        let (w, sw, pw) = (geometry.input_hw.1, geometry.stride.1, geometry.pad_before.1);
        let margin = pw.div_ceil(sw);
        // Output column ox, kernel column kx reads input column sw * ox + kx - pw: index ox + q
        // of phase p, with kx - pw = q * sw + p.
        let columns: Vec<(usize, usize)> = (0..geometry.kernel.1)
            .map(|kx| {
                let d = kx as isize - pw as isize;
                let (p, q) = (d.rem_euclid(sw as isize) as usize, d.div_euclid(sw as isize));
                (p, (margin as isize + q) as usize)
            })
            .collect();
        let last_read =
            columns.iter().map(|&(_, first)| first).max().unwrap_or(0) + geometry.output_hw.1.next_multiple_of(BLOCK);
        let len = last_read.max(margin + w.div_ceil(sw));
        let (h, (kh, kw), sh, ph) = (geometry.input_hw.0, geometry.kernel, geometry.stride.0, geometry.pad_before.0);
        let row_len = sw * len;
        let rows = (ph + h).max(geometry.output_hw.0.saturating_sub(1) * sh + kh);
        let mut reads = Vec::with_capacity(geometry.reduction());
        for i in 0..geometry.input_channels / geometry.group {
            for ky in 0..kh {
                for &(p, first) in &columns {
                    reads.push((i * rows + ky) * row_len + p * len + first);
                }
            }
        }
        debug_assert_eq!(reads.len(), kw * kh * (geometry.input_channels / geometry.group));
        Plan { geometry: geometry.clone(), len, row_len, margin, rows, reads }
    }

    /// A buffer for one group's padded phase-split input rows, zero where nothing is written.
    pub(crate) fn phases(&self) -> Vec<f32> {
        vec![0.0; self.phases_len()]
    }

    /// Writes group `g`'s input channels (`values(c, x)` for channel `c` of the image, `x` one
    /// of its stored values) into `phases`, split as [`Plan`] says. Margins, tails and padding
    /// rows are never written: they stay zero.
    #[inline(always)]
    pub(crate) fn split<T: Copy>(&self, input: &[T], g: usize, value: impl Fn(T) -> f32, phases: &mut [f32]) {
        let geometry = &self.geometry;
        let ((h, w), sw, top) = (geometry.input_hw, geometry.stride.1, geometry.pad_before.0);
        let inputs = geometry.input_channels / geometry.group;
        let row_len = self.row_len;
        for (i, plane) in input[g * inputs * h * w..][..inputs * h * w].chunks_exact(h * w).enumerate() {
            for (y, row) in plane.chunks_exact(w).enumerate() {
                let split = &mut phases[(i * self.rows + top + y) * row_len..][..row_len];
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
        // The kernels read unchecked: what `Plan::new` sized them for is checked here.
        assert_eq!(phases.len(), self.phases_len(), "Plan: phases");
        assert_eq!(taps.len(), self.reads.len(), "Plan: taps");
        assert_eq!(out.len(), self.geometry.output_hw.0 * self.geometry.output_hw.1, "Plan: output");
        // The shapes EfficientNet's layers have (3x3 and 5x5 depthwise, the stem's 3 x 3x3) get
        // a loop of their own over a constant number of taps: fully unrolled, the taps kept in
        // registers where they fit.
        match taps.len() {
            9 => self.rows::<9>(phases, taps, init, out, avx2),
            25 => self.rows::<25>(phases, taps, init, out, avx2),
            27 => self.rows::<27>(phases, taps, init, out, avx2),
            _ => self.rows::<0>(phases, taps, init, out, avx2),
        }
    }

    fn phases_len(&self) -> usize {
        let g = &self.geometry;
        g.input_channels / g.group * self.rows * self.row_len
    }

    /// [`Plan::accumulate`] for `N` taps (0: any number), [`ROWS`] output rows at a time, then
    /// the last (at most three) two and one at a time.
    #[inline(always)]
    fn rows<const N: usize>(&self, phases: &[f32], taps: &[f32], init: f32, out: &mut [f32], avx2: bool) {
        // Slices of the constant length N: the loops over them unroll.
        let (reads, taps) = if N > 0 { (&self.reads[..N], &taps[..N]) } else { (&self.reads[..], taps) };
        let oh = self.geometry.output_hw.0;
        let mut oy = 0;
        while oy + ROWS <= oh {
            self.row_group::<ROWS>(reads, taps, phases, init, oy, out, avx2);
            oy += ROWS;
        }
        if oy + 2 <= oh {
            self.row_group::<2>(reads, taps, phases, init, oy, out, avx2);
            oy += 2;
        }
        if oy < oh {
            self.row_group::<1>(reads, taps, phases, init, oy, out, avx2);
        }
    }

    /// Output rows `oy..oy + R`, block of columns by block of columns.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // one call site, inlined: a struct would only rename them
    fn row_group<const R: usize>(
        &self,
        reads: &[usize],
        taps: &[f32],
        phases: &[f32],
        init: f32,
        oy: usize,
        out: &mut [f32],
        avx2: bool,
    ) {
        let ow = self.geometry.output_hw.1;
        let step = self.geometry.stride.0 * self.row_len;
        let rows = &mut out[oy * ow..][..R * ow];
        // SAFETY (the calls below): `Plan::new` sized the phases (checked in `accumulate`) so that
        // every read of output row oy + r < oh, `(oy + r) * step + read + column + W` with
        // column < ow rounded up to a BLOCK, is in bounds.
        let at = unsafe { phases.as_ptr().add(oy * step) };
        // Rows of at most half a block (EfficientNet's 7x7 layers) take half a block, which
        // wastes less of each vector.
        if ow <= BLOCK / 2 {
            unsafe { sum_columns::<{ BLOCK / 2 }, R>(reads, taps, at, step, init, 0, rows, avx2) };
        } else {
            // A plain loop: `step_by(..).for_each` calls a `fold` that is not inlined, so it
            // would be compiled for the baseline instruction set, not the caller's.
            let mut column = 0;
            while column < ow {
                unsafe { sum_columns::<BLOCK, R>(reads, taps, at, step, init, column, rows, avx2) };
                column += BLOCK;
            }
        }
    }
}

/// Output rows summed together: each row's sums are a chain of dependent multiply-adds (as long
/// as the kernel has taps), and one chain at a time waits on the adder's latency (4 cycles on
/// recent x86-64 and Arm cores) at every tap. Four rows are four independent chains that share
/// each tap's broadcast and read offset.
const ROWS: usize = 4;

/// `W` output columns from `column` on of `R` output rows: `init` plus every tap times the `W`
/// values from where it reads (`at + r * step + read + column` for row r), stored into `rows`
/// (`R` rows of `rows.len() / R`, as many of the `W` as they have).
///
/// # Safety
/// `at + r * step + read + column + W` must be within the phases for every read and `r < R`.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // inlined into one loop: the arguments are its registers
unsafe fn sum_columns<const W: usize, const R: usize>(
    reads: &[usize],
    taps: &[f32],
    at: *const f32,
    step: usize,
    init: f32,
    column: usize,
    rows: &mut [f32],
    avx2: bool,
) {
    // SAFETY: as this function's.
    let at = unsafe { at.add(column) };
    let acc = unsafe { column_sums::<W, R>(reads, taps, at, step, init, avx2) };
    let ow = rows.len() / R;
    let n = W.min(ow - column);
    for (row, acc) in rows.chunks_exact_mut(ow).zip(&acc) {
        if n == W {
            // A copy of constant length: vector stores, not a call to memcpy.
            row[column..][..W].copy_from_slice(acc);
        } else {
            row[column..][..n].copy_from_slice(&acc[..n]);
        }
    }
}

/// [`sum_columns`]' sums, by the AVX2 kernel when `avx2`, else by the portable loop.
///
/// # Safety
/// As [`sum_columns`], `at` already moved to the first column.
#[inline(always)]
unsafe fn column_sums<const W: usize, const R: usize>(
    reads: &[usize],
    taps: &[f32],
    at: *const f32,
    step: usize,
    init: f32,
    avx2: bool,
) -> [[f32; W]; R] {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only in code that runs on CPUs with AVX2 and FMA (see
        // `Plan::accumulate`); the reads as this function's.
        return unsafe { avx2::column_sums::<W, R>(reads, taps, at, step, init) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx2; // Only x86-64 has the kernel.
    let mut acc = [[init; W]; R];
    for (&read, &tap) in reads.iter().zip(taps) {
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: W values from `at + r * step + read`, in bounds (this function's contract).
            let x = unsafe { &*(at.add(r * step + read) as *const [f32; W]) };
            acc.iter_mut().zip(x).for_each(|(a, &x)| *a += tap * x);
        }
    }
    acc
}

/// [`column_sums`] in AVX2 registers of 8 with fused multiply-adds: LLVM vectorises the
/// portable loop's 16 sums as pieces of 8, 1, 4, 2 and 1 with register moves between reads
/// (seen in objdump), twice the instructions. FMA rounds once where the portable loop rounds
/// twice: the int8 sums are exact either way (see the module doc).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2 and FMA; `W` values from `at + r * step + read` must be in bounds
    /// for every read and `r < R`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn column_sums<const W: usize, const R: usize>(
        reads: &[usize],
        taps: &[f32],
        at: *const f32,
        step: usize,
        init: f32,
    ) -> [[f32; W]; R] {
        const { assert!(W == 8 || W == 16, "8 or 16 columns") };
        let (mut low, mut high) = ([_mm256_set1_ps(init); R], [_mm256_set1_ps(init); R]);
        for (&read, &tap) in reads.iter().zip(taps) {
            let tap = _mm256_set1_ps(tap);
            for r in 0..R {
                // SAFETY: W values from `at + r * step + read` (this function's contract): 8 at
                // 0 and, when W is 16, 8 more at 8.
                let x = unsafe { at.add(r * step + read) };
                low[r] = _mm256_fmadd_ps(tap, unsafe { _mm256_loadu_ps(x) }, low[r]);
                if W == 16 {
                    high[r] = _mm256_fmadd_ps(tap, unsafe { _mm256_loadu_ps(x.add(8)) }, high[r]);
                }
            }
        }
        let mut sums = [[0f32; W]; R];
        for r in 0..R {
            // SAFETY: each row of `sums` holds W values, as above.
            unsafe {
                _mm256_storeu_ps(sums[r].as_mut_ptr(), low[r]);
                if W == 16 {
                    _mm256_storeu_ps(sums[r].as_mut_ptr().add(8), high[r]);
                }
            }
        }
        sums
    }
}
