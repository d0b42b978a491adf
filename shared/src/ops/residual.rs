//! [`Quantize`]: f32 to int8/uint8 in one vectorised pass, and [`QAdd`]: a quantized residual
//! addition (two 8-bit tensors dequantized, added and quantized again) in one pass; the rule that
//! swaps tract's nodes for them.
//!
//! tract 0.23.9 runs `QuantizeLinear` element by element through its scalar
//! `round_ties_to_even` (2 ns a value here: a third of a millisecond for the 224x224 input
//! image), and a residual addition as two `DequantizeLinearF32`, an `Add` and a `QuantizeLinear`,
//! four passes with two f32 tensors between them. Both ops compute what tract's do, in the same
//! f32 operations, so the bytes are the same for every finite input: dequantized `(x - zero) as
//! f32 * scale`, quantized `round_ties_even(x * scale) + zero` clamped to the type's range
//! (tract's `scale` is the reciprocal of the ONNX one). A NaN quantizes to the zero point, as in
//! tract; an infinity to the end of the range it points to (tract's integer addition overflows).

use super::{clamp_number, exact_integer, output_range, output_tensor, requantized_bounds};
use std::vec::Vec;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::Add;
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, QuantizeLinearI8, QuantizeLinearU8};

/// f32 to an 8-bit quantized type: `round_ties_even(x * scale) + zero_point`, clamped.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantize {
    /// Multiplies the input: the reciprocal of the ONNX scale.
    pub scale: f32,
    pub zero_point: i32,
    /// int8 or uint8, quantized or not: the type tract's node declared.
    pub output: DatumType,
}

/// An 8-bit quantized tensor's dequantization: `(x - zero_point) as f32 * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dequantize {
    pub scale: f32,
    pub zero_point: i32,
    /// Whether the stored bytes are int8 (else uint8).
    pub signed: bool,
}

/// `a + b`, both 8-bit quantized, dequantized, added in f32 and quantized again.
#[derive(Debug, Clone, PartialEq)]
pub struct QAdd {
    pub a: Dequantize,
    pub b: Dequantize,
    pub sum: Quantize,
}

// Ops are compared to merge duplicates; scales are finite (read from a model's constants).
impl Eq for Quantize {}
impl Eq for QAdd {}

impl std::hash::Hash for Quantize {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.scale.to_bits(), self.zero_point).hash(state);
    }
}

impl std::hash::Hash for QAdd {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for d in [self.a, self.b] {
            (d.scale.to_bits(), d.zero_point, d.signed).hash(state);
        }
        self.sum.hash(state);
    }
}

impl Dequantize {
    #[inline(always)]
    fn value(&self, byte: u8) -> f32 {
        let x = if self.signed { byte as i8 as i32 } else { byte as i32 };
        (x - self.zero_point) as f32 * self.scale
    }
}

impl Quantize {
    /// Quantizes `input` into `out` (the stored bytes of the output type).
    pub fn run(&self, input: &[f32], out: &mut [u8]) {
        assert_eq!(input.len(), out.len(), "Quantize: sizes");
        quantize_all(self, input, out)
    }

    /// One value, as tract's `quantize_linear_f32_u8`/`_i8` do (see the module doc), in the
    /// form that vectorises: clamped before rounding ([`requantized_bounds`]), rounded by
    /// [`exact_integer`], NaN first made 0 (tract's cast of a NaN). Inlined into the callers'
    /// per-instruction-set loops.
    #[inline(always)]
    fn byte(&self, x: f32, (low, high): (f32, f32)) -> u8 {
        let v = x * self.scale;
        let v = if v.is_nan() { 0.0 } else { v };
        let v = clamp_number(v, low, high);
        (exact_integer(v) + self.zero_point) as u8
    }

    fn bounds(&self) -> (f32, f32) {
        requantized_bounds(self.zero_point, output_range(self.output))
    }
}

impl QAdd {
    /// Adds the stored bytes `a` and `b` into `out`.
    pub fn run(&self, a: &[u8], b: &[u8], out: &mut [u8]) {
        assert!(a.len() == b.len() && a.len() == out.len(), "QAdd: sizes");
        add_all(self, a, b, out)
    }
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn quantize_all(op: &Quantize, input: &[f32], out: &mut [u8]) {
    let bounds = op.bounds();
    out.iter_mut().zip(input).for_each(|(o, &x)| *o = op.byte(x, bounds));
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn add_all(op: &QAdd, a: &[u8], b: &[u8], out: &mut [u8]) {
    let bounds = op.sum.bounds();
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = op.sum.byte(op.a.value(a) + op.b.value(b), bounds);
    }
}

impl Op for Quantize {
    fn name(&self) -> StaticName {
        "Quantize".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("x {} + {} -> {:?}", self.scale, self.zero_point, self.output)])
    }

    op_as_typed_op!();
}

