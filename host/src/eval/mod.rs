//! `sporeprint eval`: measures a trained run (or, without `--run`, the pretrained backbone's
//! features as a baseline) on the study's split: training and validation photos of the seen
//! species, and the held-out unseen species.
//!
//! Every metric is computed for four embedding variants (a fifth with `--crops`), so what helps
//! is measured rather than assumed: `plain` (the model's unit embedding), `centred` (minus the
//! training-set mean, then re-normalised: SimpleShot), `flip` (the mean of the photo's and its
//! mirror image's embeddings), and `centred+flip`.
//!
//! Where each metric's rows come from:
//! - triplet accuracy: the training run's fixed validation triplets;
//! - centroid accuracy: all seen photos (training + validation), k = photos of the species;
//! - k-NN and nearest-prototype accuracy: validation photos against training photos/prototypes;
//! - Precision@1, R-Precision, MAP@R, NMI: the unseen species among themselves (as in "A Metric
//!   Learning Reality Check": retrieval on classes never trained on);
//! - k-shot: k support photos of each unseen species join the gallery of all training photos
//!   (study: right when the species is among the 3 nearest photos) or become its prototype among
//!   all seen prototypes (device: top-1 / top-3); averaged over random draws, with the spread;
//! - open set: the threshold keeping 95% of validation photos within their nearest seen
//!   prototype, and the share of unseen-species photos it rejects as "unknown species";
//! - shifted: every query photo (validation, unseen) also as its shifted variant
//!   ([`crate::photos::shift`]: another framing, size, light and compression, seeded), asked of the same
//!   prototypes and enrollments made from the original photos: what a forager's photos from
//!   another source than the data set get (`shifted` in the report);
//! - finds: each unseen species enrolled from 1 photo, its other photos taken as the views of
//!   one find (1, 2, 3 views), named by the nearest prototype among all; two ways to combine the
//!   views are measured side by side: the mean of their unit embeddings (what the device does,
//!   `sporeprint_shared::find`) and the sum of their log-probabilities (which, for the table's
//!   softmax, ranks species by the sum of the views' distances, whatever the temperature);
//! - known finds: the validation photos of each seen species taken as the views of one find
//!   against the training prototypes (finds of 2 need `train --validation-photos 2`: the data set
//!   has 4 photos per species, and the default split holds out 1);
//! - other open-set scores (`open_set_scores`): the same rule on the distance to the nearest
//!   training photo and on the ratio of the nearest prototype's distance to the second's.

pub mod calibration;
pub mod metrics;

use crate::model::atypicality::Atypicality;
use crate::model::{BackboneKind, matrix_rows};
use crate::photos::data::Collection;
use crate::photos::pipeline::PhotoCache;
use crate::train::{self, Network};
use anyhow::Context;
use metrics::Retrieval;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sporeprint_shared::classify::open_set_score;
use sporeprint_shared::{find, vector};
use std::path::PathBuf;
use tch::{Device, Tensor};

