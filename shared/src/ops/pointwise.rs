//! [`QPointwise`]: a quantized 1x1 convolution (a matrix product over the channels) with the
//! requantization fused; the rule that swaps tract's quantized `EinSum` for it.

use super::{Requantization, input_bytes, output_range, output_tensor, quantized_constants, raw_i32, requantize};
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
    /// The weights less their zero point.
    pub taps: Taps,
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

/// A 1x1 layer's weights less their zero point (each fits in 16 bits: 8-bit weights less an
/// 8-bit zero point), packed once, when the op is made, for the x86-64 kernels:
/// - `pairs`, as AVX2's `vpmaddwd` reads them: input channels 2q and 2q + 1 of an output
///   channel in one i32 (low half, high half), `[output channels][pairs]`, the output channels
///   padded with zeros to a multiple of 4 (an odd last input channel paired with a zero);
/// - `quads`, when every weight fits in 8 bits (symmetric int8 weights, what export writes), as
///   VNNI's `vpdpbusd` reads them: input channels 4q..4q + 3 in one i32 (lowest byte first),
///   `[output channels][quads]`, the output channels padded to a multiple of 8; and `sums`, each
///   output channel's weights added up (the input's zero point times it is what the unsigned
///   inputs add).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Taps {
    inputs: usize,
    outputs: usize,
    pairs: Vec<i32>,
    quads: Option<Vec<i32>>,
    sums: Vec<i32>,
}

impl Taps {
    /// `plain`: `[output_channels, input_channels]`, row-major. Panics unless every value fits
    /// in 16 bits and the length is `input_channels` times a whole number of output channels.
    pub fn new(plain: &[i32], input_channels: usize) -> Taps {
        assert!(input_channels > 0 && plain.len().is_multiple_of(input_channels), "Taps: {} values", plain.len());
        let (inputs, outputs) = (input_channels, plain.len() / input_channels);
        let (pair_count, quad_count) = (inputs.div_ceil(2), inputs.div_ceil(4));
        let mut pairs = vec![0i32; outputs.next_multiple_of(AVX2_CHANNELS) * pair_count];
        let bytes = plain.iter().all(|&t| i8::try_from(t).is_ok());
        let mut quads = bytes.then(|| vec![0i32; outputs.next_multiple_of(VNNI_CHANNELS) * quad_count]);
        for (o, row) in plain.chunks_exact(inputs).enumerate() {
            for (c, &t) in row.iter().enumerate() {
                let t = i16::try_from(t).expect("Taps: a weight less its zero point beyond 16 bits");
                pairs[o * pair_count + c / 2] |= ((t as u16 as u32) << (16 * (c % 2))) as i32;
                if let Some(quads) = &mut quads {
                    quads[o * quad_count + c / 4] |= ((t as u8 as u32) << (8 * (c % 4))) as i32;
                }
            }
        }
        let sums = plain.chunks_exact(inputs).map(|row| row.iter().sum()).collect();
        Taps { inputs, outputs, pairs, quads, sums }
    }

    /// The weight of input channel `i` in output channel `o`.
    #[inline(always)]
    pub fn get(&self, o: usize, i: usize) -> i32 {
        (self.pairs[o * self.pair_count() + i / 2] >> (16 * (i % 2))) as i16 as i32
    }

    /// Whether every weight fits in 8 bits (what the VNNI kernel needs).
    pub fn are_bytes(&self) -> bool {
        self.quads.is_some()
    }

    /// Input channel pairs per output channel.
    fn pair_count(&self) -> usize {
        self.inputs.div_ceil(2)
    }
}

/// Output channels per tile of the AVX2 and the VNNI kernels, to which [`Taps`] pads.
const AVX2_CHANNELS: usize = 4;
const VNNI_CHANNELS: usize = 8;

