//! Nearest-prototype classification with an open-set rule and a look-alike warning.
//!
//! - Top-k: the k nearest prototypes, nearest first.
//! - Confidence: the prototypical-network softmax over *all* species,
//!   `exp(-d_i / T) / sum_j exp(-d_j / T)`, with the table's temperature `T` (fitted at export
//!   so that these are calibrated probabilities; [`crate::confidence`] puts them into words).
//! - Genus: the most probable genus, its species' confidences summed, for the answer "species
//!   unclear, probably this genus" ([`crate::verdict`] decides when to give it).
//! - Open set: when even the nearest prototype is farther than the calibrated threshold, the
//!   answer is "unknown species", never the nearest name. A model that reports the photo's
//!   atypicality (how unlike its training photos it looks as a whole) has it added to that
//!   distance first: the threshold was calibrated on the sum.
//! - Look-alike: when the answer is edible and a poisonous or deadly species lies within the
//!   look-alike margin of it or has a confidence of at least [`LOOKALIKE_FLOOR`] (searched over
//!   all species, not just the top-k shown), it is named; a deadly one before a nearer
//!   poisonous one.
//! - Fail closed: a query or atypicality that is not a finite number is refused, and every
//!   comparison is written so that a number that slipped through answers "unknown".
//!
//! What a forager is then told is decided from this in one place: [`crate::verdict`].

use crate::species::Edibility;
use crate::table::{Table, TableError};
use crate::vector;
use alloc::vec::Vec;

/// Most neighbours one identification reports.
pub const MAX_TOP_K: usize = 16;

/// A poisonous or deadly species this probable behind an edible answer is named as a look-alike
/// however far it is: one chance in twenty of a poisoning is not a risk to leave unsaid.
pub const LOOKALIKE_FLOOR: f32 = 0.05;

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
    /// The most probable genus (of the species whose genus the table knows).
    pub genus: Option<GenusMatch>,
}

/// A genus and how probable it is: the confidences of its species summed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenusMatch {
    /// Its most probable species (index into the table's entries), which names the genus.
    pub member: usize,
    pub probability: f32,
    /// How many species of the genus the table holds.
    pub species: usize,
    /// The most dangerous edibility among them (see [`Edibility::danger`]).
    pub most_dangerous: Edibility,
}

impl Identification {
    /// The answer: the nearest species, or `None` for an unknown species.
    pub fn species(&self) -> Option<&Match> {
        if self.unknown { None } else { self.top.first() }
    }
}

impl Table {
    /// Classifies one embedding (normalised here, so a raw one is fine). `top_k` is clamped to
    /// 1..=[`MAX_TOP_K`]. For a model without atypicality; see [`Table::identify_with`].
    pub fn identify(&self, embedding: &[f32], top_k: usize) -> Result<Identification, TableError> {
        self.identify_with(embedding, 0.0, top_k)
    }

    /// As [`Table::identify`], the open-set rule comparing `nearest distance +
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
        // Nearest deadly, nearest poisonous: a deadly look-alike is named before a poisonous one.
        let mut nearest_dangerous: [Option<Match>; 2] = [None, None];
        let mut normaliser = LogSumExp::default();
        let mut distances = Vec::with_capacity(self.len());
        for (index, entry) in self.entries().iter().enumerate() {
            let distance = header.metric.distance(&query, &entry.prototype.vector);
            distances.push(distance);
            normaliser.add(-distance / header.temperature);
            let candidate = Match { index, distance, confidence: 0.0 };
            let class = match entry.edibility {
                Edibility::Deadly => Some(0),
                Edibility::Poisonous => Some(1),
                _ => None,
            };
            if let Some(class) = class
                && nearest_dangerous[class].is_none_or(|d| distance < d.distance)
            {
                nearest_dangerous[class] = Some(candidate);
            }
        }

        let mut top: heapless::Vec<Match, MAX_TOP_K> = vector::k_smallest(distances.iter().copied().enumerate(), k)
            .into_iter()
            .map(|(index, distance)| Match { index, distance, confidence: 0.0 })
            .collect();
        let probability =
            |distance: f32| libm::expf(-distance / header.temperature - normaliser.value()).clamp(0.0, 1.0);
        let confidence = |m: &mut Match| m.confidence = probability(m.distance);
        top.iter_mut().for_each(confidence);
        let threshold = header.open_set_threshold;
        let within = |best: &Match| within_open_set(open_set_score(best.distance, atypicality), threshold);
        let unknown = top.first().is_none_or(|best| !within(best));
        let unknown_by_atypicality =
            unknown && top.first().is_some_and(|best| within_open_set(best.distance, threshold));
        nearest_dangerous.iter_mut().flatten().for_each(confidence);
        let lookalike = match top.first() {
            Some(best) if !unknown && self.entries()[best.index].edibility == Edibility::Edible => {
                // The nearest of each class is also its most probable.
                let worth_naming = |d: &&Match| {
                    d.distance - best.distance <= header.lookalike_margin || d.confidence >= LOOKALIKE_FLOOR
                };
                nearest_dangerous.iter().flatten().find(worth_naming).copied()
            }
            _ => None,
        };
        let genus = self.most_probable_genus(&distances, probability);
        Ok(Identification { top, unknown, atypicality, unknown_by_atypicality, lookalike, genus })
    }

    /// The genus whose species' probabilities sum highest (ties: the one met first).
    fn most_probable_genus(&self, distances: &[f32], probability: impl Fn(f32) -> f32) -> Option<GenusMatch> {
        let entries = self.entries();
        let mut genera: Vec<(GenusMatch, f32)> = Vec::new();
        for (index, (entry, &distance)) in entries.iter().zip(distances).enumerate() {
            let Some(genus) = &entry.genus else { continue };
            let p = probability(distance);
            let known = genera.iter_mut().find(|(g, _)| entries[g.member].genus.as_ref() == Some(genus));
            match known {
                Some((g, best_p)) => {
                    g.probability += p;
                    g.species += 1;
                    if entry.edibility.danger() > g.most_dangerous.danger() {
                        g.most_dangerous = entry.edibility;
                    }
                    if p > *best_p {
                        (g.member, *best_p) = (index, p);
                    }
                }
                None => genera.push((
                    GenusMatch { member: index, probability: p, species: 1, most_dangerous: entry.edibility },
                    p,
                )),
            }
        }
        genera
            .into_iter()
            .map(|(g, _)| g)
            .reduce(|best, g| if g.probability > best.probability { g } else { best })
            .map(|g| GenusMatch { probability: g.probability.min(1.0), ..g })
    }
}

/// What the open-set rule compares with the table's threshold: the distance to the nearest
/// prototype plus the photo's atypicality (0 for a model without one). The exporter calibrates
/// the threshold on these same scores.
pub fn open_set_score(nearest_distance: f32, atypicality: f32) -> f32 {
    nearest_distance + atypicality
}

/// Whether a photo with open-set `score` may be named: only when the score is a number no greater
/// than the threshold. A NaN that got this far is unknown, not a species (`x > t` would be false
/// for it).
pub fn within_open_set(score: f32, threshold: f32) -> bool {
    score.partial_cmp(&threshold).is_some_and(|o| o.is_le())
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
