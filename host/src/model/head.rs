//! The embedding head of the study: three linear layers (features -> 512 -> 256 -> D) with ReLU
//! between them, and the output L2-normalised so distances live on the unit sphere.

use tch::Tensor;
use tch::nn::{self, Module};

pub const HIDDEN: [i64; 2] = [512, 256];

#[derive(Debug)]
pub struct Head {
    layers: [nn::Linear; 3],
}

impl Head {
    pub fn new(p: &nn::Path, features: i64, dim: i64) -> Head {
        Head {
            layers: [
                nn::linear(p / "fc1", features, HIDDEN[0], Default::default()),
                nn::linear(p / "fc2", HIDDEN[0], HIDDEN[1], Default::default()),
                nn::linear(p / "fc3", HIDDEN[1], dim, Default::default()),
            ],
        }
    }
}

impl Module for Head {
    fn forward(&self, features: &Tensor) -> Tensor {
        let [fc1, fc2, fc3] = &self.layers;
        l2_normalize(&features.apply(fc1).relu().apply(fc2).relu().apply(fc3))
    }
}

/// Rows scaled to unit length (a zero row stays zero).
pub fn l2_normalize(xs: &Tensor) -> Tensor {
    let norm = xs.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
    xs / norm
}
