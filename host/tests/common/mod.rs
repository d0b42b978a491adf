//! Helpers shared by the host's integration tests: generated photo collections and trainings.
#![allow(dead_code)]

pub mod photos;

use sporeprint_host::eval::EvalArgs;
use sporeprint_host::export::onnx::WeightScales;
use sporeprint_host::export::{ExportArgs, Precision};
use sporeprint_host::model::BackboneKind;
use sporeprint_host::model::head::HeadKind;
use sporeprint_host::train::mining::Mining;
use sporeprint_host::train::{self, TrainConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// `species` folders of `photos` 96x96 JPEGs: each species a colour and stripe pattern, each
/// photo with its own shift and noise.
pub fn make_photos(root: &Path, species: usize, photos: usize) {
    for s in 0..species {
        let dir = root.join(format!("species_{s:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for p in 0..photos {
            photos::striped(s, p).save(dir.join(format!("photo_{p}.jpg"))).unwrap();
        }
    }
    std::fs::write(root.join("species.csv"), "species,edibility\nspecies_00,edible\nspecies_01,deadly\n").unwrap();
}

pub fn config(data: &Path, out: &Path, mining: Mining, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: data.into(),
        out: out.into(),
        backbone: BackboneKind::Tiny,
        weights: None,
        head: HeadKind::Residual,
        embedding_dim: 16,
        mining,
        epochs,
        unseen: 2,
        seed: 3,
        validation_photos: None,
        margin: 0.5,
        temperature: 0.05,
        lr: 3e-3,
        batch_size: 8,
        species_per_batch: 4,
        photos_per_species: 4,
        patience: 100,
        freeze_backbone: false,
        no_augment: false,
        feature_views: 0,
        projection: Default::default(),
        lda_shrinkage: 3.0,
        constant_coordinate: 0.0,
    }
}

/// libtorch's random generator is global to the process: trainings running at the same time
/// in this test binary would draw from it in turns and stop being reproducible. One at a time.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn run(config: TrainConfig, resume: bool) -> train::TrainSummary {
    let _one_at_a_time = TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    train::train(config, resume, Arc::new(AtomicBool::new(false))).unwrap()
}

/// `sporeprint eval` of the run in `run` on `data`: every variant, 20 draws.
pub fn eval_args(run: &Path, data: &Path) -> EvalArgs {
    EvalArgs {
        run: Some(run.into()),
        data: data.into(),
        features: false,
        backbone: BackboneKind::Tiny,
        unseen: 2,
        seed: 0,
        validation_photos: None,
        knn: 5,
        shots: vec![1, 3],
        draws: 20,
        keep: 0.95,
        atypicality_weight: 1.0,
        crops: true,
        save: None,
        json: true,
    }
}

/// `sporeprint export --int8` of the run in `run` into `out`.
pub fn export_args(run: &Path, out: &Path) -> ExportArgs {
    ExportArgs {
        run: run.into(),
        out: out.into(),
        data: None,
        int8: true,
        default_variant: Precision::Fp32,
        calibration: None,
        int8_scales: WeightScales::PerChannel,
        calibration_photos: 50,
        keep: 0.95,
        atypicality_weight: 1.0,
        json: false,
    }
}
