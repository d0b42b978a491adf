//! `sporeprint export`: what a device needs from a trained run, in one folder.
//!
//! - `embedder.onnx`: the network written as ONNX from the run's best weights (see
//!   [`crate::export::onnx`]), checked against the tch model on real photos before anything else is
//!   written;
//! - `prototypes.bin`: the prototype table, built by running the EXPORTED model through
//!   `sporeprint_shared::embedder` (the device's own code) on every photo of the seen species, so
//!   the device's embeddings and the table come from the same function;
//! - `model.toml`: what the files are (backbone, preprocessing, fingerprints, threshold, metrics).
//!
//! The open-set threshold is calibrated on the exported model: prototypes from the training
//! photos only, the distance that keeps `keep` of the validation photos within their nearest
//! prototype. The shipped prototypes then use training and validation photos alike.

pub mod onnx;

use crate::eval::calibration::{self, Scored};
use crate::eval::metrics;
use crate::model::atypicality::Atypicality;
use crate::model::{EmbeddingNet, matrix_rows};
use crate::photos::data::{Collection, Sample, Split};
use crate::photos::shift;
use crate::train::{self, Network};
use anyhow::{Context, anyhow, ensure};
use indicatif::ParallelProgressIterator;
use onnx::{Graph, WeightScales};
use rayon::prelude::*;
use serde::Serialize;
use sporeprint_shared::classify::open_set_score;
use sporeprint_shared::embedder::{Embedder, Observation};
use sporeprint_shared::manifest::{self, Manifest};
use sporeprint_shared::table::NewSpecies;
use sporeprint_shared::{Header, Name, Origin, PreprocessSpec, Table, Verdict, image_io, store, vector};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use tract_onnx::pb;

pub const EMBEDDER: &str = "embedder.onnx";
pub const EMBEDDER_INT8: &str = "embedder.int8.onnx";
pub const PROTOTYPES: &str = "prototypes.bin";
/// The fp32 table's reliability diagram (PNG), validation photos and their shifted variants.
pub const RELIABILITY_CHART: &str = "reliability.png";
pub const PROTOTYPES_INT8: &str = "prototypes.int8.bin";
pub use sporeprint_shared::manifest::MANIFEST;

#[derive(Clone, Debug, clap::Args)]
pub struct ExportArgs {
    /// A run directory written by `sporeprint train` (its best weights are exported).
    #[arg(long)]
    pub run: PathBuf,
    /// Output folder (created; files in it are replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Photos for the prototypes (default: the run's training data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also write the int8 embedder and its own prototype table (each table is tied to one model).
    #[arg(long)]
    pub int8: bool,
    /// The variant devices use unless told otherwise. fp32 by default: with tract 0.23 on x86 the
    /// int8 EfficientNet-Lite0 measured slower than fp32 (see the README's benchmarks).
    #[arg(long, value_enum, default_value = "fp32")]
    pub default_variant: Precision,
    /// Photos whose activations set the int8 ranges (a folder searched recursively; default: the
    /// run's training photos).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Int8 weight scales: one per output channel (accurate) or one per tensor.
    #[arg(long, value_enum, default_value = "per-channel")]
    pub int8_scales: WeightScales,
    /// How many calibration photos to use (spread evenly over those found).
    #[arg(long, default_value_t = 200, value_parser = crate::train::at_least(1))]
    pub calibration_photos: usize,
    /// Known-species photos the open-set threshold must accept.
    #[arg(long, default_value_t = 0.95, value_parser = crate::train::share)]
    pub keep: f64,
    /// Weight of a photo's atypicality in the open-set rule (see `sporeprint_host::model::atypicality`,
    /// fitted here on the training photos): the model reports it as a second output and the
    /// threshold bounds `nearest distance + atypicality`. 0: the embedding alone.
    #[arg(long, default_value_t = 1.0, value_parser = crate::train::non_negative)]
    pub atypicality_weight: f64,
    #[arg(long)]
    pub json: bool,
}

/// The two kinds of exported embedder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    Fp32,
    Int8,
}

