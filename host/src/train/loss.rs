//! Triplet losses on euclidean distances between unit embeddings, each with its triplet
//! accuracy (the share of triplets with `d(a,p) < d(a,n)`).
//!
//! - [`triplet`]: given (anchor, positive, negative) rows, `mean(max(0, d(a,p) - d(a,n) + margin))`.
//! - [`batch_hard`] (Hermans et al. 2017): per anchor of a P x K batch, its farthest positive
//!   and closest negative.
//! - [`batch_all`]: every valid triplet of the batch, averaged over those with a non-zero loss.
//! - [`proxy_softmax`]: not a triplet loss: softmax cross-entropy over cosine similarities to one
//!   learnt proxy per species (Zhai & Wu 2019, "Classification is a Strong Baseline for Deep
//!   Metric Learning"). Its "accuracy" is the share of photos nearest to their own proxy.

use tch::{Kind, Tensor};

pub struct LossOutput {
    pub loss: Tensor,
    /// Share of triplets already ordered right, in [0, 1].
    pub accuracy: f64,
    pub triplets: usize,
}

/// Euclidean distance, safe to differentiate at 0.
fn euclidean(a: &Tensor, b: &Tensor) -> Tensor {
    (a - b).square().sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1e-12).sqrt()
}

/// All pairwise euclidean distances `[N, N]` of rows of `x`.
pub fn pairwise(x: &Tensor) -> Tensor {
    let squares = x.square().sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    let gram = x.matmul(&x.tr());
    (&squares + squares.tr() - gram * 2.0).clamp_min(1e-12).sqrt()
}

pub fn triplet(anchor: &Tensor, positive: &Tensor, negative: &Tensor, margin: f64) -> LossOutput {
    let (dp, dn) = (euclidean(anchor, positive), euclidean(anchor, negative));
    let loss = (&dp - &dn + margin).relu().mean(Kind::Float);
    let accuracy = dp.lt_tensor(&dn).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    LossOutput { loss, accuracy, triplets: anchor.size()[0] as usize }
}

/// Same-species (excluding the diagonal) and other-species masks of a batch.
fn masks(labels: &Tensor) -> (Tensor, Tensor) {
    let same = labels.unsqueeze(0).eq_tensor(&labels.unsqueeze(1));
    let eye = Tensor::eye(labels.size()[0], (Kind::Bool, labels.device()));
    (same.logical_and(&eye.logical_not()), same.logical_not())
}

pub fn batch_hard(embeddings: &Tensor, labels: &Tensor, margin: f64) -> LossOutput {
    let d = pairwise(embeddings);
    let (positive, negative) = masks(labels);
    let hardest_positive = (&d * positive.to_kind(Kind::Float)).amax([1i64].as_slice(), false);
    let far = d.max().detach() + 1.0;
    let hardest_negative =
        (&d + positive.logical_or(&negative.logical_not()).to_kind(Kind::Float) * &far).amin([1i64].as_slice(), false);
    // Anchors without a positive or a negative in the batch form no triplet.
    let valid = positive.any_dim(1, false).logical_and(&negative.any_dim(1, false));
    let count = valid.sum(Kind::Int64).int64_value(&[]) as usize;
    let hp = hardest_positive.masked_select(&valid);
    let hn = hardest_negative.masked_select(&valid);
    let loss = (&hp - &hn + margin).relu().mean(Kind::Float);
    let accuracy = hp.lt_tensor(&hn).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    LossOutput { loss, accuracy, triplets: count }
}

pub fn batch_all(embeddings: &Tensor, labels: &Tensor, margin: f64) -> LossOutput {
    let d = pairwise(embeddings);
    let (positive, negative) = masks(labels);
    // [a, p, n]: d(a,p) - d(a,n) + margin over valid (a, p, n).
    let valid = positive.unsqueeze(2).logical_and(&negative.unsqueeze(1));
    let margins = d.unsqueeze(2) - d.unsqueeze(1);
    let losses = (&margins + margin).relu() * valid.to_kind(Kind::Float);
    let count = valid.sum(Kind::Int64).int64_value(&[]) as usize;
    let active = losses.gt(1e-16).sum(Kind::Float).clamp_min(1.0);
    let loss = losses.sum(Kind::Float) / active;
    let ordered = margins.lt(0.0).logical_and(&valid).sum(Kind::Float).double_value(&[]);
    LossOutput { loss, accuracy: ordered / count.max(1) as f64, triplets: count }
}

