//! The photo collection: ImageFolder layout (`ROOT/<species>/<photo>`, or `ROOT/images/<species>/`
//! with `ROOT/species.csv` beside it), species sorted by name, and the study's split.
//!
//! Split: the last `unseen` species are held out entirely (for k-shot evaluation of species the
//! network never saw); every other species' photos are split 80/20 into training and validation,
//! per species, with a seeded shuffle.

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sporeprint_shared::Edibility;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "JPG", "JPEG"];
/// Share of each seen species' photos kept for validation.
pub const VALIDATION_SHARE: f64 = 0.2;

/// Whether a file name looks like a photo (by extension).
pub fn is_image(path: &Path) -> bool {
    path.extension().is_some_and(|x| IMAGE_EXTENSIONS.contains(&&*x.to_string_lossy()))
}

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
        let edibility = read_edibility(&root.join("species.csv"))?;
        let mut folders: Vec<PathBuf> = std::fs::read_dir(&images)
            .with_context(|| format!("{}: cannot list the folder", images.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();

        let mut collection = Collection { root: root.into(), species: vec![], photos: vec![], excluded: vec![] };
        for folder in folders {
            let name = folder.file_name().unwrap().to_string_lossy().into_owned();
            let mut photos: Vec<PathBuf> = std::fs::read_dir(&folder)
                .with_context(|| format!("{}: cannot list the folder", folder.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_image(p))
                .collect();
            photos.sort();
            if photos.len() < 2 {
                collection.excluded.push((name, photos.len()));
                continue;
            }
            let edibility = edibility.get(&name).copied().unwrap_or(Edibility::Unknown);
            collection.species.push(Species { name, edibility });
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

    /// The study's split (see the module docs). `unseen` must leave at least 2 seen species.
    pub fn split(&self, unseen: usize, seed: u64) -> anyhow::Result<Split> {
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
            let validation = match samples.len() {
                0..=2 => 0,
                n => ((n as f64 * VALIDATION_SHARE).round() as usize).clamp(1, n - 2),
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

/// `species,edibility` lines; a missing file means every species is of unknown edibility.
fn read_edibility(path: &Path) -> anyhow::Result<HashMap<String, Edibility>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(HashMap::new()) };
    let mut map = HashMap::new();
    for (number, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (name, edibility) = line
            .split_once(',')
            .with_context(|| format!("{}:{}: expected `species,edibility`", path.display(), number + 1))?;
        let edibility = edibility
            .trim()
            .parse()
            .with_context(|| format!("{}:{}: bad edibility {edibility:?}", path.display(), number + 1))?;
        map.insert(name.trim().to_string(), edibility);
    }
    Ok(map)
}
