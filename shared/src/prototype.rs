//! k-shot enrollment: a species' prototype is the direction of the mean of its shots' unit
//! embeddings.
//!
//! Besides the unit `vector`, a [`Prototype`] keeps `mean_norm`, the length of the raw mean.
//! The two together give back the raw mean exactly, which makes two things exact without keeping
//! any shot around:
//! - adding shots later (a running mean) equals averaging all shots at once;
//! - the spread of the shots follows from `mean_norm` alone: for unit shots `x_i` with mean `m`
//!   and prototype `p = m / |m|`, the mean of `|x_i - p|^2` is `2 - 2|m|`, and the mean of
//!   `1 - x_i . p` is `1 - |m|`.

use crate::vector::{self, Metric};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prototype {
    /// Unit-length direction of the mean shot embedding: what queries are compared with.
    pub vector: Vec<f32>,
    /// Length of the raw mean of the unit shot embeddings, in (0, 1]; 1 when all shots agree.
    pub mean_norm: f32,
    /// How many shots (photos) the mean is over.
    pub shots: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShotError {
    #[error("no shots given: at least one photo is needed")]
    NoShots,
    #[error("shot {index} has {found} dimensions; the table's embeddings have {expected}")]
    DimensionMismatch { index: usize, expected: usize, found: usize },
    #[error("shot {index} contains NaN or infinity")]
    NotFinite { index: usize },
    #[error("shot {index} is the zero vector and has no direction")]
    Zero { index: usize },
    #[error("the shots cancel out: their mean has no direction")]
    Degenerate,
    #[error("prototypes of {0} and {1} dimensions cannot be combined")]
    Incompatible(usize, usize),
    #[error("more than 2^32 - 1 shots")]
    TooManyShots,
}

impl Prototype {
    /// The prototype of `shots` (embeddings of one species' photos, normalised here).
    pub fn from_shots<V: AsRef<[f32]>>(shots: &[V], dim: usize) -> Result<Prototype, ShotError> {
        let (sum, count) = unit_sum(shots, dim)?;
        Prototype::from_sum(sum, count)
    }

    /// Adds `shots` to this prototype as a running mean.
    pub fn add_shots<V: AsRef<[f32]>>(&mut self, shots: &[V]) -> Result<(), ShotError> {
        let (sum, count) = unit_sum(shots, self.vector.len())?;
        let new = Prototype::from_sum(sum, count)?;
        *self = self.combine(&new)?;
        Ok(())
    }

    /// The prototype of the shots of both, weighted by their shot counts: what one prototype
    /// over all of those shots would be.
    pub fn combine(&self, other: &Prototype) -> Result<Prototype, ShotError> {
        if self.vector.len() != other.vector.len() {
            return Err(ShotError::Incompatible(self.vector.len(), other.vector.len()));
        }
        let shots = self.shots.checked_add(other.shots).ok_or(ShotError::TooManyShots)?;
        let mut sum = self.raw_sum();
        vector::accumulate(&mut sum, &other.raw_sum());
        Prototype::from_sum(sum, shots)
    }

    /// Distance between the shots and the prototype, in the metric's units: the root mean square
    /// euclidean distance.
    pub fn spread(&self, metric: Metric) -> f32 {
        match metric {
            Metric::Euclidean => libm::sqrtf(2.0 * (1.0 - self.mean_norm.min(1.0))),
        }
    }

    /// Sum of the unit shot embeddings this prototype stands for.
    fn raw_sum(&self) -> Vec<f32> {
        let scale = self.mean_norm * self.shots as f32;
        self.vector.iter().map(|x| x * scale).collect()
    }

    fn from_sum(mut sum: Vec<f32>, shots: u32) -> Result<Prototype, ShotError> {
        let mean_norm = vector::l2_normalize(&mut sum) / shots as f32;
        if mean_norm.is_nan() || mean_norm <= f32::EPSILON {
            return Err(ShotError::Degenerate);
        }
        Ok(Prototype { vector: sum, mean_norm: mean_norm.min(1.0), shots })
    }
}

/// Sum of the L2-normalised shots, checked.
fn unit_sum<V: AsRef<[f32]>>(shots: &[V], dim: usize) -> Result<(Vec<f32>, u32), ShotError> {
    if shots.is_empty() {
        return Err(ShotError::NoShots);
    }
    let mut sum = alloc::vec![0.0; dim];
    let mut unit = Vec::with_capacity(dim);
    for (index, shot) in shots.iter().enumerate() {
        let shot = shot.as_ref();
        if shot.len() != dim {
            return Err(ShotError::DimensionMismatch { index, expected: dim, found: shot.len() });
        }
        if shot.iter().any(|x| !x.is_finite()) {
            return Err(ShotError::NotFinite { index });
        }
        unit.clear();
        unit.extend_from_slice(shot);
        if vector::l2_normalize(&mut unit) == 0.0 {
            return Err(ShotError::Zero { index });
        }
        vector::accumulate(&mut sum, &unit);
    }
    Ok((sum, shots.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn identical_shots_have_no_spread() {
        let p = Prototype::from_shots(&[vec![3.0, 4.0], vec![6.0, 8.0]], 2).unwrap();
        assert_eq!(p.shots, 2);
        assert!((p.vector[0] - 0.6).abs() < 1e-6 && (p.vector[1] - 0.8).abs() < 1e-6);
        assert!((p.mean_norm - 1.0).abs() < 1e-6);
        assert!(p.spread(Metric::Euclidean) < 1e-3);
    }

    #[test]
    fn orthogonal_shots_spread_exactly() {
        // Shots (1,0) and (0,1): prototype (1,1)/sqrt2, each shot at distance sqrt(2 - sqrt2).
        let p = Prototype::from_shots(&[vec![1.0, 0.0], vec![0.0, 1.0]], 2).unwrap();
        let each = libm::sqrtf(2.0 - core::f32::consts::SQRT_2);
        assert!((p.spread(Metric::Euclidean) - each).abs() < 1e-5);
    }

    #[test]
    fn bad_shots_are_refused() {
        let none: [Vec<f32>; 0] = [];
        assert_eq!(Prototype::from_shots(&none, 2), Err(ShotError::NoShots));
        assert_eq!(
            Prototype::from_shots(&[vec![1.0, 0.0], vec![1.0]], 2),
            Err(ShotError::DimensionMismatch { index: 1, expected: 2, found: 1 })
        );
        assert_eq!(Prototype::from_shots(&[vec![f32::NAN, 0.0]], 2), Err(ShotError::NotFinite { index: 0 }));
        assert_eq!(Prototype::from_shots(&[vec![0.0, 0.0]], 2), Err(ShotError::Zero { index: 0 }));
        assert_eq!(Prototype::from_shots(&[vec![1.0, 0.0], vec![-1.0, 0.0]], 2), Err(ShotError::Degenerate));
    }
}
