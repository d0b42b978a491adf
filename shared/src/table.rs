//! The prototype table: one prototype per species, plus everything needed to use it safely with
//! the right model (fingerprint, dimension, preprocessing, calibrated thresholds).
//!

use crate::fingerprint::ModelFingerprint;
use crate::preprocess::PreprocessSpec;
use crate::prototype::{Prototype, ShotError};
use crate::species::{Edibility, Name, Origin, SpeciesId};
use crate::vector::{self, Metric};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// What a table is for and how to read its distances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub embedding_dim: u32,
    pub metric: Metric,
    /// SHA-256 of the ONNX file the prototypes were computed with.
    pub model_fingerprint: ModelFingerprint,
    pub preprocess: PreprocessSpec,
    /// A query farther than this from every prototype is an "unknown species".
    pub open_set_threshold: f32,
    /// An edible answer is flagged when a dangerous species is at most this much farther away.
    pub lookalike_margin: f32,
    /// Softmax temperature turning distances into confidences.
    pub temperature: f32,
    /// Bumped on every change to the table.
    pub revision: u64,
}

impl Header {
    /// Distance thresholds that no distance passes (no calibration yet): euclidean and cosine
    /// distances of unit vectors are at most 2. (A photo's atypicality can still pass it.)
    pub const UNCALIBRATED_THRESHOLD: f32 = 2.0;
    /// The softmax temperature of a table nobody calibrated (export fits its own).
    pub const UNCALIBRATED_TEMPERATURE: f32 = 0.1;

    pub fn new(embedding_dim: u32, model_fingerprint: ModelFingerprint, preprocess: PreprocessSpec) -> Header {
        Header {
            embedding_dim,
            metric: Metric::Euclidean,
            model_fingerprint,
            preprocess,
            open_set_threshold: Self::UNCALIBRATED_THRESHOLD,
            lookalike_margin: 0.1,
            temperature: Self::UNCALIBRATED_TEMPERATURE,
            revision: 0,
        }
    }
}

/// One species.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EntryRecord", into = "EntryRecord")]
pub struct Entry {
    pub id: SpeciesId,
    /// The name the species is known by in this table (unique, case-insensitively).
    pub name: Name,
    pub scientific_name: Option<Name>,
    /// What a "species unclear, probably this genus" answer names (format version 3 on; older
    /// tables take it from the scientific name).
    pub genus: Option<Name>,
    pub edibility: Edibility,
    /// What queries are compared with: all of `sources` combined. Derived, never stored.
    pub prototype: Prototype,
    /// The shots behind the prototype, one group per place that took them, in [`Origin`] order.
    /// Kept apart so a sync can tell new shots from shots both sides already have.
    pub sources: Vec<Source>,
    /// Bumped on every change to the name, scientific name or edibility (not on new shots,
    /// which `sources` track).
    pub revision: u32,
    /// Where the name, scientific name or edibility were last changed.
    pub origin: Origin,
}

/// The shots one place (the host, or one device) contributed to a species.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub origin: Origin,
    pub prototype: Prototype,
}

/// A removed species, kept so the removal reaches the other side of a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub id: SpeciesId,
    /// The entry's revision and shot count when it was removed: a copy elsewhere that has been
    /// renamed or given shots since is newer than the removal and survives it.
    pub revision: u32,
    pub shots: u32,
}

impl Tombstone {
    /// Whether this removal is at least as new as everything `entry` holds.
    pub fn covers(&self, entry: &Entry) -> bool {
        self.id == entry.id && entry.revision <= self.revision && entry.prototype.shots <= self.shots
    }
}

impl Entry {
    /// An entry whose prototype is the combination of `sources`.
    pub fn new(
        id: SpeciesId,
        species: NewSpecies,
        mut sources: Vec<Source>,
        revision: u32,
    ) -> Result<Entry, ShotError> {
        sources.sort_by_key(|s| s.origin);
        let prototype = combine_sources(&sources)?;
        Ok(Entry {
            id,
            name: species.name,
            scientific_name: species.scientific_name,
            genus: species.genus,
            edibility: species.edibility,
            prototype,
            sources,
            revision,
            origin: species.origin,
        })
    }

