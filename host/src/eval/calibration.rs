//! Calibrated confidence: the table's softmax temperature fitted on held-out photos, and how well
//! the confidences then mean what they say (expected calibration error, reliability diagram).
//!
//! The device turns distances into confidences as `exp(-d_i / T) / sum_j exp(-d_j / T)` over all
//! species (`sporeprint_shared::classify`). `T` is fitted here by maximum likelihood: the value
//! minimising the mean negative log-probability of each held-out photo's true species. The
//! log-likelihood is concave in `1 / T`, so a golden-section search over `ln T` finds it.

use serde::{Deserialize, Serialize};

/// One held-out photo: its distance to every species' prototype and the index of its own.
#[derive(Clone, Debug)]
pub struct Scored {
    pub distances: Vec<f32>,
    pub label: usize,
}

/// Where the search for `T` looks (distances of unit vectors lie in [0, 2]).
pub const TEMPERATURE_RANGE: (f64, f64) = (1e-3, 10.0);

/// Mean negative log-likelihood of the true species at temperature `t`.
pub fn negative_log_likelihood(photos: &[Scored], t: f64) -> f64 {
    let total: f64 = photos
        .iter()
        .map(|p| {
            let logits = p.distances.iter().map(|&d| -d as f64 / t);
            let max = logits.clone().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + logits.map(|l| (l - max).exp()).sum::<f64>().ln();
            log_sum + p.distances[p.label] as f64 / t
        })
        .sum();
    total / photos.len().max(1) as f64
}

/// The maximum-likelihood temperature, to about 1e-4 relative.
pub fn fit_temperature(photos: &[Scored]) -> f64 {
    let (mut low, mut high) = (TEMPERATURE_RANGE.0.ln(), TEMPERATURE_RANGE.1.ln());
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    let cost = |log_t: f64| negative_log_likelihood(photos, log_t.exp());
    let (mut a, mut b) = (high - golden * (high - low), low + golden * (high - low));
    let (mut cost_a, mut cost_b) = (cost(a), cost(b));
    while high - low > 1e-4 {
        if cost_a < cost_b {
            high = b;
            (b, cost_b) = (a, cost_a);
            a = high - golden * (high - low);
            cost_a = cost(a);
        } else {
            low = a;
            (a, cost_a) = (b, cost_b);
            b = low + golden * (high - low);
            cost_b = cost(b);
        }
    }
    ((low + high) / 2.0).exp()
}

/// The top answer's confidence at temperature `t` and whether it is the true species.
pub fn top_answers(photos: &[Scored], t: f64) -> Vec<(f64, bool)> {
    photos
        .iter()
        .map(|p| {
            let (best, best_d) = p
                .distances
                .iter()
                .enumerate()
                .fold((0, f32::INFINITY), |(bi, bd), (i, &d)| if d < bd { (i, d) } else { (bi, bd) });
            let sum: f64 = p.distances.iter().map(|&d| (-(d - best_d) as f64 / t).exp()).sum();
            (1.0 / sum, best == p.label)
        })
        .collect()
}

/// Confidences against accuracy, in equal-width confidence bins.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reliability {
    pub bins: Vec<Bin>,
    /// Expected calibration error: the photo-weighted mean of |accuracy - confidence| over bins.
    pub ece: f64,
    pub photos: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub photos: usize,
    /// Mean confidence of its photos (0 when empty).
    pub confidence: f64,
    /// Share of its photos answered right (0 when empty).
    pub accuracy: f64,
}

/// Bins used for the expected calibration error (the usual choice, Guo et al. 2017).
pub const ECE_BINS: usize = 10;

/// The reliability of `answers` ((confidence, right) pairs) in `bins` equal-width bins.
pub fn reliability(answers: &[(f64, bool)], bins: usize) -> Reliability {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(confidence, right) in answers {
        let at = ((confidence * bins as f64) as usize).min(bins - 1);
        sums[at].0 += 1;
        sums[at].1 += confidence;
        sums[at].2 += usize::from(right);
    }
    let total = answers.len().max(1) as f64;
    let bins: Vec<Bin> = sums
        .iter()
        .enumerate()
        .map(|(i, &(photos, confidence, right))| {
            let n = photos.max(1) as f64;
            Bin {
                lower: i as f64 / bins as f64,
                upper: (i + 1) as f64 / bins as f64,
                photos,
                confidence: confidence / n,
                accuracy: right as f64 / n,
            }
        })
        .collect();
    let ece = bins.iter().map(|b| b.photos as f64 / total * (b.accuracy - b.confidence).abs()).sum();
    Reliability { bins, ece, photos: answers.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Photos whose true species is drawn from the softmax at `t` of random distances: the
    /// temperature that generated them is the one to find.
    fn synthetic(t: f64, photos: usize, species: usize, seed: u64) -> Vec<Scored> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..photos)
            .map(|_| {
                let distances: Vec<f32> = (0..species).map(|_| rng.random_range(0.3..1.5)).collect();
                let weights: Vec<f64> = distances.iter().map(|&d| (-d as f64 / t).exp()).collect();
                let mut draw = rng.random_range(0.0..weights.iter().sum::<f64>());
                let label = weights
                    .iter()
                    .position(|&w| {
                        draw -= w;
                        draw <= 0.0
                    })
                    .unwrap_or(species - 1);
                Scored { distances, label }
            })
            .collect()
    }

    #[test]
    fn the_generating_temperature_is_found_and_is_calibrated() {
        for t in [0.05, 0.1, 0.3] {
            let photos = synthetic(t, 4000, 20, 1);
            let fitted = fit_temperature(&photos);
            assert!((fitted / t - 1.0).abs() < 0.08, "fitted {fitted} for {t}");
            let at_fit = reliability(&top_answers(&photos, fitted), ECE_BINS);
            assert!(at_fit.ece < 0.03, "{t}: ece {}", at_fit.ece);
            // Ten times too sharp is overconfident, and the error says so.
            let sharp = reliability(&top_answers(&photos, t / 10.0), ECE_BINS);
            assert!(sharp.ece > 3.0 * at_fit.ece + 0.05, "{t}: {} vs {}", sharp.ece, at_fit.ece);
            assert!(negative_log_likelihood(&photos, fitted) < negative_log_likelihood(&photos, t / 10.0));
        }
    }

    #[test]
    fn reliability_bins_count_and_average_what_falls_in_them() {
        let answers = [(0.05, false), (0.15, true), (0.95, true), (0.95, false), (1.0, true)];
        let r = reliability(&answers, 10);
        assert_eq!(r.bins.iter().map(|b| b.photos).sum::<usize>(), 5);
        let last = &r.bins[9];
        assert_eq!(last.photos, 3, "1.0 falls in the last bin");
        assert!((last.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!((last.confidence - (0.95 + 0.95 + 1.0) / 3.0).abs() < 1e-12);
        // |0 - .05| + |1 - .15| + 3 x |2/3 - .9667|, weighted by 1/5 each.
        let expected = (0.05 + 0.85 + 3.0 * (2.9 / 3.0 - 2.0 / 3.0)) / 5.0;
        assert!((r.ece - expected).abs() < 1e-12, "{} vs {expected}", r.ece);
    }
}
