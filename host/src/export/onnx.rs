//! Writing ONNX graphs from trained weights.
//!
//! libtorch has no ONNX exporter, so each model module writes its own graph through [`Graph`]:
//! the same structure its `forward` runs, with BatchNorm folded into the convolutions. Types are
//! tract's prost-generated ONNX protobuf (`tract_onnx::pb`), encoded with prost.
//!
//! The same walk writes two graphs:
//! - float ([`Graph::new`]): plain ONNX ops. It also records, in order, every tensor an int8
//!   graph will hold quantized (the input, each convolution's activated output, each residual
//!   sum): the "probes" whose ranges calibration measures;
//! - int8 ([`Graph::int8`], given those ranges in the same order): static post-training
//!   quantization with `QLinearConv` (uint8 activations, int8 weights with one scale per output
//!   channel by default, see [`WeightScales`]). ReLU and ReLU6 are
//!   folded into the output's quantization range (uint8 from 0 saturates below 0, and at 6 with
//!   a range of exactly [0, 6]). Standard ONNX has no quantized Add, so residual sums are
//!   DequantizeLinear -> Add -> QuantizeLinear; pooling and the head run in float (a few hundred
//!   thousand multiply-adds against the backbone's hundreds of millions).

use std::collections::HashMap;
use tch::{Kind, Tensor};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// ONNX opset the graphs are written for (Clip takes min/max as inputs, ReduceL2 takes axes as
/// an attribute).
pub const OPSET: i64 = 13;
/// IR version matching opset 13 (ONNX 1.8).
const IR_VERSION: i64 = 7;
pub const INPUT: &str = "image";
pub const OUTPUT: &str = "embedding";
pub const ATYPICALITY_OUTPUT: &str = "atypicality";

/// Where an exported network's results are in its graph.
pub struct Outputs {
    pub embedding: String,
    /// See [`crate::model::atypicality`].
    pub atypicality: Option<String>,
}

/// A graph under construction: nodes in topological order, weights as initializers.
pub struct Graph {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    counter: usize,
    mode: Mode,
}

enum Mode {
    Float { probes: Vec<String> },
    Int8 { ranges: Vec<(f32, f32)>, next: usize, quantized: HashMap<String, Quantization>, scales: WeightScales },
}

/// How finely int8 weights are scaled.
///
/// Measured on EfficientNet-Lite0 (frozen ImageNet backbone + study head, 100 calibration
/// photos, cosine to the float model over 16 photos): one scale per tensor 0.906 mean (BatchNorm
/// folding gives channels very different ranges, worst in the depthwise convolutions, but
/// keeping those in float still left 0.978); one scale per output channel 0.995.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightScales {
    #[default]
    PerChannel,
    PerTensor,
}

/// The non-linearity that follows a convolution or a sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Relu,
    Relu6,
}

/// How a uint8 tensor maps to reals: `x = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantization {
    pub scale: f32,
    pub zero_point: u8,
}

impl Quantization {
    /// The uint8 grid covering `[low, high]` (widened to include 0, which must be exact).
    pub fn for_range(low: f32, high: f32) -> Quantization {
        let (low, high) = (low.min(0.0), high.max(0.0));
        let scale = ((high - low) / 255.0).max(1e-8);
        let zero_point = (-low / scale).round().clamp(0.0, 255.0) as u8;
        Quantization { scale, zero_point }
    }
}

impl Activation {
    /// The range after the activation, of values measured in `[low, high]` after it.
    fn clamp(self, low: f32, high: f32) -> (f32, f32) {
        match self {
            Activation::Linear => (low, high),
            Activation::Relu => (0.0, high),
            // Exactly [0, 6] when the calibration reached 6, so saturation is the clip.
            Activation::Relu6 => (0.0, high.min(6.0)),
        }
    }
}

pub enum Attribute {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

impl Default for Graph {
    fn default() -> Graph {
        Graph::new()
    }
}

impl Graph {
    /// A float graph.
    pub fn new() -> Graph {
        Graph { nodes: vec![], initializers: vec![], counter: 0, mode: Mode::Float { probes: vec![] } }
    }