    /// Mean distance of this species' shots to its prototype (see [`Prototype::spread`]).
    pub fn spread(&self, metric: Metric) -> f32 {
        self.prototype.spread(metric)
    }

    /// Recomputes the prototype after `sources` changed.
    pub(crate) fn rederive(&mut self) -> Result<(), ShotError> {
        self.sources.sort_by_key(|s| s.origin);
        self.prototype = combine_sources(&self.sources)?;
        Ok(())
    }
}

fn combine_sources(sources: &[Source]) -> Result<Prototype, ShotError> {
    let (first, rest) = sources.split_first().ok_or(ShotError::NoShots)?;
    rest.iter().try_fold(first.prototype.clone(), |sum, s| sum.combine(&s.prototype))
}

/// An entry as stored: the prototype is left out, it follows from the sources.
#[derive(Clone, Serialize, Deserialize)]
struct EntryRecord {
    id: SpeciesId,
    name: Name,
    scientific_name: Option<Name>,
    genus: Option<Name>,
    edibility: Edibility,
    sources: Vec<Source>,
    revision: u32,
    origin: Origin,
}

impl From<Entry> for EntryRecord {
    fn from(e: Entry) -> EntryRecord {
        EntryRecord {
            id: e.id,
            name: e.name,
            scientific_name: e.scientific_name,
            genus: e.genus,
            edibility: e.edibility,
            sources: e.sources,
            revision: e.revision,
            origin: e.origin,
        }
    }
}

impl TryFrom<EntryRecord> for Entry {
    type Error = ShotError;
    fn try_from(r: EntryRecord) -> Result<Entry, ShotError> {
        let species = NewSpecies {
            name: r.name,
            scientific_name: r.scientific_name,
            genus: r.genus,
            edibility: r.edibility,
            origin: r.origin,
        };
        Entry::new(r.id, species, r.sources, r.revision)
    }
}