impl Precision {
    /// Its key in `model.toml`'s `variants`.
    pub fn key(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    pub out: PathBuf,
    /// The variant a device uses unless told otherwise.
    pub default: Precision,
    pub fp32: manifest::Variant,
    pub int8: Option<manifest::Variant>,
    /// Photos that could not be decoded and were left out of the tables.
    pub skipped: Vec<PathBuf>,
}

/// Cosine to the trained network below which the fp32 graph is not that network.
const PARITY_COSINE: f64 = 0.9999;
/// Mean cosine below which the int8 graph is refused.
const INT8_COSINE: f64 = 0.99;

/// What an export wrote, as a person reads it: the folder, then each variant's files, agreement
/// with the trained model, accuracy, calibration and the device's own verdicts.
pub fn describe(summary: &ExportSummary) -> String {
    let mut text = format!("{}: default variant {:?}", summary.out.display(), summary.default);
    for v in std::iter::once(&summary.fp32).chain(&summary.int8) {
        text.push_str(&format!(
            "\n  {} ({:.1} MB, fingerprint {}): cosine to the trained model mean {:.5} / worst {:.5}; \
             {} species; open-set threshold {:.3}; validation prototype top-1 {:.1}%, top-3 {:.1}%, 5-NN {:.1}%",
            v.embedder,
            v.embedder_bytes as f64 / 1e6,
            &v.fingerprint[..12],
            v.mean_cosine,
            v.min_cosine,
            v.species,
            v.open_set_threshold,
            100.0 * v.validation_prototype_top1,
            100.0 * v.validation_prototype_top3,
            100.0 * v.validation_knn5
        ));
        let Some(c) = &v.calibration else { continue };
        text.push_str(&format!(
            "\n    confidence: temperature {:.4}; ECE validation {:.3} (uncalibrated {:.3}), shifted \
             variants {:.3} (uncalibrated {:.3}); shifted prototype top-1 {:.1}%",
            c.temperature,
            c.validation_ece,
            c.uncalibrated_validation_ece,
            c.shifted_ece,
            c.uncalibrated_shifted_ece,
            100.0 * c.shifted_prototype_top1
        ));
        for (set, a) in [("validation", &c.validation_answers), ("shifted", &c.shifted_answers)] {
            let Some(a) = a else { continue };
            text.push_str(&format!(
                "\n    the device's verdicts, {set} photos ({}): species {} ({} right), genus {} ({} right), unknown {}",
                a.photos, a.species, a.species_right, a.genus, a.genus_right, a.unknown
            ));
        }
    }
    text
}

pub fn export(args: &ExportArgs) -> anyhow::Result<ExportSummary> {
    let (config, mut network) = train::load_run(&args.run, train::BEST, Device::Cpu)?;
    let data = args.data.clone().unwrap_or(config.data.clone());
    let collection = Collection::scan(&data)?;
    let mut split = collection.split(config.unseen, config.seed, config.validation_photos)?;
    ensure!(args.int8 || args.default_variant == Precision::Fp32, "--default-variant int8 needs --int8");
    let spec = config.backbone.preprocess();
    let (inputs, skipped) = collection_inputs(&mut split, spec);
    if !skipped.is_empty() {
        eprintln!("skipped {} unreadable photo(s):", skipped.len());
        for (path, problem) in &skipped {
            eprintln!("  {}: {problem}", path.display());
        }
    }
    ensure!(!inputs.train.is_empty(), "{}: no decodable training photo", data.display());
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    if args.atypicality_weight > 0.0 {
        let fitted = fit_atypicality(&network, &inputs, &split, args.atypicality_weight);
        network.net.set_atypicality(fitted);
    }
    let net = &network.net;

    // The trained network's own embeddings: the reference both exports are held to.
    let reference = reference_embeddings(&network, &inputs, spec);

    let photos = ExportPhotos { collection: &collection, split: &split, inputs: &inputs, reference: &reference };
    let files = |embedder, prototypes| VariantFiles { out: &args.out, embedder, prototypes };
    let fp32 = prepare_variant(
        files(EMBEDDER, PROTOTYPES),
        &onnx::encode(&net.export()),
        &photos,
        Agreement::Worst(PARITY_COSINE),
        args.keep,
        spec,
    )?;

    let int8 = if args.int8 {
        let calibration = calibration_photos(args, &split)?;
        let model = quantize(net, &calibration, args.int8_scales)?;
        let int8 = prepare_variant(
            files(EMBEDDER_INT8, PROTOTYPES_INT8),
            &onnx::encode(&model),
            &photos,
            Agreement::Mean(INT8_COSINE),
            args.keep,
            spec,
        )?;
        Some(int8)
    } else {
        None
    };

    // Every variant passed: write the files, model.toml last (it names the others).
    for prepared in std::iter::once(&fp32).chain(&int8) {
        prepared.write(&args.out)?;
    }
    if int8.is_none() {
        // An earlier export's int8 files would no longer match: remove them.
        for stale in [EMBEDDER_INT8, PROTOTYPES_INT8] {
            let _ = std::fs::remove_file(args.out.join(stale));
        }
    }
    let summary = ExportSummary {
        out: args.out.clone(),
        default: args.default_variant,
        fp32: fp32.variant,
        int8: int8.map(|p| p.variant),
        skipped: skipped.into_iter().map(|(path, _)| path).collect(),
    };
    let [validation, shifted] = &fp32.reliability;
    crate::report::reliability_chart(
        &args.out.join(RELIABILITY_CHART),
        &format!("{EMBEDDER}: calibrated confidence (T = {:.4})", fp32.table.header().temperature),
        &[("validation photos", validation), ("their shifted variants", shifted)],
    )?;
    write_manifest(&args.out, &config, &summary)?;
    Ok(summary)
}

/// The int8 graph of `net`: static post-training quantization, activation ranges from running
/// the float graph (with every quantized tensor as an extra output) on the calibration `photos`.
pub fn quantize(net: &EmbeddingNet, photos: &[PathBuf], scales: WeightScales) -> anyhow::Result<pb::ModelProto> {
    let (size, dim) = (net.input_size(), net.dim);
    let mut probing = Graph::new();
    let outputs = net.export_into(&mut probing);
    let probes = probing.probes().to_vec();
    let probe_model = probing.into_model_with_outputs(&outputs, size, dim, "calibration", &probes);
    let ranges = calibrate(&onnx::encode(&probe_model), probes.len(), photos, net.kind.preprocess())?;
    let mut quantized = Graph::int8(ranges, scales);
    let outputs = net.export_into(&mut quantized);
    Ok(quantized.into_model(&outputs, size, dim, &format!("{} (int8)", net.describe())))
}

/// Every photo of the split, preprocessed once.
struct Inputs {
    train: Vec<Vec<f32>>,
    validation: Vec<Vec<f32>>,
    /// The shifted variant ([`crate::photos::shift`]) of each validation photo, in the same order.
    shifted: Vec<Vec<f32>>,
}

/// Seeds the shifted variants: photo `i` of the validation set gets `SHIFT_SEED + i`.
pub const SHIFT_SEED: u64 = 0x5b1f7ed;

/// The inputs of every decodable photo of `split`, which loses the samples that do not decode:
/// like `train`, an export skips unreadable photos and lists them (returned, with the reason).
fn collection_inputs(split: &mut Split, spec: PreprocessSpec) -> (Inputs, Vec<(PathBuf, String)>) {
    let mut skipped = vec![];
    // Each photo's input and, when `shift`, its shifted variant's (seeded by its place in the
    // split, so every export of a split shifts each photo the same way).
    let mut load = |samples: &mut Vec<Sample>, label: &str, shift: bool| -> Vec<(Vec<f32>, Vec<f32>)> {
        let bar = crate::photos::pipeline::progress(samples.len() as u64, label);
        let loaded: Vec<Result<(Vec<f32>, Vec<f32>), _>> = samples
            .par_iter()
            .enumerate()
            .progress_with(bar)
            .map(|(i, s)| {
                let photo = image_io::open_rgb(&s.path, &spec)?;
                let shifted = match shift {
                    true => image_io::to_tensor(&shift::shifted(&photo, SHIFT_SEED + i as u64), &spec),
                    false => vec![],
                };
                Ok::<_, image_io::ImageError>((image_io::to_tensor(&photo, &spec), shifted))
            })
            .collect();
        let mut inputs = vec![];
        let mut kept = vec![];
        for (sample, input) in samples.drain(..).zip(loaded) {
            match input {
                Ok(input) => {
                    inputs.push(input);
                    kept.push(sample);
                }
                Err(e) => skipped.push((sample.path, e.problem.to_string())),
            }
        }
        *samples = kept;
        inputs
    };
    let train = load(&mut split.train, "decoding training photos", false).into_iter().map(|(x, _)| x).collect();
    let (validation, shifted) = load(&mut split.validation, "decoding validation photos", true).into_iter().unzip();
    (Inputs { train, validation, shifted }, skipped)
}

/// tch's embeddings of the first training photos.
fn reference_embeddings(network: &Network, inputs: &Inputs, spec: PreprocessSpec) -> Vec<Vec<f32>> {
    let size = spec.input_size as i64;
    inputs
        .train
        .iter()
        .take(PARITY_PHOTOS)
        .map(|input| {
            let image = Tensor::from_slice(input).view([1, 3, size, size]);
            let out = tch::no_grad(|| network.net.forward_t(&image, false));
            Vec::try_from(out.flatten(0, -1).to_kind(Kind::Float)).expect("float embedding")
        })
        .collect()
}

/// The trained network's atypicality (see [`crate::model::atypicality`]) fitted on its features and
/// embeddings of the training photos.
fn fit_atypicality(network: &Network, inputs: &Inputs, split: &Split, weight: f64) -> Option<Atypicality> {
    let size = network.net.input_size();
    let bar = crate::photos::pipeline::progress(inputs.train.len() as u64, "atypicality: training photos");
    let all: Vec<usize> = (0..inputs.train.len()).collect();
    let batch = |chunk: &[usize]| {
        bar.inc(chunk.len() as u64);
        let pixels: Vec<f32> = chunk.iter().flat_map(|&i| inputs.train[i].iter().copied()).collect();
        Tensor::from_slice(&pixels).view([chunk.len() as i64, 3, size, size])
    };
    let features = network.run_batches(&all, batch, |images| network.net.features_t(images, false));
    bar.finish_and_clear();
    let embeddings = tch::no_grad(|| network.net.embed_features(&features.to_device(network.vs.device())));
    let labels: Vec<usize> = split.train.iter().map(|s| s.label).collect();
    Atypicality::fit(&matrix_rows(&features), &matrix_rows(&embeddings), &labels, weight as f32)
}

/// Photos the parity check compares.
const PARITY_PHOTOS: usize = 16;

/// How close an exported model's embeddings must be to the trained network's (cosine).
enum Agreement {
    /// On every photo compared (a float graph must be the network).
    Worst(f64),
    /// On average (a quantized graph only approximates it).
    Mean(f64),
}

/// An exported model, measured, with the prototype table made with it: not yet written.
struct Prepared {
    bytes: Vec<u8>,
    table: Table,
    variant: manifest::Variant,
    /// Validation photos' and shifted variants' reliability at the fitted temperature.
    reliability: [calibration::Reliability; 2],
}

impl Prepared {
    fn write(&self, out: &Path) -> anyhow::Result<()> {
        let path = out.join(&self.variant.embedder);
        store::write_atomically(&path, &self.bytes).with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(store::save(&out.join(&self.variant.prototypes), &self.table)?)
    }
}

/// Measures one exported model and builds its prototype table; refuses a model that does not
/// agree with the trained network (nothing is written until every variant passed).
/// Where a variant's two files go, by name.
struct VariantFiles<'a> {
    out: &'a Path,
    embedder: &'a str,
    prototypes: &'a str,
}

