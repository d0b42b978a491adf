//! Raspberry Pi latency ESTIMATES: this machine's measured efficiency (latency as a multiple of
//! its own floor) carried over to a Pi's floor. Nothing here is measured on a Pi.

use serde::Serialize;

/// A Raspberry Pi's sustained f32 matrix-product rate per core, from published figures.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PiCpu {
    pub board: &'static str,
    pub core: &'static str,
    pub cores: usize,
    /// Sustained single-precision GFLOP/s of one core in a well-tuned matrix product.
    pub f32_gflops_per_core: f64,
    /// Where that figure comes from.
    pub basis: &'static str,
}

/// Cortex-A72 and A76 both issue two 128-bit NEON FMAs a cycle (16 f32 FLOP/cycle); tuned sgemm
/// kernels sustain roughly 70% of that.
pub const BOARDS: [PiCpu; 2] = [
    PiCpu {
        board: "Raspberry Pi 4 (1.8 GHz)",
        core: "Cortex-A72",
        cores: 4,
        f32_gflops_per_core: 0.7 * 16.0 * 1.8,
        basis: "16 FLOP/cycle x 1.8 GHz x 70% sustained",
    },
    PiCpu {
        board: "Raspberry Pi 5 (2.4 GHz)",
        core: "Cortex-A76",
        cores: 4,
        f32_gflops_per_core: 0.7 * 16.0 * 2.4,
        basis: "16 FLOP/cycle x 2.4 GHz x 70% sustained",
    },
];

/// Estimated single-thread latency (ms) of a model of `flops` that runs at `efficiency` (its
/// floor / its latency, as measured here) on `cpu`.
pub fn estimate_ms(cpu: &PiCpu, flops: f64, efficiency: f64) -> f64 {
    flops / (cpu.f32_gflops_per_core * 1e9) / efficiency * 1e3
}
