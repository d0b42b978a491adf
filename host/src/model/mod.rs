//! The embedding network: a backbone (image -> features) and the study's 3-layer head
//! (features -> unit-length embedding).

pub mod atypicality;

pub mod efficientnet;
pub mod head;
pub mod resnet;
pub mod tiny;

use crate::export::onnx::{Graph, Outputs};
use crate::model::atypicality::Atypicality;
use head::{Head, HeadKind};
use sporeprint_shared::PreprocessSpec;
use sporeprint_shared::preprocess::ResizeFilter;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

/// Which feature extractor to train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    /// EfficientNet-Lite0, ImageNet-pretrained: the edge default.
    #[value(name = "efficientnet-lite0")]
    #[serde(rename = "efficientnet-lite0", alias = "efficient-net-lite0")]
    EfficientNetLite0,
    /// EfficientNet-Lite1 (240 px, 21 blocks), ImageNet-pretrained.
    #[value(name = "efficientnet-lite1")]
    #[serde(rename = "efficientnet-lite1")]
    EfficientNetLite1,
    /// EfficientNet-Lite2 (260 px, 21 wider blocks), ImageNet-pretrained.
    #[value(name = "efficientnet-lite2")]
    #[serde(rename = "efficientnet-lite2")]
    EfficientNetLite2,
    /// ResNet-50 in torchvision's layout: the original study's backbone.
    Resnet50,
    /// A three-layer CNN on 64x64 inputs, for fast tests.
    Tiny,
}

/// What a [`BackboneKind`] is built from. Wherever kinds differ (weights, sizes, preprocessing,
/// the network) the code matches on this exhaustively, so a new kind must say each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    EfficientNet(efficientnet::Size),
    Resnet50,
    Tiny,
}

impl BackboneKind {
    pub fn architecture(self) -> Architecture {
        match self {
            BackboneKind::EfficientNetLite0 => Architecture::EfficientNet(efficientnet::Size::Lite0),
            BackboneKind::EfficientNetLite1 => Architecture::EfficientNet(efficientnet::Size::Lite1),
            BackboneKind::EfficientNetLite2 => Architecture::EfficientNet(efficientnet::Size::Lite2),
            BackboneKind::Resnet50 => Architecture::Resnet50,
            BackboneKind::Tiny => Architecture::Tiny,
        }
    }

    /// Which EfficientNet-Lite this is, if it is one.
    pub fn efficientnet(self) -> Option<efficientnet::Size> {
        match self.architecture() {
            Architecture::EfficientNet(size) => Some(size),
            Architecture::Resnet50 | Architecture::Tiny => None,
        }
    }

    pub fn feature_dim(self) -> i64 {
        match self.architecture() {
            Architecture::EfficientNet(_) => efficientnet::FEATURES,
            Architecture::Resnet50 => resnet::FEATURES,
            Architecture::Tiny => tiny::FEATURES,
        }
    }

    /// How photos are turned into this backbone's input: what its pretrained weights expect.
    pub fn preprocess(self) -> PreprocessSpec {
        match self.architecture() {
            Architecture::EfficientNet(size) => PreprocessSpec::efficientnet_lite(size.input_size()),
            Architecture::Resnet50 => PreprocessSpec::IMAGENET,
            Architecture::Tiny => PreprocessSpec {
                input_size: 64,
                resize_shorter_to: 72,
                filter: ResizeFilter::Triangle,
                ..PreprocessSpec::IMAGENET
            },
        }
    }
}

enum Backbone {
    EfficientNet(Box<efficientnet::EfficientNetLite>),
    Resnet(Box<resnet::Resnet50>),
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
    /// `constant_coordinate`: see [`Head::new`] (0: none).
    pub fn new(
        root: &nn::Path,
        kind: BackboneKind,
        head: HeadKind,
        dim: i64,
        constant_coordinate: f64,
    ) -> EmbeddingNet {
        let p = root / BACKBONE_PREFIX;
        let backbone = match kind.architecture() {
            Architecture::EfficientNet(size) => {
                Backbone::EfficientNet(Box::new(efficientnet::EfficientNetLite::new(&p, size)))
            }
            Architecture::Resnet50 => Backbone::Resnet(Box::new(resnet::Resnet50::new(&p))),
            Architecture::Tiny => Backbone::Tiny(tiny::TinyCnn::new(&p)),
        };
        let head = Head::new(&(root / HEAD_PREFIX), head, kind.feature_dim(), dim, constant_coordinate);
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

    /// Centres and projects the residual head on backbone features of the training photos and
    /// their species (see [`head::Head::initialise`]).
    pub fn initialise_head(&mut self, features: &Tensor, labels: &[usize], start: head::Projection, shrinkage: f64) {
        self.head.initialise(features, labels, start, shrinkage);
    }

    /// The atypicality the export adds as the model's second output, if any.
    pub fn atypicality(&self) -> Option<&Atypicality> {
        self.head.atypicality()
    }

    pub fn set_atypicality(&mut self, atypicality: Option<Atypicality>) {
        self.head.set_atypicality(atypicality);
    }

    pub fn head_kind(&self) -> HeadKind {
        self.head.kind
    }

    /// Unit embeddings of backbone features.
    pub fn embed_features(&self, features: &Tensor) -> Tensor {
        self.head.forward(features)
    }

    /// The inference-mode network as an ONNX model: `image` `[1, 3, S, S]` -> `embedding`
    /// `[1, D]` (and `atypicality` `[1, 1]` when the head has one), S being the backbone's input
    /// size.
    pub fn export(&self) -> tract_onnx::pb::ModelProto {
        let mut g = Graph::new();
        let outputs = self.export_into(&mut g);
        g.into_model(&outputs, self.input_size(), self.dim, &self.describe())
    }

    /// Writes the network into `g` (float or int8) and returns where its outputs are.
    pub fn export_into(&self, g: &mut Graph) -> Outputs {
        let image = g.input();
        let features = match &self.backbone {
            Backbone::EfficientNet(net) => net.export(g, &image, self.input_size()),
            Backbone::Resnet(net) => net.export(g, &image),
            Backbone::Tiny(net) => net.export(g, &image),
        };
        let atypicality = self.head.export_atypicality(g, &features);
        Outputs { embedding: self.head.export(g, &features), atypicality }
    }

    pub fn input_size(&self) -> i64 {
        self.kind.preprocess().input_size as i64
    }

    /// One line for the ONNX file's doc string.
    pub fn describe(&self) -> String {
        format!("sporeprint embedder: {:?} backbone, {:?} head, {}-d", self.kind, self.head.kind, self.dim)
    }

    /// Unit embeddings `[N, D]` of normalised images.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        self.embed_features(&self.features_t(images, train))
    }
}

/// A `[N, D]` tensor's rows, on the CPU as f32: how embeddings and features leave libtorch.
pub fn matrix_rows(t: &Tensor) -> Vec<Vec<f32>> {
    Vec::<Vec<f32>>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float)).expect("a float matrix")
}
