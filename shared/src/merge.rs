//! Merging two copies of a prototype table that changed apart (a device in the field, the host
//! at home), so that neither side's work is lost and both end up with the same table.
//!
//! The rules, per species id:
//! - shots are kept per origin ([`Source`]); each origin's shots only ever grow, so of two
//!   copies of one origin's shots the one with more is the newer, and it already holds the
//!   other's. New shots on both sides are therefore all kept, and shots both sides already had
//!   are not counted twice.
//! - the name, scientific name, genus and edibility are last-writer-wins by the entry's revision
//!   (ties broken by comparing the values, so both sides pick the same one).
//! - a removal ([`Tombstone`]) removes every copy it is at least as new as; a copy renamed or
//!   given shots since survives it.
//! - two different ids with one name (the same species enrolled on both sides) become one entry
//!   under the smaller id, with the shots of both, and the other id is buried.
//!
//! The result depends only on the two inputs, not on which is `ours`: merging on the device
//! or on the host gives the same table, and merging a table with its own merge changes nothing.

use crate::prototype::Prototype;
use crate::table::{Entry, Header, Source, Table, TableError, Tombstone};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MergeError {
    #[error(
        "the tables belong to different models (fingerprints {ours} and {theirs}): their embeddings cannot be compared"
    )]
    DifferentModel { ours: String, theirs: String },
    #[error("the tables use different {0}: their embeddings cannot be compared")]
    DifferentSpace(&'static str),
    #[error(transparent)]
    Table(#[from] TableError),
}

/// Whether two tables hold embeddings of one space: same model, dimension, metric and
/// preprocessing. Only such tables can be merged or copied over each other.
pub fn check_compatible(ours: &Header, theirs: &Header) -> Result<(), MergeError> {
    if ours.model_fingerprint != theirs.model_fingerprint {
        return Err(MergeError::DifferentModel {
            ours: alloc::format!("{}", ours.model_fingerprint.short()),
            theirs: alloc::format!("{}", theirs.model_fingerprint.short()),
        });
    }
    if ours.embedding_dim != theirs.embedding_dim {
        return Err(MergeError::DifferentSpace("embedding dimensions"));
    }
    if ours.metric != theirs.metric {
        return Err(MergeError::DifferentSpace("distance metrics"));
    }
    if ours.preprocess != theirs.preprocess {
        return Err(MergeError::DifferentSpace("image preprocessing"));
    }
    Ok(())
}

/// The table holding both sides' changes (see the module docs), entries in name order.
pub fn merge(ours: &Table, theirs: &Table) -> Result<Table, MergeError> {
    check_compatible(ours.header(), theirs.header())?;

    let mut tombstones: BTreeMap<_, Tombstone> = BTreeMap::new();
    for t in ours.tombstones().iter().chain(theirs.tombstones()) {
        tombstones.entry(t.id).and_modify(|kept| *kept = newest_tombstone(kept, t)).or_insert(*t);
    }

    let mut by_id: BTreeMap<_, Entry> = BTreeMap::new();
    for entry in ours.entries().iter().chain(theirs.entries()) {
        let merged = match by_id.remove(&entry.id) {
            Some(other) => merge_copies(&other, entry)?,
            None => entry.clone(),
        };
        by_id.insert(merged.id, merged);
    }
    by_id.retain(|id, entry| !tombstones.get(id).is_some_and(|t| t.covers(entry)));

    // The same species enrolled under two ids: fold each name's entries into the smallest id.
    let mut by_name: BTreeMap<String, Entry> = BTreeMap::new();
    for (_, entry) in by_id {
        let key = entry.name.as_str().to_ascii_lowercase();
        let folded = match by_name.remove(&key) {
            Some(kept) => {
                let buried = Tombstone { id: entry.id, revision: entry.revision, shots: entry.prototype.shots };
                tombstones.entry(buried.id).and_modify(|t| *t = newest_tombstone(t, &buried)).or_insert(buried);
                fold_same_name(kept, &entry)?
            }
            None => entry,
        };
        by_name.insert(key, folded);
    }

    let mut header = newest_header(ours.header(), theirs.header()).clone();
    header.revision = ours.header().revision.max(theirs.header().revision);
    let mut merged = Table::from_parts(header, Vec::new(), tombstones.into_values().collect());
    for entry in by_name.into_values() {
        merged.push_unchecked(entry)?;
    }
    // A merge that produced something new gets a revision neither side had; one that gave back
    // one side's table keeps that table's revision, so merging again changes nothing.
    if !same_content(&merged, ours) && !same_content(&merged, theirs) {
        merged.bump_revision();
    }
    Ok(merged)
}

/// Two copies of one species (same id).
fn merge_copies(a: &Entry, b: &Entry) -> Result<Entry, TableError> {
    let mut merged = newest_metadata(a, b).clone();
    let mut sources: BTreeMap<_, &Source> = BTreeMap::new();
    for s in a.sources.iter().chain(&b.sources) {
        sources
            .entry(s.origin)
            .and_modify(|kept| {
                if compare_prototypes(&s.prototype, &kept.prototype) == Ordering::Greater {
                    *kept = s;
                }
            })
            .or_insert(s);
    }
    merged.sources = sources.into_values().cloned().collect();
    merged.rederive()?;
    Ok(merged)
}

/// Two different species entries with one name: `kept` has the smaller id and keeps it; the
/// shots of both are added up (they are different photos).
fn fold_same_name(kept: Entry, other: &Entry) -> Result<Entry, TableError> {
    let mut folded = newest_metadata(&kept, other).clone();
    folded.id = kept.id;
    let mut sources: BTreeMap<_, Prototype> = kept.sources.iter().map(|s| (s.origin, s.prototype.clone())).collect();
    for s in &other.sources {
        match sources.get_mut(&s.origin) {
            Some(p) => *p = p.combine(&s.prototype)?,
            None => {
                sources.insert(s.origin, s.prototype.clone());
            }
        }
    }
    folded.sources = sources.into_iter().map(|(origin, prototype)| Source { origin, prototype }).collect();
    folded.revision = kept.revision.max(other.revision);
    folded.rederive()?;
    Ok(folded)
}

/// Of two copies of an entry, the one whose name, scientific name, genus and edibility win.
fn newest_metadata<'a>(a: &'a Entry, b: &'a Entry) -> &'a Entry {
    let key = |e: &'a Entry| (e.revision, e.origin, &e.name, &e.scientific_name, &e.genus, e.edibility);
    if key(b) > key(a) { b } else { a }
}

/// A total order on prototypes of one origin: more shots is newer; equal counts (which should
/// hold equal shots) are ordered by their bits so both sides still agree.
fn compare_prototypes(a: &Prototype, b: &Prototype) -> Ordering {
    let bits =
        |p: &Prototype| -> Vec<u32> { p.vector.iter().map(|x| x.to_bits()).chain([p.mean_norm.to_bits()]).collect() };
    a.shots.cmp(&b.shots).then_with(|| bits(a).cmp(&bits(b)))
}

fn newest_tombstone(a: &Tombstone, b: &Tombstone) -> Tombstone {
    Tombstone { id: a.id, revision: a.revision.max(b.revision), shots: a.shots.max(b.shots) }
}

/// The header whose calibration (thresholds, temperature) the merge keeps: the newer table's,
/// ties broken by the values.
fn newest_header<'a>(a: &'a Header, b: &'a Header) -> &'a Header {
    let key = |h: &Header| {
        (h.revision, h.open_set_threshold.to_bits(), h.lookalike_margin.to_bits(), h.temperature.to_bits())
    };
    if key(b) > key(a) { b } else { a }
}

/// Same species, shots, names and calibration, whatever the order of entries.
fn same_content(a: &Table, b: &Table) -> bool {
    let calibration = |h: &Header| (h.open_set_threshold, h.lookalike_margin, h.temperature);
    calibration(a.header()) == calibration(b.header())
        && a.tombstones() == b.tombstones()
        && a.len() == b.len()
        && a.entries().iter().all(|e| b.get_by_id(e.id) == Some(e))
}