/// The photos every variant is measured and tabled on, and the trained model's embeddings of
/// the training photos (what each variant must agree with).
struct ExportPhotos<'a> {
    collection: &'a Collection,
    split: &'a Split,
    inputs: &'a Inputs,
    reference: &'a [Vec<f32>],
}

fn prepare_variant(
    files: VariantFiles,
    bytes: &[u8],
    photos: &ExportPhotos,
    agreement: Agreement,
    keep: f64,
    spec: PreprocessSpec,
) -> anyhow::Result<Prepared> {
    let (embedder_name, table_name) = (files.embedder, files.prototypes);
    let ExportPhotos { collection, split, inputs, reference } = *photos;
    let path = files.out.join(embedder_name);
    let embedder = Embedder::from_bytes(bytes, spec).with_context(|| format!("{}", path.display()))?;

    let observe = |rows: &[Vec<f32>], label: &str| -> anyhow::Result<Vec<Observation>> {
        let bar = crate::photos::pipeline::progress(rows.len() as u64, label);
        Ok(rows.par_iter().progress_with(bar).map(|x| embedder.observe_input(x)).collect::<Result<Vec<_>, _>>()?)
    };
    let embeddings = |observed: &[Observation]| observed.iter().map(|o| o.embedding.clone()).collect::<Vec<_>>();
    let train = embeddings(&observe(&inputs.train, &format!("{embedder_name}: training photos"))?);
    let validation_observed = observe(&inputs.validation, &format!("{embedder_name}: validation photos"))?;
    let validation = embeddings(&validation_observed);
    let shifted_observed = observe(&inputs.shifted, &format!("{embedder_name}: shifted validation photos"))?;
    let shifted = embeddings(&shifted_observed);
    let (worst, mean) = agreement.check(&path, reference, &train)?;

    let train_labels: Vec<usize> = split.train.iter().map(|s| s.label).collect();
    let validation_labels: Vec<usize> = split.validation.iter().map(|s| s.label).collect();
    let calibration = metrics::prototypes(&train, &train_labels);
    // What the open-set rule compares with the threshold (see `classify`).
    let scores: Vec<f32> = validation_observed
        .iter()
        .map(|o| open_set_score(metrics::nearest_prototype_distance(&o.embedding, &calibration), o.atypicality))
        .collect();
    let open_set = metrics::fit_open_set(&scores, keep);
    let threshold = open_set.threshold;

    let (calibration_fit, reliability) = calibrate_confidence(&calibration, &validation, &shifted, &validation_labels);
    let mut header = Header::new(embedder.dim() as u32, embedder.fingerprint(), spec);
    header.open_set_threshold = threshold;
    header.temperature = calibration_fit.temperature;
    // The shipped prototypes use every photo of the species; the held-out table, the training
    // photos only, so that the device's own verdicts can be measured on the validation photos.
    let train_shots = train.iter().zip(&train_labels);
    let all_shots = train_shots.clone().chain(validation.iter().zip(&validation_labels));
    let table = prototype_table(&header, collection, split.seen_species, all_shots)?;
    let held_out = prototype_table(&header, collection, split.seen_species, train_shots)?;
    let calibration_fit = manifest::Calibration {
        validation_answers: Some(answers(&held_out, &validation_observed, &validation_labels, collection)?),
        shifted_answers: Some(answers(&held_out, &shifted_observed, &validation_labels, collection)?),
        ..calibration_fit
    };

    let variant = manifest::Variant {
        embedder: embedder_name.into(),
        prototypes: table_name.into(),
        embedder_bytes: bytes.len() as u64,
        fingerprint: embedder.fingerprint().to_string(),
        min_cosine: worst,
        mean_cosine: mean,
        species: table.len(),
        open_set_threshold: threshold,
        atypicality: embedder.has_atypicality(),
        validation_prototype_top1: metrics::prototype_accuracy(&validation, &validation_labels, &calibration, 1),
        validation_prototype_top3: metrics::prototype_accuracy(&validation, &validation_labels, &calibration, 3),
        validation_knn5: metrics::knn_accuracy(&validation, &validation_labels, &train, &train_labels, 5),
        validation_known_rejected: open_set.known_rejected,
        calibration: Some(calibration_fit),
    };
    Ok(Prepared { bytes: bytes.to_vec(), table, variant, reliability })
}