#[derive(Clone, Debug, clap::Args)]
pub struct EvalArgs {
    /// A run directory written by `sporeprint train` (its best weights are measured).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The photos (same layout as for training).
    #[arg(long)]
    pub data: PathBuf,
    /// Measure the backbone's pooled features instead of the head's embeddings. Without --run:
    /// the pretrained backbone as a baseline.
    #[arg(long)]
    pub features: bool,
    /// Backbone of the baseline (without --run).
    #[arg(long, value_enum, default_value = "efficientnet-lite0")]
    pub backbone: BackboneKind,
    /// Unseen species of the baseline's split (without --run: a run uses its own).
    #[arg(long, default_value_t = 15)]
    pub unseen: usize,
    /// Seed of the baseline's split (which photo of each seen species is for validation), to
    /// pair it with a run trained with that `--seed` (without --run: a run uses its own).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validation photos per species of the baseline's split, as `train --validation-photos`
    /// (without --run: a run uses its own).
    #[arg(long)]
    pub validation_photos: Option<usize>,
    /// k of the k-NN accuracy (the study used 5).
    #[arg(long, default_value_t = 5, value_parser = crate::train::at_least(1))]
    pub knn: usize,
    /// Support photos per unseen species for k-shot accuracy.
    #[arg(long, value_delimiter = ',', default_value = "1,3", value_parser = crate::train::at_least(1))]
    pub shots: Vec<usize>,
    /// Random draws of the support photos per k. The spread between draws is large with few
    /// species (3-shot: about 9 points over 15 species); 200 draws hold the mean to about 0.6.
    #[arg(long, default_value_t = 200, value_parser = crate::train::at_least(1))]
    pub draws: usize,
    /// Known-species photos the open-set threshold must accept.
    #[arg(long, default_value_t = 0.95, value_parser = crate::train::share)]
    pub keep: f64,
    /// Weight of the photo's atypicality in `open_set_with_atypicality` (see
    /// `sporeprint_host::model::atypicality`), fitted afresh for every variant, baseline included.
    #[arg(long, default_value_t = 1.0, value_parser = crate::train::non_negative)]
    pub atypicality_weight: f64,
    /// Also measure `centred+flip+crops`: gallery and enrollment photos embedded as the mean of
    /// 10 views (5 crops and their mirrors), queries as in `centred+flip`. 5x the embedding work.
    #[arg(long)]
    pub crops: bool,
    /// Directory for eval.json and embeddings.json (default: the run directory; without --run
    /// nothing is saved unless this is given).
    #[arg(long)]
    pub save: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct MeanSpread {
    pub mean: f64,
    pub std: f64,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct KShot {
    pub shots: usize,
    /// The study's rule: the species is among the 3 nearest gallery photos.
    pub study_top3_photos: MeanSpread,
    /// Nearest-prototype (the device's way), among all seen + unseen prototypes.
    pub prototype_top1: MeanSpread,
    pub prototype_top3: MeanSpread,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct OpenSet {
    /// Euclidean distance to the nearest prototype beyond which the answer is "unknown".
    pub threshold: f32,
    /// Validation photos of known species wrongly answered "unknown".
    pub known_rejected: f64,
    /// Unseen-species photos (not enrolled) answered "unknown"; `None` without unseen species.
    pub unseen_rejected: Option<f64>,
    /// Threshold-free: the chance that an unseen-species photo lies farther from every prototype
    /// than a known-species validation photo (0.5: distance tells them apart no better than a
    /// coin). On 60 unseen photos one operating point moves 1.7 points per photo; this uses
    /// every pair.
    #[serde(default)]
    pub auroc: Option<f64>,
}

/// What is measured on the unseen species; absent when the split holds none out.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct UnseenMetrics {
    pub unseen_retrieval: Retrieval,
    pub unseen_nmi: f64,
    pub kshot: Vec<KShot>,
    /// Finds of unseen species enrolled from one photo, by number of views.
    #[serde(default)]
    pub finds: Vec<FindMetrics>,
}

/// Nearest-prototype top-1 of finds of `views` photos (averaged over the draws).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct FindMetrics {
    pub views: usize,
    /// The device's rule: the mean of the views' unit embeddings.
    pub mean_embedding_top1: MeanSpread,
    /// The alternative: the sum of the views' log-probabilities (= the smallest sum of distances).
    pub summed_log_probability_top1: MeanSpread,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct VariantReport {
    pub variant: String,
    pub triplet_accuracy: f64,
    pub centroid_accuracy: f64,
    pub knn_accuracy: f64,
    pub prototype_top1: f64,
    pub prototype_top3: f64,
    /// Same keys as before at the top level (`unseen_retrieval`, `unseen_nmi`, `kshot`), or
    /// none of them.
    #[serde(flatten)]
    pub unseen: Option<UnseenMetrics>,
    /// The open-set rule on the distance to the nearest prototype alone.
    pub open_set: OpenSet,
    /// The rule on `distance + atypicality` (what a model exported with an atypicality does;
    /// `threshold` in those units).
    #[serde(default)]
    pub open_set_with_atypicality: Option<OpenSet>,
    /// The same queries as their shifted variants (absent in reports from before it).
    #[serde(default)]
    pub shifted: Option<ShiftedMetrics>,
    /// Finds of known species: validation photos of one species as the views of one find, named
    /// by the nearest training prototype. Views >= 2 need a run trained with
    /// `--validation-photos 2` or more.
    #[serde(default)]
    pub known_finds: Vec<FindMetrics>,
    /// Other open-set scores on the same photos, by name (see [`open_set_scores`]).
    #[serde(default)]
    pub open_set_scores: std::collections::BTreeMap<String, OpenSet>,
}

/// Metrics on the shifted variants of the query photos (the gallery, prototypes and enrollment
/// photos stay the originals).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ShiftedMetrics {
    pub prototype_top1: f64,
    pub prototype_top3: f64,
    pub knn_accuracy: f64,
    /// k-shot and finds of the unseen species (queries and views shifted); absent without them.
    pub kshot: Vec<KShot>,
    pub finds: Vec<FindMetrics>,
    /// Finds of known species, their views shifted.
    #[serde(default)]
    pub known_finds: Vec<FindMetrics>,
}

/// The plain embeddings an evaluation measured, for plots (`RUN/embeddings.json`).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct EmbeddingDump {
    pub species: Vec<String>,
    pub rows: Vec<EmbeddedPhoto>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct EmbeddedPhoto {
    pub path: PathBuf,
    pub label: usize,
    /// `train`, `validation` or `unseen`.
    pub set: String,
    pub embedding: Vec<f32>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct EvalReport {
    pub model: String,
    pub embedding_dim: usize,
    pub seen_species: usize,
    pub unseen_species: usize,
    pub train_photos: usize,
    pub validation_photos: usize,
    pub unseen_photos: usize,
    pub knn: usize,
    pub variants: Vec<VariantReport>,
}

/// Raw (pre-normalisation) vectors of a cache's photos: straight and mirrored, and with
/// `--crops` the mean over the 10 enrollment views.
#[derive(Default)]
struct Raw {
    straight: Vec<Vec<f32>>,
    mirrored: Vec<Vec<f32>>,
    views: Option<Vec<Vec<f32>>>,
    /// The backbone's features of the centre crops (= `straight` when features are measured).
    features: Vec<Vec<f32>>,
}

fn embed(network: &Network, cache: &PhotoCache, features: bool, views: bool) -> Raw {
    if cache.is_empty() {
        // No unseen species (`--unseen 0`, the shipped default's recipe): nothing to run.
        return Raw { views: views.then(Vec::new), ..Raw::default() };
    }
    let run = |images: &Tensor| {
        if features { network.net.features_t(images, false) } else { network.net.forward_t(images, false) }
    };
    let all: Vec<usize> = (0..cache.len()).collect();
    let straight_features =
        network.run_batches(&all, |chunk| cache.batch(chunk, None), |images| network.net.features_t(images, false));
    let straight = if features {
        straight_features.shallow_clone()
    } else {
        let device = network.vs.device();
        tch::no_grad(|| network.net.embed_features(&straight_features.to_device(device))).to_device(Device::Cpu)
    };
    let mirrored = network.run_batches(&all, |chunk| cache.mirrored_batch(chunk), run);
    // Views 0 and 1 are the centre crop and its mirror: already embedded above.
    let views = views.then(|| {
        let sum = (2..ENROLLMENT_VIEWS)
            .map(|view| network.run_batches(&all, |chunk| cache.view_batch(chunk, view), run))
            .fold(&straight + &mirrored, |sum, t| sum + t);
        matrix_rows(&(sum / ENROLLMENT_VIEWS as i64))
    });
    Raw {
        straight: matrix_rows(&straight),
        mirrored: matrix_rows(&mirrored),
        views,
        features: matrix_rows(&straight_features),
    }
}

/// k-means runs behind NMI, the tightest kept (as scikit-learn's `n_init`).
const KMEANS_RESTARTS: usize = 10;

/// `image_io::enrollment_views`: 5 crops, each also mirrored.
const ENROLLMENT_VIEWS: usize = 10;

/// The raw rows, averaged with their mirror images' when `flip`.
fn combined(raw: &Raw, flip: bool) -> Vec<Vec<f32>> {
    if !flip {
        return raw.straight.clone();
    }
    raw.straight.iter().zip(&raw.mirrored).map(|(s, m)| s.iter().zip(m).map(|(a, b)| (a + b) / 2.0).collect()).collect()
}

/// The variant's unit embeddings of `raw`, centred on `centre` when given.
fn variant(raw: &Raw, flip: bool, centre: Option<&[f32]>) -> Vec<Vec<f32>> {
    centred_units(combined(raw, flip), centre)
}

/// What an evaluation measures: the run's network (or the pretrained backbone, for the
/// baseline), and the split it was trained on (the baseline: --unseen, --seed, --validation-photos).
struct Measured {
    network: Network,
    backbone: BackboneKind,
    split: (usize, u64, Option<usize>),
    /// How the report names it.
    model: String,
}

impl Measured {
    fn of(args: &EvalArgs) -> anyhow::Result<Measured> {
        let device = Device::cuda_if_available();
        Ok(match &args.run {
            Some(run) => {
                let (config, network) = train::load_run(run, train::BEST, device)?;
                Measured {
                    network,
                    backbone: config.backbone,
                    split: (config.unseen, config.seed, config.validation_photos),
                    model: format!("{}{}", run.display(), if args.features { " (backbone features)" } else { "" }),
                }
            }
            // The head is never used: the baseline measures the backbone's features.
            None => Measured {
                network: Network::pretrained(args.backbone, 1, device)?,
                backbone: args.backbone,
                split: (args.unseen, args.seed, args.validation_photos),
                model: format!("pretrained {:?} features (untrained baseline)", args.backbone),
            },
        })
    }
}

pub fn evaluate(args: &EvalArgs) -> anyhow::Result<(EvalReport, EmbeddingDump)> {
    let Measured { network, backbone, split: (unseen, seed, validation_photos), model } = Measured::of(args)?;
    let features = args.features || args.run.is_none();
    let collection = Collection::scan(&args.data)?;
    let split = collection.split(unseen, seed, validation_photos)?;
    let spec = backbone.preprocess();
    let train_cache = PhotoCache::load(&split.train, spec, "train photos");
    let validation_cache = PhotoCache::load(&split.validation, spec, "validation");
    let unseen_cache = PhotoCache::load(&split.unseen, spec, "unseen");
    let shifted_validation_cache =
        PhotoCache::load_shifted(&split.validation, spec, "validation (shifted)", SHIFT_SEED);
    let shifted_unseen_cache = PhotoCache::load_shifted(&split.unseen, spec, "unseen (shifted)", SHIFT_SEED);
    let (train_raw, validation_raw, unseen_raw) = (
        embed(&network, &train_cache, features, args.crops),
        embed(&network, &validation_cache, features, false),
        embed(&network, &unseen_cache, features, args.crops),
    );
    let (shifted_validation_raw, shifted_unseen_raw) = (
        embed(&network, &shifted_validation_cache, features, false),
        embed(&network, &shifted_unseen_cache, features, false),
    );
    anyhow::ensure!(
        shifted_validation_cache.len() == validation_cache.len() && shifted_unseen_cache.len() == unseen_cache.len(),
        "a photo decoded once but not twice"
    );
    let (train_labels, validation_labels, unseen_labels) =
        (train_cache.labels(), validation_cache.labels(), unseen_cache.labels());
    let triplets = train::validation_triplets(&train_cache, &validation_cache, seed);

    let features_of =
        Features { train: &train_raw.features, validation: &validation_raw.features, unseen: &unseen_raw.features };
    let mut variants = vec![];
    for (name, flip, centred) in
        [("plain", false, false), ("centred", false, true), ("flip", true, false), ("centred+flip", true, true)]
    {
        // The centre is the training-set mean of the (flip-averaged) raw vectors.
        let centre = centred.then(|| vector::mean(&combined(&train_raw, flip)).expect("training photos"));
        let train_e = variant(&train_raw, flip, centre.as_deref());
        let validation_e = variant(&validation_raw, flip, centre.as_deref());
        let unseen_e = variant(&unseen_raw, flip, centre.as_deref());
        let shifted = Shifted {
            validation: variant(&shifted_validation_raw, flip, centre.as_deref()),
            unseen: variant(&shifted_unseen_raw, flip, centre.as_deref()),
        };
        variants.push(measure(
            name,
            args,
            Sets {
                train: Labelled { rows: &train_e, labels: &train_labels },
                validation: Labelled { rows: &validation_e, labels: &validation_labels },
                unseen: Unseen { queries: &unseen_e, support: &unseen_e, labels: &unseen_labels },
                shifted: Some(&shifted),
            },
            &triplets,
            features_of,
            seed,
        ));
    }
    if let (Some(train_views), Some(unseen_views)) = (&train_raw.views, &unseen_raw.views) {
        // Enrollment side (training gallery, k-shot support) from 10 views; queries flip-averaged.
        let centre = vector::mean(&combined(&train_raw, true)).expect("training photos");
        let (train_e, validation_e) =
            (centred_units(train_views.clone(), Some(&centre)), variant(&validation_raw, true, Some(&centre)));
        let (unseen_e, unseen_support) =
            (variant(&unseen_raw, true, Some(&centre)), centred_units(unseen_views.clone(), Some(&centre)));
        variants.push(measure(
            "centred+flip+crops",
            args,
            Sets {
                train: Labelled { rows: &train_e, labels: &train_labels },
                validation: Labelled { rows: &validation_e, labels: &validation_labels },
                unseen: Unseen { queries: &unseen_e, support: &unseen_support, labels: &unseen_labels },
                shifted: None,
            },
            &triplets,
            features_of,
            seed,
        ));
    }
    let sets = [
        ("train", &train_cache, &train_raw),
        ("validation", &validation_cache, &validation_raw),
        ("unseen", &unseen_cache, &unseen_raw),
    ];
    let dump = dump(&collection, &sets);
    let report = EvalReport {
        model,
        embedding_dim: train_raw.straight.first().map_or(0, Vec::len),
        seen_species: split.seen_species,
        unseen_species: collection.species.len() - split.seen_species,
        train_photos: train_cache.len(),
        validation_photos: validation_cache.len(),
        unseen_photos: unseen_cache.len(),
        knn: args.knn,
        variants,
    };
    Ok((report, dump))
}

/// `rows` less `centre` (when given), each scaled to unit length.
fn centred_units(mut rows: Vec<Vec<f32>>, centre: Option<&[f32]>) -> Vec<Vec<f32>> {
    for v in &mut rows {
        if let Some(centre) = centre {
            v.iter_mut().zip(centre).for_each(|(x, c)| *x -= c);
        }
        vector::l2_normalize(v);
    }
    rows
}

/// The plain embeddings of every set's photos, for `embeddings.json`.
fn dump(collection: &Collection, sets: &[(&str, &PhotoCache, &Raw)]) -> EmbeddingDump {
    let mut dump = EmbeddingDump { species: collection.species.iter().map(|s| s.name.clone()).collect(), rows: vec![] };
    for &(set, cache, raw) in sets {
        for (sample, embedding) in cache.samples.iter().zip(variant(raw, false, None)) {
            dump.rows.push(EmbeddedPhoto {
                path: sample.path.clone(),
                label: sample.label,
                set: set.into(),
                embedding,
            });
        }
    }
    dump
}

/// Embeddings and their labels, in the same order.
#[derive(Clone, Copy)]
struct Labelled<'a> {
    rows: &'a [Vec<f32>],
    labels: &'a [usize],
}

/// The backbone's features of each set's photos (centre crops), for the atypicality.
#[derive(Clone, Copy)]
struct Features<'a> {
    train: &'a [Vec<f32>],
    validation: &'a [Vec<f32>],
    unseen: &'a [Vec<f32>],
}
/// Unseen photos as queries, the same photos as enrollment support (another variant of their
/// embeddings, e.g. from crops), and their labels, all in one order.
#[derive(Clone, Copy)]
struct Unseen<'a> {
    queries: &'a [Vec<f32>],
    support: &'a [Vec<f32>],
    labels: &'a [usize],
}

