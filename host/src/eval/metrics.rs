//! Retrieval and classification metrics on L2-normalised embeddings, exact nearest neighbours.
//!
//! The study's: k-NN accuracy, centroid ("cluster") accuracy, k-shot accuracy (true species
//! among the 3 nearest gallery images). The field's: nearest-prototype top-1/top-3 (the way the
//! device classifies, through `shared`'s table), Precision@1, R-Precision and MAP@R ("A Metric
//! Learning Reality Check", Musgrave et al. 2020), NMI of k-means clusters.
//!
//! Every function takes embeddings as rows (`&[Vec<f32>]`) with one label per row.

use rand::Rng;
use rand::seq::IndexedRandom;
use sporeprint_shared::prototype::Prototype;
use sporeprint_shared::vector;
use std::collections::BTreeMap;

/// Indices of the `k` rows of `gallery` nearest to `query` (ties: lower index first), skipping
/// `exclude` (the query itself when it is in the gallery).
pub fn nearest(query: &[f32], gallery: &[Vec<f32>], k: usize, exclude: Option<usize>) -> Vec<usize> {
    let distances = gallery.iter().enumerate().filter(|&(i, _)| Some(i) != exclude);
    let distances = distances.map(|(i, g)| (i, vector::squared_euclidean(query, g)));
    vector::k_smallest(distances, k).into_iter().map(|(i, _)| i).collect()
}

/// The study's k-NN accuracy: a query is right when its species is among the labels of its `k`
/// nearest gallery rows.
pub fn knn_accuracy(
    queries: &[Vec<f32>],
    query_labels: &[usize],
    gallery: &[Vec<f32>],
    gallery_labels: &[usize],
    k: usize,
) -> f64 {
    mean(
        queries
            .iter()
            .zip(query_labels)
            .map(|(q, &label)| nearest(q, gallery, k, None).iter().any(|&i| gallery_labels[i] == label) as u8 as f64),
    )
}

/// The study's centroid ("cluster") accuracy: for each species, the share of the `k` rows
/// nearest to its centroid that are of that species; averaged over species. `k = None` uses
/// each species' own row count (so a perfect embedding scores 1).
pub fn centroid_accuracy(embeddings: &[Vec<f32>], labels: &[usize], k: Option<usize>) -> f64 {
    let groups = by_label(labels);
    mean(groups.iter().map(|(&label, rows)| {
        let members: Vec<&Vec<f32>> = rows.iter().map(|&i| &embeddings[i]).collect();
        let centroid = vector::mean(&members).expect("a species has rows");
        let k = k.unwrap_or(rows.len());
        let hits = nearest(&centroid, embeddings, k, None).iter().filter(|&&i| labels[i] == label).count();
        hits as f64 / k as f64
    }))
}

/// Per-species prototypes (normalised mean of unit embeddings, as `shared` enrolls them).
pub fn prototypes(embeddings: &[Vec<f32>], labels: &[usize]) -> BTreeMap<usize, Vec<f32>> {
    by_label(labels)
        .into_iter()
        .map(|(label, rows)| {
            let shots: Vec<&Vec<f32>> = rows.iter().map(|&i| &embeddings[i]).collect();
            let dim = shots[0].len();
            (label, Prototype::from_shots(&shots, dim).expect("valid shots").vector)
        })
        .collect()
}

/// Euclidean distance from `embedding` to its nearest prototype (infinite without any): what
/// the open-set rule compares with its threshold.
pub fn nearest_prototype_distance(embedding: &[f32], prototypes: &BTreeMap<usize, Vec<f32>>) -> f32 {
    prototypes.values().map(|p| vector::euclidean(embedding, p)).fold(f32::INFINITY, f32::min)
}

/// Nearest-prototype accuracy: the share of queries whose species is among the `k` nearest
/// prototypes.
pub fn prototype_accuracy(
    queries: &[Vec<f32>],
    labels: &[usize],
    prototypes: &BTreeMap<usize, Vec<f32>>,
    k: usize,
) -> f64 {
    let (ids, vectors): (Vec<usize>, Vec<Vec<f32>>) = prototypes.iter().map(|(&l, v)| (l, v.clone())).unzip();
    mean(
        queries
            .iter()
            .zip(labels)
            .map(|(q, &label)| nearest(q, &vectors, k, None).iter().any(|&i| ids[i] == label) as u8 as f64),
    )
}

/// Precision@1, R-Precision and MAP@R of a set against itself (each row queries all others).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Retrieval {
    pub precision_at_1: f64,
    pub r_precision: f64,
    pub map_at_r: f64,
}