/// Most species one table holds. Far above any real flora (the shipped table has 200), it bounds
/// the memory a table file or a sync peer can make a device allocate.
pub const MAX_SPECIES: usize = 10_000;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TableError {
    #[error("the table is full: it holds at most {capacity} species")]
    Full { capacity: usize },
    #[error("a species named \"{0}\" is already in the table")]
    DuplicateName(String),
    #[error("no species named \"{0}\" in the table")]
    UnknownSpecies(String),
    #[error("embedding has {found} dimensions; the table's model produces {expected}")]
    DimensionMismatch { expected: usize, found: usize },
    #[error(transparent)]
    Shots(#[from] ShotError),
    #[error("entry {index} (\"{name}\") is invalid: {problem}")]
    InvalidEntry { index: usize, name: String, problem: &'static str },
    #[error("the header is invalid: {0}")]
    InvalidHeader(&'static str),
    #[error("{0} is not a finite number: refused rather than named")]
    NotFinite(&'static str),
    #[error("a find needs at least one view")]
    EmptyFind,
}

/// A new species' description, apart from its shots.
#[derive(Clone, Debug)]
pub struct NewSpecies {
    pub name: Name,
    pub scientific_name: Option<Name>,
    pub genus: Option<Name>,
    pub edibility: Edibility,
    pub origin: Origin,
}

/// Prototypes of every known species, with the header that says how to use them.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    header: Header,
    entries: Vec<Entry>,
    tombstones: Vec<Tombstone>,
}

impl Table {
    pub fn new(header: Header) -> Self {
        Table { header, entries: Vec::new(), tombstones: Vec::new() }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn dim(&self) -> usize {
        self.header.embedding_dim as usize
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// Species removed from this table, in id order (see [`Tombstone`]).
    pub fn tombstones(&self) -> &[Tombstone] {
        &self.tombstones
    }

    /// Index of the species called `name`, compared case-insensitively (ASCII): "Cep" and "cep"
    /// are the same species to a person typing on a device.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.entries().iter().position(|e| e.name.as_str().eq_ignore_ascii_case(name))
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.position(name).map(|i| &self.entries()[i])
    }

    pub fn get_by_id(&self, id: SpeciesId) -> Option<&Entry> {
        self.entries().iter().find(|e| e.id == id)
    }

    /// Sets the calibrated open-set threshold (see [`Header::open_set_threshold`]).
    pub fn set_open_set_threshold(&mut self, threshold: f32) {
        self.header.open_set_threshold = threshold;
        self.touch();
    }

    /// The softmax temperature, fitted so that confidences are calibrated probabilities.
    pub fn set_temperature(&mut self, temperature: f32) {
        self.header.temperature = temperature;
        self.touch();
    }

    pub fn set_lookalike_margin(&mut self, margin: f32) {
        self.header.lookalike_margin = margin;
        self.touch();
    }

    /// Enrolls a species from its first shots. Refuses a name already in the table: adding
    /// shots to an existing species is [`add_shots`](Self::add_shots).
    pub fn add_species<V: AsRef<[f32]>>(&mut self, species: NewSpecies, shots: &[V]) -> Result<&Entry, TableError> {
        if let Some(i) = self.position(species.name.as_str()) {
            return Err(TableError::DuplicateName(self.entries()[i].name.to_string()));
        }
        let prototype = Prototype::from_shots(shots, self.dim())?;
        let id = self.fresh_id(&species.name, species.origin);
        let source = Source { origin: species.origin, prototype };
        let entry = Entry::new(id, species, alloc::vec![source], 1)?;
        self.insert(entry)
    }

    /// Adds an entry as it is (from a sync or a conversion), after checking it fits the table.
    pub fn insert(&mut self, mut entry: Entry) -> Result<&Entry, TableError> {
        entry.rederive()?;
        if let Some(i) = self.position(entry.name.as_str()) {
            return Err(TableError::DuplicateName(self.entries()[i].name.to_string()));
        }
        self.push_unchecked(entry)?;
        self.touch();
        Ok(self.entries().last().expect("just pushed"))
    }

    /// Adds shots taken at `origin` to an existing species (a running mean: count and spread
    /// updated). The entry's revision is left alone: new shots are not an edit of its name.
    pub fn add_shots<V: AsRef<[f32]>>(
        &mut self,
        name: &str,
        shots: &[V],
        origin: Origin,
    ) -> Result<&Entry, TableError> {
        let index = self.index_of(name)?;
        let dim = self.dim();
        let entry = &mut self.entries[index];
        let new = Prototype::from_shots(shots, dim)?;
        match entry.sources.iter_mut().find(|s| s.origin == origin) {
            Some(source) => source.prototype = source.prototype.combine(&new)?,
            None => entry.sources.push(Source { origin, prototype: new }),
        }
        entry.rederive()?;
        self.touch();
        Ok(&self.entries()[index])
    }

    pub fn rename(&mut self, old: &str, new: Name) -> Result<(), TableError> {
        let index = self.index_of(old)?;
        if let Some(other) = self.position(new.as_str()).filter(|&i| i != index) {
            return Err(TableError::DuplicateName(self.entries()[other].name.to_string()));
        }
        self.update(index, |entry| entry.name = new);
        Ok(())
    }

    pub fn set_edibility(&mut self, name: &str, edibility: Edibility) -> Result<(), TableError> {
        let index = self.index_of(name)?;
        self.update(index, |entry| entry.edibility = edibility);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<Entry, TableError> {
        let index = self.index_of(name)?;
        let removed = self.entries.remove(index);
        self.bury(Tombstone { id: removed.id, revision: removed.revision, shots: removed.prototype.shots });
        self.touch();
        Ok(removed)
    }

    /// Checks everything a decoded table must satisfy: a usable header, entries of the header's
    /// dimension with unit prototypes, unique names and ids.
    pub fn validate(&self) -> Result<(), TableError> {
        let h = &self.header;
        if self.len() > MAX_SPECIES {
            return Err(TableError::Full { capacity: MAX_SPECIES });
        }
        if h.embedding_dim == 0 {
            return Err(TableError::InvalidHeader("embedding dimension is 0"));
        }
        if [h.open_set_threshold, h.lookalike_margin].iter().any(|x| x.is_nan() || *x < 0.0) {
            return Err(TableError::InvalidHeader("thresholds must be non-negative numbers"));
        }
        if !(h.temperature > 0.0 && h.temperature.is_finite()) {
            return Err(TableError::InvalidHeader("temperature must be a positive number"));
        }
        if !h.open_set_threshold.is_finite() || !h.lookalike_margin.is_finite() {
            return Err(TableError::InvalidHeader("thresholds must be finite numbers"));
        }
        if let Some(problem) = h.preprocess.problem() {
            return Err(TableError::InvalidHeader(problem));
        }
        for (index, entry) in self.entries().iter().enumerate() {
            check_entry(entry, index, self.dim())?;
            let earlier = &self.entries()[..index];
            let invalid = |problem| TableError::InvalidEntry { index, name: entry.name.to_string(), problem };
            if earlier.iter().any(|e| e.name.as_str().eq_ignore_ascii_case(entry.name.as_str())) {
                return Err(invalid("its name is used by an earlier entry"));
            }
            if earlier.iter().any(|e| e.id == entry.id) {
                return Err(invalid("its id is used by an earlier entry"));
            }
            if entry.sources.windows(2).any(|w| w[0].origin >= w[1].origin) {
                return Err(invalid("its sources are not one per origin, in origin order"));
            }
        }
        if self.tombstones.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err(TableError::InvalidHeader("tombstones are not one per id, in id order"));
        }
        Ok(())
    }

    pub(crate) fn from_parts(header: Header, entries: Vec<Entry>, tombstones: Vec<Tombstone>) -> Self {
        Table { header, entries, tombstones }
    }

    /// Appends an entry the caller has already checked against the others (a merge result).
    pub(crate) fn push_unchecked(&mut self, entry: Entry) -> Result<(), TableError> {
        check_entry(&entry, self.len(), self.dim())?;
        if self.len() >= MAX_SPECIES {
            return Err(TableError::Full { capacity: MAX_SPECIES });
        }
        self.entries.push(entry);
        Ok(())
    }

    pub(crate) fn bump_revision(&mut self) {
        self.touch();
    }

    /// Records a removal, keeping one tombstone per id (the newest) in id order.
    pub(crate) fn bury(&mut self, tombstone: Tombstone) {
        match self.tombstones.binary_search_by_key(&tombstone.id, |t| t.id) {
            Ok(i) => {
                let t = &mut self.tombstones[i];
                t.revision = t.revision.max(tombstone.revision);
                t.shots = t.shots.max(tombstone.shots);
            }
            Err(i) => self.tombstones.insert(i, tombstone),
        }
    }

    fn index_of(&self, name: &str) -> Result<usize, TableError> {
        self.position(name).ok_or_else(|| TableError::UnknownSpecies(name.to_string()))
    }

    fn update(&mut self, index: usize, change: impl FnOnce(&mut Entry)) {
        let entry = &mut self.entries[index];
        change(entry);
        entry.revision += 1;
        self.touch();
    }

    fn touch(&mut self) {
        self.header.revision += 1;
    }

    /// An id no entry has and no removal remembers: a species removed and then enrolled again
    /// under its old name must not take the old id, or the removal's tombstone would cover the
    /// new enrollment at the next merge and its shots would be lost.
    fn fresh_id(&self, name: &Name, origin: Origin) -> SpeciesId {
        (0..)
            .map(|salt| SpeciesId::derive(name, origin, salt))
            .find(|&id| self.get_by_id(id).is_none() && self.tombstones.binary_search_by_key(&id, |t| t.id).is_err())
            .expect("a free id among 2^32 salts")
    }
}

fn check_entry(entry: &Entry, index: usize, dim: usize) -> Result<(), TableError> {
    let invalid = |problem| TableError::InvalidEntry { index, name: entry.name.to_string(), problem };
    for p in core::iter::once(&entry.prototype).chain(entry.sources.iter().map(|s| &s.prototype)) {
        if p.vector.len() != dim {
            return Err(TableError::DimensionMismatch { expected: dim, found: p.vector.len() });
        }
        if p.vector.iter().any(|x| !x.is_finite()) {
            return Err(invalid("its prototype contains NaN or infinity"));
        }
        if (vector::norm(&p.vector) - 1.0).abs() > 1e-3 {
            return Err(invalid("its prototype is not unit length"));
        }
        if !(p.mean_norm > 0.0 && p.mean_norm <= 1.0) {
            return Err(invalid("its mean norm is outside (0, 1]"));
        }
        if p.shots == 0 {
            return Err(invalid("it has no shots"));
        }
    }
    Ok(())
}
