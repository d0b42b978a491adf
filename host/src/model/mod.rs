//! The embedding network: a backbone (image -> features) and the study's 3-layer head
//! (features -> unit-length embedding).

pub mod efficientnet;
pub mod head;
pub mod tiny;

use head::{Head, HeadKind};
use sporeprint_shared::PreprocessSpec;
use sporeprint_shared::preprocess::ResizeFilter;
use tch::Tensor;
use tch::nn::{self, Module, ModuleT};

/// Which feature extractor to train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    /// EfficientNet-Lite0, ImageNet-pretrained: the edge default.
    #[value(name = "efficientnet-lite0")]
    EfficientNetLite0,
    /// ResNet-50 in torchvision's layout: the original study's backbone.
    Resnet50,
    /// A three-layer CNN on 64x64 inputs, for fast tests.
    Tiny,
}

impl BackboneKind {
    pub fn feature_dim(self) -> i64 {
        match self {
            BackboneKind::EfficientNetLite0 => efficientnet::FEATURES,
            BackboneKind::Resnet50 => 2048,
            BackboneKind::Tiny => tiny::FEATURES,
        }
    }

    /// How photos are turned into this backbone's input: what its pretrained weights expect.
    pub fn preprocess(self) -> PreprocessSpec {
        match self {
            BackboneKind::EfficientNetLite0 => PreprocessSpec::EFFICIENTNET_LITE,
            BackboneKind::Resnet50 => PreprocessSpec::IMAGENET,
            BackboneKind::Tiny => PreprocessSpec {
                input_size: 64,
                resize_shorter_to: 72,
                filter: ResizeFilter::Triangle,
                ..PreprocessSpec::IMAGENET
            },
        }
    }
}

enum Backbone {
    EfficientNet(Box<efficientnet::EfficientNetLite0>),
    Resnet(Box<dyn ModuleT>),
    Tiny(tiny::TinyCnn),
}

/// Variables live under `backbone.` and `head.`; the backbone's names below `backbone.` are
/// those of its pretrained weight file.
pub const BACKBONE_PREFIX: &str = "backbone";
pub const HEAD_PREFIX: &str = "head";

/// Backbone + head: images `[N, 3, H, W]` -> unit embeddings `[N, D]`.
pub struct EmbeddingNet {
    pub kind: BackboneKind,
    pub dim: i64,
    backbone: Backbone,
    head: Head,
    /// A frozen backbone runs in inference mode (fixed BatchNorm statistics, no gradients).
    pub frozen_backbone: bool,
}

impl EmbeddingNet {
    pub fn new(root: &nn::Path, kind: BackboneKind, head: HeadKind, dim: i64) -> EmbeddingNet {
        let p = root / BACKBONE_PREFIX;
        let backbone = match kind {
            BackboneKind::EfficientNetLite0 => {
                Backbone::EfficientNet(Box::new(efficientnet::EfficientNetLite0::new(&p)))
            }
            BackboneKind::Resnet50 => Backbone::Resnet(Box::new(tch::vision::resnet::resnet50_no_final_layer(&p))),
            BackboneKind::Tiny => Backbone::Tiny(tiny::TinyCnn::new(&p)),
        };
        let head = Head::new(&(root / HEAD_PREFIX), head, kind.feature_dim(), dim);
        EmbeddingNet { kind, dim, backbone, head, frozen_backbone: false }
    }

    /// Backbone features `[N, F]`.
    pub fn features_t(&self, images: &Tensor, train: bool) -> Tensor {
        let train = train && !self.frozen_backbone;
        let run = || match &self.backbone {
            Backbone::EfficientNet(net) => net.forward_t(images, train),
            Backbone::Resnet(net) => net.forward_t(images, train),
            Backbone::Tiny(net) => net.forward_t(images, train),
        };
        if self.frozen_backbone { tch::no_grad(run) } else { run() }
    }

    /// Centres and projects the residual head on backbone features of the training photos.
    pub fn initialise_head(&mut self, features: &Tensor) {
        self.head.initialise(features);
    }

    pub fn head_kind(&self) -> HeadKind {
        self.head.kind
    }

    /// Unit embeddings of backbone features.
    pub fn embed_features(&self, features: &Tensor) -> Tensor {
        self.head.forward(features)
    }

    /// Unit embeddings `[N, D]` of normalised images.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        self.embed_features(&self.features_t(images, train))
    }
}