/// `proxies` `[S, D]` (any length; normalised here), `labels` index them.
pub fn proxy_softmax(embeddings: &Tensor, labels: &Tensor, proxies: &Tensor, temperature: f64) -> LossOutput {
    let logits = embeddings.matmul(&crate::model::head::l2_normalize(proxies).tr()) / temperature;
    let loss = logits.cross_entropy_for_logits(labels);
    let accuracy = logits.argmax(1, false).eq_tensor(labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    LossOutput { loss, accuracy, triplets: embeddings.size()[0] as usize }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Neg;

    fn rows(values: &[[f32; 2]]) -> Tensor {
        Tensor::from_slice(&values.concat()).view([values.len() as i64, 2])
    }

    #[test]
    fn triplet_loss_is_the_hinge_of_the_distance_gap() {
        let a = rows(&[[0.0, 0.0], [0.0, 0.0]]);
        let p = rows(&[[1.0, 0.0], [3.0, 0.0]]);
        let n = rows(&[[0.0, 2.0], [0.0, 1.0]]);
        // gaps: 1 - 2 + 0.5 = -0.5 -> 0; 3 - 1 + 0.5 = 2.5
        let out = triplet(&a, &p, &n, 0.5);
        assert!((out.loss.double_value(&[]) - 1.25).abs() < 1e-5);
        assert_eq!(out.accuracy, 0.5);
    }

    #[test]
    fn batch_hard_uses_the_farthest_positive_and_closest_negative() {
        // Species 0 at x = 0, 1; species 1 at x = 3, 10.
        let x = rows(&[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0]]);
        let labels = Tensor::from_slice(&[0i64, 0, 1, 1]);
        let out = batch_hard(&x, &labels, 0.5);
        // anchor 0: 1 - 3 -> 0; anchor 1: 1 - 2 -> 0; anchor 2: 7 - 2 + .5 = 5.5; anchor 3: 7 - 9 -> 0.
        assert!((out.loss.double_value(&[]) - 5.5 / 4.0).abs() < 1e-4, "{}", out.loss.double_value(&[]));
        assert_eq!(out.accuracy, 0.75);
        assert_eq!(out.triplets, 4);
    }

    #[test]
    fn batch_all_averages_over_active_triplets() {
        let x = rows(&[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0]]);
        let labels = Tensor::from_slice(&[0i64, 0, 1, 1]);
        let out = batch_all(&x, &labels, 0.5);
        // 8 valid triplets; active: (2,3,1): 7-2+.5 = 5.5, (2,3,0): 7-3+.5 = 4.5.
        assert_eq!(out.triplets, 8);
        assert!((out.loss.double_value(&[]) - 5.0).abs() < 1e-4, "{}", out.loss.double_value(&[]));
        assert_eq!(out.accuracy, 6.0 / 8.0);
    }

    #[test]
    fn proxy_softmax_is_cross_entropy_of_scaled_cosines() {
        let x = rows(&[[1.0, 0.0], [0.0, 1.0]]);
        // Proxy lengths do not matter: they are normalised.
        let proxies = rows(&[[2.0, 0.0], [0.0, 0.5]]);
        let out = proxy_softmax(&x, &Tensor::from_slice(&[0i64, 0]), &proxies, 0.5);
        // Row 0: logits (2, 0) -> -ln(e^2 / (e^2 + 1)); row 1: logits (0, 2) -> -ln(1 / (1 + e^2)).
        let e2 = 2f64.exp();
        let expected = ((e2 / (e2 + 1.0)).ln().neg() + (1.0 / (1.0 + e2)).ln().neg()) / 2.0;
        assert!((out.loss.double_value(&[]) - expected).abs() < 1e-5, "{}", out.loss.double_value(&[]));
        assert_eq!(out.accuracy, 0.5);
    }

    #[test]
    fn anchors_alone_in_their_species_are_left_out() {
        let x = rows(&[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]);
        let out = batch_hard(&x, &Tensor::from_slice(&[0i64, 0, 1]), 0.5);
        assert_eq!(out.triplets, 2);
    }
}
