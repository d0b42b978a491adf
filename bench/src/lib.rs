//! sporeprint's benchmark harness: the device's embedder on tract against ONNX Runtime on the
//! same ONNX files, where tract's time goes, the machine's own limit, the identification pipeline,
//! prototype search at scale, memory, and (read from the host's bench) training throughput.
//! `bench/run.sh` prepares the models and writes `BENCHMARKS.md`; `main.rs` only parses
//! arguments and calls [`cli::run`].

pub mod cli;
pub mod embedder;
pub mod floor;
pub mod machine;
pub mod onnx_runtime;
pub mod paired;
pub mod pi;
pub mod pipeline;
pub mod profile;
pub mod report;
pub mod search;
pub mod threads;
pub mod timing;
pub mod training;