impl Agreement {
    /// The worst and the mean cosine between the exported model's embeddings and the trained
    /// model's (`reference`) on the same photos; an error when below the bound.
    fn check(self, path: &Path, reference: &[Vec<f32>], exported: &[Vec<f32>]) -> anyhow::Result<(f64, f64)> {
        let cosines: Vec<f64> =
            reference.iter().zip(exported).map(|(r, e)| vector::cosine_similarity(r, e) as f64).collect();
        let worst = cosines.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = cosines.iter().sum::<f64>() / cosines.len().max(1) as f64;
        match self {
            Agreement::Worst(least) => ensure!(
                worst >= least,
                "{}: the exported model disagrees with the trained one (cosine {worst:.6} < {least}); nothing written",
                path.display()
            ),
            Agreement::Mean(least) => ensure!(
                mean >= least,
                "{}: its embeddings drift from the trained model's (mean cosine {mean:.4} < {least}); nothing written",
                path.display()
            ),
        }
        Ok((worst, mean))
    }
}

/// A table of the first `seen` species of the collection, each the prototype of its `shots`
/// (embedding, label); species without shots are left out.
fn prototype_table<'a>(
    header: &Header,
    collection: &Collection,
    seen: usize,
    shots: impl Iterator<Item = (&'a Vec<f32>, &'a usize)> + Clone,
) -> anyhow::Result<Table> {
    let mut table = Table::new(header.clone());
    for (label, species) in collection.species.iter().enumerate().take(seen) {
        let of_species: Vec<&Vec<f32>> = shots.clone().filter(|(_, l)| **l == label).map(|(e, _)| e).collect();
        if !of_species.is_empty() {
            table
                .add_species(new_species(species)?, &of_species)
                .with_context(|| format!("species {:?}", species.name))?;
        }
    }
    Ok(table)
}

