//! The direct convolution both [`super::QConv`] (int8) and [`super::DirectConv`] (f32) run: the
//! output rows accumulated several at a time (`ROWS` of whole blocks, twice as many of half
//! blocks, the last rows of a plane in one group) in blocks of `BLOCK` columns held in
//! registers, every kernel tap adding `tap * (a contiguous slice of an input row)`, in f32.
//!
//! f32 for the int8 layers too: their products (a weight less its zero point times an input
//! less its zero point, each within ±255) and every partial sum of at most [`MAX_REDUCTION`] of
//! them are integers below 2^24 in magnitude, which f32 holds exactly whatever the order of the
//! additions, so the sums are the i32 ones to the bit. And f32 multiplies are what every SIMD
//! unit does fast: a 32-bit integer vector multiply is slow on x86-64 (`vpmulld`, 10 cycles
//! latency) and absent from its baseline.

use core::ops::Range;
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
        // The AVX2 split writes a phase's values eight at a time, zeros past the last.
        let len = last_read.max(margin + w.div_ceil(sw).next_multiple_of(8));
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

    /// Writes group `g`'s input channels (their stored values as `values` reads them) into
    /// `phases`, split as [`Plan`] says. Margins, tails and padding rows are never written:
    /// they stay zero.
    ///
    /// `avx2`: split strides 1 and 2 with the AVX2 kernels ([`Values::split_row_avx2`]); as
    /// [`Plan::accumulate`]'s, true only from code that runs on CPUs with AVX2.
    #[inline(always)]
    pub(crate) fn split<T: Copy, V: Values<T>>(
        &self,
        input: &[T],
        g: usize,
        values: &V,
        phases: &mut [f32],
        avx2: bool,
    ) {
        let geometry = &self.geometry;
        let ((h, w), sw, top) = (geometry.input_hw, geometry.stride.1, geometry.pad_before.0);
        let inputs = geometry.input_channels / geometry.group;
        let (row_len, first) = (self.row_len, g * inputs * h * w);
        for i in 0..inputs {
            for y in 0..h {
                let start = first + (i * h + y) * w;
                let split = &mut phases[(i * self.rows + top + y) * row_len..][..row_len];
                #[cfg(target_arch = "x86_64")]
                if avx2 && sw <= 2 {
                    // SAFETY: `avx2` is true only on CPUs with AVX2 (this function's doc).
                    unsafe { values.split_row_avx2(&input[start..], w, sw, split, self.margin, self.len) };
                    continue;
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = avx2; // Only x86-64 has the kernels.
                split_row(&input[start..][..w], sw, |x| values.value(x), split, self.margin, self.len);
            }
        }
    }

    /// Output rows `rows` of one output channel: `out[(oy - rows.start) * ow + ox] = init + sum
    /// of taps x inputs`, from its group's `phases` and its `taps` (`[inputs per group, kh,
    /// kw]`). Inlined into the callers' per-instruction-set versions, where the accumulators
    /// stay in registers.
    ///
    /// `avx2`: sum with the AVX2 and FMA kernel ([`avx2`]). Callers pass true only from their
    /// AVX2+FMA version (`multiversion`'s `target_cfg_f!`), which runs only on CPUs with both.
    #[inline(always)]
    pub(crate) fn accumulate(
        &self,
        phases: &[f32],
        taps: &[f32],
        init: f32,
        rows: Range<usize>,
        out: &mut [f32],
        avx2: bool,
    ) {
        // The kernels read unchecked: what `Plan::new` sized them for is checked here.
        let (oh, ow) = self.geometry.output_hw;
        assert_eq!(phases.len(), self.phases_len(), "Plan: phases");
        assert_eq!(taps.len(), self.reads.len(), "Plan: taps");
        assert!(rows.start <= rows.end && rows.end <= oh, "Plan: rows");
        assert_eq!(out.len(), rows.len() * ow, "Plan: output");
        // The shapes EfficientNet's layers have (3x3 and 5x5 depthwise, the stem's 3 x 3x3) get
        // a loop of their own over a constant number of taps: fully unrolled, the taps kept in
        // registers where they fit.
        match taps.len() {
            9 => self.rows::<9>(phases, taps, init, rows, out, avx2),
            25 => self.rows::<25>(phases, taps, init, rows, out, avx2),
            27 => self.rows::<27>(phases, taps, init, rows, out, avx2),
            _ => self.rows::<0>(phases, taps, init, rows, out, avx2),
        }
    }

    fn phases_len(&self) -> usize {
        let g = &self.geometry;
        g.input_channels / g.group * self.rows * self.row_len
    }

    /// [`Plan::accumulate`] for `N` taps (0: any number): rows of at most half a block
    /// (EfficientNet's 7x7 layers) take half a block, which wastes less of each vector, eight
    /// rows at a time; wider rows full blocks, four rows at a time. Either way eight registers
    /// of sums are in flight ([`ROWS`]).
    #[inline(always)]
    fn rows<const N: usize>(
        &self,
        phases: &[f32],
        taps: &[f32],
        init: f32,
        rows: Range<usize>,
        out: &mut [f32],
        avx2: bool,
    ) {
        // Slices of the constant length N: the loops over them unroll.
        let (reads, taps) = if N > 0 { (&self.reads[..N], &taps[..N]) } else { (&self.reads[..], taps) };
        let ow = self.geometry.output_hw.1;
        let sums = Sums { plan: self, reads, taps, phases, init, first: rows.start, avx2 };
        let (mut oy, oh) = (rows.start, rows.end);
        if ow <= BLOCK / 2 {
            const R: usize = 2 * ROWS;
            while oy + R <= oh {
                sums.row_group::<{ BLOCK / 2 }, R>(oy, out);
                oy += R;
            }
            // The last rows together, as many chains as rows: a 7x7 layer's 7 rows in one group
            // rather than 4, 2 and 1, each waiting on the adder at every tap.
            match oh - oy {
                0 => {}
                1 => sums.row_group::<{ BLOCK / 2 }, 1>(oy, out),
                2 => sums.row_group::<{ BLOCK / 2 }, 2>(oy, out),
                3 => sums.row_group::<{ BLOCK / 2 }, 3>(oy, out),
                4 => sums.row_group::<{ BLOCK / 2 }, 4>(oy, out),
                5 => sums.row_group::<{ BLOCK / 2 }, 5>(oy, out),
                6 => sums.row_group::<{ BLOCK / 2 }, 6>(oy, out),
                _ => sums.row_group::<{ BLOCK / 2 }, 7>(oy, out),
            }
        } else {
            while oy + ROWS <= oh {
                sums.row_group::<BLOCK, ROWS>(oy, out);
                oy += ROWS;
            }
            match oh - oy {
                0 => {}
                1 => sums.row_group::<BLOCK, 1>(oy, out),
                2 => sums.row_group::<BLOCK, 2>(oy, out),
                _ => sums.row_group::<BLOCK, 3>(oy, out),
            }
        }
    }
}

