//! Export: the ONNX graphs are the trained networks (tch vs tract vs ONNX Runtime), the int8
//! graph stays close, the tables are tied to their model, and broken files are refused.

mod common;

use common::{config, export_args, make_photos, run};
use sporeprint_host::export;
use sporeprint_host::export::onnx;
use sporeprint_host::model::atypicality::Atypicality;
use sporeprint_host::model::head::{HeadKind, Projection};
use sporeprint_host::model::{BackboneKind, EmbeddingNet};
use sporeprint_host::train::mining::Mining;
use sporeprint_shared::embedder::{Embedder, EmbedderError};
use sporeprint_shared::store::{self, StoreError};
use sporeprint_shared::{ModelFingerprint, Table, vector};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Deterministic pseudo-random network inputs (`3 x S x S`).
fn inputs(size: usize, count: usize) -> Vec<Vec<f32>> {
    (0..count)
        .map(|k| (0..3 * size * size).map(|i| (((i * 7919 + k * 104_729) % 1000) as f32 / 500.0 - 1.0) * 1.5).collect())
        .collect()
}

/// A network whose BatchNorm statistics and affine parameters are not the trivial initial ones
/// (so folding them is really tested), with the residual head initialised from features.
fn random_network(vs: &VarStore, kind: BackboneKind, head: HeadKind, dim: i64) -> EmbeddingNet {
    tch::manual_seed(11);
    // A residual head with the constant coordinate, so that part of the graph is checked too.
    let constant_coordinate = if head == HeadKind::Residual { 0.25 } else { 0.0 };
    let mut net = EmbeddingNet::new(&vs.root(), kind, head, dim, constant_coordinate);
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let size = var.size();
            let random = Tensor::rand(size.as_slice(), (Kind::Float, tch::Device::Cpu));
            if name.ends_with("running_var") {
                var.copy_(&(random * 1.5 + 0.5));
            } else if name.ends_with("running_mean") || (name.contains("bn") && name.ends_with("bias")) {
                var.copy_(&((random - 0.5) * 0.2));
            } else if name.contains("bn") && name.ends_with("weight") {
                var.copy_(&(random + 0.5));
            } else if name.ends_with("fc3.weight") {
                var.copy_(&((random - 0.5) * 0.02));
            }
        }
    });
    let features = Tensor::randn([64, kind.feature_dim()], (Kind::Float, tch::Device::Cpu)).abs();
    // The LDA start (8 made-up species) has the least regular projection to carry over.
    let labels: Vec<usize> = (0..64).map(|i| i % 8).collect();
    net.initialise_head(&features, &labels, Projection::Lda, 3.0);
    if head == HeadKind::Residual {
        // Fitted on made-up features, as the export fits it on the training photos'.
        let rows: Vec<Vec<f32>> = Vec::try_from(&features).unwrap();
        let embeddings: Vec<Vec<f32>> = Vec::try_from(tch::no_grad(|| net.embed_features(&features))).unwrap();
        net.set_atypicality(Atypicality::fit(&rows, &embeddings, &labels, 1.0));
    }
    net
}

/// The tch network's atypicality of an input, if its head has one.
fn tch_atypicality(net: &EmbeddingNet, input: &[f32], size: i64) -> Option<f32> {
    let image = Tensor::from_slice(input).view([1, 3, size, size]);
    let features: Vec<f32> = Vec::try_from(tch::no_grad(|| net.features_t(&image, false)).flatten(0, -1)).unwrap();
    Some(net.atypicality()?.of(&features))
}

fn tch_embedding(net: &EmbeddingNet, input: &[f32], size: i64) -> Vec<f32> {
    let image = Tensor::from_slice(input).view([1, 3, size, size]);
    Vec::try_from(tch::no_grad(|| net.forward_t(&image, false)).flatten(0, -1)).unwrap()
}