    /// An int8 graph: `ranges` are the measured `[min, max]` of the float graph's probes, in order.
    pub fn int8(ranges: Vec<(f32, f32)>, scales: WeightScales) -> Graph {
        let mode = Mode::Int8 { ranges, next: 0, quantized: HashMap::new(), scales };
        Graph { nodes: vec![], initializers: vec![], counter: 0, mode }
    }

    /// The float graph's probes: tensors whose ranges an int8 graph needs, in order.
    pub fn probes(&self) -> &[String] {
        match &self.mode {
            Mode::Float { probes } => probes,
            Mode::Int8 { .. } => &[],
        }
    }

    /// Float: records `x` as the next probe. Int8: the next calibrated range.
    fn probe(&mut self, x: &str) -> (f32, f32) {
        match &mut self.mode {
            Mode::Float { probes } => {
                probes.push(x.to_string());
                (0.0, 0.0)
            }
            Mode::Int8 { ranges, next, .. } => {
                let range = *ranges.get(*next).expect("as many calibrated ranges as the float graph has probes");
                *next += 1;
                range
            }
        }
    }

    fn weight_scales(&self) -> WeightScales {
        match self.mode {
            Mode::Int8 { scales, .. } => scales,
            Mode::Float { .. } => WeightScales::PerChannel,
        }
    }

    fn is_int8(&self) -> bool {
        matches!(self.mode, Mode::Int8 { .. })
    }

    fn quantization(&self, x: &str) -> Option<Quantization> {
        match &self.mode {
            Mode::Int8 { quantized, .. } => quantized.get(x).copied(),
            Mode::Float { .. } => None,
        }
    }

    fn mark_quantized(&mut self, x: &str, q: Quantization) {
        if let Mode::Int8 { quantized, .. } = &mut self.mode {
            quantized.insert(x.to_string(), q);
        }
    }

    fn scalars(&mut self, q: Quantization) -> (String, String) {
        let scale = self.constant_f32("scale", &[q.scale], &[]);
        let zero = self.constant_raw("zero_point", DataType::Uint8, vec![q.zero_point], &[]);
        (scale, zero)
    }

    /// `x` as a float tensor (dequantized if the graph holds it as uint8).
    pub fn float(&mut self, x: &str) -> String {
        match self.quantization(x) {
            Some(q) => {
                let (scale, zero) = self.scalars(q);
                self.op("DequantizeLinear", &[x, &scale, &zero], vec![])
            }
            None => x.to_string(),
        }
    }

    /// Float `x` quantized to uint8 on the grid of `[low, high]`.
    fn quantize(&mut self, x: &str, (low, high): (f32, f32)) -> String {
        let q = Quantization::for_range(low, high);
        let (scale, zero) = self.scalars(q);
        let out = self.op("QuantizeLinear", &[x, &scale, &zero], vec![]);
        self.mark_quantized(&out, q);
        out
    }

