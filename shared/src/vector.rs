//! Vector math on embeddings.
//!
//! Every loop walks chunks of [`LANES`] floats with independent accumulators, which is what lets
//! LLVM emit SIMD (SSE/AVX on x86, NEON on the Pi) without `unsafe` or per-target intrinsics.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

const LANES: usize = 8;

/// How two embeddings are compared: a field of the table format, so that another metric could be
/// added with thresholds calibrated in its own units. Today there is one, and every threshold the
/// exporter fits is in its units. (A cosine variant existed once, never written by the exporter
/// and with no threshold calibrated for it; on unit vectors it ranks neighbours the same way.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    /// `|a - b|`, in [0, 2] for unit vectors.
    Euclidean,
}

impl Metric {
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Euclidean => euclidean(a, b),
        }
    }
}

fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    assert_eq!(a.len(), b.len(), "embeddings of different dimensions");
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += f(x[i], y[i]);
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(&x, &y)| f(x, y)).sum();
    acc.iter().sum::<f32>() + tail
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| x * y)
}

pub fn squared_euclidean(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| (x - y) * (x - y))
}

pub fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    libm::sqrtf(squared_euclidean(a, b))
}

pub fn norm(a: &[f32]) -> f32 {
    libm::sqrtf(dot(a, a))
}

/// Cosine of the angle between `a` and `b`; 0 when either is the zero vector (no direction).
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 { 0.0 } else { dot(a, b) / denominator }
}

/// Scales `v` to unit length in place and returns its former length. The zero vector has no
/// direction and is left as it is (returns 0): callers that need a unit vector check for that.
pub fn l2_normalize(v: &mut [f32]) -> f32 {
    let length = norm(v);
    if length > 0.0 {
        let inverse = 1.0 / length;
        v.iter_mut().for_each(|x| *x *= inverse);
    }
    length
}

/// Adds `v` to `sum`, element-wise.
pub fn accumulate(sum: &mut [f32], v: &[f32]) {
    assert_eq!(sum.len(), v.len(), "embeddings of different dimensions");
    sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
}

/// The element-wise mean of `vectors`, or `None` when there are none.
pub fn mean<V: AsRef<[f32]>>(vectors: &[V]) -> Option<Vec<f32>> {
    let first = vectors.first()?.as_ref();
    let mut sum = first.to_vec();
    for v in &vectors[1..] {
        accumulate(&mut sum, v.as_ref());
    }
    let inverse = 1.0 / vectors.len() as f32;
    sum.iter_mut().for_each(|x| *x *= inverse);
    Some(sum)
}

/// The `k` smallest of `(index, distance)` pairs, smallest first, ties to the lower index, NaN
/// (of either sign) last: the exact nearest neighbours of one query, for classification, the
/// table's neighbours and the host's retrieval metrics.
pub fn k_smallest(distances: impl IntoIterator<Item = (usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    let mut all: Vec<(usize, f32)> = distances.into_iter().collect();
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    let order = |a: &(usize, f32), b: &(usize, f32)| {
        (a.1.is_nan().cmp(&b.1.is_nan())).then(a.1.total_cmp(&b.1)).then(a.0.cmp(&b.0))
    };
    all.select_nth_unstable_by(k - 1, order);
    all.truncate(k);
    all.sort_by(order);
    all
}

#[cfg(test)]
mod tests {
    #[test]
    fn k_smallest_orders_by_distance_then_index_and_puts_nan_last() {
        let d = [(0, 0.5), (1, f32::NAN), (2, 0.1), (3, 0.5), (4, 0.3)];
        assert_eq!(super::k_smallest(d, 4), [(2, 0.1), (4, 0.3), (0, 0.5), (3, 0.5)]);
        assert!(super::k_smallest(d, 9)[4].1.is_nan());
        assert!(super::k_smallest(d, 0).is_empty());
        // x86 arithmetic makes NaNs with the sign bit set, which `total_cmp` alone sorts first.
        let negative_nan = -f32::NAN;
        assert_eq!(super::k_smallest([(0, negative_nan), (1, 2.0)], 1), [(1, 2.0)]);
    }

    use super::*;
    use alloc::vec;

    #[test]
    fn hand_computed_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let b = [0.0; 10];
        assert_eq!(dot(&a, &a), 385.0);
        assert_eq!(squared_euclidean(&a, &b), 385.0);
        assert_eq!(euclidean(&[3.0, 0.0], &[0.0, 4.0]), 5.0);
        assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 2.0]), 0.0);
        assert_eq!(cosine_similarity(&[1.0, 1.0], &[0.0, 0.0]), 0.0);
        assert_eq!(Metric::Euclidean.distance(&[1.0, 0.0], &[-1.0, 0.0]), 2.0);
    }

    #[test]
    fn normalising_the_zero_vector_leaves_it_alone() {
        let mut v = vec![0.0; 5];
        assert_eq!(l2_normalize(&mut v), 0.0);
        assert_eq!(v, vec![0.0; 5]);
    }

    #[test]
    fn mean_of_nothing_is_none() {
        assert_eq!(mean::<Vec<f32>>(&[]), None);
        assert_eq!(mean(&[vec![1.0, 3.0], vec![3.0, 5.0]]), Some(vec![2.0, 4.0]));
    }

    #[test]
    #[should_panic(expected = "different dimensions")]
    fn mismatched_dimensions_panic() {
        dot(&[1.0], &[1.0, 2.0]);
    }
}