impl QPointwise {
    /// Multiplies one image. `input` holds the stored bytes of a `[input_channels, pixels]`
    /// tensor, int8 when `signed`, else uint8; `out` receives the output's (int8 or uint8, per
    /// `output`). CPUs with AVX-512 VNNI get [`vnni::multiply`] when the weights are bytes,
    /// other AVX2 ones [`avx2::multiply`], the others [`QPointwise::run_portable`]: the same
    /// integers, so the same bytes, on each.
    pub fn run(&self, input: &[u8], signed: bool, out: &mut [u8]) {
        self.check_sizes(input, out);
        #[cfg(target_arch = "x86_64")]
        {
            if self.taps.are_bytes() && vnni::available() {
                // SAFETY: the CPU has what the kernel needs, checked on the line above.
                return unsafe { vnni::multiply(self, input, signed, out) };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked on the line above.
                return unsafe { avx2::multiply(self, input, signed, out) };
            }
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
        assert_eq!(
            (self.taps.inputs, self.taps.outputs),
            (self.input_channels, self.output_channels),
            "QPointwise: weights"
        );
    }

    /// The input values less their zero point, `[input_channels, pixels]` (they fit in 16 bits).
    fn values(&self, input: &[u8], signed: bool) -> Vec<i16> {
        input.iter().map(|&b| value(b, signed, self.x_zero)).collect()
    }
}

/// One stored input byte less the zero point.
#[inline(always)]
fn value(b: u8, signed: bool, x_zero: i32) -> i16 {
    (if signed { b as i8 as i16 } else { b as i16 }) - x_zero as i16
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
                    let tap = op.taps.get(o0 + j, i);
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
    use super::{AVX2_CHANNELS as CHANNELS, QPointwise, output_range, value};
    use core::arch::x86_64::*;
    use std::vec::Vec;

    /// Pixels per step: two registers of eight 32-bit accumulators for each of 4 channels.
    const PIXELS: usize = 16;

    /// `input`: the stored bytes of `[input_channels, pixels]`, int8 when `signed`, else uint8.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn multiply(op: &QPointwise, input: &[u8], signed: bool, out: &mut [u8]) {
        let (outputs, pixels) = (op.output_channels, op.pixels);
        let range = output_range(op.output);
        // The input values less their zero point, channels 2q and 2q + 1 interleaved pixel by
        // pixel, in blocks of 16 pixels: [pixel blocks][pairs][16 pixels][2], so that a block's
        // products read one contiguous run. An odd last channel is paired with zeros, the last
        // block padded with zeros.
        let pairs = op.taps.pair_count();
        let block_len = PIXELS * 2;
        let mut interleaved = vec![0i16; pixels.div_ceil(PIXELS) * pairs * block_len];
        let mut rows = input.chunks_exact(pixels);
        for q in 0..pairs {
            let (even, odd) = (rows.next().expect("pairs = ceil(input channels / 2)"), rows.next());
            for (b, even) in even.chunks(PIXELS).enumerate() {
                let dst = &mut interleaved[(b * pairs + q) * block_len..][..block_len];
                match odd {
                    Some(odd) => {
                        let odd = &odd[b * PIXELS..][..even.len()];
                        for ((d, &x), &y) in dst.chunks_exact_mut(2).zip(even).zip(odd) {
                            d[0] = value(x, signed, op.x_zero);
                            d[1] = value(y, signed, op.x_zero);
                        }
                    }
                    None => {
                        for (d, &x) in dst.chunks_exact_mut(2).zip(even) {
                            d[0] = value(x, signed, op.x_zero);
                        }
                    }
                }
            }
        }
        let taps = &op.taps.pairs;
        let mut bias: Vec<i32> = op.bias.clone();
        bias.resize(outputs.next_multiple_of(CHANNELS), 0);

        for p0 in (0..pixels).step_by(PIXELS) {
            let valid = PIXELS.min(pixels - p0);
            for o0 in (0..outputs).step_by(CHANNELS) {
                // A last block of at most 8 pixels (Lite0's 7x7 layers have 49) needs only its
                // low register: half the work.
                let half = valid <= PIXELS / 2;
                // SAFETY: AVX2 is enabled for this function; every load reads 16 values of
                // `interleaved` in block p0 / 16's run of pairs * 32 values, or one of `taps`'
                // (o0 + j) * pairs + q < padded outputs * pairs, in bounds. Pointers, not
                // indexing: the bounds checks were a third of the loop's instructions.
                let acc = unsafe {
                    let mut acc = [[_mm256_setzero_si256(); 2]; CHANNELS];
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = [_mm256_set1_epi32(bias[o0 + j]); 2];
                    }
                    let run = interleaved.as_ptr().add(p0 / PIXELS * pairs * block_len);
                    let rows: [*const i32; CHANNELS] = std::array::from_fn(|j| taps.as_ptr().add((o0 + j) * pairs));
                    for q in 0..pairs {
                        let at = run.add(q * block_len);
                        let low = _mm256_loadu_si256(at as *const __m256i);
                        if half {
                            for (a, row) in acc.iter_mut().zip(rows) {
                                let w = _mm256_set1_epi32(*row.add(q));
                                a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(low, w));
                            }
                        } else {
                            let high = _mm256_loadu_si256(at.add(16) as *const __m256i);
                            for (a, row) in acc.iter_mut().zip(rows) {
                                let w = _mm256_set1_epi32(*row.add(q));
                                a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(low, w));
                                a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(high, w));
                            }
                        }
                    }
                    acc
                };
                for (j, a) in acc.iter().enumerate().take(outputs - o0) {
                    let o = o0 + j;
                    let bytes = requantize(a, op.multiplier[o], op.y_zero, range);
                    let out = &mut out[o * pixels + p0..][..valid];
                    if valid == PIXELS {
                        // SAFETY: `out` holds 16 bytes, one unaligned 16-byte store.
                        unsafe { _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, bytes) };
                    } else {
                        let mut block = [0u8; PIXELS];
                        // SAFETY: `block` holds 16 bytes.
                        unsafe { _mm_storeu_si128(block.as_mut_ptr() as *mut __m128i, bytes) };
                        out.copy_from_slice(&block[..valid]);
                    }
                }
            }
        }
    }

    /// 16 accumulators (two registers) requantized as [`super::requantize`] does, to the same
    /// bytes ([`crate::ops::avx2::bytes`]).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn requantize(acc: &[__m256i; 2], multiplier: f32, y_zero: i32, range: (i32, i32)) -> __m128i {
        let m = _mm256_set1_ps(multiplier);
        let scaled = [_mm256_mul_ps(_mm256_cvtepi32_ps(acc[0]), m), _mm256_mul_ps(_mm256_cvtepi32_ps(acc[1]), m)];
        crate::ops::avx2::bytes(scaled, y_zero, range)
    }
}

