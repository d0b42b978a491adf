//! The photo collection: ImageFolder layout (`ROOT/<species>/<photo>`, or `ROOT/images/<species>/`
//! with `ROOT/species.csv` beside it), species sorted by name, and the study's split.
//!
//! Split: the last `unseen` species are held out entirely (for k-shot evaluation of species the
//! network never saw); every other species' photos are split 80/20 into training and validation,
//! per species, with a seeded shuffle, or a fixed number of photos per species is held out for
//! validation (`--validation-photos 2`: finds of two photos of known species can be measured).

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sporeprint_shared::Edibility;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Share of each seen species' photos kept for validation.
pub const VALIDATION_SHARE: f64 = 0.2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    /// Index into [`Collection::species`].
    pub label: usize,
}

#[derive(Clone, Debug)]
pub struct Species {
    pub name: String,
    pub edibility: Edibility,
    /// From `ROOT/taxonomy.csv`, when it lists the species.
    pub scientific_name: Option<String>,
    pub genus: Option<String>,
}

/// Every usable photo under a root, grouped by species.
#[derive(Clone, Debug)]
pub struct Collection {
    pub root: PathBuf,
    pub species: Vec<Species>,
    /// Photos of each species, sorted by file name.
    pub photos: Vec<Vec<PathBuf>>,
    /// Species folders left out because fewer than 2 photos cannot form a positive pair.
    pub excluded: Vec<(String, usize)>,
}

