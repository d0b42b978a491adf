//! `identify`: one answer per photo, from the nearest prototypes.

use crate::model::Model;
use serde::Serialize;
use sporeprint_shared::embedder::Observation;
use sporeprint_shared::{Edibility, Match, Table};
use std::path::{Path, PathBuf};

/// One photo's answer (a line of `identify --json`).
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub path: PathBuf,
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
    /// What a forager must read before anything else, if anything.
    pub warning: Option<String>,
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
    let observed = model.embedder.observe_file(path)?;
    answer(table, &observed, path, top_k)
}

/// The answer for what the model saw in the photo at, or captured as, `path`.
pub fn answer(table: &Table, observed: &Observation, path: &Path, top_k: usize) -> anyhow::Result<Answer> {
    let found = table.identify_with(&observed.embedding, observed.atypicality, top_k)?;
    let entry = |index: usize| &table.entries()[index];
    let candidate = |m: &Match| Candidate {
        species: entry(m.index).name.as_str().into(),
        distance: m.distance,
        confidence: m.confidence,
        edibility: entry(m.index).edibility,
    };
    let top: Vec<Candidate> = found.top.iter().map(candidate).collect();
    let answer = found.species().map(|m| entry(m.index));
    let warning = match (answer, found.lookalike) {
        (None, _) if found.unknown_by_atypicality => Some(
            "unknown species: the photo looks unlike the photos the model learnt from (another kind of \
             mushroom, or an unclear photo). Do not eat."
                .to_string(),
        ),
        (None, _) => Some("unknown species: not in this table. Do not eat.".to_string()),
        (Some(_), Some(lookalike)) => Some(format!(
            "looks like {} ({}), a dangerous look-alike, too. Do not eat.",
            entry(lookalike.index).name.as_str(),
            entry(lookalike.index).edibility
        )),
        (Some(species), None) if species.edibility.is_dangerous() => {
            Some(format!("{} is {}.", species.name.as_str(), species.edibility))
        }
        _ => None,
    };
    Ok(Answer {
        path: path.into(),
        species: answer.map(|e| e.name.as_str().into()),
        scientific_name: answer.and_then(|e| e.scientific_name.as_ref()).map(|n| n.as_str().into()),
        edibility: answer.map(|e| e.edibility),
        top,
        unknown: found.unknown,
        atypicality: found.atypicality,
        lookalike: found.lookalike.as_ref().map(candidate),
        warning,
    })
}

/// The answer as a person reads it.
pub fn describe(answer: &Answer) -> String {
    let mut text = format!("{}: ", answer.path.display());
    match (&answer.species, answer.edibility) {
        (Some(species), Some(edibility)) => {
            let confidence = answer.top.first().map_or(0.0, |c| c.confidence);
            text.push_str(&format!("{species} ({edibility}), confidence {:.0}%", 100.0 * confidence));
        }
        _ => text.push_str("unknown species"),
    }
    if let Some(warning) = &answer.warning {
        text.push_str(&format!("\n  WARNING: {warning}"));
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