    /// The graph's input image (quantized right away in an int8 graph).
    pub fn input(&mut self) -> String {
        let range = self.probe(INPUT);
        if self.is_int8() { self.quantize(INPUT, range) } else { INPUT.to_string() }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// A float constant (weights, biases, centres), copied from `tensor`.
    pub fn constant(&mut self, hint: &str, tensor: &Tensor) -> String {
        let tensor = tensor.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let values = Vec::<f32>::try_from(tensor.flatten(0, -1)).expect("float tensor");
        self.constant_f32(hint, &values, &tensor.size())
    }

    pub fn constant_f32(&mut self, hint: &str, values: &[f32], dims: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant_raw(hint, DataType::Float, raw, dims)
    }

    /// A constant of raw bytes with the given ONNX element type (quantized weights, zero points).
    pub fn constant_raw(&mut self, hint: &str, data_type: DataType, raw: Vec<u8>, dims: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: data_type as i32,
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// Appends a node with one output and returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attributes: Vec<(&str, Attribute)>) -> String {
        let output = self.fresh(&op_type.to_lowercase());
        self.op_into(op_type, inputs, attributes, &output);
        output
    }

    /// Appends a node writing the named output.
    pub fn op_into(&mut self, op_type: &str, inputs: &[&str], attributes: Vec<(&str, Attribute)>, output: &str) {
        let attribute = attributes.into_iter().map(|(name, value)| attribute(name, value)).collect();
        self.nodes.push(pb::NodeProto {
            name: format!("{op_type}_{}", self.nodes.len()),
            op_type: op_type.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        });
    }

    /// A convolution with bias. `pads` = [top, left, bottom, right] (ONNX allows asymmetric
    /// padding in Conv itself, so TensorFlow "SAME" needs no separate Pad node).
    pub fn conv(
        &mut self,
        x: &str,
        weight: &Tensor,
        bias: &Tensor,
        stride: i64,
        pads: [i64; 4],
        groups: i64,
    ) -> String {
        let kernel = weight.size()[2..].to_vec();
        let (w, b) = (self.constant("w", weight), self.constant("b", bias));
        self.op(
            "Conv",
            &[x, &w, &b],
            vec![
                ("kernel_shape", Attribute::Ints(kernel)),
                ("strides", Attribute::Ints(vec![stride, stride])),
                ("pads", Attribute::Ints(pads.to_vec())),
                ("group", Attribute::Int(groups)),
            ],
        )
    }

    /// A convolution (without bias) followed by inference-mode BatchNorm and `activation`: one
    /// Conv with the BatchNorm folded in, or one QLinearConv in an int8 graph.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn(
        &mut self,
        x: &str,
        conv: &tch::nn::Conv2D,
        bn: &tch::nn::BatchNorm,
        eps: f64,
        stride: i64,
        pads: [i64; 4],
        groups: i64,
        activation: Activation,
    ) -> String {
        let (weight, bias) = fold_batch_norm(&conv.ws, conv.bs.as_ref(), bn, eps);
        let Some(input) = self.quantization(x) else {
            let out = self.conv(x, &weight, &bias, stride, pads, groups);
            let out = self.activate(&out, activation);
            self.probe(&out);
            return out;
        };
        let (low, high) = self.probe("");
        let (low, high) = activation.clamp(low, high);
        let output = Quantization::for_range(low, high);
        let per_channel = self.weight_scales() == WeightScales::PerChannel;
        let kernel = weight.size();
        let bias: Vec<f32> = Vec::try_from(bias.to_kind(Kind::Float)).expect("float bias");
        let channels: Vec<Vec<f32>> = (0..kernel[0])
            .map(|c| Vec::try_from(weight.get(c).detach().to_kind(Kind::Float).flatten(0, -1)).expect("float weights"))
            .collect();
        let mut w_scales: Vec<f32> =
            channels.iter().zip(&bias).map(|(w, &b)| weight_scale(w, b, input.scale)).collect();
        if !per_channel {
            let widest = w_scales.iter().fold(0f32, |m, &s| m.max(s));
            w_scales.fill(widest);
        }
        let w: Vec<u8> = channels.iter().zip(&w_scales).flat_map(|(c, &s)| quantize_weights(c, s)).collect();
        let bias_q: Vec<u8> = bias
            .iter()
            .zip(&w_scales)
            .flat_map(|(b, ws)| ((b / (input.scale * ws)).round() as i32).to_le_bytes())
            .collect();
        let (x_scale, x_zero) = self.scalars(input);
        let w = self.constant_raw("wq", DataType::Int8, w, &kernel);
        let (w_scale, w_zero) = if per_channel {
            (
                self.constant_f32("w_scale", &w_scales, &[kernel[0]]),
                self.constant_raw("w_zero", DataType::Int8, vec![0; kernel[0] as usize], &[kernel[0]]),
            )
        } else {
            (
                self.constant_f32("w_scale", &w_scales[..1], &[]),
                self.constant_raw("w_zero", DataType::Int8, vec![0], &[]),
            )
        };
        let (y_scale, y_zero) = self.scalars(output);
        let b = self.constant_raw("bq", DataType::Int32, bias_q, &[kernel[0]]);
        let out = self.op(
            "QLinearConv",
            &[x, &x_scale, &x_zero, &w, &w_scale, &w_zero, &y_scale, &y_zero, &b],
            vec![
                ("kernel_shape", Attribute::Ints(kernel[2..].to_vec())),
                ("strides", Attribute::Ints(vec![stride, stride])),
                ("pads", Attribute::Ints(pads.to_vec())),
                ("group", Attribute::Int(groups)),
            ],
        );
        self.mark_quantized(&out, output);
        out
    }