/// The shifted variants' embeddings of the validation and unseen photos, in their order.
struct Shifted {
    validation: Vec<Vec<f32>>,
    unseen: Vec<Vec<f32>>,
}

/// Seeds the shifted variants (the exporter's, so both shift each photo of a split alike).
const SHIFT_SEED: u64 = crate::export::SHIFT_SEED;

/// One variant's embeddings of each set, in the order of their labels.
struct Sets<'a> {
    train: Labelled<'a>,
    validation: Labelled<'a>,
    unseen: Unseen<'a>,
    /// Absent for the variant with enrollment crops.
    shifted: Option<&'a Shifted>,
}

/// The variant's metrics (see the module docs); `seed` draws the k-shot and find supports.
fn measure(
    name: &str,
    args: &EvalArgs,
    sets: Sets,
    triplets: &[crate::train::mining::Triplet],
    features: Features,
    seed: u64,
) -> VariantReport {
    let Sets { train: train_set, validation: validation_set, unseen: unseen_set, shifted } = sets;
    let Labelled { rows: train, labels: train_labels } = train_set;
    let Labelled { rows: validation, labels: validation_labels } = validation_set;
    let Unseen { queries: unseen, support: unseen_support, labels: unseen_labels } = unseen_set;
    let triplet_accuracy = triplets
        .iter()
        .filter(|t| {
            vector::euclidean(&validation[t.anchor], &train[t.positive])
                < vector::euclidean(&validation[t.anchor], &validation[t.negative])
        })
        .count() as f64
        / triplets.len().max(1) as f64;
    let seen: Vec<Vec<f32>> = train.iter().chain(validation).cloned().collect();
    let seen_labels: Vec<usize> = train_labels.iter().chain(validation_labels).copied().collect();
    let prototypes = metrics::prototypes(train, train_labels);

    let unseen_metrics = (!unseen.is_empty()).then(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6b5_7b07);
        let clusters =
            metrics::kmeans_best_of(unseen, metrics::by_label(unseen_labels).len(), 100, KMEANS_RESTARTS, &mut rng);
        let kshot =
            args.shots.iter().map(|&k| kshot(k, args.draws, train_set, &prototypes, unseen_set, &mut rng)).collect();
        let finds = finds(args.draws, &prototypes, unseen_set, &mut rng);
        UnseenMetrics {
            unseen_retrieval: metrics::retrieval(unseen, unseen_labels),
            unseen_nmi: metrics::nmi(&clusters, unseen_labels),
            kshot,
            finds,
        }
    });

    let nearest_prototype = |e: &Vec<f32>| metrics::nearest_prototype_distance(e, &prototypes);
    let known: Vec<f32> = validation.iter().map(nearest_prototype).collect();
    let unseen_distances: Vec<f32> = unseen.iter().map(nearest_prototype).collect();
    let atypicality = Atypicality::fit(features.train, train, train_labels, args.atypicality_weight as f32);
    let open_set_with_atypicality = atypicality.map(|a| {
        let plus = |distances: &[f32], features: &[Vec<f32>]| -> Vec<f32> {
            distances.iter().zip(features).map(|(&d, f)| open_set_score(d, a.of(f))).collect()
        };
        open_set(&plus(&known, features.validation), &plus(&unseen_distances, features.unseen), args.keep)
    });

    let shifted = shifted.map(|shifted| {
        // A generator of its own: the draws repeat from run to run (they are not the same draws
        // as the originals', whose generator also seeded the k-means).
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05b1_f7ed);
        let has_unseen = !shifted.unseen.is_empty();
        let support = Unseen { queries: &shifted.unseen, support: unseen_support, labels: unseen_labels };
        let shifted_validation = Labelled { rows: &shifted.validation, labels: validation_labels };
        ShiftedMetrics {
            prototype_top1: metrics::prototype_accuracy(&shifted.validation, validation_labels, &prototypes, 1),
            prototype_top3: metrics::prototype_accuracy(&shifted.validation, validation_labels, &prototypes, 3),
            knn_accuracy: metrics::knn_accuracy(&shifted.validation, validation_labels, train, train_labels, args.knn),
            kshot: match has_unseen {
                true => args
                    .shots
                    .iter()
                    .map(|&k| kshot(k, args.draws, train_set, &prototypes, support, &mut rng))
                    .collect(),
                false => vec![],
            },
            finds: match has_unseen {
                true => finds(args.draws, &prototypes, support, &mut rng),
                false => vec![],
            },
            known_finds: known_finds(args.draws, &prototypes, shifted_validation, &mut rng),
        }
    });
    let known_finds = {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf1d5);
        known_finds(args.draws, &prototypes, validation_set, &mut rng)
    };

    VariantReport {
        variant: name.to_string(),
        shifted,
        triplet_accuracy,
        centroid_accuracy: metrics::centroid_accuracy(&seen, &seen_labels, None),
        knn_accuracy: metrics::knn_accuracy(validation, validation_labels, train, train_labels, args.knn),
        prototype_top1: metrics::prototype_accuracy(validation, validation_labels, &prototypes, 1),
        prototype_top3: metrics::prototype_accuracy(validation, validation_labels, &prototypes, 3),
        unseen: unseen_metrics,
        open_set: open_set(&known, &unseen_distances, args.keep),
        open_set_with_atypicality,
        known_finds,
        open_set_scores: open_set_scores(train, &prototypes, validation, unseen, args.keep),
    }
}

