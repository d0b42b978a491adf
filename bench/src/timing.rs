//! Repeated measurements and their spread.

use serde::Serialize;
use std::time::Instant;

/// Median and spread of repeated timings, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Spread {
    pub median_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    pub runs: usize,
}

impl Spread {
    /// The spread of `samples` (milliseconds; at least one).
    pub fn of(mut samples: Vec<f64>) -> Spread {
        assert!(!samples.is_empty(), "a spread needs at least one sample");
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let (p10_ms, p90_ms, runs) = (at(0.1), at(0.9), samples.len());
        // The device's own median, so `sporeprint-device bench` and this report agree.
        Spread { median_ms: sporeprint_device::bench::median(samples), p10_ms, p90_ms, runs }
    }

    /// `median (p10-p90)` for a table cell.
    pub fn cell(&self) -> String {
        format!("{} ({}-{})", ms(self.median_ms), ms(self.p10_ms), ms(self.p90_ms))
    }
}

/// Milliseconds with the digits that matter at that size.
pub fn ms(value: f64) -> String {
    match value {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v if v >= 0.1 => format!("{v:.2}"),
        v => format!("{v:.4}"),
    }
}

/// Runs `f` `warmup` times untimed, then `runs` times timed.
pub fn measure<E>(warmup: usize, runs: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<Spread, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        f()?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Spread::of(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_deciles_of_known_samples() {
        let spread = Spread::of((1..=11).rev().map(f64::from).collect());
        assert_eq!((spread.median_ms, spread.p10_ms, spread.p90_ms, spread.runs), (6.0, 2.0, 10.0, 11));
        assert_eq!(Spread::of(vec![4.0, 1.0, 3.0, 2.0]).median_ms, 2.5);
    }

    #[test]
    fn cells_keep_the_significant_digits() {
        assert_eq!(ms(185.64), "186");
        assert_eq!(ms(28.16), "28.2");
        assert_eq!(ms(0.52), "0.52");
        assert_eq!(ms(0.0312), "0.0312");
    }
}
