//! `enroll`: a new species from a few photos (k-shot), or more shots for one already known.
//!
//! The whole read-modify-write runs under the table's lock, embedding included: two shells
//! enrolling into one table queue up instead of both loading the old table and the later save
//! dropping the earlier one's species. A failure anywhere (a bad photo, a clash of names) saves
//! nothing, and the save itself is atomic, so a kill at any instant loses nothing saved before.

use crate::model::Model;
use anyhow::{Context, bail};
use serde::Serialize;
use sporeprint_shared::neighbours::CROWDED_SHARE;
use sporeprint_shared::table::NewSpecies;
use sporeprint_shared::{Edibility, Name, Origin, store};
use std::path::{Path, PathBuf};

/// What to enroll.
#[derive(Clone, Debug)]
pub struct Request {
    pub species: String,
    /// Required for a new species' badge to mean anything; when given for a known species it
    /// must agree with the table (change it with `species set-edibility`, not by accident).
    pub edibility: Option<Edibility>,
    /// Refuse instead of adding shots when the species is already in the table.
    pub new_only: bool,
}

/// What an enrollment did (`enroll --json`).
#[derive(Clone, Debug, Serialize)]
pub struct Enrollment {
    pub table: PathBuf,
    pub species: String,
    pub edibility: Edibility,
    /// True when the species is new to the table, false when shots were added.
    pub new: bool,
    pub photos: usize,
    /// Shots the prototype is now the mean of.
    pub shots: u32,
    /// Mean distance of the shots to their prototype.
    pub spread: f32,
    /// The nearest other species, nearest first.
    pub neighbours: Vec<Neighbour>,
    pub warning: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Neighbour {
    pub species: String,
    pub distance: f32,
    pub edibility: Edibility,
}

/// How many neighbours an enrollment reports.
const NEIGHBOURS: usize = 3;

/// Enrolls from photo files, embedded under the table's lock.
pub fn enroll_photos(
    model: &Model,
    table_path: &Path,
    request: &Request,
    photos: &[PathBuf],
    origin: Origin,
) -> anyhow::Result<Enrollment> {
    enroll(model, table_path, request, photos.len(), || embed_all(model, photos), origin)
}

/// Enrolls `photos` shots, whose embeddings `shots` returns; it is called once the table is
/// locked and checked, so nothing is embedded for a request that will be refused.
pub fn enroll(
    model: &Model,
    table_path: &Path,
    request: &Request,
    photos: usize,
    shots: impl FnOnce() -> anyhow::Result<Vec<Vec<f32>>>,
    origin: Origin,
) -> anyhow::Result<Enrollment> {
    let name =
        Name::new(&request.species).with_context(|| format!("cannot enroll \"{}\"", request.species.escape_debug()))?;
    if photos == 0 {
        bail!("cannot enroll {name}: no photos given (enrollment needs at least one)");
    }
    let lock = model.lock_table(table_path)?;
    let mut table = model.open_table_locked(table_path, &lock)?;

    let existing = table.get(name.as_str()).cloned();
    if let Some(entry) = &existing {
        if request.new_only {
            bail!(
                "{}: a species named \"{}\" is already enrolled; drop --new to add shots to it",
                table_path.display(),
                entry.name
            );
        }
        if let Some(asked) = request.edibility.filter(|&e| e != entry.edibility) {
            bail!(
                "{} is enrolled as {}, not {asked}; change it with `species set-edibility` if that is intended",
                entry.name,
                entry.edibility
            );
        }
    }
    let shots = shots()?;

    let entry = match &existing {
        Some(entry) => table.add_shots(entry.name.as_str(), &shots, origin)?,
        None => {
            let species = NewSpecies {
                name,
                scientific_name: None,
                genus: None,
                edibility: request.edibility.unwrap_or(Edibility::Unknown),
                origin,
            };
            table.add_species(species, &shots)?
        }
    }
    .clone();
    let index = table.position(entry.name.as_str()).expect("just enrolled");
    let neighbours: Vec<Neighbour> = table
        .neighbours(&entry.prototype.vector, Some(index), NEIGHBOURS)
        .into_iter()
        .map(|n| {
            let other = &table.entries()[n.index];
            Neighbour { species: other.name.to_string(), distance: n.distance, edibility: other.edibility }
        })
        .collect();
    let crowding = table.crowding_distance(Some(index));
    let warning = neighbours.first().filter(|n| n.distance < crowding).map(|n| {
        format!(
            "{} lies {:.3} from {}, closer than {:.0}% of the table's species lie to their nearest neighbour \
             ({crowding:.3}): the same species under another name, or a bad photo? Photos of one may be answered \
             as the other.",
            entry.name,
            n.distance,
            n.species,
            100.0 * (1.0 - CROWDED_SHARE)
        )
    });
    store::save(table_path, &table)?;
    Ok(Enrollment {
        table: table_path.into(),
        species: entry.name.to_string(),
        edibility: entry.edibility,
        new: existing.is_none(),
        photos,
        shots: entry.prototype.shots,
        spread: entry.spread(table.header().metric),
        neighbours,
        warning,
    })
}

/// Every photo's embedding, or one error naming every photo that failed.
fn embed_all(model: &Model, photos: &[PathBuf]) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut shots = Vec::with_capacity(photos.len());
    let mut failures = Vec::new();
    for photo in photos {
        match model.embedder.embed_file(photo) {
            Ok(shot) => shots.push(shot),
            Err(error) => failures.push(format!("  {error}")),
        }
    }
    if !failures.is_empty() {
        bail!(
            "nothing enrolled: {} of {} photo(s) could not be used:\n{}",
            failures.len(),
            photos.len(),
            failures.join("\n")
        );
    }
    Ok(shots)
}

/// The enrollment as a person reads it.
pub fn describe(e: &Enrollment) -> String {
    let what = if e.new { "enrolled new species" } else { "added shots to" };
    let mut text = format!(
        "{what} {} ({}) from {} photo(s): {} shot(s) in all, spread {:.3}\n  table: {}",
        e.species,
        e.edibility,
        e.photos,
        e.shots,
        e.spread,
        e.table.display()
    );
    for n in &e.neighbours {
        text.push_str(&format!("\n  nearest: {} ({}) at {:.3}", n.species, n.edibility, n.distance));
    }
    if let Some(warning) = &e.warning {
        text.push_str(&format!("\n  WARNING: {warning}"));
    }
    text
}