impl EvalOp for Quantize {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        output_tensor(self.output, inputs[0].shape(), |out| self.run(input, out))
    }
}

impl TypedOp for Quantize {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

impl Op for QAdd {
    fn name(&self) -> StaticName {
        "QAdd".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let (a, b, s) = (self.a, self.b, &self.sum);
        Ok(vec![format!(
            "(a - {}) x {} + (b - {}) x {} -> x {} + {}",
            a.zero_point, a.scale, b.zero_point, b.scale, s.scale, s.zero_point
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QAdd {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = (inputs[0].as_bytes(), inputs[1].as_bytes());
        ensure!(
            inputs[0].shape() == inputs[1].shape(),
            "QAdd: shapes {:?} and {:?}",
            inputs[0].shape(),
            inputs[1].shape()
        );
        output_tensor(self.sum.output, inputs[0].shape(), |out| self.run(a, b, out))
    }
}

impl TypedOp for QAdd {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.sum.output.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// The rule: tract's `QuantizeLinear` of an f32 tensor to int8/uint8 becomes a [`Quantize`];
/// when what it quantizes is a residual addition (an `Add`, read only here, of two dequantized
/// 8-bit tensors of its own shape), the four nodes become one [`QAdd`]. Anything else is left
/// to tract.
pub fn rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    _name: &str,
    op: &ElementWiseOp,
) -> TractResult<Option<TypedModelPatch>> {
    let (scale, zero_point) = if let Some(q) = op.0.downcast_ref::<QuantizeLinearU8>() {
        (q.scale, q.zero_point as i32)
    } else if let Some(q) = op.0.downcast_ref::<QuantizeLinearI8>() {
        (q.scale, q.zero_point as i32)
    } else {
        return Ok(None);
    };
    let output = model.outlet_fact(node.id.into())?.datum_type;
    if model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type() || node.outputs.len() != 1 {
        return Ok(None);
    }
    let sum = Quantize { scale, zero_point, output };
    if let Some((a, b, inputs)) = residual(model, node)? {
        let mut patch = TypedModelPatch::default();
        let inputs = [patch.tap_model(model, inputs[0])?, patch.tap_model(model, inputs[1])?];
        let added = patch.wire_node(&node.name, QAdd { a, b, sum }, &inputs)?[0];
        patch.shunt_outside(model, node.id.into(), added)?;
        return Ok(Some(patch));
    }
    Ok(Some(TypedModelPatch::replace_single_op(model, node, &node.inputs, sum)?))
}

/// When `quantize` reads an `Add` that only it reads, of two `DequantizeLinearF32` of 8-bit
/// tensors with the sum's shape: their dequantizations and the two 8-bit tensors.
fn residual(model: &TypedModel, quantize: &TypedNode) -> TractResult<Option<(Dequantize, Dequantize, [OutletId; 2])>> {
    let add = model.node(quantize.inputs[0].node);
    let is_add = add.op_as::<TypedBinOp>().is_some_and(|bin| bin.0.is::<Add>());
    if !is_add || add.inputs.len() != 2 || model.single_succ(add.id)?.map(|n| n.id) != Some(quantize.id) {
        return Ok(None);
    }
    let shape = &model.outlet_fact(add.id.into())?.shape;
    let mut found = vec![];
    for &outlet in &add.inputs {
        let dequantize = model.node(outlet.node);
        let Some(op) = dequantize.op_as::<DequantizeLinearF32>() else { return Ok(None) };
        let input = dequantize.inputs[0];
        let fact = model.outlet_fact(input)?;
        let signed = match fact.datum_type.unquantized() {
            dt if dt == i8::datum_type() => true,
            dt if dt == u8::datum_type() => false,
            _ => return Ok(None),
        };
        if &fact.shape != shape {
            return Ok(None);
        }
        found.push((Dequantize { scale: op.scale, zero_point: op.zero_point, signed }, input));
    }
    let [(a, x), (b, y)] = found[..] else { return Ok(None) };
    Ok(Some((a, b, [x, y])))
}