/// Open-set scores other than the distance to the nearest prototype, measured side by side so
/// that a better rule for the device is chosen by measurement:
/// - `nearest-photo`: the distance to the nearest training photo (k-NN with k = 1);
/// - `nearest-to-second`: the nearest prototype's distance over the second nearest's (an
///   ambiguous photo, between two species, scores high whatever its distances).
fn open_set_scores(
    train: &[Vec<f32>],
    prototypes: &std::collections::BTreeMap<usize, Vec<f32>>,
    validation: &[Vec<f32>],
    unseen: &[Vec<f32>],
    keep: f64,
) -> std::collections::BTreeMap<String, OpenSet> {
    let nearest_photo = |e: &Vec<f32>| train.iter().map(|t| vector::euclidean(e, t)).fold(f32::INFINITY, f32::min);
    let ratio = |e: &Vec<f32>| {
        let (mut first, mut second) = (f32::INFINITY, f32::INFINITY);
        for d in prototypes.values().map(|p| vector::euclidean(e, p)) {
            (first, second) = if d < first { (d, first) } else { (first, second.min(d)) };
        }
        if second > 0.0 && second.is_finite() { first / second } else { 0.0 }
    };
    let score = |f: &dyn Fn(&Vec<f32>) -> f32| -> (Vec<f32>, Vec<f32>) {
        (validation.iter().map(f).collect(), unseen.iter().map(f).collect())
    };
    let ((photo_known, photo_unseen), (ratio_known, ratio_unseen)) = (score(&nearest_photo), score(&ratio));
    [
        ("nearest-photo", open_set(&photo_known, &photo_unseen, keep)),
        ("nearest-to-second", open_set(&ratio_known, &ratio_unseen, keep)),
    ]
    .into_iter()
    .map(|(name, o)| (name.to_string(), o))
    .collect()
}

