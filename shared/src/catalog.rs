//! Looking after a table by hand: the species listing people and scripts read, and the changes
//! they make (`species list | rename | remove | set-edibility` on the device and in
//! `sporeprint-tables`). Loading, locking and saving stay with the caller, which knows whose table
//! it is.

use crate::species::NameError;
use crate::{Edibility, Name, Origin, Table, TableError};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Serialize;

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

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("cannot rename to \"{}\": {source}", name.escape_debug())]
    BadName { name: String, source: NameError },
    #[error(transparent)]
    Table(#[from] TableError),
}

impl Change {
    /// Applies the change to `table` (in memory). Returns a sentence saying what was done.
    pub fn apply(&self, table: &mut Table) -> Result<String, ChangeError> {
        Ok(match self {
            Change::Rename { old, new } => {
                let name = Name::new(new).map_err(|source| ChangeError::BadName { name: new.clone(), source })?;
                table.rename(old, name)?;
                format!("renamed {old} to {new}")
            }
            Change::Remove { name } => {
                let removed = table.remove(name)?;
                format!("removed {} ({} shot(s))", removed.name, removed.prototype.shots)
            }
            Change::SetEdibility { name, edibility } => {
                table.set_edibility(name, *edibility)?;
                format!("{name} is now {edibility}")
            }
        })
    }
}