/// Musgrave et al.'s definitions: for a query with `R` other rows of its species, look at its
/// `R` nearest other rows; R-Precision = share of them that are relevant; MAP@R = mean over
/// i <= R of (precision at i if the i-th is relevant, else 0). Rows alone in their species are
/// not queries.
pub fn retrieval(embeddings: &[Vec<f32>], labels: &[usize]) -> Retrieval {
    let counts = by_label(labels);
    let (mut p1, mut rp, mut map, mut queries) = (0.0, 0.0, 0.0, 0);
    for (i, query) in embeddings.iter().enumerate() {
        let r = counts[&labels[i]].len() - 1;
        if r == 0 {
            continue;
        }
        let neighbours = nearest(query, embeddings, r, Some(i));
        let relevant: Vec<bool> = neighbours.iter().map(|&j| labels[j] == labels[i]).collect();
        p1 += relevant[0] as u8 as f64;
        rp += relevant.iter().filter(|&&x| x).count() as f64 / r as f64;
        let mut hits = 0;
        let mut sum = 0.0;
        for (rank, &is_relevant) in relevant.iter().enumerate() {
            if is_relevant {
                hits += 1;
                sum += hits as f64 / (rank + 1) as f64;
            }
        }
        map += sum / r as f64;
        queries += 1;
    }
    let n = queries.max(1) as f64;
    Retrieval { precision_at_1: p1 / n, r_precision: rp / n, map_at_r: map / n }
}

/// Lloyd's k-means with k-means++ seeding, `iterations` rounds at most; returns a cluster per
/// row. Written out (40 lines) rather than pulling linfa and ndarray in for a few hundred points.
pub fn kmeans(rows: &[Vec<f32>], k: usize, iterations: usize, rng: &mut impl Rng) -> Vec<usize> {
    let k = k.min(rows.len()).max(1);
    let mut centres: Vec<Vec<f32>> = vec![rows.choose(rng).expect("rows").clone()];
    while centres.len() < k {
        let weights: Vec<f32> = rows
            .iter()
            .map(|r| centres.iter().map(|c| vector::squared_euclidean(r, c)).fold(f32::MAX, f32::min))
            .collect();
        let total: f32 = weights.iter().sum();
        let mut pick = rng.random::<f32>() * total;
        let index = weights.iter().position(|&w| {
            pick -= w;
            pick <= 0.0
        });
        centres.push(rows[index.unwrap_or(rows.len() - 1)].clone());
    }
    let mut assignment = vec![usize::MAX; rows.len()];
    for _ in 0..iterations {
        let next: Vec<usize> = rows.iter().map(|r| nearest(r, &centres, 1, None)[0]).collect();
        if next == assignment {
            break;
        }
        assignment = next;
        for (c, centre) in centres.iter_mut().enumerate() {
            let members: Vec<&Vec<f32>> =
                rows.iter().zip(&assignment).filter(|(_, a)| **a == c).map(|(r, _)| r).collect();
            if let Some(mean) = vector::mean(&members) {
                *centre = mean;
            }
        }
    }
    assignment
}

/// The clustering of `restarts` k-means runs with the lowest within-cluster sum of squares
/// (scikit-learn's `n_init`): on a few dozen points one run's k-means++ start moves NMI by
/// several points.
pub fn kmeans_best_of(
    rows: &[Vec<f32>],
    k: usize,
    iterations: usize,
    restarts: usize,
    rng: &mut impl Rng,
) -> Vec<usize> {
    (0..restarts.max(1))
        .map(|_| kmeans(rows, k, iterations, rng))
        .map(|assignment| (within_cluster_squares(rows, &assignment), assignment))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, assignment)| assignment)
        .expect("at least one run")
}

/// Sum of squared distances of rows to the mean of their cluster.
fn within_cluster_squares(rows: &[Vec<f32>], assignment: &[usize]) -> f64 {
    by_label(assignment)
        .into_values()
        .map(|members| {
            let members: Vec<&Vec<f32>> = members.iter().map(|&i| &rows[i]).collect();
            let mean = vector::mean(&members).expect("a cluster has members");
            members.iter().map(|r| vector::squared_euclidean(r, &mean) as f64).sum::<f64>()
        })
        .sum()
}