/// The open-set rule on scores (larger: less like a known species) of known-species photos
/// and of photos of species not in the table, the threshold keeping `keep` of the known.
fn open_set(known: &[f32], unseen: &[f32], keep: f64) -> OpenSet {
    let metrics::OpenSetFit { threshold, known_rejected } = metrics::fit_open_set(known, keep);
    let measured = !unseen.is_empty();
    OpenSet {
        threshold,
        known_rejected,
        unseen_rejected: measured.then(|| metrics::rejected_share(unseen, threshold)),
        auroc: measured.then(|| metrics::auroc(known, unseen)),
    }
}

fn kshot(
    k: usize,
    draws: usize,
    train: Labelled,
    seen_prototypes: &std::collections::BTreeMap<usize, Vec<f32>>,
    unseen: Unseen,
    rng: &mut ChaCha8Rng,
) -> KShot {
    let (
        Labelled { rows: train, labels: train_labels },
        Unseen { queries: unseen, support: unseen_support, labels: unseen_labels },
    ) = (train, unseen);
    let groups = metrics::by_label(unseen_labels);
    let (mut study, mut top1, mut top3) = (vec![], vec![], vec![]);
    for _ in 0..draws.max(1) {
        let (mut support, mut queries) = (vec![], vec![]);
        for rows in groups.values() {
            let mut rows = rows.clone();
            rows.shuffle(rng);
            if rows.len() <= k {
                continue; // nothing left to query
            }
            support.extend_from_slice(&rows[..k]);
            queries.extend_from_slice(&rows[k..]);
        }
        let query_rows: Vec<Vec<f32>> = queries.iter().map(|&i| unseen[i].clone()).collect();
        let query_labels: Vec<usize> = queries.iter().map(|&i| unseen_labels[i]).collect();
        let gallery: Vec<Vec<f32>> =
            train.iter().cloned().chain(support.iter().map(|&i| unseen_support[i].clone())).collect();
        let gallery_labels: Vec<usize> =
            train_labels.iter().copied().chain(support.iter().map(|&i| unseen_labels[i])).collect();
        study.push(metrics::knn_accuracy(&query_rows, &query_labels, &gallery, &gallery_labels, 3));

        let support_rows: Vec<Vec<f32>> = support.iter().map(|&i| unseen_support[i].clone()).collect();
        let support_labels: Vec<usize> = support.iter().map(|&i| unseen_labels[i]).collect();
        let mut prototypes = seen_prototypes.clone();
        prototypes.extend(metrics::prototypes(&support_rows, &support_labels));
        top1.push(metrics::prototype_accuracy(&query_rows, &query_labels, &prototypes, 1));
        top3.push(metrics::prototype_accuracy(&query_rows, &query_labels, &prototypes, 3));
    }
    let summary = |v: &[f64]| {
        let (mean, std) = metrics::mean_and_spread(v);
        MeanSpread { mean, std }
    };
    KShot {
        shots: k,
        study_top3_photos: summary(&study),
        prototype_top1: summary(&top1),
        prototype_top3: summary(&top3),
    }
}