    /// `a + b`, then `activation` (a residual connection).
    pub fn add(&mut self, a: &str, b: &str, activation: Activation) -> String {
        let (fa, fb) = (self.float(a), self.float(b));
        let sum = self.op("Add", &[&fa, &fb], vec![]);
        let out = self.activate(&sum, activation);
        let range = self.probe(&out);
        if self.is_int8() { self.quantize(&out, activation.clamp(range.0, range.1)) } else { out }
    }

    /// 2-D max pooling (works on uint8 as it is: the grid is monotonic).
    pub fn max_pool(&mut self, x: &str, kernel: i64, stride: i64, pads: [i64; 4]) -> String {
        let out = self.op(
            "MaxPool",
            &[x],
            vec![
                ("kernel_shape", Attribute::Ints(vec![kernel, kernel])),
                ("strides", Attribute::Ints(vec![stride, stride])),
                ("pads", Attribute::Ints(pads.to_vec())),
            ],
        );
        if let Some(q) = self.quantization(x) {
            self.mark_quantized(&out, q);
        }
        out
    }

    fn activate(&mut self, x: &str, activation: Activation) -> String {
        match activation {
            Activation::Linear => x.to_string(),
            Activation::Relu => self.relu(x),
            Activation::Relu6 => self.relu6(x),
        }
    }

    pub fn relu(&mut self, x: &str) -> String {
        self.op("Relu", &[x], vec![])
    }

    pub fn relu6(&mut self, x: &str) -> String {
        let (low, high) = (self.constant_f32("zero", &[0.0], &[]), self.constant_f32("six", &[6.0], &[]));
        self.op("Clip", &[x, &low, &high], vec![])
    }

    /// `x W^T + b` for a `tch` linear layer.
    pub fn linear(&mut self, x: &str, layer: &tch::nn::Linear) -> String {
        let w = self.constant("fc_w", &layer.ws);
        match &layer.bs {
            Some(bias) => {
                let b = self.constant("fc_b", bias);
                self.op("Gemm", &[x, &w, &b], vec![("transB", Attribute::Int(1))])
            }
            None => self.op("Gemm", &[x, &w], vec![("transB", Attribute::Int(1))]),
        }
    }

    /// `[N, C, H, W]` -> `[N, C]` by averaging over space (in float).
    pub fn global_average(&mut self, x: &str) -> String {
        let x = self.float(x);
        let pooled = self.op("GlobalAveragePool", &[&x], vec![]);
        self.op("Flatten", &[&pooled], vec![("axis", Attribute::Int(1))])
    }

    /// Rows scaled to unit length, as `model::head::l2_normalize`.
    pub fn l2_normalize(&mut self, x: &str) -> String {
        let norm = self.op("ReduceL2", &[x], vec![("axes", Attribute::Ints(vec![1])), ("keepdims", Attribute::Int(1))]);
        let eps = self.constant_f32("eps", &[1e-12], &[]);
        let safe = self.op("Max", &[&norm, &eps], vec![]);
        self.op("Div", &[x, &safe], vec![])
    }

    /// The model: float input `image` `[1, 3, size, size]`, output `embedding` `[1, dim]` and,
    /// when the network has one, `atypicality` `[1, 1]` (always second: what
    /// `sporeprint_shared::embedder` reads).
    pub fn into_model(self, outputs: &Outputs, size: i64, dim: i64, doc: &str) -> pb::ModelProto {
        self.into_model_with_outputs(outputs, size, dim, doc, &[])
    }

    /// As [`Graph::into_model`], with `extra` float tensors as further outputs (calibration
    /// reads the probes this way).
    pub fn into_model_with_outputs(
        mut self,
        network: &Outputs,
        size: i64,
        dim: i64,
        doc: &str,
        extra: &[String],
    ) -> pb::ModelProto {
        self.op_into("Identity", &[&network.embedding], vec![], OUTPUT);
        let mut outputs = vec![value_info(OUTPUT, Some(&[1, dim]))];
        if let Some(atypicality) = &network.atypicality {
            self.op_into("Identity", &[atypicality], vec![], ATYPICALITY_OUTPUT);
            outputs.push(value_info(ATYPICALITY_OUTPUT, Some(&[1, 1])));
        }
        outputs.extend(extra.iter().map(|name| value_info(name, None)));
        let graph = pb::GraphProto {
            name: "sporeprint".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info(INPUT, Some(&[1, 3, size, size]))],
            output: outputs,
            ..Default::default()
        };
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "sporeprint".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(graph),
            ..Default::default()
        }
    }
}

