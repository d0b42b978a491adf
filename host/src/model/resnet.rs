//! ResNet-50 (He et al. 2016), the original study's backbone, with torchvision's (and tch's)
//! variable names (`conv1`, `layer2.0.downsample.0`, ...), so torchvision weights load by name.
//! Written out rather than taken from `tch::vision::resnet` because the exporter needs to walk
//! its layers, and tch's version is an opaque closure.

use crate::export::onnx::{Activation, Graph};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

pub const FEATURES: i64 = 2048;
const BN_EPS: f64 = 1e-5;
/// Bottleneck blocks per stage, and the stages' inner widths.
const LAYERS: [(i64, usize); 4] = [(64, 3), (128, 4), (256, 6), (512, 3)];
const EXPANSION: i64 = 4;

#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    stride: i64,
    padding: i64,
}

impl ConvBn {
    fn new(p: &nn::Path, conv: &str, bn: &str, input: i64, output: i64, kernel: i64, stride: i64) -> ConvBn {
        let padding = kernel / 2;
        let config = nn::ConvConfig { stride, padding, bias: false, ..Default::default() };
        ConvBn {
            conv: nn::conv2d(p / conv, input, output, kernel, config),
            bn: nn::batch_norm2d(p / bn, output, Default::default()),
            stride,
            padding,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train)
    }

    fn export(&self, g: &mut Graph, x: &str, activation: Activation) -> String {
        g.conv_bn(x, &self.conv, &self.bn, BN_EPS, self.stride, [self.padding; 4], 1, activation)
    }
}

#[derive(Debug)]
struct Bottleneck {
    reduce: ConvBn,
    spatial: ConvBn,
    expand: ConvBn,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn new(p: &nn::Path, input: i64, width: i64, stride: i64) -> Bottleneck {
        let output = width * EXPANSION;
        let downsample = (stride != 1 || input != output)
            .then(|| ConvBn::new(&(p / "downsample"), "0", "1", input, output, 1, stride));
        Bottleneck {
            reduce: ConvBn::new(p, "conv1", "bn1", input, width, 1, 1),
            spatial: ConvBn::new(p, "conv2", "bn2", width, width, 3, stride),
            expand: ConvBn::new(p, "conv3", "bn3", width, output, 1, 1),
            downsample,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.reduce.forward_t(xs, train).relu();
        let ys = self.expand.forward_t(&self.spatial.forward_t(&ys, train).relu(), train);
        let shortcut = match &self.downsample {
            Some(downsample) => downsample.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (shortcut + ys).relu()
    }

    fn export(&self, g: &mut Graph, x: &str) -> String {
        let reduced = self.reduce.export(g, x, Activation::Relu);
        let spatial = self.spatial.export(g, &reduced, Activation::Relu);
        let ys = self.expand.export(g, &spatial, Activation::Linear);
        let shortcut = match &self.downsample {
            Some(downsample) => downsample.export(g, x, Activation::Linear),
            None => x.to_string(),
        };
        g.add(&shortcut, &ys, Activation::Relu)
    }
}

#[derive(Debug)]
pub struct Resnet50 {
    stem: ConvBn,
    blocks: Vec<Bottleneck>,
}

impl Resnet50 {
    pub fn new(p: &nn::Path) -> Resnet50 {
        let mut blocks = vec![];
        let mut input = 64;
        for (stage, (width, count)) in LAYERS.into_iter().enumerate() {
            let layer = p / format!("layer{}", stage + 1);
            for i in 0..count {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                blocks.push(Bottleneck::new(&(&layer / i), input, width, stride));
                input = width * EXPANSION;
            }
        }
        Resnet50 { stem: ConvBn::new(p, "conv1", "bn1", 3, 64, 7, 2), blocks }
    }

    /// The ONNX of the inference-mode forward pass: `[1, 2048]` features.
    pub fn export(&self, g: &mut Graph, image: &str) -> String {
        let stem = self.stem.export(g, image, Activation::Relu);
        let mut x = g.max_pool(&stem, 3, 2, [1, 1, 1, 1]);
        for block in &self.blocks {
            x = block.export(g, &x);
        }
        g.global_average(&x)
    }
}

impl ModuleT for Resnet50 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_t(xs, train).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        x.mean_dim([2i64, 3].as_slice(), false, Kind::Float)
    }
}