/// Embeddings of `inputs` by ONNX Runtime, after `onnx.checker` accepted the model (the
/// project's venv; scripts/setup.sh installs both).
fn onnx_runtime(model: &Path, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let raw: Vec<u8> = inputs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let input_path = dir.path().join("inputs.f32");
    std::fs::write(&input_path, raw).unwrap();
    let output = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/onnx_reference.py"))
        .args([model, &input_path])
        .arg(inputs.len().to_string())
        .output()
        .expect("the venv's python (run scripts/setup.sh)");
    assert!(output.status.success(), "{}: {}", model.display(), String::from_utf8_lossy(&output.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reply["checker"], "ok");
    serde_json::from_value(reply["embeddings"].clone()).unwrap()
}

fn min_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| vector::cosine_similarity(x, y)).fold(f32::INFINITY, f32::min)
}

#[test]
fn every_backbone_and_head_exports_to_the_network_it_is() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, head) in [
        (BackboneKind::Tiny, HeadKind::Study),
        (BackboneKind::Tiny, HeadKind::Residual),
        (BackboneKind::EfficientNetLite0, HeadKind::Residual),
        // 260 px: odd feature maps (65, 33, 17, 9) and their asymmetric SAME padding.
        (BackboneKind::EfficientNetLite2, HeadKind::Residual),
        (BackboneKind::Resnet50, HeadKind::Residual),
    ] {
        let vs = VarStore::new(tch::Device::Cpu);
        let net = random_network(&vs, kind, head, 32);
        let spec = kind.preprocess();
        let size = spec.input_size as usize;
        let path = dir.path().join(format!("{kind:?}-{head:?}.onnx"));
        std::fs::write(&path, onnx::encode(&net.export())).unwrap();
        let embedder = Embedder::load(&path, spec).unwrap();
        assert_eq!(embedder.dim(), 32);
        assert_eq!(embedder.fingerprint(), ModelFingerprint::of_file(&path).unwrap());

        let xs = inputs(size, 2);
        let expected: Vec<Vec<f32>> = xs.iter().map(|x| tch_embedding(&net, x, size as i64)).collect();
        let tract: Vec<Vec<f32>> = xs.iter().map(|x| embedder.embed_input(x).unwrap()).collect();
        let runtime = onnx_runtime(&path, &xs);
        let (tract_cosine, runtime_cosine) = (min_cosine(&expected, &tract), min_cosine(&tract, &runtime));
        println!(
            "{kind:?} + {head:?} head: tch vs tract cosine {tract_cosine:.7}, tract vs ONNX Runtime {runtime_cosine:.7}"
        );
        assert!(tract_cosine >= 0.9999, "{kind:?} {head:?}: {tract_cosine}");
        assert!(runtime_cosine >= 0.999, "{kind:?} {head:?}: {runtime_cosine}");

        // The residual head's atypicality is the model's second output, the same number.
        assert_eq!(embedder.has_atypicality(), head == HeadKind::Residual, "{kind:?} {head:?}");
        for x in &xs {
            let tract = embedder.observe_input(x).unwrap().atypicality;
            match tch_atypicality(&net, x, size as i64) {
                Some(expected) => {
                    assert!(
                        (tract - expected).abs() <= 1e-3 * expected.abs().max(1.0),
                        "{kind:?}: {tract} vs {expected}"
                    );
                    assert!(expected != 0.0, "{kind:?}: a fitted atypicality");
                }
                None => assert_eq!(tract, 0.0),
            }
        }
    }
}

