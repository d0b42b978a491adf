//! How close species lie to each other in a table: the neighbours an enrollment reports, and the
//! distance below which a new species is suspiciously close to one already there.
//!
//! The open-set threshold cannot serve for the latter: it bounds how far a *photo* may lie from
//! its prototype, and on a real model every pair of prototypes is closer than that (prototypes
//! are means, and means of different species are still nearer each other than single photos).
//! What is unusual is relative to the table itself: closer to a species than nearly all species
//! are to their own nearest neighbour.

use crate::table::Table;
use alloc::vec::Vec;

/// A species near a vector: its index in the table's entries and its distance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    pub index: usize,
    pub distance: f32,
}

/// Share of the table's species whose nearest neighbour is closer than the crowding distance.
pub const CROWDED_SHARE: f32 = 0.05;

/// Fewest species for the crowding distance to come from the table; below this it is half the
/// open-set threshold.
pub const MIN_SPECIES_FOR_STATISTICS: usize = 10;

impl Table {
    /// The `k` species nearest to `vector` (a unit vector of the table's dimension), nearest
    /// first, skipping the entry at `exclude` (the species the vector is the prototype of).
    pub fn neighbours(&self, vector: &[f32], exclude: Option<usize>, k: usize) -> Vec<Neighbour> {
        let metric = self.header().metric;
        let distances = self.entries().iter().enumerate().filter(|&(index, _)| Some(index) != exclude);
        let distances = distances.map(|(index, e)| (index, metric.distance(vector, &e.prototype.vector)));
        crate::vector::k_smallest(distances, k)
            .into_iter()
            .map(|(index, distance)| Neighbour { index, distance })
            .collect()
    }

    /// The distance below which a species lies unusually close to another: the
    /// [`CROWDED_SHARE`] quantile of the distances from each species (other than `exclude`) to
    /// its nearest neighbour. Half the open-set threshold for tables too small for statistics.
    pub fn crowding_distance(&self, exclude: Option<usize>) -> f32 {
        let (metric, entries) = (self.header().metric, self.entries());
        let counted = |i: &usize| Some(*i) != exclude;
        let mut nearest: Vec<f32> = (0..entries.len())
            .filter(counted)
            .filter_map(|i| {
                (0..entries.len())
                    .filter(|j| *j != i && counted(j))
                    .map(|j| metric.distance(&entries[i].prototype.vector, &entries[j].prototype.vector))
                    .reduce(f32::min)
            })
            .collect();
        if nearest.len() < MIN_SPECIES_FOR_STATISTICS {
            return self.header().open_set_threshold / 2.0;
        }
        nearest.sort_by(f32::total_cmp);
        nearest[((nearest.len() - 1) as f32 * CROWDED_SHARE) as usize]
    }
}
