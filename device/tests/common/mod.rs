//! What the device's end-to-end tests share: a small but real ONNX model (run by real tract), a
//! model folder around it, generated photos, and running the real binary.
#![allow(dead_code)]

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

pub const SPEC: PreprocessSpec = PreprocessSpec {
    input_size: 32,
    resize_shorter_to: 32,
    filter: ResizeFilter::Triangle,
    ..PreprocessSpec::IMAGENET
};

/// A small but real ONNX embedder: the image's mean colour (GlobalAveragePool), mapped to 4-D.
pub fn colour_model() -> Vec<u8> {
    colour_model_with([1.0, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, 0.1, 0.0, 0.0, 1.0, 0.1])
}

/// The colour model with other weights (3 x 4, row-major): a NaN among them makes a broken model.
pub fn colour_model_with(weights: [f32; 12]) -> Vec<u8> {
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

pub fn photo(path: &Path, colour: [u8; 3]) {
    RgbImage::from_fn(48, 40, |x, y| Rgb(colour.map(|c| c.saturating_add(((x + y) % 7) as u8)))).save(path).unwrap();
}

pub const SPECIES: [(&str, [u8; 3], Edibility); 3] = [
    ("chanterelle", [230, 160, 20], Edibility::Edible),
    ("death cap", [150, 170, 110], Edibility::Deadly),
    ("blue roundhead", [30, 60, 200], Edibility::Inedible),
];

/// A model folder: the colour model, its table of three species and model.toml.
pub fn model_folder(dir: &Path) {
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
        let species = NewSpecies {
            name: Name::new(name).unwrap(),
            scientific_name: None,
            genus: None,
            edibility,
            origin: Origin::Host,
        };
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
        atypicality: false,
        validation_prototype_top1: 1.0,
        validation_prototype_top3: 1.0,
        validation_knn5: 1.0,
        validation_known_rejected: 0.0,
        calibration: None,
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

pub fn device(args: &[&str], state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sporeprint-device"))
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env_remove("SPOREPRINT_MODEL")
        .output()
        .unwrap()
}

pub fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub model: PathBuf,
    pub photos: PathBuf,
    pub state: PathBuf,
}

pub fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (model, photos, state) = (dir.path().join("model"), dir.path().join("photos"), dir.path().join("state"));
    for d in [&model, &photos, &state] {
        std::fs::create_dir_all(d).unwrap();
    }
    model_folder(&model);
    Setup { _dir: dir, model, photos, state }
}

/// A photo the size of the data set's (512x512 JPEG), textured around `colour`: slow enough to
/// decode that an enrollment of a few dozen takes a noticeable time.
pub fn big_photo(path: &Path, colour: [u8; 3], seed: u32) {
    RgbImage::from_fn(512, 512, |x, y| {
        let noise = ((x * 31 + y * 17 + seed * 101) % 13) as u8;
        Rgb(colour.map(|c| c.saturating_add(noise)))
    })
    .save(path)
    .unwrap();
}

/// `args` as the `&str`s `device` takes.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
