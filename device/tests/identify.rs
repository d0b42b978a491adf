//! `sporeprint-device identify` end to end: a real ONNX model run by tract, real JPEGs, the
//! table created from the shipped one, bad photos and foreign tables.

use image::{Rgb, RgbImage};
use prost::Message;
use sporeprint_shared::embedder::Embedder;
use sporeprint_shared::manifest::{self, Manifest};
use sporeprint_shared::preprocess::ResizeFilter;
use sporeprint_shared::table::NewSpecies;
use sporeprint_shared::{Edibility, Header, Name, Origin, PreprocessSpec, Table, store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tract_onnx::pb;

const SPEC: PreprocessSpec = PreprocessSpec {
    input_size: 32,
    resize_shorter_to: 32,
    filter: ResizeFilter::Triangle,
    ..PreprocessSpec::IMAGENET
};

/// A small but real ONNX embedder: the image's mean colour (GlobalAveragePool), mapped to 4-D.
fn colour_model() -> Vec<u8> {
    use pb::tensor_shape_proto::{Dimension, dimension};
    let info = |name: &str, dims: &[i64]| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let node = |op: &str, inputs: &[&str], output: &str| pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    };
    let weights: [f32; 12] = [1.0, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, 0.1, 0.0, 0.0, 1.0, 0.1];
    let model = pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(pb::GraphProto {
            node: vec![
                node("GlobalAveragePool", &["image"], "pooled"),
                node("Flatten", &["pooled"], "flat"),
                node("MatMul", &["flat", "w"], "embedding"),
            ],
            initializer: vec![pb::TensorProto {
                name: "w".into(),
                dims: vec![3, 4],
                data_type: 1,
                raw_data: weights.iter().flat_map(|w| w.to_le_bytes()).collect(),
                ..Default::default()
            }],
            input: vec![info("image", &[1, 3, 32, 32])],
            output: vec![info("embedding", &[1, 4])],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

fn photo(path: &Path, colour: [u8; 3]) {
    RgbImage::from_fn(48, 40, |x, y| Rgb(colour.map(|c| c.saturating_add(((x + y) % 7) as u8)))).save(path).unwrap();
}

const SPECIES: [(&str, [u8; 3], Edibility); 3] = [
    ("chanterelle", [230, 160, 20], Edibility::Edible),
    ("death cap", [150, 170, 110], Edibility::Deadly),
    ("blue roundhead", [30, 60, 200], Edibility::Inedible),
];

/// A model folder: the colour model, its table of three species and model.toml.
fn model_folder(dir: &Path) {
    let embedder_path = dir.join("embedder.onnx");
    std::fs::write(&embedder_path, colour_model()).unwrap();
    let embedder = Embedder::load(&embedder_path, SPEC).unwrap();
    let mut table = Table::new(Header::new(4, embedder.fingerprint(), SPEC));
    table.set_open_set_threshold(0.3);
    let shots = dir.join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, colour, edibility) in SPECIES {
        let path = shots.join(format!("{name}.png"));
        photo(&path, colour);
        let shot = embedder.embed_file(&path).unwrap();
        let species =
            NewSpecies { name: Name::new(name).unwrap(), scientific_name: None, edibility, origin: Origin::Host };
        table.add_species(species, &[shot]).unwrap();
    }
    store::save(&dir.join("prototypes.bin"), &table).unwrap();
    let variant = manifest::Variant {
        embedder: "embedder.onnx".into(),
        prototypes: "prototypes.bin".into(),
        embedder_bytes: 0,
        fingerprint: embedder.fingerprint().to_string(),
        min_cosine: 1.0,
        mean_cosine: 1.0,
        species: 3,
        open_set_threshold: 0.3,
        validation_prototype_top1: 1.0,
        validation_prototype_top3: 1.0,
        validation_knn5: 1.0,
        validation_known_rejected: 0.0,
    };
    let manifest = Manifest {
        format: manifest::FORMAT,
        backbone: "colour".into(),
        head: "none".into(),
        embedding_dim: 4,
        preprocess: SPEC,
        default: "fp32".into(),
        variants: BTreeMap::from([("fp32".to_string(), variant)]),
        trained: None,
    };
    std::fs::write(dir.join(manifest::MANIFEST), manifest.to_toml()).unwrap();
}

fn device(args: &[&str], state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sporeprint-device"))
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env_remove("SPOREPRINT_MODEL")
        .output()
        .unwrap()
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    model: PathBuf,
    photos: PathBuf,
    state: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (model, photos, state) = (dir.path().join("model"), dir.path().join("photos"), dir.path().join("state"));
    for d in [&model, &photos, &state] {
        std::fs::create_dir_all(d).unwrap();
    }
    model_folder(&model);
    Setup { _dir: dir, model, photos, state }
}

#[test]
fn photos_are_answered_with_their_species_or_unknown() {
    let s = setup();
    // Slightly different photos of the known species (JPEG, another size), and a purple one.
    let mut args: Vec<String> =
        vec!["identify".into(), "--json".into(), "--model".into(), s.model.display().to_string()];
    for (name, colour, _) in SPECIES {
        let path = s.photos.join(format!("{name}.jpg"));
        photo(&path, colour.map(|c| c.saturating_sub(8)));
        args.push(path.display().to_string());
    }
    let purple = s.photos.join("purple.jpg");
    photo(&purple, [140, 20, 160]);
    args.push(purple.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = device(&args, &s.state);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answers = json_lines(&output);
    assert_eq!(answers.len(), 4);
    for (answer, (name, _, edibility)) in answers.iter().zip(SPECIES) {
        assert_eq!(answer["species"], name, "{answer}");
        assert_eq!(answer["unknown"], false);
        assert_eq!(answer["top"][0]["species"], name);
        assert_eq!(answer["top"][0]["edibility"], edibility.as_str());
        assert_eq!(answer["top"].as_array().unwrap().len(), 3);
        let confidence = answer["top"][0]["confidence"].as_f64().unwrap();
        assert!(confidence > answer["top"][1]["confidence"].as_f64().unwrap());
    }
    assert!(answers[0]["warning"].is_null(), "an edible answer without look-alike: no warning");
    assert!(answers[1]["warning"].as_str().unwrap().contains("deadly"), "{}", answers[1]);
    assert_eq!(answers[3]["species"], serde_json::Value::Null);
    assert_eq!(answers[3]["unknown"], true);
    assert!(answers[3]["warning"].as_str().unwrap().contains("Do not eat"));

    // The per-user table was created from the shipped one, which is untouched.
    let created: Vec<_> = std::fs::read_dir(s.state.join("sporeprint")).unwrap().collect();
    assert_eq!(created.len(), 1);
    let shipped = std::fs::read(s.model.join("prototypes.bin")).unwrap();
    assert_eq!(std::fs::read(created[0].as_ref().unwrap().path()).unwrap(), shipped);

    // The human-readable form names the species and the danger.
    let human = device(&["identify", "--model", s.model.to_str().unwrap(), args[5]], &s.state);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("death cap (deadly)") && text.contains("WARNING"), "{text}");
}

#[test]
fn a_bad_photo_is_named_and_the_others_still_answered() {
    let s = setup();
    let good = s.photos.join("good.jpg");
    photo(&good, SPECIES[0].1);
    let truncated = s.photos.join("truncated.jpg");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let text = s.photos.join("notes.jpg");
    std::fs::write(&text, "not a photo").unwrap();
    let missing = s.photos.join("missing.jpg");
    let paths = [&truncated, &good, &text, &missing].map(|p| p.display().to_string());
    let mut args = vec!["identify", "--json", "--model", s.model.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    let output = device(&args, &s.state);
    assert!(!output.status.success(), "failures make the exit code non-zero");
    let answers = json_lines(&output);
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[1]["species"], "chanterelle");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (i, name) in [(0, "truncated.jpg"), (2, "notes.jpg"), (3, "missing.jpg")] {
        assert!(answers[i]["error"].as_str().unwrap().contains(name), "{}", answers[i]);
        assert!(stderr.contains(name), "{stderr}");
    }
    assert!(stderr.contains("3 of 4 photo(s)"), "{stderr}");
}

#[test]
fn a_table_or_model_that_does_not_match_is_refused() {
    let s = setup();
    let good = s.photos.join("good.jpg");
    photo(&good, SPECIES[0].1);
    // A table made for another model (another fingerprint).
    let shipped: Table = store::load(&s.model.join("prototypes.bin")).unwrap();
    let mut header = shipped.header().clone();
    header.model_fingerprint = sporeprint_shared::ModelFingerprint::of_bytes(b"another model");
    let foreign = s.photos.join("foreign.bin");
    store::save(&foreign, &Table::new(header)).unwrap();
    let output = device(
        &[
            "identify",
            "--model",
            s.model.to_str().unwrap(),
            "--table",
            foreign.to_str().unwrap(),
            good.to_str().unwrap(),
        ],
        &s.state,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("foreign.bin"), "{stderr}");

    // An embedder replaced behind model.toml's back.
    let embedder = s.model.join("embedder.onnx");
    let mut bytes = std::fs::read(&embedder).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // a weight's low bit: still a valid model, another file
    std::fs::write(&embedder, bytes).unwrap();
    let output = device(&["identify", "--model", s.model.to_str().unwrap(), good.to_str().unwrap()], &s.state);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("embedder.onnx") && stderr.contains("inconsistent"), "{stderr}");

    // No model at all.
    let output = device(&["identify", "--model", s.photos.to_str().unwrap(), good.to_str().unwrap()], &s.state);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("model.toml"), "{stderr}");
}