/// What every group of output rows of one output channel reads: [`Plan::rows`]' arguments.
struct Sums<'a> {
    plan: &'a Plan,
    reads: &'a [usize],
    taps: &'a [f32],
    phases: &'a [f32],
    init: f32,
    /// The first output row `out` holds.
    first: usize,
    avx2: bool,
}

impl Sums<'_> {
    /// Output rows `oy..oy + R`, `W` columns at a time.
    #[inline(always)]
    fn row_group<const W: usize, const R: usize>(&self, oy: usize, out: &mut [f32]) {
        let plan = self.plan;
        let ow = plan.geometry.output_hw.1;
        let step = plan.geometry.stride.0 * plan.row_len;
        let rows = &mut out[(oy - self.first) * ow..][..R * ow];
        // SAFETY (the calls below): `Plan::new` sized the phases (checked in `accumulate`) so that
        // every read of output row oy + r < oh, `(oy + r) * step + read + column + W` with
        // column < ow rounded up to a BLOCK, is in bounds.
        let at = unsafe { self.phases.as_ptr().add(oy * step) };
        // A plain loop: `step_by(..).for_each` calls a `fold` that is not inlined, so it would be
        // compiled for the baseline instruction set, not the caller's.
        let mut column = 0;
        while column < ow {
            unsafe { sum_columns::<W, R>(self.reads, self.taps, at, step, self.init, column, rows, self.avx2) };
            column += W;
        }
    }
}

/// How a convolution's stored input values become the f32 its sums read.
pub(crate) trait Values<T: Copy> {
    fn value(&self, x: T) -> f32;

    /// One input row (the first `w` values of `rest`, which runs on to the end of the input)
    /// split into `split` as [`split_row`] does, for strides 1 and 2, eight values at a time;
    /// zeros past each phase's last value, up to a multiple of eight (within `len`, see
    /// [`Plan::new`]).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn split_row_avx2(&self, rest: &[T], w: usize, sw: usize, split: &mut [f32], margin: usize, len: usize);
}