/// Most views per find measured (the unseen species have 4 photos: 1 enrolls, 3 are views).
const FIND_VIEWS: usize = 3;

/// Finds of 1..=[`FIND_VIEWS`] views of each unseen species, enrolled from one other photo (see
/// the module docs). Species with too few photos for a find of `n` views are left out of it.
fn finds(
    draws: usize,
    seen_prototypes: &std::collections::BTreeMap<usize, Vec<f32>>,
    unseen: Unseen,
    rng: &mut ChaCha8Rng,
) -> Vec<FindMetrics> {
    let Unseen { queries: unseen, support: unseen_support, labels: unseen_labels } = unseen;
    let groups = metrics::by_label(unseen_labels);
    let mut hits = vec![(vec![], vec![]); FIND_VIEWS];
    for _ in 0..draws.max(1) {
        let mut prototypes = seen_prototypes.clone();
        let mut views_of = vec![];
        for (&label, rows) in &groups {
            let mut rows = rows.clone();
            rows.shuffle(rng);
            if let Some((&support, views)) = rows.split_first().filter(|(_, views)| !views.is_empty()) {
                prototypes.extend(metrics::prototypes(std::slice::from_ref(&unseen_support[support]), &[label]));
                views_of.push((label, views.to_vec()));
            }
        }
        for n in 1..=FIND_VIEWS {
            let views: Vec<(usize, Vec<&[f32]>)> = views_of
                .iter()
                .filter(|(_, v)| v.len() >= n)
                .map(|(label, v)| (*label, v[..n].iter().map(|&i| unseen[i].as_slice()).collect()))
                .collect();
            if let Some((mean, sum)) = find_top1(&prototypes, &views) {
                hits[n - 1].0.push(mean);
                hits[n - 1].1.push(sum);
            }
        }
    }
    find_metrics(&hits)
}