/// A species' table entry description, from the data set's files.
fn new_species(species: &crate::photos::data::Species) -> anyhow::Result<NewSpecies> {
    let name = |text: &str, what: &str| Name::new(text).map_err(|e| anyhow!("species {:?}: {what}{e}", species.name));
    Ok(NewSpecies {
        name: name(&display_name(&species.name), "")?,
        scientific_name: species.scientific_name.as_deref().map(|n| name(n, "scientific name: ")).transpose()?,
        genus: species.genus.as_deref().map(|n| name(n, "genus: ")).transpose()?,
        edibility: species.edibility,
        origin: Origin::Host,
    })
}

/// What the device's verdict ([`Verdict`]) answers for `observed` photos of species `labels`,
/// asked of `table`: the verdict is not re-derived here, it is the device's own.
fn answers(
    table: &Table,
    observed: &[Observation],
    labels: &[usize],
    collection: &Collection,
) -> anyhow::Result<manifest::Answers> {
    let mut answers = manifest::Answers::default();
    for (photo, &label) in observed.iter().zip(labels) {
        let truth = &collection.species[label];
        let verdict = Verdict::of(&table.identify_with(&photo.embedding, photo.atypicality, 1)?, table);
        answers.photos += 1;
        if let Some(named) = verdict.species() {
            answers.species += 1;
            answers.species_right += usize::from(table.entries()[named].name.as_str() == display_name(&truth.name));
        } else if let Some(member) = verdict.genus_member() {
            answers.genus += 1;
            let genus = table.entries()[member].genus.as_ref().map(|g| g.as_str());
            answers.genus_right += usize::from(genus.is_some() && genus == truth.genus.as_deref());
        } else {
            answers.unknown += 1;
        }
    }
    Ok(answers)
}