#[test]
fn a_trained_run_exports_fp32_and_int8_each_with_its_own_table() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 8, 6);
    let run_dir = tempfile::tempdir().unwrap();
    run(config(data.path(), run_dir.path(), Mining::BatchAll, 3), false);
    let out = tempfile::tempdir().unwrap();
    let summary = export::export(&export_args(run_dir.path(), out.path())).unwrap();
    let int8 = summary.int8.as_ref().unwrap();
    // What `sporeprint export` prints: one block per variant, each with its calibration.
    let text = export::describe(&summary);
    assert!(text.contains("default variant Fp32") && text.contains("embedder.int8.onnx"), "{text}");
    assert_eq!(text.matches("confidence: temperature").count(), 2, "{text}");
    println!(
        "fp32: cosine {:.6}, top-1 {:.3}; int8: cosine mean {:.4} worst {:.4}, top-1 {:.3}, {} -> {} bytes",
        summary.fp32.min_cosine,
        summary.fp32.validation_prototype_top1,
        int8.mean_cosine,
        int8.min_cosine,
        int8.validation_prototype_top1,
        summary.fp32.embedder_bytes,
        int8.embedder_bytes
    );
    assert!(summary.fp32.min_cosine >= 0.9999);
    assert!(int8.mean_cosine >= 0.99);

    // 6 seen species (2 held out), names without underscores, edibility from species.csv.
    let fp32_model = out.path().join(export::EMBEDDER);
    let fingerprint = ModelFingerprint::of_file(&fp32_model).unwrap();
    let table: Table = store::load_for_model(&out.path().join(export::PROTOTYPES), &fingerprint, 16).unwrap();
    assert_eq!(table.len(), 6);
    assert_eq!(table.get("species 01").unwrap().edibility, sporeprint_shared::Edibility::Deadly);
    // Calibrated on distance + atypicality, so not bounded by 2 as a distance is.
    let threshold = table.header().open_set_threshold;
    assert!(
        threshold != sporeprint_shared::Header::UNCALIBRATED_THRESHOLD && threshold > 0.0,
        "calibrated: {threshold}"
    );
    assert_eq!(threshold, summary.fp32.open_set_threshold);
    assert_eq!(table.entries().iter().map(|e| e.prototype.shots).sum::<u32>(), 36, "every photo of the seen species");
    // The temperature is fitted, not the default, and the table carries the manifest's.
    let calibration = summary.fp32.calibration.as_ref().expect("calibrated");
    assert_eq!(table.header().temperature, calibration.temperature);
    assert!(
        calibration.temperature > 0.0 && calibration.temperature != sporeprint_shared::Header::UNCALIBRATED_TEMPERATURE
    );
    assert!((0.0..=1.0).contains(&calibration.validation_ece) && (0.0..=1.0).contains(&calibration.shifted_ece));
    // The device's verdicts were counted on every validation photo and its shifted variant.
    for answers in [&calibration.validation_answers, &calibration.shifted_answers] {
        let a = answers.as_ref().unwrap();
        assert_eq!((a.photos, a.species + a.genus + a.unknown), (6, 6), "{a:?}");
        assert!(a.species_right <= a.species && a.genus_right <= a.genus);
    }
    assert!(image::open(out.path().join(export::RELIABILITY_CHART)).unwrap().width() > 300, "a reliability diagram");
    // Each table belongs to its own model only.
    let int8_table = out.path().join(export::PROTOTYPES_INT8);
    assert!(matches!(store::load_for_model(&int8_table, &fingerprint, 16), Err(StoreError::WrongModel { .. })));
    let int8_model = out.path().join(export::EMBEDDER_INT8);
    store::load_for_model(&int8_table, &ModelFingerprint::of_file(&int8_model).unwrap(), 16).unwrap();

    // The manifest says what is where.
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(out.path().join(export::MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["default"].as_str(), Some("fp32"));
    assert_eq!(manifest["variants"]["int8"]["embedder"].as_str(), Some(export::EMBEDDER_INT8));
    assert_eq!(manifest["variants"]["fp32"]["fingerprint"].as_str(), Some(fingerprint.to_string().as_str()));
    // A residual head reports atypicality: the threshold bounds distance + atypicality.
    assert_eq!(manifest["variants"]["fp32"]["atypicality"].as_bool(), Some(true));
    assert_eq!(manifest["variants"]["int8"]["atypicality"].as_bool(), Some(true));

    // ONNX Runtime runs the int8 graph like tract does.
    let spec = BackboneKind::Tiny.preprocess();
    let embedder = Embedder::load(&int8_model, spec).unwrap();
    let xs = inputs(spec.input_size as usize, 3);
    let tract: Vec<Vec<f32>> = xs.iter().map(|x| embedder.embed_input(x).unwrap()).collect();
    let runtime_cosine = min_cosine(&tract, &onnx_runtime(&int8_model, &xs));
    println!("int8: tract vs ONNX Runtime cosine {runtime_cosine:.5}");
    assert!(runtime_cosine >= 0.99, "{runtime_cosine}");
}

