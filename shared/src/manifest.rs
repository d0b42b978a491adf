//! `model.toml`: what a model folder holds. The host's exporter writes it, the device reads it;
//! both through these types.
//!
//! A model folder has one or more variants (`fp32`, `int8`), each an ONNX embedder with the
//! prototype table built by running exactly that embedder; `default` names the one a device
//! uses unless told otherwise.

use crate::preprocess::PreprocessSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "model.toml";

/// Where the Debian package installs the default model.
pub const INSTALLED_MODEL: &str = "/usr/share/sporeprint/models/default";

/// The model folder a command uses: `--model`, else `SPOREPRINT_MODEL`, else the installed
/// default (the `.deb`), else the repository's shipped default (a build from source).
pub fn model_dir(flag: Option<&Path>) -> PathBuf {
    let repository = || Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").join("models/default");
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SPOREPRINT_MODEL").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(INSTALLED_MODEL)).filter(|p| p.join(MANIFEST).exists()))
        .unwrap_or_else(repository)
}
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// e.g. `efficientnet-lite0`.
    pub backbone: String,
    pub head: String,
    pub embedding_dim: u32,
    pub preprocess: PreprocessSpec,
    /// The entry of `variants` a device uses unless told otherwise.
    pub default: String,
    pub variants: BTreeMap<String, Variant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained: Option<Trained>,
}

/// One exported embedder, its table, and how it measured at export time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// File names, relative to the model folder.
    pub embedder: String,
    pub prototypes: String,
    pub embedder_bytes: u64,
    /// SHA-256 of the embedder file (hex): the table's header holds the same.
    pub fingerprint: String,
    /// Cosine to the trained network's embeddings on the same photos: worst and mean.
    pub min_cosine: f64,
    pub mean_cosine: f64,
    pub species: usize,
    pub open_set_threshold: f32,
    /// The embedder reports each photo's atypicality, and the threshold bounds `nearest
    /// distance + atypicality` (see `classify`). Models from before it: false.
    #[serde(default)]
    pub atypicality: bool,
    pub validation_prototype_top1: f64,
    pub validation_prototype_top3: f64,
    pub validation_knn5: f64,
    pub validation_known_rejected: f64,
    /// How the table's confidences were calibrated; absent for models exported before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// The table's softmax temperature, fitted at export by log-likelihood on the held-out photos
/// and on their shifted variants (other framing, size, light and compression), and how well the
/// confidences then mean what they say on each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub temperature: f32,
    /// Expected calibration error of the top answer's confidence (10 bins).
    pub validation_ece: f64,
    pub shifted_ece: f64,
    /// Nearest-prototype top-1 on the shifted variants of the validation photos.
    pub shifted_prototype_top1: f64,
    /// The same ECEs at the temperature of an uncalibrated table (`Header::UNCALIBRATED_TEMPERATURE`).
    pub uncalibrated_validation_ece: f64,
    pub uncalibrated_shifted_ece: f64,
    /// The device's verdicts on the validation photos and on their shifted variants, from a
    /// table of the training photos' prototypes with this temperature and threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_answers: Option<Answers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shifted_answers: Option<Answers>,
}

/// How photos of known species were answered (`shared::verdict`), counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    pub photos: usize,
    /// Answered with a species name, and of those, the right one.
    pub species: usize,
    pub species_right: usize,
    /// Answered "species unclear, probably this genus", and of those, the right genus.
    pub genus: usize,
    pub genus_right: usize,
    /// Answered "unknown species".
    pub unknown: usize,
}

/// Where the weights came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub run: PathBuf,
    pub mining: String,
    pub unseen_species_held_out: usize,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: cannot read the model description: {problem}", path.display())]
    Io { path: PathBuf, problem: std::io::Error },
    #[error("{}: not a valid model description: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error("{}: no variant {wanted:?} (this model has: {available})", path.display())]
    NoVariant { path: PathBuf, wanted: String, available: String },
}

impl Manifest {
    /// Reads `dir/model.toml`.
    pub fn read(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST);
        let text =
            std::fs::read_to_string(&path).map_err(|problem| ManifestError::Io { path: path.clone(), problem })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| ManifestError::Invalid {
            path: path.clone(),
            problem: std::string::ToString::to_string(&e),
        })?;
        if manifest.format != FORMAT {
            return Err(ManifestError::Invalid {
                path,
                problem: format!("format {} (this build reads format {FORMAT})", manifest.format),
            });
        }
        if let Some(problem) = manifest.preprocess.problem() {
            return Err(ManifestError::Invalid { path, problem: format!("[preprocess]: {problem}") });
        }
        Ok(manifest)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a manifest always serialises")
    }

    /// The named variant, or the default one.
    pub fn variant(&self, dir: &Path, wanted: Option<&str>) -> Result<&Variant, ManifestError> {
        let wanted = wanted.unwrap_or(&self.default);
        self.variants.get(wanted).ok_or_else(|| ManifestError::NoVariant {
            path: dir.join(MANIFEST),
            wanted: wanted.into(),
            available: self.variants.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}