/// Finds of 1..=[`FIND_VIEWS`] validation photos of each known species (drawn anew each draw),
/// against the training prototypes; species with fewer photos are left out of the larger finds.
fn known_finds(
    draws: usize,
    prototypes: &std::collections::BTreeMap<usize, Vec<f32>>,
    validation: Labelled,
    rng: &mut ChaCha8Rng,
) -> Vec<FindMetrics> {
    let Labelled { rows: validation, labels } = validation;
    let groups = metrics::by_label(labels);
    let mut hits = vec![(vec![], vec![]); FIND_VIEWS];
    for _ in 0..draws.max(1) {
        let shuffled: Vec<(usize, Vec<usize>)> = groups
            .iter()
            .map(|(&label, rows)| {
                let mut rows = rows.clone();
                rows.shuffle(rng);
                (label, rows)
            })
            .collect();
        for n in 1..=FIND_VIEWS {
            let views: Vec<(usize, Vec<&[f32]>)> = shuffled
                .iter()
                .filter(|(_, rows)| rows.len() >= n)
                .map(|(label, rows)| (*label, rows[..n].iter().map(|&i| validation[i].as_slice()).collect()))
                .collect();
            if let Some((mean, sum)) = find_top1(prototypes, &views) {
                hits[n - 1].0.push(mean);
                hits[n - 1].1.push(sum);
            }
        }
    }
    find_metrics(&hits)
}

/// The top-1 of finds (label, views) by both rules: the nearest prototype to the views' combined
/// embedding (the device's rule), and the smallest sum of the views' distances. None without finds.
fn find_top1(
    prototypes: &std::collections::BTreeMap<usize, Vec<f32>>,
    finds: &[(usize, Vec<&[f32]>)],
) -> Option<(f64, f64)> {
    if finds.is_empty() {
        return None;
    }
    let labels: Vec<usize> = prototypes.keys().copied().collect();
    let nearest = |scores: Vec<f32>| labels[vector::k_smallest(scores.into_iter().enumerate(), 1)[0].0];
    let (mut mean_right, mut sum_right) = (0, 0);
    for (label, views) in finds {
        let combined: Vec<find::View> = views.iter().map(|v| find::View { embedding: v, atypicality: 0.0 }).collect();
        let (mean, _) = find::combine(&combined).expect("unit views");
        mean_right +=
            usize::from(nearest(prototypes.values().map(|p| vector::euclidean(&mean, p)).collect()) == *label);
        let summed = prototypes.values().map(|p| views.iter().map(|v| vector::euclidean(v, p)).sum()).collect();
        sum_right += usize::from(nearest(summed) == *label);
    }
    Some((mean_right as f64 / finds.len() as f64, sum_right as f64 / finds.len() as f64))
}

/// Mean and spread over the draws of each find size's top-1 (by both rules).
fn find_metrics(hits: &[(Vec<f64>, Vec<f64>)]) -> Vec<FindMetrics> {
    let summary = |v: &[f64]| {
        let (mean, std) = metrics::mean_and_spread(v);
        MeanSpread { mean, std }
    };
    hits.iter()
        .enumerate()
        .filter(|(_, (mean, _))| !mean.is_empty())
        .map(|(i, (mean, sum))| FindMetrics {
            views: i + 1,
            mean_embedding_top1: summary(mean),
            summed_log_probability_top1: summary(sum),
        })
        .collect()
}

/// Writes `eval.json` and `embeddings.json` (`eval-features.json`, ... for backbone features)
/// into the run directory, atomically.
pub fn save(
    dir: &std::path::Path,
    report: &EvalReport,
    embeddings: &EmbeddingDump,
    features: bool,
) -> anyhow::Result<()> {
    let suffix = if features { "-features" } else { "" };
    let write = |name: String, text: String| {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let path = dir.join(name);
        sporeprint_shared::store::write_atomically(&path, text.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))
    };
    write(format!("eval{suffix}.json"), serde_json::to_string_pretty(report)?)?;
    write(format!("embeddings{suffix}.json"), serde_json::to_string(embeddings)?)
}

/// The k of the k-shot metrics in `report`.
fn args_shots(report: &EvalReport) -> Vec<usize> {
    let first = report.variants.first().and_then(|v| v.unseen.as_ref());
    first.map(|u| u.kshot.iter().map(|k| k.shots).collect()).unwrap_or_default()
}

/// The report as a table, metrics down, variants across.
pub fn table(report: &EvalReport) -> String {
    let mut out = format!(
        "{}\n{} seen species ({} training / {} validation photos), {} unseen species ({} photos), {}-d\n{}\n",
        report.model,
        report.seen_species,
        report.train_photos,
        report.validation_photos,
        report.unseen_species,
        report.unseen_photos,
        report.embedding_dim,
        if report.unseen_species == 0 {
            "No unseen species in this split (trained with --unseen 0): the unseen-species metrics are absent (-).\n"
        } else {
            ""
        }
    );
    let mut rows = Rows { report, lines: vec![] };
    rows.push("metric", |v| v.variant.clone());
    rows.study();
    rows.finds();
    rows.shifted();
    rows.open_set();
    let width = rows.lines.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, cells) in rows.lines {
        out.push_str(&format!("{label:<width$}"));
        for cell in cells {
            out.push_str(&format!(" {cell:>14}"));
        }
        out.push('\n');
    }
    out
}

/// The text table's rows: a label and one cell per variant ("-" where a metric is absent).
struct Rows<'a> {
    report: &'a EvalReport,
    lines: Vec<(String, Vec<String>)>,
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn spread(m: &MeanSpread) -> String {
    format!("{:.1}±{:.1}%", 100.0 * m.mean, 100.0 * m.std)
}

fn auroc(o: &OpenSet) -> String {
    o.auroc.map_or("-".into(), |a| format!("{a:.3}"))
}

