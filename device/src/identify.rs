//! `identify`: one answer per photo, or one for a find (several views of one mushroom), from
//! the nearest prototypes.

use crate::model::Model;
use anyhow::Context;
use serde::Serialize;
use sporeprint_shared::embedder::Observation;
use sporeprint_shared::find::{self, View};
use sporeprint_shared::image_io::PhotoInfo;
use sporeprint_shared::{Band, Edibility, Match, Table, Tone, Verdict};
use std::path::{Path, PathBuf};

/// One photo's answer (a line of `identify --json`): [`Verdict`] decides it, this records it.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub path: PathBuf,
    /// What the forager is told, by name: `unknown-species`, `unknown-atypical`, `deadly`,
    /// `poisonous`, `dangerous-lookalike`, `edibility-unknown`, `inedible`, `edible-unsure`,
    /// `edible` or `genus`.
    pub verdict: &'static str,
    /// `danger`, `caution`, `neutral` or `edible`: what the screen's colour follows.
    pub tone: Tone,
    /// The verdict's first words ("DEADLY POISONOUS", "UNKNOWN - DO NOT EAT", ...).
    pub headline: &'static str,
    /// What a forager must read before anything else.
    pub warning: String,
    /// Everything but a likely edible species without a dangerous look-alike.
    pub do_not_eat: bool,
    /// The identified species; `None` when it is unknown (beyond the open-set threshold) or only
    /// its genus is likely.
    pub species: Option<String>,
    pub scientific_name: Option<String>,
    /// The named species' genus, or the genus named instead of a species.
    pub genus: Option<String>,
    /// The named species' edibility; for a genus, the most dangerous of its species'.
    pub edibility: Option<Edibility>,
    /// Calibrated probability of what is named (the species, or the genus: its species summed).
    pub confidence: Option<f32>,
    /// That probability in words: `likely`, `possible` or `a guess` (see `shared::confidence`).
    pub confidence_band: Option<Band>,
    /// How many views the answer rests on: 1 for a photo, more for a find.
    pub views: usize,
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

/// `identify --find`: one answer for all the views of one mushroom, and each view's own.
#[derive(Clone, Debug, Serialize)]
pub struct Find {
    pub photos: Vec<PathBuf>,
    /// The combined answer (its `path` is the first view's, `views` how many it rests on).
    pub answer: Answer,
    /// Each view on its own, in the order given.
    pub each: Vec<Answer>,
}

/// Embeds the photo at `path` and finds its nearest species.
pub fn identify(model: &Model, table: &Table, path: &Path, top_k: usize) -> anyhow::Result<Answer> {
    let (observed, photo) = model.embedder.observe_file(path)?;
    Ok(Answer { photo: Some(photo), ..answer(table, &observed, path, top_k)? })
}

/// Embeds every view at `paths` and answers for them together ([`find::combine`]). A view that
/// cannot be read fails the whole find, naming it: an answer resting on fewer views than the
/// forager took would say more than it knows.
pub fn identify_find(model: &Model, table: &Table, paths: &[PathBuf], top_k: usize) -> anyhow::Result<Find> {
    let mut observed = Vec::with_capacity(paths.len());
    let mut each = Vec::with_capacity(paths.len());
    for path in paths {
        let (view, photo) = model.embedder.observe_file(path)?;
        each.push(Answer { photo: Some(photo), ..answer(table, &view, path, top_k)? });
        observed.push(view);
    }
    let first = paths.first().context("a find needs at least one photo")?;
    Ok(Find { photos: paths.to_vec(), answer: find_answer(table, &observed, first, top_k)?, each })
}

/// The answer for several views of one mushroom, labelled `path`.
pub fn find_answer(table: &Table, views: &[Observation], path: &Path, top_k: usize) -> anyhow::Result<Answer> {
    let views: Vec<View> = views.iter().map(|o| View { embedding: &o.embedding, atypicality: o.atypicality }).collect();
    let (embedding, atypicality) = find::combine(&views)?;
    Ok(Answer { views: views.len(), ..answer(table, &Observation { embedding, atypicality }, path, top_k)? })
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
    let genus = verdict.genus_member().and(found.genus);
    let confidence = match (genus, found.species()) {
        (Some(genus), _) => Some(genus.probability),
        (None, Some(best)) => Some(best.confidence),
        (None, None) => None,
    };
    Ok(Answer {
        path: path.into(),
        verdict: verdict.kind(),
        tone: verdict.tone(),
        headline: verdict.headline(),
        warning: verdict.warning(table),
        do_not_eat: verdict.do_not_eat(),
        species: named.map(|e| e.name.as_str().into()),
        scientific_name: named.and_then(|e| e.scientific_name.as_ref()).map(|n| n.as_str().into()),
        genus: named.or(genus.map(|g| entry(g.member))).and_then(|e| e.genus.as_ref()).map(|n| n.as_str().into()),
        edibility: named.map(|e| e.edibility).or(genus.map(|g| g.most_dangerous)),
        confidence,
        confidence_band: confidence.map(Band::of),
        views: 1,
        top: found.top.iter().map(candidate).collect(),
        unknown: found.unknown,
        atypicality: found.atypicality,
        lookalike: found.lookalike.as_ref().map(candidate),
        photo: None,
    })
}

/// The answer as a person reads it.
pub fn describe(answer: &Answer) -> String {
    format!("{}: {}", answer.path.display(), describe_verdict(answer))
}

/// Everything but the photo's name.
fn describe_verdict(answer: &Answer) -> String {
    let mut text = answer.headline.to_string();
    let band = answer.confidence_band.map_or("", Band::words);
    match (&answer.species, &answer.genus, answer.edibility) {
        (Some(species), _, Some(edibility)) => {
            text.push_str(&format!(": {species} ({}), {band}", edibility.in_words()))
        }
        (None, Some(genus), Some(_)) => text.push_str(&format!(": genus {genus}, {band}")),
        _ => text.push_str(": not a species in this table"),
    }
    if answer.views > 1 {
        text.push_str(&format!(" (from {} views)", answer.views));
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
            "\n  {}. {} ({}) {}, distance {:.3}",
            rank + 1,
            c.species,
            c.edibility,
            Band::of(c.confidence).words(),
            c.distance,
        ));
    }
    text
}

/// A find as a person reads it: the combined answer, then each view in a line.
pub fn describe_find(find: &Find) -> String {
    let photos: Vec<String> = find.photos.iter().map(|p| p.display().to_string()).collect();
    let mut text = format!("find ({}): {}", photos.join(", "), describe_verdict(&find.answer));
    for view in &find.each {
        let named = view.species.as_deref().or(view.genus.as_deref()).unwrap_or("unknown");
        let band = view.confidence_band.map_or("", Band::words);
        text.push_str(&format!("\n  view {}: {} {named} {band}", view.path.display(), view.headline));
    }
    text
}