/// Quantized inputs: int8 (`signed`) or uint8 bytes, less the zero point.
pub(crate) struct Bytes {
    pub signed: bool,
    pub x_zero: i32,
}

impl Values<u8> for Bytes {
    #[inline(always)]
    fn value(&self, x: u8) -> f32 {
        (if self.signed { x as i8 as i32 } else { x as i32 } - self.x_zero) as f32
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn split_row_avx2(&self, rest: &[u8], w: usize, sw: usize, split: &mut [f32], margin: usize, len: usize) {
        // SAFETY: as this function's.
        unsafe { avx2::bytes_row(rest, w, sw, self, split, margin, len) }
    }
}

/// Float inputs, as they are.
pub(crate) struct Floats;

impl Values<f32> for Floats {
    #[inline(always)]
    fn value(&self, x: f32) -> f32 {
        x
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn split_row_avx2(&self, rest: &[f32], w: usize, sw: usize, split: &mut [f32], margin: usize, len: usize) {
        // SAFETY: as this function's.
        unsafe { avx2::floats_row(&rest[..w], sw, split, margin, len) }
    }
}

/// One input row split into its stride's phases: `split` holds `sw` phases of `len` values,
/// the row's values start at index `margin` of each.
#[inline(always)]
fn split_row<T: Copy>(row: &[T], sw: usize, value: impl Fn(T) -> f32, split: &mut [f32], margin: usize, len: usize) {
    let w = row.len();
    if sw == 1 {
        // Contiguous: a plain loop the compiler vectorises (step_by(1) is not one).
        let dst = &mut split[margin..][..w];
        dst.iter_mut().zip(row).for_each(|(d, &x)| *d = value(x));
    } else if sw == 2 {
        // Even and odd columns from pairs: a de-interleave the compiler vectorises (step_by(2)
        // stays scalar).
        let (even, odd) = split.split_at_mut(len);
        let (even, odd) = (&mut even[margin..], &mut odd[margin..]);
        for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
            (*e, *o) = (value(pair[0]), value(pair[1]));
        }
        if w % 2 == 1 {
            even[w / 2] = value(row[w - 1]);
        }
    } else {
        for p in 0..sw {
            let dst = &mut split[p * len + margin..];
            dst.iter_mut().zip(row.iter().skip(p).step_by(sw)).for_each(|(d, &x)| *d = value(x));
        }
    }
}

/// Output rows summed together: each row's sums are a chain of dependent multiply-adds (as long
/// as the kernel has taps), and one chain at a time waits on the adder's latency (4 cycles on
/// recent x86-64 and Arm cores) at every tap. Four rows of two registers are eight independent
/// chains that share each tap's broadcast and read offset.
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
    use crate::ops::avx2::first_lanes;
    use std::arch::x86_64::*;