#[test]
fn broken_model_files_are_refused_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let vs = VarStore::new(tch::Device::Cpu);
    let net = random_network(&vs, BackboneKind::Tiny, HeadKind::Residual, 8);
    let bytes = onnx::encode(&net.export());
    let spec = BackboneKind::Tiny.preprocess();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.onnx", bytes[..bytes.len() / 2].to_vec()),
        ("empty.onnx", vec![]),
        ("garbage.onnx", b"this is not a protobuf at all, just words".repeat(10)),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let error = Embedder::load(&path, spec).unwrap_err();
        assert!(matches!(error, EmbedderError::Model { .. }), "{name}: {error}");
        assert!(error.to_string().contains(name), "{error}");
    }
    let missing = Embedder::load(&dir.path().join("missing.onnx"), spec).unwrap_err();
    assert!(matches!(missing, EmbedderError::Read { .. }) && missing.to_string().contains("missing.onnx"));

    // A whole model, fed an input of the wrong size.
    let good: PathBuf = dir.path().join("good.onnx");
    std::fs::write(&good, &bytes).unwrap();
    let embedder = Embedder::load(&good, spec).unwrap();
    let error = embedder.embed_input(&[0.0; 100]).unwrap_err();
    assert!(matches!(error, EmbedderError::Input { got: 100, size: 64 }), "{error}");
}

/// How much validation accuracy int8 may lose in `real_photos_int8_keeps_the_accuracy_of_fp32`.
const INT8_MAY_LOSE: f64 = 0.10;