/// The temperature fitted on the validation photos and their shifted variants together (one
/// parameter from both: a forager's photos are somewhere between the two), and the reliability
/// of each set at that temperature.
fn calibrate_confidence(
    prototypes: &BTreeMap<usize, Vec<f32>>,
    validation: &[Vec<f32>],
    shifted: &[Vec<f32>],
    labels: &[usize],
) -> (manifest::Calibration, [calibration::Reliability; 2]) {
    let position: BTreeMap<usize, usize> = prototypes.keys().enumerate().map(|(i, &label)| (label, i)).collect();
    let scored = |rows: &[Vec<f32>]| -> Vec<Scored> {
        rows.iter()
            .zip(labels)
            .map(|(row, label)| Scored {
                distances: prototypes.values().map(|p| sporeprint_shared::vector::euclidean(row, p)).collect(),
                label: position[label],
            })
            .collect()
    };
    let shifted_prototype_top1 = metrics::prototype_accuracy(shifted, labels, prototypes, 1);
    let (validation, shifted) = (scored(validation), scored(shifted));
    let both: Vec<Scored> = validation.iter().chain(&shifted).cloned().collect();
    let temperature = calibration::fit_temperature(&both);
    let at = |photos: &[Scored], t: f64| {
        calibration::reliability(&calibration::top_answers(photos, t), calibration::ECE_BINS)
    };
    let uncalibrated = f64::from(Header::UNCALIBRATED_TEMPERATURE);
    let fitted = [at(&validation, temperature), at(&shifted, temperature)];
    let fit = manifest::Calibration {
        temperature: temperature as f32,
        validation_ece: fitted[0].ece,
        shifted_ece: fitted[1].ece,
        shifted_prototype_top1,
        uncalibrated_validation_ece: at(&validation, uncalibrated).ece,
        uncalibrated_shifted_ece: at(&shifted, uncalibrated).ece,
        validation_answers: None,
        shifted_answers: None,
    };
    (fit, fitted)
}

