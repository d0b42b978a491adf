//! sporeprint's host side: the trainer, evaluation and export. Sync and the tables' care are
//! `sporeprint-tables` (no libtorch), which `sporeprint sync` calls.
//! Each command is a module; `main.rs` only parses arguments and calls into here.

pub mod adam;
pub mod atypicality;
pub mod calibration;
pub mod cli;
pub mod data;
pub mod eval;
pub mod export;
pub mod loss;
pub mod metrics;
pub mod mining;
pub mod model;
pub mod onnx;
pub mod pipeline;
pub mod report;
pub mod shift;
pub mod train;
