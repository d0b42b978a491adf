//! sporeprint on the device: identification, enrollment, field mode and the device end of sync.
//! Each command is a module; `main.rs` only parses arguments and calls into here.

pub mod cli;
pub mod identify;
pub mod model;