/// The calibration photos: `--calibration` (recursively) or the training photos, at most
/// `calibration_photos` of them spread evenly.
fn calibration_photos(args: &ExportArgs, split: &Split) -> anyhow::Result<Vec<PathBuf>> {
    let all: Vec<PathBuf> = match &args.calibration {
        Some(root) => photos_under(root)?,
        None => split.train.iter().map(|s| s.path.clone()).collect(),
    };
    spread_evenly(&all, args.calibration_photos)
}

/// Every photo under `root` (recursively), sorted.
pub fn photos_under(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = vec![];
    collect_images(root, &mut found)?;
    found.sort();
    Ok(found)
}

/// At most `count` (at least one) of `photos`, spread evenly over them: calibration ranges
/// then see every species of a sorted folder tree, not the first few.
pub fn spread_evenly(photos: &[PathBuf], count: usize) -> anyhow::Result<Vec<PathBuf>> {
    ensure!(!photos.is_empty(), "no calibration photos found");
    let count = count.clamp(1, photos.len());
    Ok((0..count).map(|i| photos[i * photos.len() / count].clone()).collect())
}

fn collect_images(dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_images(&path, found)?;
        } else if sporeprint_shared::image_io::is_photo_file(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// The `[min, max]` of every probe of the calibration model (its last `probes` outputs, after
/// the network's own) over the photos.
fn calibrate(model: &[u8], probes: usize, photos: &[PathBuf], spec: PreprocessSpec) -> anyhow::Result<Vec<(f32, f32)>> {
    use tract_onnx::prelude::*;
    let size = spec.input_size as usize;
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &*model)?
        .with_input_fact(0, f32::fact([1, 3, size, size]).into())?
        .into_optimized()?
        .into_runnable()?;
    let bar = crate::photos::pipeline::progress(photos.len() as u64, "int8 calibration");
    let per_photo = photos
        .par_iter()
        .progress_with(bar)
        .map(|path| -> anyhow::Result<Vec<(f32, f32)>> {
            let input = image_io::load_tensor(path, &spec)?;
            let tensor = tract_onnx::prelude::Tensor::from_shape(&[1, 3, size, size], &input)?;
            let outputs = plan.run(tvec!(tensor.into_tvalue()))?;
            outputs[outputs.len() - probes..]
                .iter()
                .map(|t| {
                    let view = t.to_plain_array_view::<f32>()?;
                    Ok(view.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v))))
                })
                .collect()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((0..probes)
        .map(|i| {
            per_photo.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| (lo.min(r[i].0), hi.max(r[i].1)))
        })
        .collect())
}

/// Folder names (`fly_agaric`) as people write them (`fly agaric`).
pub fn display_name(folder: &str) -> String {
    folder.replace('_', " ")
}

/// A clap value's command-line spelling (`efficientnet-lite0`, `batch-all`).
fn name(value: impl clap::ValueEnum) -> String {
    value.to_possible_value().map_or(String::new(), |v| v.get_name().into())
}

fn write_manifest(out: &Path, config: &train::TrainConfig, summary: &ExportSummary) -> anyhow::Result<()> {
    let mut variants = std::collections::BTreeMap::new();
    variants.insert(Precision::Fp32.key().to_string(), summary.fp32.clone());
    if let Some(int8) = &summary.int8 {
        variants.insert(Precision::Int8.key().to_string(), int8.clone());
    }
    let manifest = Manifest {
        format: manifest::FORMAT,
        backbone: name(config.backbone),
        head: name(config.head),
        embedding_dim: config.embedding_dim as u32,
        preprocess: config.backbone.preprocess(),
        default: summary.default.key().into(),
        variants,
        trained: Some(manifest::Trained {
            run: config.out.clone(),
            // A head fitted in closed form (`--epochs 0`) was never trained on mined triplets.
            mining: match config.epochs {
                0 => format!("none: {} projection, 0 epochs", name(config.projection)),
                _ => name(config.mining),
            },
            unseen_species_held_out: config.unseen,
            seed: config.seed,
        }),
    };
    let path = out.join(MANIFEST);
    store::write_atomically(&path, manifest.to_toml().as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}
