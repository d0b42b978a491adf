//! `species list | rename | remove | set-edibility`: looking after the device's table by hand
//! (the listing and the changes are `shared::catalog`'s, shared with `sporeprint-tables`).

use crate::model::Model;
use anyhow::Context;
pub use sporeprint_shared::catalog::{Change, Listing, describe, list};
use sporeprint_shared::store;
use std::path::Path;

/// Applies `change` to the table at `path` under its lock, and saves it atomically. Returns a
/// sentence saying what was done.
pub fn change(model: &Model, path: &Path, change: &Change) -> anyhow::Result<String> {
    let lock = model.lock_table(path)?;
    let mut table = model.open_table_locked(path, &lock)?;
    let done = change.apply(&mut table).with_context(|| format!("{}: nothing changed", path.display()))?;
    store::save(path, &table)?;
    Ok(done)
}
