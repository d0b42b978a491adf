//! sporeprint's host side: the trainer, evaluation and export. Sync and the tables' care are
//! `sporeprint-tables` (no libtorch), which `sporeprint sync` calls.
//!
//! - [`train`]: `sporeprint train` (the run directory, the loop) and its losses, mining, optimizer;
//! - [`eval`]: `sporeprint eval`, its metrics and the confidence calibration export also fits;
//! - [`export`]: `sporeprint export` and the ONNX graph writer;
//! - [`report`]: `sporeprint report`, charts and the HTML page;
//! - [`model`]: the networks (backbones, heads, the atypicality);
//! - [`photos`]: the collection on disk, decoding and batching, shifted variants;
//! - [`cli`]: argument parsing; `main.rs` only calls [`cli::main`].

pub mod cli;
pub mod eval;
pub mod export;
pub mod model;
pub mod photos;
pub mod report;
pub mod train;
