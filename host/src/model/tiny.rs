//! A tiny CNN for fast tests: three stride-2 conv blocks and global average pooling. Trains in
//! seconds on generated images; never meant to identify real mushrooms.

use crate::export::onnx::{Activation, Graph};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

pub const FEATURES: i64 = 64;
const CHANNELS: [i64; 4] = [3, 16, 32, FEATURES];

#[derive(Debug)]
pub struct TinyCnn {
    layers: Vec<(nn::Conv2D, nn::BatchNorm)>,
}

impl TinyCnn {
    pub fn new(p: &nn::Path) -> TinyCnn {
        let layers = CHANNELS
            .windows(2)
            .enumerate()
            .map(|(i, io)| {
                let config = nn::ConvConfig { stride: 2, padding: 1, bias: false, ..Default::default() };
                let conv = nn::conv2d(p / format!("conv{i}"), io[0], io[1], 3, config);
                (conv, nn::batch_norm2d(p / format!("bn{i}"), io[1], Default::default()))
            })
            .collect();
        TinyCnn { layers }
    }
}

/// tch's BatchNorm default.
const BN_EPS: f64 = 1e-5;

impl TinyCnn {
    /// The ONNX of the inference-mode forward pass: `[1, 64]` features.
    pub fn export(&self, g: &mut Graph, image: &str) -> String {
        let mut x = image.to_string();
        for (conv, bn) in &self.layers {
            x = g.conv_bn(&x, conv, bn, BN_EPS, 2, [1, 1, 1, 1], 1, Activation::Relu);
        }
        g.global_average(&x)
    }
}

impl ModuleT for TinyCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (conv, bn) in &self.layers {
            x = x.apply(conv).apply_t(bn, train).relu();
        }
        x.mean_dim([2i64, 3].as_slice(), false, Kind::Float)
    }
}