/// The first `count` species of the data set at `data`, as a data set of their own in `dir`
/// (folders linked, not copied; species.csv and taxonomy.csv cut to their rows).
fn first_species(data: &Path, count: usize, dir: &Path) -> PathBuf {
    let data = &data.canonicalize().unwrap();
    let mut species: Vec<PathBuf> =
        std::fs::read_dir(data.join("images")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    species.sort();
    species.truncate(count);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut kept = std::collections::BTreeSet::new();
    for folder in &species {
        let name = folder.file_name().unwrap();
        std::os::unix::fs::symlink(folder, dir.join("images").join(name)).unwrap();
        kept.insert(name.to_string_lossy().into_owned());
    }
    for file in ["species.csv", "taxonomy.csv"] {
        let Ok(mut reader) = csv::Reader::from_path(data.join(file)) else { continue };
        let mut writer = csv::Writer::from_path(dir.join(file)).unwrap();
        writer.write_record(reader.headers().unwrap()).unwrap();
        for record in reader.records().map(Result::unwrap).filter(|r| kept.contains(&r[0])) {
            writer.write_record(&record).unwrap();
        }
    }
    dir.into()
}

/// With SPOREPRINT_DATA (the real photos): a briefly trained EfficientNet-Lite0 head exports
/// with the int8 graph keeping fp32's accuracy on the validation set. The first 100 species
/// only (85 seen: 85 validation photos, one photo is 1.2 points): all 200 took 15 minutes of
/// the test command, most of it running the int8 graph through tract in the dev profile.
///
/// The bound is 10 points (8.5 photos), not 1: the two embedders agree closely (mean cosine >=
/// 0.99, asserted) but on a model this weak (30-40% top-1) a few photos sit on a tie between two
/// prototypes, and which side they fall on changes with the CPU's kernels. Seen with all 200
/// species: int8 1.0 point above fp32 for the shipped model, 2.1 points (4 of 185 photos) below
/// on a CI machine for this test; with these 100 species, 5.9 points (5 of 85) above. The cosine
/// bound is the fine check of the quantization; this one catches an int8 graph that is close on
/// average but loses a quarter of fp32's right answers.
#[test]
fn real_photos_int8_keeps_the_accuracy_of_fp32() {
    let Some(data) = std::env::var_os("SPOREPRINT_DATA").map(PathBuf::from) else {
        eprintln!("SPOREPRINT_DATA not set: skipping");
        return;
    };
    let subset = tempfile::tempdir().unwrap();
    let data = first_species(&data, 100, subset.path());
    let run_dir = tempfile::tempdir().unwrap();
    let mut train = config(&data, run_dir.path(), Mining::BatchAll, 3);
    train.backbone = BackboneKind::EfficientNetLite0;
    train.embedding_dim = 128;
    train.unseen = 15;
    train.freeze_backbone = true;
    train.no_augment = true;
    train.lr = 1e-3;
    train.species_per_batch = 16;
    run(train, false);
    let out = tempfile::tempdir().unwrap();
    let summary = export::export(&export_args(run_dir.path(), out.path())).unwrap();
    let (fp32, int8) = (&summary.fp32, summary.int8.as_ref().unwrap());
    for v in [fp32, int8] {
        println!(
            "{}: {:.1} MB, cosine to tch mean {:.5} worst {:.5}; validation prototype top-1 {:.1}% top-3 {:.1}% 5-NN {:.1}%",
            v.embedder,
            v.embedder_bytes as f64 / 1e6,
            v.mean_cosine,
            v.min_cosine,
            100.0 * v.validation_prototype_top1,
            100.0 * v.validation_prototype_top3,
            100.0 * v.validation_knn5
        );
    }
    assert!(fp32.min_cosine >= 0.9999);
    assert!(int8.mean_cosine >= 0.99, "{}", int8.mean_cosine);
    assert!(int8.embedder_bytes < fp32.embedder_bytes / 2, "int8 convolution weights take a quarter of the bytes");
    let keeps = |a: f64, b: f64| a - b <= INT8_MAY_LOSE + 1e-9;
    assert!(keeps(fp32.validation_prototype_top1, int8.validation_prototype_top1), "top-1");
    assert!(keeps(fp32.validation_knn5, int8.validation_knn5), "5-NN");
}

/// With SPOREPRINT_DATA (the real photos): the shipped int8 embedder, run by tract with our
/// quantized ops (`shared::ops`), embeds real photos as ONNX Runtime does the same file:
/// the first photo of each of the first 24 species, worst cosine >= 0.999. (Our ops equal
/// tract's own int8 convolutions, tested in shared/tests/ops.rs; this holds both against
/// the independent implementation.)
#[test]
fn the_shipped_int8_embedder_embeds_real_photos_as_onnx_runtime_does() {
    let Some(data) = std::env::var_os("SPOREPRINT_DATA").map(PathBuf::from) else {
        eprintln!("SPOREPRINT_DATA not set: skipping");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default");
    let manifest = sporeprint_shared::manifest::Manifest::read(&dir).unwrap();
    let spec = manifest.preprocess;
    let model = dir.join(&manifest.variant(&dir, Some("int8")).unwrap().embedder);
    let embedder = Embedder::load(&model, spec).unwrap();
    // Species and photos sorted by name, photo files only: the trainer's own scan.
    let collection = sporeprint_host::photos::data::Collection::scan(&data).unwrap();
    let inputs: Vec<Vec<f32>> = collection
        .photos
        .iter()
        .take(24)
        .map(|photos| {
            let photo = sporeprint_shared::image_io::open(&photos[0], &spec).unwrap();
            sporeprint_shared::image_io::to_tensor(&photo.image, &spec)
        })
        .collect();
    let tract: Vec<Vec<f32>> = inputs.iter().map(|input| embedder.embed_input(input).unwrap()).collect();
    let runtime = onnx_runtime(&model, &inputs);
    let cosine = min_cosine(&tract, &runtime);
    println!("{} photos: worst cosine tract int8 (our ops) vs ONNX Runtime int8 {cosine:.6}", inputs.len());
    assert!(cosine >= 0.999, "{cosine}");
}