impl Rows<'_> {
    fn push(&mut self, label: impl Into<String>, cell: impl Fn(&VariantReport) -> String) {
        let cells = self.report.variants.iter().map(cell).collect();
        self.lines.push((label.into(), cells));
    }

    fn push_unseen(&mut self, label: impl Into<String>, cell: impl Fn(&UnseenMetrics) -> Option<String>) {
        self.push(label, |v| v.unseen.as_ref().and_then(&cell).unwrap_or_else(|| "-".into()));
    }

    fn push_shifted(&mut self, label: impl Into<String>, cell: impl Fn(&ShiftedMetrics) -> Option<String>) {
        self.push(label, |v| v.shifted.as_ref().and_then(&cell).unwrap_or_else(|| "-".into()));
    }

    /// The study's metrics and k-shot.
    fn study(&mut self) {
        self.push("triplet accuracy (validation)", |v| pct(v.triplet_accuracy));
        self.push("centroid accuracy (seen)", |v| pct(v.centroid_accuracy));
        self.push(format!("{}-NN accuracy (validation)", self.report.knn), |v| pct(v.knn_accuracy));
        self.push("prototype top-1 (validation)", |v| pct(v.prototype_top1));
        self.push("prototype top-3 (validation)", |v| pct(v.prototype_top3));
        self.push_unseen("Precision@1 (unseen)", |u| Some(pct(u.unseen_retrieval.precision_at_1)));
        self.push_unseen("R-Precision (unseen)", |u| Some(pct(u.unseen_retrieval.r_precision)));
        self.push_unseen("MAP@R (unseen)", |u| Some(pct(u.unseen_retrieval.map_at_r)));
        self.push_unseen("NMI k-means (unseen)", |u| Some(format!("{:.3}", u.unseen_nmi)));
        for k in args_shots(self.report) {
            let shot = move |u: &UnseenMetrics| u.kshot.iter().find(|s| s.shots == k).cloned();
            self.push_unseen(format!("{k}-shot, study (top-3 photos)"), |u| {
                shot(u).map(|s| spread(&s.study_top3_photos))
            });
            self.push_unseen(format!("{k}-shot, prototype top-1"), |u| shot(u).map(|s| spread(&s.prototype_top1)));
            self.push_unseen(format!("{k}-shot, prototype top-3"), |u| shot(u).map(|s| spread(&s.prototype_top3)));
        }
    }

    /// Finds of new species (both rules) and of known species.
    fn finds(&mut self) {
        for n in 1..=FIND_VIEWS {
            let find = move |u: &UnseenMetrics| u.finds.iter().find(|f| f.views == n).cloned();
            self.push_unseen(format!("find of {n} (1-shot), mean embedding"), |u| {
                find(u).map(|f| spread(&f.mean_embedding_top1))
            });
            self.push_unseen(format!("find of {n} (1-shot), summed log-prob"), |u| {
                find(u).map(|f| spread(&f.summed_log_probability_top1))
            });
        }
        for n in 1..=self.known_views() {
            self.push(format!("find of {n}, known species, mean emb."), |v| {
                v.known_finds.iter().find(|f| f.views == n).map_or("-".into(), |f| spread(&f.mean_embedding_top1))
            });
        }
    }

    fn known_views(&self) -> usize {
        self.report.variants.iter().flat_map(|v| v.known_finds.iter().map(|f| f.views)).max().unwrap_or(0)
    }

    fn shifted(&mut self) {
        self.push_shifted("shifted: prototype top-1", |m| Some(pct(m.prototype_top1)));
        self.push_shifted("shifted: prototype top-3", |m| Some(pct(m.prototype_top3)));
        self.push_shifted(format!("shifted: {}-NN accuracy", self.report.knn), |m| Some(pct(m.knn_accuracy)));
        for k in args_shots(self.report) {
            self.push_shifted(format!("shifted: {k}-shot, prototype top-1"), |m| {
                m.kshot.iter().find(|s| s.shots == k).map(|s| spread(&s.prototype_top1))
            });
        }
        for n in 1..=self.known_views() {
            self.push_shifted(format!("shifted: find of {n}, known species"), |m| {
                m.known_finds.iter().find(|f| f.views == n).map(|f| spread(&f.mean_embedding_top1))
            });
        }
        for n in 1..=FIND_VIEWS {
            self.push_shifted(format!("shifted: find of {n} (1-shot), mean embedding"), |m| {
                m.finds.iter().find(|f| f.views == n).map(|f| spread(&f.mean_embedding_top1))
            });
        }
    }

    fn open_set(&mut self) {
        let pct_or_absent = |x: Option<f64>| x.map_or("-".into(), pct);
        self.push("open-set threshold", |v| format!("{:.3}", v.open_set.threshold));
        self.push("known rejected (validation)", |v| pct(v.open_set.known_rejected));
        self.push("unseen rejected as unknown", |v| pct_or_absent(v.open_set.unseen_rejected));
        self.push("open-set AUROC", |v| auroc(&v.open_set));
        let with = |f: &dyn Fn(&OpenSet) -> String, v: &VariantReport| {
            v.open_set_with_atypicality.as_ref().map_or("-".into(), f)
        };
        self.push("+ atypicality: unseen rejected", |v| with(&|o| pct_or_absent(o.unseen_rejected), v));
        self.push("+ atypicality: AUROC", |v| with(&auroc, v));
        let names: std::collections::BTreeSet<String> =
            self.report.variants.iter().flat_map(|v| v.open_set_scores.keys().cloned()).collect();
        for name in names {
            self.push(format!("{name}: AUROC"), |v| v.open_set_scores.get(&name).map_or("-".into(), auroc));
        }
    }
}
