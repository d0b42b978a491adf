//! `identify`: one answer per photo, from the nearest prototypes.

use crate::model::Model;
use serde::Serialize;
use sporeprint_shared::embedder::Observation;
use sporeprint_shared::image_io::PhotoInfo;
use sporeprint_shared::{Edibility, Match, Table, Tone, Verdict};
use std::path::{Path, PathBuf};

/// One photo's answer (a line of `identify --json`): [`Verdict`] decides it, this records it.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub path: PathBuf,
    /// What the forager is told, by name: `unknown-species`, `unknown-atypical`, `deadly`,
    /// `poisonous`, `dangerous-lookalike`, `edibility-unknown`, `inedible` or `edible`.
    pub verdict: &'static str,
    /// `danger`, `caution`, `neutral` or `edible`: what the screen's colour follows.
    pub tone: Tone,
    /// The verdict's first words ("DEADLY POISONOUS", "UNKNOWN - DO NOT EAT", ...).
    pub headline: &'static str,
    /// What a forager must read before anything else.
    pub warning: String,
    /// Everything but an edible species without a dangerous look-alike.
    pub do_not_eat: bool,
    /// The identified species; `None` when it is unknown (beyond the open-set threshold).
    pub species: Option<String>,
    pub scientific_name: Option<String>,
    pub edibility: Option<Edibility>,
    pub top: Vec<Candidate>,
    pub unknown: bool,
    /// How unlike the model's training photos this one looks as a whole, in distance units (0:
    /// typical; the open-set rule adds it to the nearest distance).
    pub atypicality: f32,
    /// A poisonous or deadly species close behind an edible answer.
    pub lookalike: Option<Candidate>,
    /// How the photo file was read (format, stored size, EXIF rotation applied); absent for a
    /// camera frame.
    pub photo: Option<PhotoInfo>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub species: String,
    pub distance: f32,
    pub confidence: f32,
    pub edibility: Edibility,
}

/// Embeds the photo at `path` and finds its nearest species.
pub fn identify(model: &Model, table: &Table, path: &Path, top_k: usize) -> anyhow::Result<Answer> {
    let (observed, photo) = model.embedder.observe_file(path)?;
    Ok(Answer { photo: Some(photo), ..answer(table, &observed, path, top_k)? })
}

/// The answer for what the model saw in the photo at, or captured as, `path`.
pub fn answer(table: &Table, observed: &Observation, path: &Path, top_k: usize) -> anyhow::Result<Answer> {
    let found = table.identify_with(&observed.embedding, observed.atypicality, top_k)?;
    let verdict = Verdict::of(&found, table);
    let entry = |index: usize| &table.entries()[index];
    let candidate = |m: &Match| Candidate {
        species: entry(m.index).name.as_str().into(),
        distance: m.distance,
        confidence: m.confidence,
        edibility: entry(m.index).edibility,
    };
    let named = verdict.species().map(entry);
    Ok(Answer {
        path: path.into(),
        verdict: verdict.kind(),
        tone: verdict.tone(),
        headline: verdict.headline(),
        warning: verdict.warning(table),
        do_not_eat: verdict.do_not_eat(),
        species: named.map(|e| e.name.as_str().into()),
        scientific_name: named.and_then(|e| e.scientific_name.as_ref()).map(|n| n.as_str().into()),
        edibility: named.map(|e| e.edibility),
        top: found.top.iter().map(candidate).collect(),
        unknown: found.unknown,
        atypicality: found.atypicality,
        lookalike: found.lookalike.as_ref().map(candidate),
        photo: None,
    })
}

/// The answer as a person reads it.
pub fn describe(answer: &Answer) -> String {
    let mut text = format!("{}: {}", answer.path.display(), answer.headline);
    match (&answer.species, answer.edibility) {
        (Some(species), Some(edibility)) => {
            let confidence = answer.top.first().map_or(0.0, |c| c.confidence);
            text.push_str(&format!(": {species} ({}), confidence {:.0}%", edibility.in_words(), 100.0 * confidence));
        }
        _ => text.push_str(": not a species in this table"),
    }
    let label = if answer.tone == Tone::Danger || answer.do_not_eat { "WARNING" } else { "NOTE" };
    text.push_str(&format!("\n  {label}: {}", answer.warning));
    if let Some(photo) = answer.photo.filter(|p| p.orientation != sporeprint_shared::image_io::Rotation::Upright) {
        text.push_str(&format!(
            "\n  (photo {} to stand upright, as its EXIF orientation says)",
            photo.orientation.describe()
        ));
    }
    for (rank, c) in answer.top.iter().enumerate() {
        text.push_str(&format!(
            "\n  {}. {} ({}) distance {:.3}, confidence {:.0}%",
            rank + 1,
            c.species,
            c.edibility,
            c.distance,
            100.0 * c.confidence
        ));
    }
    text
}