    /// [`first_lanes`] as a float mask.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes(n: usize) -> __m256 {
        _mm256_castsi256_ps(first_lanes(n))
    }

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

    /// [`super::Values::split_row_avx2`] for bytes: 8 (stride 1) or 16 (stride 2, split into
    /// even and odd bytes by one shuffle) at a time, widened to i32, less the zero point,
    /// converted, the lanes past the row masked to zero. Reads past the row (the next row's
    /// bytes, masked) where `rest` has them, else from a copy padded with zeros.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)] // inlined into the split's loop
    pub(super) unsafe fn bytes_row(
        rest: &[u8],
        w: usize,
        sw: usize,
        values: &super::Bytes,
        split: &mut [f32],
        margin: usize,
        len: usize,
    ) {
        let (zero, signed) = (_mm256_set1_epi32(values.x_zero), values.signed);
        let floats = |bytes: __m128i| -> __m256 {
            let ints = if signed { _mm256_cvtepi8_epi32(bytes) } else { _mm256_cvtepu8_epi32(bytes) };
            _mm256_cvtepi32_ps(_mm256_sub_epi32(ints, zero))
        };
        // The last bytes, fewer than a whole load: past the row where `rest` goes on (masked
        // out), else from a copy padded with zeros.
        let load = |at: usize| -> __m128i {
            if at + 16 <= rest.len() {
                // SAFETY: 16 bytes of `rest` from `at`.
                unsafe { _mm_loadu_si128(rest.as_ptr().add(at) as *const __m128i) }
            } else {
                let mut padded = [0u8; 16];
                let n = rest.len().min(at + 16) - at;
                padded[..n].copy_from_slice(&rest[at..][..n]);
                // SAFETY: 16 bytes of `padded`.
                unsafe { _mm_loadu_si128(padded.as_ptr() as *const __m128i) }
            }
        };
        let count = if sw == 1 { w } else { w.div_ceil(2) };
        assert!(w <= rest.len() && margin + count.next_multiple_of(8) <= len && sw * len <= split.len(), "split_row");
        // SAFETY (the stores): chunks of 8 from index k < count of a phase, within its `len`
        // (checked above).
        let (even_at, odd_at) = unsafe { (split.as_mut_ptr().add(margin), split.as_mut_ptr().add(len + margin)) };
        let mut k = 0;
        if sw == 1 {
            // Whole chunks: 8 bytes of the row, nothing to mask.
            while k + 8 <= w {
                // SAFETY: bytes k..k + 8 of the row; the store as above.
                unsafe {
                    _mm256_storeu_ps(even_at.add(k), floats(_mm_loadl_epi64(rest.as_ptr().add(k) as *const __m128i)))
                };
                k += 8;
            }
            if k < w {
                let v = _mm256_and_ps(floats(load(k)), lanes(w - k));
                // SAFETY: as above.
                unsafe { _mm256_storeu_ps(even_at.add(k), v) };
            }
        } else {
            let odd = w / 2;
            let deinterleave = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
            while k < count {
                let whole = 2 * k + 16 <= w;
                // SAFETY: 16 bytes of the row from 2k when `whole`.
                let bytes = if whole {
                    unsafe { _mm_loadu_si128(rest.as_ptr().add(2 * k) as *const __m128i) }
                } else {
                    load(2 * k)
                };
                let bytes = _mm_shuffle_epi8(bytes, deinterleave);
                let (mut even, mut odd_values) = (floats(bytes), floats(_mm_srli_si128::<8>(bytes)));
                if !whole {
                    even = _mm256_and_ps(even, lanes(count - k));
                    odd_values = _mm256_and_ps(odd_values, lanes(odd.saturating_sub(k)));
                }
                // SAFETY: as above.
                unsafe {
                    _mm256_storeu_ps(even_at.add(k), even);
                    _mm256_storeu_ps(odd_at.add(k), odd_values);
                }
                k += 8;
            }
        }
    }

    /// [`super::Values::split_row_avx2`] for floats: masked loads (nothing read past `row`),
    /// de-interleaved by shuffles at stride 2.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn floats_row(row: &[f32], sw: usize, split: &mut [f32], margin: usize, len: usize) {
        let w = row.len();
        let count = w.div_ceil(sw);
        assert!(margin + count.next_multiple_of(8) <= len && sw * len <= split.len(), "split_row");
        // Eight values from `at`: a plain load where the row has them all, else a masked one
        // (nothing read past the row; the lanes past it zero).
        let load = |at: usize| {
            if at + 8 <= w {
                // SAFETY: 8 values of the row from `at`.
                unsafe { _mm256_loadu_ps(row.as_ptr().add(at)) }
            } else {
                let mask = first_lanes(w.saturating_sub(at));
                // SAFETY: the masked lanes are the row's, in bounds; the others are not read.
                unsafe { _mm256_maskload_ps(row.as_ptr().add(at.min(w)), mask) }
            }
        };
        // SAFETY (the stores): chunks of 8 from index k < count of a phase, within its `len`
        // (checked above).
        let (even_at, odd_at) = unsafe { (split.as_mut_ptr().add(margin), split.as_mut_ptr().add(len + margin)) };
        if sw == 1 {
            for k in (0..w).step_by(8) {
                // SAFETY: as above.
                unsafe { _mm256_storeu_ps(even_at.add(k), load(k)) };
            }
        } else {
            // Within 128-bit lanes [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pieces in order.
            let order = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
            for k in (0..count).step_by(8) {
                let (a, b) = (load(2 * k), load(2 * k + 8));
                // SAFETY: as above.
                unsafe {
                    _mm256_storeu_ps(even_at.add(k), order(_mm256_shuffle_ps::<0b10_00_10_00>(a, b)));
                    _mm256_storeu_ps(odd_at.add(k), order(_mm256_shuffle_ps::<0b11_01_11_01>(a, b)));
                }
            }
        }
    }
}