/// Serialised protobuf bytes of a model.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}

/// Folds inference-mode BatchNorm into the preceding convolution:
/// `s = gamma / sqrt(var + eps)`, `W' = W s`, `b' = (b - mean) s + beta`.
pub fn fold_batch_norm(weight: &Tensor, bias: Option<&Tensor>, bn: &tch::nn::BatchNorm, eps: f64) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let scale = (&bn.running_var + eps).rsqrt();
        let scale = match &bn.ws {
            Some(gamma) => gamma * scale,
            None => scale,
        };
        let folded_weight = weight * scale.view([-1, 1, 1, 1]);
        let bias = match bias {
            Some(b) => b - &bn.running_mean,
            None => -&bn.running_mean,
        };
        let folded_bias = match &bn.bs {
            Some(beta) => bias * &scale + beta,
            None => bias * &scale,
        };
        (folded_weight, folded_bias)
    })
}

fn attribute(name: &str, value: Attribute) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType;
    let mut proto = pb::AttributeProto { name: name.into(), ..Default::default() };
    match value {
        Attribute::Int(i) => {
            proto.i = i;
            proto.r#type = AttributeType::Int as i32;
        }
        Attribute::Ints(ints) => {
            proto.ints = ints;
            proto.r#type = AttributeType::Ints as i32;
        }
        Attribute::Float(f) => {
            proto.f = f;
            proto.r#type = AttributeType::Float as i32;
        }
    }
    proto
}

/// Largest magnitude of a quantized bias: the int32 accumulator must keep room for the sum of
/// products (at most 255 * 127 * taps) on top of it.
const MAX_QUANTIZED_BIAS: f32 = (1 << 24) as f32;

/// The symmetric int8 scale of one output channel's `weights`: its largest magnitude maps to 127.
/// A channel whose weights are (nearly) zero but whose bias is not — batch norm folded with a
/// vanishing gamma — gets a scale wide enough for `bias / (input_scale * scale)` to fit the
/// accumulator; otherwise that bias would be quantized to ±2^31 and overflow the convolution.
pub fn weight_scale(weights: &[f32], bias: f32, input_scale: f32) -> f32 {
    let max = weights.iter().fold(0f32, |m, v| m.max(v.abs()));
    (max / 127.0).max(bias.abs() / (input_scale * MAX_QUANTIZED_BIAS)).max(1e-12)
}

/// `weights` as int8 (stored as raw bytes) at `scale`.
pub fn quantize_weights(weights: &[f32], scale: f32) -> Vec<u8> {
    weights.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8).collect()
}

fn value_info(name: &str, dims: Option<&[i64]>) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension};
    let shape = dims.map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() })
            .collect(),
    });
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_use_the_full_int8_range() {
        let scale = weight_scale(&[0.5, -1.27, 0.0], 0.1, 0.02);
        assert!((scale - 0.01).abs() < 1e-7, "{scale}");
        assert_eq!(quantize_weights(&[0.5, -1.27, 0.0], scale), [50u8, (-127i8) as u8, 0]);
    }

    #[test]
    fn a_dead_channel_with_a_bias_still_fits_the_accumulator() {
        // Batch norm with gamma 0 folds to zero weights and bias beta.
        let (bias, input_scale) = (2.5f32, 0.02f32);
        let scale = weight_scale(&[0.0; 9], bias, input_scale);
        let quantized_bias = (bias / (input_scale * scale)).round();
        assert!(quantized_bias.abs() <= MAX_QUANTIZED_BIAS, "{quantized_bias}");
        assert!(quantized_bias.abs() >= MAX_QUANTIZED_BIAS / 2.0, "and keeps its precision: {quantized_bias}");
        assert_eq!(quantize_weights(&[0.0; 9], scale), [0u8; 9]);
    }
}