/// Normalised mutual information of two labelings, `I(A;B) / sqrt(H(A) H(B))` (1 when identical
/// up to renaming; 0 when independent or either is constant).
pub fn nmi(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let mut joint: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    let mut pa: BTreeMap<usize, f64> = BTreeMap::new();
    let mut pb: BTreeMap<usize, f64> = BTreeMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1.0 / n;
        *pa.entry(x).or_default() += 1.0 / n;
        *pb.entry(y).or_default() += 1.0 / n;
    }
    let entropy = |p: &BTreeMap<usize, f64>| -p.values().map(|v| v * v.ln()).sum::<f64>();
    let mutual: f64 = joint.iter().map(|(&(x, y), &p)| p * (p / (pa[&x] * pb[&y])).ln()).sum();
    let (ha, hb) = (entropy(&pa), entropy(&pb));
    if ha <= 0.0 || hb <= 0.0 { 0.0 } else { (mutual / (ha * hb).sqrt()).clamp(0.0, 1.0) }
}

/// The distance below which `keep` of the values lie (linear interpolation between order
/// statistics): the open-set threshold that keeps known-species rejection at `1 - keep`.
pub fn quantile(values: &[f32], keep: f64) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    if sorted.is_empty() {
        return f32::NAN;
    }
    let position = keep.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    let t = (position - low as f64) as f32;
    sorted[low] * (1.0 - t) + sorted[high] * t
}

/// An open-set threshold fitted on known-species scores ([`sporeprint_shared::classify::open_set_score`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpenSetFit {
    pub threshold: f32,
    /// The share of the known-species scores the device's rule rejects at that threshold.
    pub known_rejected: f64,
}

/// The threshold keeping `keep` of the known-species `scores` ([`quantile`]); with no scores,
/// the table's uncalibrated default.
pub fn fit_open_set(known: &[f32], keep: f64) -> OpenSetFit {
    let threshold = match known.is_empty() {
        true => sporeprint_shared::Header::UNCALIBRATED_THRESHOLD,
        false => quantile(known, keep),
    };
    OpenSetFit { threshold, known_rejected: rejected_share(known, threshold) }
}

/// The share of `scores` the device's open-set rule rejects at `threshold` (a NaN is rejected).
pub fn rejected_share(scores: &[f32], threshold: f32) -> f64 {
    let rejected = scores.iter().filter(|&&s| !sporeprint_shared::classify::within_open_set(s, threshold)).count();
    rejected as f64 / scores.len().max(1) as f64
}

