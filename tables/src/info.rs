//! `sporeprint-tables info`: what a table file holds and which model it is for.

use anyhow::Context;
use serde::Serialize;
use sporeprint_shared::{Edibility, Table, format};
use std::path::Path;

/// A table's header and counts, for people and for `--json`.
#[derive(Debug, Serialize)]
pub struct Info {
    /// The file's format version (this build reads every older one and writes [`format::VERSION`]).
    pub format_version: u16,
    pub model_fingerprint: String,
    pub embedding_dim: u32,
    pub metric: String,
    pub open_set_threshold: f32,
    pub temperature: f32,
    pub revision: u64,
    pub species: usize,
    /// Species marked poisonous or deadly.
    pub dangerous: usize,
    pub deadly: usize,
    /// Species without a genus (no genus answer can name them).
    pub without_genus: usize,
    /// Removed species remembered so that a merge does not bring them back.
    pub tombstones: usize,
}

/// Reads the table at `path` (every check of the format applies) and describes it.
pub fn read(path: &Path) -> anyhow::Result<Info> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let table: Table = format::decode(&bytes).with_context(|| format!("{}: not a usable table", path.display()))?;
    // Decoding checked the preamble, version included.
    Ok(info(&table, u16::from_le_bytes([bytes[4], bytes[5]])))
}

pub fn info(table: &Table, format_version: u16) -> Info {
    let header = table.header();
    let count = |f: &dyn Fn(&sporeprint_shared::Entry) -> bool| table.entries().iter().filter(|e| f(e)).count();
    Info {
        format_version,
        model_fingerprint: header.model_fingerprint.to_string(),
        embedding_dim: header.embedding_dim,
        metric: format!("{:?}", header.metric).to_lowercase(),
        open_set_threshold: header.open_set_threshold,
        temperature: header.temperature,
        revision: header.revision,
        species: table.entries().len(),
        dangerous: count(&|e| e.edibility.is_dangerous()),
        deadly: count(&|e| e.edibility == Edibility::Deadly),
        without_genus: count(&|e| e.genus.is_none()),
        tombstones: table.tombstones().len(),
    }
}

/// The info as a person reads it.
pub fn describe(info: &Info) -> String {
    format!(
        "{} species ({} poisonous or deadly, {} deadly; {} without a genus), revision {}, format version {}\n\
         model {} ({}-d, {} distance)\n\
         unknown beyond {:.4}, softmax temperature {:.4}; {} removed species remembered",
        info.species,
        info.dangerous,
        info.deadly,
        info.without_genus,
        info.revision,
        info.format_version,
        info.model_fingerprint,
        info.embedding_dim,
        info.metric,
        info.open_set_threshold,
        info.temperature,
        info.tombstones
    )
}