/// The kernel for x86-64 CPUs with AVX-512 VNNI (Intel since Cascade Lake, AMD since Zen 4):
/// `vpdpbusd` multiplies 64 unsigned bytes by 64 signed ones and adds each four products into
/// a 32-bit lane, so four input channels and sixteen pixels go through one instruction, four
/// times `vpmaddwd`'s work. It takes the inputs as unsigned bytes (int8 ones shifted by 128, the
/// zero point with them) and the weights as signed ones: symmetric int8 weights, which export
/// writes; [`Taps`] says whether a layer's fit.
#[cfg(target_arch = "x86_64")]
pub mod vnni {
    use super::{QPointwise, VNNI_CHANNELS as CHANNELS, output_range};
    use crate::ops::requantized_bounds;
    use core::arch::x86_64::*;
    use std::vec::Vec;

    /// Pixels per step: two registers of sixteen 32-bit accumulators for each of 8 channels.
    const PIXELS: usize = 32;

    /// Whether this CPU runs [`multiply`].
    pub fn available() -> bool {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
    }

    /// `input`: the stored bytes of `[input_channels, pixels]`, int8 when `signed`, else uint8.
    /// Panics unless the weights are bytes ([`super::Taps::are_bytes`]).
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512 VNNI ([`available`]).
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn multiply(op: &QPointwise, input: &[u8], signed: bool, out: &mut [u8]) {
        let taps = op.taps.quads.as_deref().expect("vnni::multiply: weights beyond 8 bits");
        let (inputs, outputs, pixels) = (op.input_channels, op.output_channels, op.pixels);
        let range = output_range(op.output);
        let quads = inputs.div_ceil(4);
        let block_len = PIXELS * 4;
        let blocks = pixels.div_ceil(PIXELS);
        let mut x = vec![0u8; blocks * quads * block_len];
        interleave(input, inputs, pixels, signed, &mut x);
        // Unsigned inputs u = x + 128 (int8) or x (uint8) read u - zero: the zero point's share
        // of every sum is zero times the channel's weights, taken off where the sum starts.
        let x_zero = op.x_zero + if signed { 128 } else { 0 };
        let mut init: Vec<i32> = (0..outputs).map(|o| op.bias[o] - x_zero * op.taps.sums[o]).collect();
        init.resize(outputs.next_multiple_of(CHANNELS), 0);

        let bounds = requantized_bounds(op.y_zero, range);
        for b in 0..blocks {
            let (p0, run) = (b * PIXELS, &x[b * quads * block_len..][..quads * block_len]);
            let valid = PIXELS.min(pixels - p0);
            for o0 in (0..outputs).step_by(CHANNELS) {
                let taps = &taps[o0 * quads..][..CHANNELS * quads];
                // SAFETY: AVX-512F and VNNI are enabled for this function; every load reads 64
                // bytes of `run` at q * 128 or q * 128 + 64 for q < quads, or one of `taps`' j *
                // quads + q < CHANNELS * quads, in bounds. Pointers, not indexing, as in the AVX2
                // kernel.
                let acc = unsafe {
                    let mut acc = [[_mm512_setzero_si512(); 2]; CHANNELS];
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = [_mm512_set1_epi32(init[o0 + j]); 2];
                    }
                    let rows: [*const i32; CHANNELS] = std::array::from_fn(|j| taps.as_ptr().add(j * quads));
                    for q in 0..quads {
                        let at = run.as_ptr().add(q * block_len);
                        let low = _mm512_loadu_si512(at as *const _);
                        let high = _mm512_loadu_si512(at.add(64) as *const _);
                        for (a, row) in acc.iter_mut().zip(rows) {
                            let w = _mm512_set1_epi32(*row.add(q));
                            a[0] = _mm512_dpbusd_epi32(a[0], low, w);
                            a[1] = _mm512_dpbusd_epi32(a[1], high, w);
                        }
                    }
                    acc
                };
                for (j, a) in acc.iter().enumerate().take(outputs - o0) {
                    let o = o0 + j;
                    let m = op.multiplier[o];
                    let bytes = [requantize(a[0], m, op.y_zero, bounds), requantize(a[1], m, op.y_zero, bounds)];
                    let out = &mut out[o * pixels + p0..][..valid];
                    if valid == PIXELS {
                        // SAFETY: `out` holds 32 bytes, two unaligned 16-byte stores.
                        unsafe {
                            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, bytes[0]);
                            _mm_storeu_si128(out.as_mut_ptr().add(16) as *mut __m128i, bytes[1]);
                        }
                    } else {
                        let mut block = [0u8; PIXELS];
                        // SAFETY: `block` holds 32 bytes, as above.
                        unsafe {
                            _mm_storeu_si128(block.as_mut_ptr() as *mut __m128i, bytes[0]);
                            _mm_storeu_si128(block.as_mut_ptr().add(16) as *mut __m128i, bytes[1]);
                        }
                        out.copy_from_slice(&block[..valid]);
                    }
                }
            }
        }
    }

    /// 16 accumulators requantized as [`super::requantize`] does, to the same bytes, in
    /// registers: the bounds clamp before rounding ([`requantized_bounds`]), rounding is the
    /// CPU's own (`vcvtps2dq` rounds half to even, the default mode), and a value clamped to the
    /// output's range has its stored byte (uint8, or int8's two's complement) as its low byte,
    /// which the narrowing move keeps.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn requantize(acc: __m512i, multiplier: f32, y_zero: i32, (low, high): (f32, f32)) -> __m128i {
        let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(multiplier));
        let clamped = _mm512_min_ps(_mm512_max_ps(scaled, _mm512_set1_ps(low)), _mm512_set1_ps(high));
        _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(clamped), _mm512_set1_epi32(y_zero)))
    }

    /// `input` (`[inputs, pixels]` bytes) as [`multiply`] reads it, into `x` (zeros): input
    /// channels 4q..4q + 3 interleaved pixel by pixel, in blocks of 32 pixels, `[pixel
    /// blocks][quads][32 pixels][4]`, as unsigned bytes (int8 ones shifted by 128). Channels
    /// past the last and pixels past the last block stay zero: their weights are zero, their
    /// sums never stored.
    #[target_feature(enable = "avx512f")]
    fn interleave(input: &[u8], inputs: usize, pixels: usize, signed: bool, x: &mut [u8]) {
        let quads = inputs.div_ceil(4);
        let block_len = PIXELS * 4;
        let flip = if signed { 0x80u8 } else { 0 };
        let zeros = vec![0u8; pixels];
        for q in 0..quads {
            // Rows past the last input channel read zeros (flipped like the others: their
            // weights are zero either way).
            let rows: [&[u8]; 4] = std::array::from_fn(|k| {
                let c = 4 * q + k;
                if c < inputs { &input[c * pixels..][..pixels] } else { &zeros[..] }
            });
            // 16 pixels of the four rows at a time: bytes a, b, c, d of each pixel side by
            // side (unpack bytes, then pairs), 64 bytes out.
            let mut p = 0;
            while p + 16 <= pixels {
                let at = (p / PIXELS * quads + q) * block_len + p % PIXELS * 4;
                // SAFETY: 16 bytes of each row at p, p + 16 <= pixels; 64 bytes of `x` at `at`,
                // inside this block's quad (p % 32 is 0 or 16).
                unsafe {
                    let flip = _mm_set1_epi8(flip as i8);
                    let load = |row: &[u8]| _mm_xor_si128(_mm_loadu_si128(row.as_ptr().add(p) as *const _), flip);
                    let (a, b, c, d) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
                    let (ab_low, ab_high) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
                    let (cd_low, cd_high) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
                    let dst = x.as_mut_ptr().add(at) as *mut __m128i;
                    _mm_storeu_si128(dst, _mm_unpacklo_epi16(ab_low, cd_low));
                    _mm_storeu_si128(dst.add(1), _mm_unpackhi_epi16(ab_low, cd_low));
                    _mm_storeu_si128(dst.add(2), _mm_unpacklo_epi16(ab_high, cd_high));
                    _mm_storeu_si128(dst.add(3), _mm_unpackhi_epi16(ab_high, cd_high));
                }
                p += 16;
            }
            for p in p..pixels {
                let at = (p / PIXELS * quads + q) * block_len + p % PIXELS * 4;
                for (k, row) in rows.iter().enumerate() {
                    x[at + k] = row[p] ^ flip;
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
    let (ins, _) = einsum.axes.to_strs();
    let (bias_axes, kernel) = (ins[2].chars().collect::<Vec<char>>(), ins[1].chars().collect::<Vec<char>>());
    // Zero points and scales are scalars, or (the kernel's) vectors.
    if !(bias_axes.is_empty() || kernel.get(..1) == Some(&bias_axes[..]))
        || ins[3..].iter().any(|s| s.chars().count() > 1)
    {
        return Ok(None);
    }
    let Some(consts) = quantized_constants(model, node) else { return Ok(None) };
    let weights = &consts[0];
    let Some(Layer { inputs, outputs, pixels, output_shape }) = layer(model, node, einsum, weights)? else {
        return Ok(None);
    };
    let Some(q) = Requantization::read(&consts[1..], outputs)? else { return Ok(None) };
    let plain = q.taps(&raw_i32(weights)?);
    if plain.iter().any(|&t| i16::try_from(t).is_err()) {
        return Ok(None);
    }
    let op = QPointwise {
        input_channels: inputs,
        output_channels: outputs,
        pixels,
        x_zero: q.x_zero,
        taps: Taps::new(&plain, inputs),
        bias: q.bias,
        multiplier: q.multiplier,
        y_zero: q.y_zero,
        output,
        output_shape,
    };
    Ok(Some(TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?))
}

/// A 1x1 layer's sizes, as [`layer`] reads them.
pub(crate) struct Layer {
    pub inputs: usize,
    pub outputs: usize,
    /// Height x width.
    pub pixels: usize,
    /// The output's shape as tract declared it (with or without a batch axis of 1).
    pub output_shape: Vec<usize>,
}

/// When `einsum` (whose kernel is `weights`) is a 1x1 convolution channels first, batch 1
/// (input `[n] c h w`, kernel `o c`, output `[n] o h w`, concrete shapes): its sizes. The
/// quantized and the float rule both ask.
pub(crate) fn layer(
    model: &TypedModel,
    node: &TypedNode,
    einsum: &EinSum,
    weights: &Tensor,
) -> TractResult<Option<Layer>> {
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
    let input = model.outlet_fact(node.inputs[0])?;
    let result_fact = model.outlet_fact(node.id.into())?;
    let (Some(in_shape), Some(out_shape)) = (input.shape.as_concrete(), result_fact.shape.as_concrete()) else {
        return Ok(None);
    };
    if !pointwise || weights.rank() != 2 {
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
    Ok(Some(Layer { inputs, outputs, pixels, output_shape: out_shape.to_vec() }))
}
