//! sporeprint's prototype tables on the host, without the trainer: sync with a device over a
//! serial line, species by hand, a table's header, and merging two tables. It builds with neither
//! libtorch nor tract (`cargo tree -p sporeprint-tables` has no torch), so a laptop that only
//! syncs a device does not need the 4.7 GB PyTorch install. The trainer's `sporeprint sync` is
//! this crate's [`cli::sync`].

pub mod cli;
pub mod info;
pub mod sync;
