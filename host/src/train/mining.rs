//! Where triplets come from. The study's five offline strategies pick, for every anchor, a
//! positive (same species) and a negative (another species) from the distances between the
//! current model's embeddings of all training photos, recomputed every epoch:
//!
//! | strategy | positive | negative |
//! |---|---|---|
//! | `random` | random | random |
//! | `hard-negative-positive` | farthest | closest to the anchor |
//! | `hard-negative` | random | closest to the anchor |
//! | `semi-hard` | random | random among `d(a,p) <= d(a,n) < d(a,p) + margin`, else random |
//! | `mixed` | random | closest to the positive |
//!
//! `batch-hard` and `batch-all` mine online inside P-species x K-photo batches (see
//! [`crate::train::loss`]); they have no offline triplets. `proxy-softmax` mines nothing: it trains on
//! the same P x K batches with a softmax over learnt species proxies.

use rand::Rng;
use rand::seq::IndexedRandom;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mining {
    Random,
    HardNegativePositive,
    HardNegative,
    SemiHard,
    Mixed,
    BatchHard,
    BatchAll,
    ProxySoftmax,
}

impl Mining {
    /// Mined inside each batch rather than from whole-epoch embeddings.
    pub fn is_online(self) -> bool {
        matches!(self, Mining::BatchHard | Mining::BatchAll | Mining::ProxySoftmax)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Triplet {
    pub anchor: usize,
    pub positive: usize,
    pub negative: usize,
}

/// Pairwise distances of `n` items, row-major `n x n`.
pub struct Distances<'a> {
    pub n: usize,
    pub values: &'a [f32],
}

impl Distances<'_> {
    fn get(&self, i: usize, j: usize) -> f32 {
        self.values[i * self.n + j]
    }
}

/// One triplet per anchor that has both a positive and a negative, chosen by `strategy`.
/// Panics on an online strategy: those have no offline triplets.
pub fn mine(
    strategy: Mining,
    distances: &Distances,
    labels: &[usize],
    margin: f32,
    rng: &mut impl Rng,
) -> Vec<Triplet> {
    assert_eq!(distances.n, labels.len());
    let mut triplets = Vec::with_capacity(labels.len());
    for anchor in 0..labels.len() {
        let positives: Vec<usize> = (0..labels.len()).filter(|&i| i != anchor && labels[i] == labels[anchor]).collect();
        let negatives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != labels[anchor]).collect();
        if positives.is_empty() || negatives.is_empty() {
            continue;
        }
        let d = |i: usize| distances.get(anchor, i);
        let closest = |from: usize| -> usize {
            *negatives.iter().min_by(|&&x, &&y| distances.get(from, x).total_cmp(&distances.get(from, y))).unwrap()
        };
        let random_positive = *positives.choose(rng).unwrap();
        let (positive, negative) = match strategy {
            Mining::Random => (random_positive, *negatives.choose(rng).unwrap()),
            Mining::HardNegativePositive => {
                let farthest = *positives.iter().max_by(|&&x, &&y| d(x).total_cmp(&d(y))).unwrap();
                (farthest, closest(anchor))
            }
            Mining::HardNegative => (random_positive, closest(anchor)),
            Mining::SemiHard => {
                let dp = d(random_positive);
                let band: Vec<usize> =
                    negatives.iter().copied().filter(|&n| dp <= d(n) && d(n) < dp + margin).collect();
                (random_positive, *band.choose(rng).or_else(|| negatives.choose(rng)).unwrap())
            }
            Mining::Mixed => (random_positive, closest(random_positive)),
            Mining::BatchHard | Mining::BatchAll | Mining::ProxySoftmax => {
                panic!("{strategy:?} mines online, inside batches")
            }
        };
        triplets.push(Triplet { anchor, positive, negative });
    }
    triplets
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Points on a line; species 0 = {0, 1, 2} at 0, 1, 5; species 1 = {3, 4} at 3, 9;
    /// species 2 = {5} at 4.5.
    fn line() -> (Vec<f32>, Vec<usize>) {
        let x = [0.0f32, 1.0, 5.0, 3.0, 9.0, 4.5];
        let values = x.iter().flat_map(|a| x.iter().map(move |b| (a - b).abs())).collect();
        (values, vec![0, 0, 0, 1, 1, 2])
    }

    fn mined(strategy: Mining, margin: f32, seed: u64) -> Vec<Triplet> {
        let (values, labels) = line();
        let distances = Distances { n: labels.len(), values: &values };
        mine(strategy, &distances, &labels, margin, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    fn of(triplets: &[Triplet], anchor: usize) -> Triplet {
        *triplets.iter().find(|t| t.anchor == anchor).unwrap()
    }

    #[test]
    fn anchors_without_a_positive_are_skipped() {
        let triplets = mined(Mining::Random, 0.5, 1);
        assert_eq!(triplets.iter().map(|t| t.anchor).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        let (_, labels) = line();
        for t in &triplets {
            assert_ne!(t.anchor, t.positive);
            assert_eq!(labels[t.anchor], labels[t.positive]);
            assert_ne!(labels[t.anchor], labels[t.negative]);
        }
    }

    #[test]
    fn hard_negative_positive_takes_the_farthest_positive_and_closest_negative() {
        let triplets = mined(Mining::HardNegativePositive, 0.5, 1);
        assert_eq!(of(&triplets, 0), Triplet { anchor: 0, positive: 2, negative: 3 });
        assert_eq!(of(&triplets, 2), Triplet { anchor: 2, positive: 0, negative: 5 });
        assert_eq!(of(&triplets, 4), Triplet { anchor: 4, positive: 3, negative: 2 });
    }

    #[test]
    fn hard_negative_takes_the_closest_negative_with_any_positive() {
        for seed in 0..20 {
            let triplets = mined(Mining::HardNegative, 0.5, seed);
            assert_eq!(of(&triplets, 1).negative, 3);
            assert_eq!(of(&triplets, 3).negative, 5);
        }
        let positives: std::collections::HashSet<usize> =
            (0..20).map(|seed| of(&mined(Mining::HardNegative, 0.5, seed), 0).positive).collect();
        assert_eq!(positives, [1, 2].into(), "the positive is random, not the hardest");
    }

    #[test]
    fn semi_hard_negatives_lie_in_the_margin_band() {
        // Anchor 0 with positive 1 (d = 1): band [1, 3.5) holds only 3 (d = 3); with positive
        // 2 (d = 5): band [5, 7.5) is empty -> any negative.
        for seed in 0..30 {
            let t = of(&mined(Mining::SemiHard, 2.5, seed), 0);
            if t.positive == 1 {
                assert_eq!(t.negative, 3, "seed {seed}");
            }
        }
        // Anchor 3 (at 3), positive 4 (d = 6): band [6, 8.5) holds nothing of species 0 or 2
        // (distances 3, 2, 2, 1.5) -> falls back to a random negative.
        let fallback: std::collections::HashSet<usize> =
            (0..40).map(|seed| of(&mined(Mining::SemiHard, 2.5, seed), 3).negative).collect();
        assert!(fallback.len() > 1);
    }

    #[test]
    fn mixed_takes_the_negative_closest_to_the_positive() {
        for seed in 0..20 {
            let t = of(&mined(Mining::Mixed, 0.5, seed), 0);
            let expected = if t.positive == 1 { 3 } else { 5 }; // 1 -> 3 (d 2); 5 -> 4.5 (d 0.5)
            assert_eq!(t.negative, expected, "seed {seed}, positive {}", t.positive);
        }
    }
}
