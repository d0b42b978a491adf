//! Nearest-prototype classification with an open-set rule and a look-alike warning.
//!
//! - Top-k: the k nearest prototypes, nearest first.
//! - Confidence: the prototypical-network softmax over *all* species,
//!   `exp(-d_i / T) / sum_j exp(-d_j / T)`, with the table's temperature `T`.
//! - Open set: when even the nearest prototype is farther than the calibrated threshold, the
//!   answer is "unknown species", never the nearest name. A model that reports the photo's
//!   atypicality (how unlike its training photos it looks as a whole) has it added to that
//!   distance first: the threshold was calibrated on the sum.
//! - Look-alike: when the answer is edible and a poisonous or deadly species lies within the
//!   look-alike margin of it (searched over all species, not just the top-k shown), it is named;
//!   a deadly one within the margin before a nearer poisonous one.
//! - Fail closed: a query or atypicality that is not a finite number is refused, and every
//!   comparison is written so that a number that slipped through answers "unknown".
//!
//! What a forager is then told is decided from this in one place: [`crate::verdict`].

use crate::table::{EntryStore, PrototypeTable, TableError};
use crate::vector;
use alloc::vec::Vec;

/// Most neighbours one identification reports.
pub const MAX_TOP_K: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Match {
    /// Index of the species in the table's entries.
    pub index: usize,
    pub distance: f32,
    /// In [0, 1]; the confidences of all species sum to 1.
    pub confidence: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Identification {
    /// The nearest species, nearest first (fewer when the table is smaller than k).
    pub top: heapless::Vec<Match, MAX_TOP_K>,
    /// Nothing in the table is close enough: "unknown species".
    pub unknown: bool,
    /// The photo's atypicality the open-set rule used (0 for a model without it).
    pub atypicality: f32,
    /// Unknown because of the atypicality: the distance alone would have named a species.
    pub unknown_by_atypicality: bool,
    /// A poisonous or deadly species close behind an edible answer.
    pub lookalike: Option<Match>,
}

impl Identification {
    /// The answer: the nearest species, or `None` for an unknown species.
    pub fn species(&self) -> Option<&Match> {
        if self.unknown { None } else { self.top.first() }
    }
}

impl<E: EntryStore> PrototypeTable<E> {
    /// Classifies one embedding (normalised here, so a raw one is fine). `top_k` is clamped to
    /// 1..=[`MAX_TOP_K`]. For a model without atypicality; see [`PrototypeTable::identify_with`].
    pub fn identify(&self, embedding: &[f32], top_k: usize) -> Result<Identification, TableError> {
        self.identify_with(embedding, 0.0, top_k)
    }

    /// As [`PrototypeTable::identify`], the open-set rule comparing `nearest distance +
    /// atypicality` with the threshold (`crate::embedder::Observation` has both).
    pub fn identify_with(
        &self,
        embedding: &[f32],
        atypicality: f32,
        top_k: usize,
    ) -> Result<Identification, TableError> {
        if embedding.len() != self.dim() {
            return Err(TableError::DimensionMismatch { expected: self.dim(), found: embedding.len() });
        }
        if !atypicality.is_finite() {
            return Err(TableError::NotFinite("the photo's atypicality"));
        }
        let mut query: Vec<f32> = embedding.to_vec();
        let length = vector::l2_normalize(&mut query);
        if !(length > 0.0 && length.is_finite()) {
            return Err(TableError::NotFinite("the embedding"));
        }

        let header = self.header();
        let k = top_k.clamp(1, MAX_TOP_K);
        let mut top = heapless::Vec::<Match, MAX_TOP_K>::new();
        // Nearest deadly, nearest poisonous: a deadly look-alike is named before a poisonous one.
        let mut nearest_dangerous: [Option<Match>; 2] = [None, None];
        let mut normaliser = LogSumExp::default();
        for (index, entry) in self.entries().iter().enumerate() {
            let distance = header.metric.distance(&query, &entry.prototype.vector);
            normaliser.add(-distance / header.temperature);
            let candidate = Match { index, distance, confidence: 0.0 };
            insert_nearest(&mut top, k, candidate);
            let class = match entry.edibility {
                crate::Edibility::Deadly => Some(0),
                crate::Edibility::Poisonous => Some(1),
                _ => None,
            };
            if let Some(class) = class
                && nearest_dangerous[class].is_none_or(|d| distance < d.distance)
            {
                nearest_dangerous[class] = Some(candidate);
            }
        }

        let confidence = |m: &mut Match| {
            m.confidence = libm::expf(-m.distance / header.temperature - normaliser.value()).clamp(0.0, 1.0);
        };
        top.iter_mut().for_each(confidence);
        // Named only when the sum is comparable and within the threshold: a NaN that got this
        // far is unknown, not a species (`x > t` would be false for it).
        let within = |best: &Match| {
            (best.distance + atypicality).partial_cmp(&header.open_set_threshold).is_some_and(|o| o.is_le())
        };
        let unknown = top.first().is_none_or(|best| !within(best));
        let unknown_by_atypicality =
            unknown && top.first().is_some_and(|best| best.distance <= header.open_set_threshold);
        let lookalike = match top.first() {
            Some(best) if !unknown && self.entries()[best.index].edibility == crate::Edibility::Edible => {
                let within = |d: &&Match| d.distance - best.distance <= header.lookalike_margin;
                nearest_dangerous.iter().flatten().find(within).copied().map(|mut dangerous| {
                    confidence(&mut dangerous);
                    dangerous
                })
            }
            _ => None,
        };
        Ok(Identification { top, unknown, atypicality, unknown_by_atypicality, lookalike })
    }
}

/// Keeps `top` sorted by distance and at most `k` long. Ties keep the earlier entry first, so
/// results do not depend on anything but the table's order.
fn insert_nearest(top: &mut heapless::Vec<Match, MAX_TOP_K>, k: usize, candidate: Match) {
    if top.len() == k && top.last().is_some_and(|worst| worst.distance <= candidate.distance) {
        return;
    }
    let at = top.partition_point(|m| m.distance <= candidate.distance);
    if top.len() == k {
        top.pop();
    }
    top.insert(at, candidate).expect("room was made");
}

/// `ln(sum(exp(x_i)))` accumulated one term at a time without overflow.
#[derive(Default)]
struct LogSumExp {
    max: Option<f32>,
    scaled_sum: f32,
}

impl LogSumExp {
    fn add(&mut self, x: f32) {
        match self.max {
            Some(max) if x <= max => self.scaled_sum += libm::expf(x - max),
            Some(max) => {
                self.scaled_sum = self.scaled_sum * libm::expf(max - x) + 1.0;
                self.max = Some(x);
            }
            None => {
                self.max = Some(x);
                self.scaled_sum = 1.0;
            }
        }
    }

    fn value(&self) -> f32 {
        self.max.map_or(0.0, |max| max + libm::logf(self.scaled_sum))
    }
}