/// Area under the ROC curve of telling `positives` from `negatives` by larger values: the share
/// of (positive, negative) pairs ordered right, ties counting half (Mann-Whitney U / n m).
pub fn auroc(negatives: &[f32], positives: &[f32]) -> f64 {
    let pairs = negatives.len() * positives.len();
    if pairs == 0 {
        return f64::NAN;
    }
    let wins: f64 = positives
        .iter()
        .flat_map(|p| {
            negatives.iter().map(move |n| {
                if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    wins / pairs as f64
}

/// Row indices per label, labels in order.
pub fn by_label(labels: &[usize]) -> BTreeMap<usize, Vec<usize>> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        groups.entry(label).or_default().push(i);
    }
    groups
}

/// Mean and sample standard deviation.
pub fn mean_and_spread(values: &[f64]) -> (f64, f64) {
    let m = mean(values.iter().copied());
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 { 0.0 } else { sum / count as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn points(xs: &[f32]) -> Vec<Vec<f32>> {
        xs.iter().map(|&x| vec![x, 0.0]).collect()
    }

    #[test]
    fn nearest_breaks_ties_by_index_and_skips_the_query() {
        let gallery = points(&[0.0, 1.0, -1.0, 3.0]);
        assert_eq!(nearest(&[0.0, 0.0], &gallery, 3, None), [0, 1, 2]);
        assert_eq!(nearest(&[0.0, 0.0], &gallery, 2, Some(0)), [1, 2]);
        assert_eq!(nearest(&[0.0, 0.0], &gallery, 10, None).len(), 4);
    }

    #[test]
    fn knn_accuracy_counts_the_species_among_the_k_nearest() {
        let gallery = points(&[0.0, 1.0, 10.0, 11.0]);
        let labels = [0, 1, 1, 0];
        let queries = points(&[0.4, 10.4]);
        assert_eq!(knn_accuracy(&queries, &[1, 0], &gallery, &labels, 1), 0.0);
        assert_eq!(knn_accuracy(&queries, &[1, 0], &gallery, &labels, 2), 1.0);
        assert_eq!(knn_accuracy(&queries, &[0, 1], &gallery, &labels, 1), 1.0);
    }

    #[test]
    fn centroid_accuracy_of_mixed_clusters() {
        // Species 0 at 0, 1; species 1 at 0.4, 10. Centroid 0 (0.5): nearest 2 = {0.4, 1}:
        // 1 of 2. Centroid 1 (5.2): nearest 2 = {1, 10}... distances 4.8, 4.2, 4.8 -> {10, 0.4|1}.
        let e = points(&[0.0, 1.0, 0.4, 10.0]);
        let labels = [0, 0, 1, 1];
        let accuracy = centroid_accuracy(&e, &labels, None);
        assert!((accuracy - 0.5).abs() < 1e-9, "{accuracy}");
        assert_eq!(centroid_accuracy(&points(&[0.0, 0.1, 5.0, 5.1]), &labels, None), 1.0);
    }

    #[test]
    fn retrieval_metrics_on_a_known_ranking() {
        // Query 0 (species 0, R = 2): neighbours by distance 1 (same), 2 (other), 3 (same):
        // R nearest = [same, other] -> P@1 = 1, R-precision = 1/2, MAP@R = (1/1) / 2 = 0.5.
        let e = points(&[0.0, 1.0, 2.0, 3.0]);
        let labels = [0, 0, 1, 0];
        let all = retrieval(&e, &labels);
        // Query 1 (at 1): neighbours 0 (d1, same), 2 (d1, other): tie -> index order: [0, 2]
        // -> P@1 1, RP 1/2, MAP 1/2. Query 3 (at 3): [2 other, 1 same] -> P@1 0, RP 1/2, MAP (1/2)/2.
        // Species 1 has one row: not a query.
        assert!((all.precision_at_1 - 2.0 / 3.0).abs() < 1e-9);
        assert!((all.r_precision - 0.5).abs() < 1e-9);
        assert!((all.map_at_r - (0.5 + 0.5 + 0.25) / 3.0).abs() < 1e-9, "{all:?}");
    }

    #[test]
    fn nmi_is_one_for_renamed_labels_and_zero_for_independent_ones() {
        assert!((nmi(&[0, 0, 1, 1], &[5, 5, 3, 3]) - 1.0).abs() < 1e-12);
        assert!(nmi(&[0, 1, 0, 1], &[0, 0, 1, 1]).abs() < 1e-12);
        assert_eq!(nmi(&[0, 0, 0], &[1, 2, 3]), 0.0);
    }

    #[test]
    fn kmeans_finds_separated_clusters() {
        let rows = points(&[0.0, 0.1, 0.2, 5.0, 5.1, 9.0, 9.2]);
        let clusters = kmeans(&rows, 3, 50, &mut ChaCha8Rng::seed_from_u64(1));
        assert!((nmi(&clusters, &[0, 0, 0, 1, 1, 2, 2]) - 1.0).abs() < 1e-9, "{clusters:?}");
    }

    #[test]
    fn kmeans_best_of_keeps_the_tightest_of_its_runs() {
        // Uniform points have many local minima: single runs differ, and the best of ten must be
        // the one with the least within-cluster sum of squares among exactly those ten runs.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let rows: Vec<Vec<f32>> = (0..40).map(|_| vec![rng.random::<f32>(), rng.random::<f32>()]).collect();
        let mut singles = ChaCha8Rng::seed_from_u64(3);
        let inertias: Vec<f64> =
            (0..10).map(|_| within_cluster_squares(&rows, &kmeans(&rows, 6, 100, &mut singles))).collect();
        let (least, most) = inertias.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        assert!(most > least * 1.01, "the single runs should differ: {inertias:?}");
        let best = kmeans_best_of(&rows, 6, 100, 10, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(within_cluster_squares(&rows, &best), least);
    }

    #[test]
    fn auroc_counts_ordered_pairs_and_half_the_ties() {
        assert_eq!(auroc(&[0.1, 0.2], &[0.3, 0.4]), 1.0);
        assert_eq!(auroc(&[0.3, 0.4], &[0.1, 0.2]), 0.0);
        // pairs (p, n): (0.2, 0.1) right, (0.2, 0.2) tie, (0.2, 0.3) wrong, (0.5, *) right x3
        assert!((auroc(&[0.1, 0.2, 0.3], &[0.2, 0.5]) - 4.5 / 6.0).abs() < 1e-12);
        assert!(auroc(&[], &[1.0]).is_nan());
    }

    #[test]
    fn prototype_accuracy_uses_normalised_means() {
        let train = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.9, 0.1]];
        let protos = prototypes(&train, &[0, 1, 0]);
        assert_eq!(protos.len(), 2);
        assert_eq!(prototype_accuracy(&[vec![0.8, 0.3], vec![0.2, 0.9]], &[0, 1], &protos, 1), 1.0);
        assert_eq!(prototype_accuracy(&[vec![0.8, 0.3]], &[1], &protos, 1), 0.0);
        assert_eq!(prototype_accuracy(&[vec![0.8, 0.3]], &[1], &protos, 2), 1.0);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 1.0), 4.0);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(quantile(&[7.0], 0.95), 7.0);
    }
}
