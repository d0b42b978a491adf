//! The part of sporeprint that the host (trainer, exporter) and the device (field instrument) must
//! agree on bit for bit: embedding math, the prototype table and its file format, classification
//! with an open-set rule, k-shot enrollment and the image preprocessing spec.
//!
//! The line between core and I/O is the `std` feature. The core is `no_std` + `alloc` (the
//! thumbv7em build in scripts/test.sh proves it), so it runs on anything from a Pi to a
//! microcontroller, and does no I/O: it takes and returns values, bytes included. The std parts
//! each own one concern: [`image_io`] (decoding photos into the model's input), [`manifest`]
//! (`model.toml`), [`store`] (table files: locks, atomic saves) and the sync endpoints'
//! serial links ([`sync::client`], [`sync::server`]); the `tract` feature adds
//! the [`embedder`] (ONNX model -> unit embedding) the exporter and device share.
#![cfg_attr(not(feature = "std"), no_std)]

// The core modules name `alloc` (they build without std); the std modules use std's prelude.
extern crate alloc;

// The no_std core.
pub mod catalog;
pub mod classify;
pub mod confidence;
pub mod find;
pub mod fingerprint;
pub mod format;
pub mod merge;
pub mod neighbours;
pub mod preprocess;
pub mod prototype;
pub mod species;
pub mod sync;
pub mod table;
pub mod vector;
pub mod verdict;

// std: one concern each.
#[cfg(feature = "tract")]
pub mod embedder;
#[cfg(feature = "std")]
pub mod image_io;
#[cfg(feature = "std")]
pub mod manifest;
#[cfg(feature = "tract")]
pub mod ops;
#[cfg(feature = "std")]
pub mod store;

pub use classify::{GenusMatch, Identification, LOOKALIKE_FLOOR, MAX_TOP_K, Match};
pub use confidence::Band;
pub use fingerprint::ModelFingerprint;
pub use preprocess::PreprocessSpec;
pub use species::{Edibility, Name, Origin, SpeciesId};
pub use table::{Entry, Header, Source, Table, TableError, Tombstone};
pub use vector::Metric;
pub use verdict::{Tone, Verdict};