impl Collection {
    pub fn scan(root: &Path) -> anyhow::Result<Collection> {
        if !root.is_dir() {
            bail!("{}: no such data folder", root.display());
        }
        let images = if root.join("images").is_dir() { root.join("images") } else { root.to_path_buf() };
        let mut folders: Vec<PathBuf> = std::fs::read_dir(&images)
            .with_context(|| format!("{}: cannot list the folder", images.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        let names: Vec<String> =
            folders.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        let edibility = read_edibility(&root.join(SPECIES_CSV), &names)?;
        let taxonomy = read_taxonomy(&root.join(TAXONOMY_CSV), &names)?;

        let mut collection = Collection { root: root.into(), species: vec![], photos: vec![], excluded: vec![] };
        for folder in folders {
            let name = folder.file_name().unwrap().to_string_lossy().into_owned();
            let mut photos: Vec<PathBuf> = std::fs::read_dir(&folder)
                .with_context(|| format!("{}: cannot list the folder", folder.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| sporeprint_shared::image_io::is_photo_file(p))
                .collect();
            photos.sort();
            if photos.len() < 2 {
                collection.excluded.push((name, photos.len()));
                continue;
            }
            let edibility = edibility.get(&name).copied().unwrap_or(Edibility::Unknown);
            let (scientific_name, genus) = taxonomy.get(&name).cloned().unwrap_or_default();
            collection.species.push(Species { name, edibility, scientific_name, genus });
            collection.photos.push(photos);
        }
        if collection.species.is_empty() {
            bail!(
                "{}: no species folder with at least 2 photos (expected ROOT/<species>/<photo>.jpg or ROOT/images/<species>/...)",
                root.display()
            );
        }
        Ok(collection)
    }

    pub fn photo_count(&self) -> usize {
        self.photos.iter().map(Vec::len).sum()
    }

    /// The study's split (see the module docs). `unseen` must leave at least 2 seen species;
    /// `validation_photos` (default: 20%) is capped so that 2 photos of each species are left to
    /// train on.
    pub fn split(&self, unseen: usize, seed: u64, validation_photos: Option<usize>) -> anyhow::Result<Split> {
        let species = self.species.len();
        if unseen + 2 > species {
            bail!("cannot hold out {unseen} unseen species: only {species} species have 2 or more photos");
        }
        let seen = species - unseen;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut split = Split { seen_species: seen, train: vec![], validation: vec![], unseen: vec![] };
        for (label, photos) in self.photos.iter().enumerate() {
            let samples = photos.iter().map(|path| Sample { path: path.clone(), label });
            if label >= seen {
                split.unseen.extend(samples);
                continue;
            }
            let mut samples: Vec<Sample> = samples.collect();
            samples.shuffle(&mut rng);
            // At least one validation photo, and at least two left to train on (a positive pair):
            // a species with only two photos trains on both.
            let validation = match (samples.len(), validation_photos) {
                (0..=2, _) => 0,
                (n, Some(photos)) => photos.min(n - 2),
                (n, None) => ((n as f64 * VALIDATION_SHARE).round() as usize).clamp(1, n - 2),
            };
            split.validation.extend(samples.drain(..validation));
            split.train.extend(samples);
        }
        Ok(split)
    }
}

#[derive(Clone, Debug)]
pub struct Split {
    /// Labels below this are seen in training; the rest are unseen.
    pub seen_species: usize,
    pub train: Vec<Sample>,
    pub validation: Vec<Sample>,
    pub unseen: Vec<Sample>,
}

/// Edibility per species folder: `species,edibility` (a header line, then one row a species).
pub const SPECIES_CSV: &str = "species.csv";
/// Scientific name and genus per species folder: `species,scientific_name,genus,...` (RFC 4180,
/// quoted fields; further columns are sources and notes).
pub const TAXONOMY_CSV: &str = "taxonomy.csv";

/// `species.csv`. A missing file means every species is of unknown edibility (and so "do not
/// eat" on the device); a file that is there but cannot be read, a bad row or a species with no
/// folder is an error naming the file and the line: silently losing the file would silently
/// lose every look-alike warning, which only fire for species known to be dangerous.
fn read_edibility(path: &Path, folders: &[String]) -> anyhow::Result<HashMap<String, Edibility>> {
    let mut map = HashMap::new();
    for (line, row) in read_rows(path, folders, 2)? {
        let edibility =
            row[1].parse().with_context(|| format!("{}:{line}: bad edibility {:?}", path.display(), &row[1]))?;
        map.insert(row[0].clone(), edibility);
    }
    Ok(map)
}

/// A species' (scientific name, genus), each `None` when the field is empty.
type Taxon = (Option<String>, Option<String>);

/// `taxonomy.csv` (optional): species -> its [`Taxon`].
fn read_taxonomy(path: &Path, folders: &[String]) -> anyhow::Result<HashMap<String, Taxon>> {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(read_rows(path, folders, 3)?
        .into_iter()
        .map(|(_, row)| (row[0].clone(), (non_empty(&row[1]), non_empty(&row[2]))))
        .collect())
}

/// The rows (with their line numbers) of a CSV file whose first column names a species folder
/// and that has at least `columns` columns. No file: no rows.
fn read_rows(path: &Path, folders: &[String], columns: usize) -> anyhow::Result<Vec<(u64, Vec<String>)>> {
    let bytes = match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        other => other.with_context(|| format!("{}: cannot read", path.display()))?,
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(&bytes[..]);
    let mut rows: Vec<(u64, Vec<String>)> = vec![];
    for record in reader.byte_records() {
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let row: Vec<String> = record
            .iter()
            .map(|field| String::from_utf8(field.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("{}:{line}: not UTF-8 text", path.display()))?;
        if row.iter().all(String::is_empty) {
            continue;
        }
        if row.len() < columns {
            bail!("{}:{line}: {} column(s), expected at least {columns}", path.display(), row.len());
        }
        if !folders.contains(&row[0]) {
            bail!("{}:{line}: species {:?} has no photo folder", path.display(), row[0]);
        }
        if let Some((earlier, _)) = rows.iter().find(|(_, r)| r[0] == row[0]) {
            bail!("{}:{line}: species {:?} is listed again (first on line {earlier})", path.display(), row[0]);
        }
        rows.push((line, row));
    }
    Ok(rows)
}
