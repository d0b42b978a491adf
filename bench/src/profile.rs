//! Where tract spends an embedding: time per operator of the optimised plan, the plan's layout
//! operators, and the work the graph asks for (FLOPs), from tract's own cost model.

use crate::embedder::{ModelFile, input_for};
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::Cost;
use tract_onnx::tract_core::plan::{SimplePlan, SimpleState, eval};

/// Time of one kind of operator over a run.
#[derive(Clone, Debug, Serialize)]
pub struct OpTime {
    /// tract's name for the optimised operator (`OptConv`, `Add`, ...).
    pub op: String,
    /// How many nodes of the plan run it.
    pub nodes: usize,
    pub ms_per_run: f64,
    /// Fraction of the summed operator time.
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub model: String,
    /// Multiply-adds of the decluttered graph x 2 (convolutions, matrix products).
    pub flops: f64,
    /// Nodes of the optimised plan that only move data between layouts.
    pub layout_nodes: Vec<String>,
    pub ops: Vec<OpTime>,
    /// Every node's time, in plan order (for `--nodes`; the report keeps the per-operator sums).
    #[serde(skip)]
    pub nodes: Vec<NodeTime>,
}

/// The model with the input shape its file declares (the exporter writes a fixed one).
fn load(model: &ModelFile) -> anyhow::Result<TypedModel> {
    tract_onnx::onnx()
        .model_for_path(&model.path)
        .and_then(|m| m.into_typed())
        .with_context(|| format!("{}: tract cannot load it", model.path.display()))
}

/// Floating-point operations of one embedding of a decluttered model: each multiply-add counts
/// two, in any datum type.
fn flops(decluttered: &TypedModel) -> anyhow::Result<f64> {
    let mut fma = 0f64;
    for node in decluttered.nodes() {
        let inputs = decluttered.node_input_facts(node.id)?;
        for (cost, count) in node.op.cost(&inputs)? {
            if matches!(cost, Cost::FMA(_)) {
                fma += count.to_i64().with_context(|| format!("{}: symbolic cost", node.name))? as f64;
            }
        }
    }
    Ok(2.0 * fma)
}

/// One node of the optimised plan and its time.
#[derive(Clone, Debug, Serialize)]
pub struct NodeTime {
    pub name: String,
    /// tract's name for the optimised operator.
    pub op: String,
    /// What the operator says of itself (shapes, kernel, ...).
    pub info: String,
    pub ms_per_run: f64,
}

/// Every node of the optimised plan, in plan order, with its mean time over `runs`
/// single-thread runs (after one warm-up run), and the optimised model's layout nodes.
fn node_times(typed: TypedModel, model: &ModelFile, runs: usize) -> anyhow::Result<(Vec<NodeTime>, Vec<String>)> {
    let optimised = sporeprint_shared::embedder::optimise(typed)?;
    let layout_nodes = optimised
        .nodes()
        .iter()
        .filter(|n| is_layout(n.op.name().as_ref()))
        .map(|n| format!("{} ({})", n.name, n.op.name()))
        .collect();
    let mut nodes: Vec<NodeTime> = optimised
        .nodes()
        .iter()
        .map(|n| NodeTime {
            name: n.name.clone(),
            op: n.op.name().to_string(),
            info: n.op.info().map(|i| i.join("; ")).unwrap_or_default(),
            ms_per_run: 0.0,
        })
        .collect();
    let plan = SimplePlan::new(optimised)?;
    let mut state = SimpleState::new(&plan)?;
    let shape = plan.model().input_fact(0)?.shape.as_concrete().context("the input shape is not fixed")?.to_vec();
    let input = Tensor::from_shape(&shape, &input_for(&model.spec()))?;
    state.run(tvec!(input.clone().into_tvalue()))?; // warm-up: buffers, packed weights
    let runs = runs.max(1);
    for _ in 0..runs {
        state.run_plan_with_eval(tvec!(input.clone().into_tvalue()), |ctx, op_state, node, inputs| {
            let started = Instant::now();
            let outputs = eval(ctx, op_state, node, inputs);
            nodes[node.id].ms_per_run += started.elapsed().as_secs_f64() * 1e3 / runs as f64;
            outputs
        })?;
    }
    Ok((nodes, layout_nodes))
}

/// Operators ranked by their time in `runs` single-thread runs of the optimised plan.
pub fn profile(model: &ModelFile, runs: usize) -> anyhow::Result<Profile> {
    let typed = load(model)?;
    let flops = flops(&typed.clone().into_decluttered()?)?;
    let (nodes, layout_nodes) = node_times(typed, model, runs)?;
    let mut by_op: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for node in &nodes {
        let entry = by_op.entry(&node.op).or_default();
        entry.0 += 1;
        entry.1 += node.ms_per_run;
    }
    let total: f64 = by_op.values().map(|(_, ms)| ms).sum();
    let mut ops: Vec<OpTime> = by_op
        .into_iter()
        .map(|(op, (nodes, ms))| OpTime { op: op.to_string(), nodes, ms_per_run: ms, share: ms / total })
        .collect();
    ops.sort_by(|a, b| b.ms_per_run.total_cmp(&a.ms_per_run));
    Ok(Profile { model: model.label(), flops, layout_nodes, ops, nodes })
}

/// Operators that only reorder or reshape data.
fn is_layout(op: &str) -> bool {
    ["Transpose", "MoveAxis", "AxisOp", "Permute"].iter().any(|l| op.contains(l))
}
