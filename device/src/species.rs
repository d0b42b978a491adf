//! `species list | rename | remove | set-edibility`: looking after the table by hand.

use crate::model::Model;
use anyhow::Context;
use serde::Serialize;
use sporeprint_shared::{Edibility, Name, Origin, Table, store};
use std::path::Path;

/// One species as `species list --json` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    pub species: String,
    pub scientific_name: Option<String>,
    pub genus: Option<String>,
    pub edibility: Edibility,
    pub shots: u32,
    /// Mean distance of the shots to their prototype.
    pub spread: f32,
    /// "host", or "device:<id>" for an entry last changed on a device.
    pub origin: String,
    pub revision: u32,
    pub id: String,
}

pub fn list(table: &Table) -> Vec<Listing> {
    let metric = table.header().metric;
    table
        .entries()
        .iter()
        .map(|e| Listing {
            species: e.name.to_string(),
            scientific_name: e.scientific_name.as_ref().map(Name::to_string),
            genus: e.genus.as_ref().map(Name::to_string),
            edibility: e.edibility,
            shots: e.prototype.shots,
            spread: e.spread(metric),
            origin: match e.origin {
                Origin::Host => "host".to_string(),
                Origin::Device(id) => format!("device:{id:08x}"),
            },
            revision: e.revision,
            id: e.id.to_string(),
        })
        .collect()
}

/// The listing as a person reads it: one species a line, aligned.
pub fn describe(listing: &[Listing]) -> String {
    let width = listing.iter().map(|l| l.species.chars().count()).max().unwrap_or(0).max("species".len());
    let mut text = format!("{:<width$}  {:<9}  {:>5}  {:>6}  origin", "species", "edibility", "shots", "spread");
    for l in listing {
        text.push_str(&format!(
            "\n{:<width$}  {:<9}  {:>5}  {:>6.3}  {}",
            l.species,
            l.edibility.as_str(),
            l.shots,
            l.spread,
            l.origin
        ));
    }
    text.push_str(&format!("\n{} species", listing.len()));
    text
}

/// A change to one species.
#[derive(Clone, Debug)]
pub enum Change {
    Rename { old: String, new: String },
    Remove { name: String },
    SetEdibility { name: String, edibility: Edibility },
}

/// Applies `change` to the table at `path` under its lock, and saves it atomically. Returns a
/// sentence saying what was done.
pub fn change(model: &Model, path: &Path, change: &Change) -> anyhow::Result<String> {
    let lock = model.lock_table(path)?;
    let mut table = model.open_table_locked(path, &lock)?;
    let context = || format!("{}: nothing changed", path.display());
    let done = match change {
        Change::Rename { old, new } => {
            let new_name = Name::new(new).with_context(|| format!("cannot rename to \"{}\"", new.escape_debug()))?;
            table.rename(old, new_name).with_context(context)?;
            format!("renamed {old} to {new}")
        }
        Change::Remove { name } => {
            let removed = table.remove(name).with_context(context)?;
            format!("removed {} ({} shot(s))", removed.name, removed.prototype.shots)
        }
        Change::SetEdibility { name, edibility } => {
            table.set_edibility(name, *edibility).with_context(context)?;
            format!("{name} is now {edibility}")
        }
    };
    store::save(path, &table)?;
    Ok(done)
}
