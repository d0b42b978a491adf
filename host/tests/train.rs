//! Training on generated photos with the tiny CNN: the split, learning, resuming, bad files.

mod common;

use common::{TORCH_RNG, config, make_photos, run};
use image::RgbImage;
use sporeprint_host::eval;
use sporeprint_host::photos::data::Collection;
use sporeprint_host::report::ReportArgs;
use sporeprint_host::train::mining::Mining;
use sporeprint_host::train::{self, EpochMetrics};
use sporeprint_shared::Edibility;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tch::Tensor;

fn metrics(run: &Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(run.join(train::METRICS))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn the_split_is_deterministic_disjoint_and_holds_out_the_last_species() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 6, 5);
    std::fs::create_dir_all(data.path().join("zz_lonely")).unwrap();
    RgbImage::new(8, 8).save(data.path().join("zz_lonely/only.png")).unwrap();
    let collection = Collection::scan(data.path()).unwrap();
    assert_eq!(collection.species.len(), 6);
    assert_eq!(collection.excluded, [("zz_lonely".to_string(), 1)]);
    assert_eq!(collection.species[1].edibility, sporeprint_shared::Edibility::Deadly);

    let a = collection.split(2, 9, None).unwrap();
    assert_eq!(a.train, collection.split(2, 9, None).unwrap().train);
    assert_ne!(a.train, collection.split(2, 10, None).unwrap().train, "the seed matters");
    let train: HashSet<_> = a.train.iter().map(|s| &s.path).collect();
    let validation: HashSet<_> = a.validation.iter().map(|s| &s.path).collect();
    let unseen: HashSet<_> = a.unseen.iter().map(|s| &s.path).collect();
    assert!(train.is_disjoint(&validation) && train.is_disjoint(&unseen) && validation.is_disjoint(&unseen));
    assert_eq!(train.len() + validation.len() + unseen.len(), 30);
    assert!(a.unseen.iter().all(|s| s.label >= 4), "the last 2 species are unseen");
    assert!(a.train.iter().chain(&a.validation).all(|s| s.label < 4));
    // 5 photos per seen species: 1 for validation, 4 for training.
    assert_eq!(validation.len(), 4);
    // A fixed number held out per species, capped to leave 2 to train on.
    let two = collection.split(2, 9, Some(2)).unwrap();
    assert_eq!((two.train.len(), two.validation.len()), (12, 8));
    let capped = collection.split(2, 9, Some(9)).unwrap();
    assert_eq!((capped.train.len(), capped.validation.len()), (8, 12));

    assert!(collection.split(5, 9, None).is_err(), "at least 2 seen species must remain");

    // A species with exactly two photos trains on both (a positive pair), none for validation.
    let pair = tempfile::tempdir().unwrap();
    make_photos(pair.path(), 3, 2);
    let split = Collection::scan(pair.path()).unwrap().split(0, 1, None).unwrap();
    assert_eq!((split.train.len(), split.validation.len()), (6, 0));
    assert!(Collection::scan(&data.path().join("missing")).unwrap_err().to_string().contains("no such data folder"));
    let empty = tempfile::tempdir().unwrap();
    assert!(Collection::scan(empty.path()).unwrap_err().to_string().contains("no species folder"));
}

#[test]
fn training_lowers_the_loss_with_every_strategy() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 8, 6);
    for mining in [Mining::Random, Mining::SemiHard, Mining::BatchHard, Mining::ProxySoftmax] {
        let out = tempfile::tempdir().unwrap();
        let summary = run(config(data.path(), out.path(), mining, 6), false);
        assert_eq!(summary.epochs_done, 6);
        let m = metrics(out.path());
        let (first, last) = (&m[0], &m[m.len() - 1]);
        println!(
            "{mining:?}: train loss {:.3} -> {:.3}, validation {:.3} -> {:.3}",
            first.train_loss, last.train_loss, first.validation_loss, last.validation_loss
        );
        assert!(last.train_loss < first.train_loss * 0.8, "{mining:?}: {first:?} -> {last:?}");
        assert!(out.path().join(train::BEST).exists());
    }
}

#[test]
fn resuming_continues_bit_identically() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 6, 5);
    let straight = tempfile::tempdir().unwrap();
    run(config(data.path(), straight.path(), Mining::SemiHard, 3), false);
    let resumed = tempfile::tempdir().unwrap();
    run(config(data.path(), resumed.path(), Mining::SemiHard, 1), false);
    let summary = run(config(data.path(), resumed.path(), Mining::SemiHard, 3), true);
    assert_eq!(summary.epochs_done, 3);

    let load = |dir: &Path| -> BTreeMap<String, Tensor> {
        Tensor::read_safetensors(dir.join(train::CHECKPOINT)).unwrap().into_iter().collect()
    };
    let (a, b) = (load(straight.path()), load(resumed.path()));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, tensor) in &a {
        assert!(tensor.equal(&b[name]), "{name} differs after resuming");
    }
    let (ma, mb) = (metrics(straight.path()), metrics(resumed.path()));
    assert_eq!(ma.len(), 3);
    assert_eq!(
        ma.iter().map(|m| m.train_loss).collect::<Vec<_>>(),
        mb.iter().map(|m| m.train_loss).collect::<Vec<_>>()
    );

    // A finished run is not silently overwritten.
    let again = train::train(
        config(data.path(), straight.path(), Mining::SemiHard, 3),
        false,
        Arc::new(AtomicBool::new(false)),
    );
    assert!(again.unwrap_err().to_string().contains("--resume"));
}

#[test]
fn unreadable_photos_are_skipped_and_reported() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 5, 5);
    let bad = data.path().join("species_00/photo_9.jpg");
    std::fs::write(&bad, b"not a jpeg at all").unwrap();
    let good = std::fs::read(data.path().join("species_01/photo_0.jpg")).unwrap();
    let truncated = data.path().join("species_01/photo_9.jpg");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();

    let out = tempfile::tempdir().unwrap();
    let summary = run(config(data.path(), out.path(), Mining::BatchHard, 1), false);
    assert_eq!(summary.epochs_done, 1, "training went on");
    let mut skipped = summary.skipped.clone();
    skipped.sort();
    assert_eq!(skipped, [bad.clone(), truncated.clone()]);
    let report = std::fs::read_to_string(out.path().join("skipped.txt")).unwrap();
    assert!(report.contains("photo_9.jpg") && report.lines().count() == 2, "{report}");
}

#[test]
fn eval_measures_a_trained_run_on_every_variant() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 8, 5);
    let out = tempfile::tempdir().unwrap();
    run(config(data.path(), out.path(), Mining::BatchHard, 4), false);
    let args = common::eval_args(out.path(), data.path());
    let (report, embeddings) = {
        // Building the network draws from libtorch's global generator: not while another test trains.
        let _one_at_a_time = TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        eval::evaluate(&args).unwrap()
    };
    assert_eq!(embeddings.rows.len(), 40);
    assert!(embeddings.rows.iter().all(|r| (sporeprint_shared::vector::norm(&r.embedding) - 1.0).abs() < 1e-4));
    assert_eq!((report.seen_species, report.unseen_species, report.embedding_dim), (6, 2, 16));
    assert_eq!((report.train_photos, report.validation_photos, report.unseen_photos), (24, 6, 10));
    let names: Vec<&str> = report.variants.iter().map(|v| v.variant.as_str()).collect();
    assert_eq!(names, ["plain", "centred", "flip", "centred+flip", "centred+flip+crops"]);
    for v in &report.variants {
        let unseen = v.unseen.as_ref().expect("2 unseen species");
        for x in [
            v.triplet_accuracy,
            v.centroid_accuracy,
            v.knn_accuracy,
            v.prototype_top1,
            v.prototype_top3,
            unseen.unseen_nmi,
        ] {
            assert!((0.0..=1.0).contains(&x), "{v:?}");
        }
        assert!(v.prototype_top3 >= v.prototype_top1);
        // Trained on easily told-apart synthetic species: the true one is among the 3 nearest of
        // the 6 prototypes for nearly every validation photo.
        assert!(v.prototype_top3 > 0.8, "{v:?}");
        assert_eq!(unseen.kshot.iter().map(|k| k.shots).collect::<Vec<_>>(), [1, 3]);
        // The threshold keeps 95% of 6 validation photos: at most one is rejected.
        assert!(v.open_set.known_rejected <= 1.0 / 6.0 + 1e-9, "{v:?}");
        // Also with the photos' atypicality added, under its own threshold.
        let with = v.open_set_with_atypicality.as_ref().expect("fitted on the training photos");
        assert!(with.known_rejected <= 1.0 / 6.0 + 1e-9, "{v:?}");
        assert!(with.auroc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{v:?}");
        assert_ne!(with.threshold, v.open_set.threshold, "{v:?}");
        // 5 photos per unseen species: 1 enrolls, finds of 1 to 3 of the other 4 views. A find of
        // one view is one photo asked alone, whichever rule combines the views.
        let views: Vec<usize> = unseen.finds.iter().map(|f| f.views).collect();
        assert_eq!(views, [1, 2, 3], "{v:?}");
        let one = &unseen.finds[0];
        assert_eq!(one.mean_embedding_top1.mean, one.summed_log_probability_top1.mean);
        // One validation photo per species: known finds of one view, which are the photos alone.
        assert_eq!(v.known_finds.iter().map(|f| f.views).collect::<Vec<_>>(), [1], "{v:?}");
        assert!((v.known_finds[0].mean_embedding_top1.mean - v.prototype_top1).abs() < 1e-9, "{v:?}");
        let scores: Vec<&String> = v.open_set_scores.keys().collect();
        assert_eq!(scores, ["nearest-photo", "nearest-to-second"], "{v:?}");
        assert!(v.open_set_scores.values().all(|o| o.auroc.is_some_and(|a| (0.0..=1.0).contains(&a))), "{v:?}");
        // The shifted queries are measured on the four plain variants (not with --crops' views).
        match (v.variant.as_str(), &v.shifted) {
            ("centred+flip+crops", shifted) => assert!(shifted.is_none()),
            (_, Some(shifted)) => {
                assert!(
                    (0.0..=1.0).contains(&shifted.prototype_top1) && shifted.prototype_top3 >= shifted.prototype_top1
                );
                assert_eq!((shifted.kshot.len(), shifted.finds.len()), (2, 3), "{v:?}");
            }
            (name, None) => panic!("{name}: no shifted metrics"),
        }
    }
    // Trained with two validation photos per species: known finds of 2 views too.
    let two_out = tempfile::tempdir().unwrap();
    let two_config =
        train::TrainConfig { validation_photos: Some(2), ..config(data.path(), two_out.path(), Mining::BatchHard, 1) };
    run(two_config, false);
    let two = {
        let _one_at_a_time = TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        eval::evaluate(&eval::EvalArgs { crops: false, ..common::eval_args(two_out.path(), data.path()) }).unwrap().0
    };
    assert_eq!((two.train_photos, two.validation_photos), (18, 12));
    for v in &two.variants {
        assert_eq!(v.known_finds.iter().map(|f| f.views).collect::<Vec<_>>(), [1, 2], "{v:?}");
        let shifted = v.shifted.as_ref().unwrap();
        assert_eq!(shifted.known_finds.iter().map(|f| f.views).collect::<Vec<_>>(), [1, 2], "{v:?}");
        // Both photos of every species make the find of 2: one draw is all draws.
        assert_eq!(v.known_finds[1].mean_embedding_top1.std, 0.0, "{v:?}");
    }
    assert!(eval::table(&two).contains("find of 2, known species"));
    let table = eval::table(&report);
    assert!(
        table.contains("find of 3 (1-shot), mean embedding") && table.contains("shifted: prototype top-1"),
        "{table}"
    );
    assert!(table.contains("MAP@R (unseen)") && table.contains("3-shot, prototype top-1"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    for key in ["model", "variants", "knn"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert!(json["variants"][0]["open_set"]["threshold"].is_number());
    // The unseen metrics keep their top-level keys (older eval.json files still read).
    assert!(json["variants"][0]["unseen_retrieval"]["map_at_r"].is_number(), "{json}");
    assert!(json["variants"][0]["kshot"].is_array());
    let again: eval::EvalReport = serde_json::from_value(json).unwrap();
    assert!(again.variants[0].unseen.is_some());

    // The report of the evaluated run: charts with content, and a page embedding them.
    eval::save(out.path(), &report, &embeddings, false).unwrap();
    let charts = tempfile::tempdir().unwrap();
    let args = ReportArgs { runs: vec![out.path().into()], out: charts.path().into() };
    let index = sporeprint_host::report::report(&args).unwrap();
    let name = out.path().file_name().unwrap().to_string_lossy().into_owned();
    let curves = image::open(charts.path().join(format!("{name}-curves.png"))).unwrap().to_rgb8();
    assert_eq!(curves.dimensions(), (1100, 440));
    let blue = curves.pixels().filter(|p| p.0 == [0, 0, 255]).count();
    let red = curves.pixels().filter(|p| p.0 == [255, 0, 0]).count();
    assert!(blue > 200 && red > 200, "training (blue) and validation (red) curves drawn: {blue} / {red} pixels");
    let pca = image::open(charts.path().join(format!("{name}-pca.png"))).unwrap().to_rgb8();
    assert!(pca.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 5000);
    let html = std::fs::read_to_string(index).unwrap();
    assert_eq!(html.matches("data:image/png;base64").count(), 2);
    assert!(html.matches("data:image/jpeg;base64").count() >= 6, "query and neighbour thumbnails");
    assert!(html.contains("<td>study (2019)</td>") && html.contains(&format!("<td>{name}</td><td>plain</td>")));
    let green = curves.pixels().filter(|p| p.0 == [0, 255, 0]).count();
    assert!(green > 100, "validation prototype accuracy drawn: {green} pixels");
    let markdown = std::fs::read_to_string(charts.path().join("comparison.md")).unwrap();
    assert_eq!(markdown.lines().count(), 3 + 5, "header, rule, the study, and a row per variant");
    assert!(markdown.contains(&format!("| {name} | centred+flip+crops |")), "{markdown}");
}

/// The real collection splits as the study did. Needs SPOREPRINT_DATA (skipped when unset).
#[test]
fn the_real_collection_splits_as_the_study_did() {
    let Some(root) = std::env::var_os("SPOREPRINT_DATA") else {
        eprintln!("SPOREPRINT_DATA not set: skipping");
        return;
    };
    let collection = Collection::scan(Path::new(&root)).unwrap();
    assert_eq!(collection.species.len(), 200);
    assert_eq!(collection.photo_count(), 800);
    assert_eq!(collection.species[0].name, "almond_mushroom");
    let dangerous = collection.species.iter().filter(|s| s.edibility.is_dangerous()).count();
    assert_eq!(dangerous, 54, "the corrected species.csv lists 54 poisonous or deadly species");
    let deadly = collection.species.iter().filter(|s| s.edibility == Edibility::Deadly).count();
    assert_eq!(deadly, 12);
    let deathcap = collection.species.iter().find(|s| s.name == "deathcap").unwrap();
    assert_eq!(deathcap.edibility, Edibility::Deadly);
    assert_eq!(deathcap.scientific_name.as_deref(), Some("Amanita phalloides"), "from taxonomy.csv");
    assert_eq!(deathcap.genus.as_deref(), Some("Amanita"));
    assert!(collection.species.iter().all(|s| s.scientific_name.is_some() && s.genus.is_some()));
    let split = collection.split(15, 0, None).unwrap();
    assert_eq!((split.train.len(), split.validation.len(), split.unseen.len()), (555, 185, 60));
    let unseen: HashSet<&str> = split.unseen.iter().map(|s| collection.species[s.label].name.as_str()).collect();
    let last: HashSet<&str> = collection.species[185..].iter().map(|s| s.name.as_str()).collect();
    assert_eq!(unseen, last);
}

#[test]
fn an_interrupted_run_saves_a_checkpoint_and_resumes() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 6, 5);
    let out = tempfile::tempdir().unwrap();
    let summary = {
        let _one_at_a_time = TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // As if Ctrl-C came during the first step.
        train::train(config(data.path(), out.path(), Mining::BatchHard, 2), false, Arc::new(AtomicBool::new(true)))
            .unwrap()
    };
    assert!(summary.interrupted);
    assert_eq!(summary.epochs_done, 0);
    assert!(out.path().join(train::CHECKPOINT).exists());
    assert!(!out.path().join(train::METRICS).exists(), "no epoch was completed");
    let resumed = run(config(data.path(), out.path(), Mining::BatchHard, 2), true);
    assert!(!resumed.interrupted);
    assert_eq!(resumed.epochs_done, 2);
    assert_eq!(metrics(out.path()).len(), 2);
}

#[test]
fn a_frozen_backbone_is_left_untouched_while_the_head_learns() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 8, 6);
    // Centre crops' features once; fresh augmentations every step; augmented views' features once.
    for (no_augment, feature_views) in [(true, 0), (false, 0), (false, 3)] {
        let out = tempfile::tempdir().unwrap();
        let mut frozen = config(data.path(), out.path(), Mining::BatchAll, 6);
        frozen.freeze_backbone = true;
        frozen.no_augment = no_augment;
        frozen.feature_views = feature_views;
        // The study's randomly initialised head has a clear loss to bring down; the residual head
        // starts near its optimum on these easy photos and its loss only wanders under augmentation.
        frozen.head = sporeprint_host::model::head::HeadKind::Study;
        // Start from backbone weights in a file, so what "untouched" means does not depend on the
        // process-wide random generator other tests draw from.
        let initial = {
            let _one_at_a_time = TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            train::Network::new(&frozen, tch::Device::Cpu)
        };
        let backbone: Vec<(String, Tensor)> = initial
            .vs
            .variables()
            .into_iter()
            .filter_map(|(name, t)| name.strip_prefix("backbone.").map(|n| (n.to_string(), t)))
            .collect();
        let weights = out.path().join("initial-backbone.safetensors");
        Tensor::write_safetensors(&backbone, &weights).unwrap();
        frozen.weights = Some(weights);
        run(frozen.clone(), false);
        let m = metrics(out.path());
        // Under augmentation each epoch's loss is over other crops and wanders; the head has
        // learnt when the last epoch's loss or triplet accuracy is better than the first's.
        let (first, last) = (&m[0], &m[m.len() - 1]);
        assert!(
            last.train_loss < first.train_loss || last.train_triplet_accuracy > first.train_triplet_accuracy,
            "no_augment {no_augment}, views {feature_views}: {m:?}"
        );
        if feature_views > 0 {
            // The views are seeded by the run: a second run trains on the same ones.
            let again = tempfile::tempdir().unwrap();
            run(train::TrainConfig { out: again.path().to_path_buf(), ..frozen.clone() }, false);
            let losses = |m: &[EpochMetrics]| m.iter().map(|e| e.train_loss).collect::<Vec<_>>();
            assert_eq!(losses(&metrics(again.path())), losses(&m));
        }

        let trained: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(out.path().join(train::CHECKPOINT)).unwrap().into_iter().collect();
        for (name, tensor) in &backbone {
            let key = format!("backbone.{name}");
            assert!(tensor.equal(&trained[&key]), "{key} changed although the backbone is frozen");
        }
        assert!(!backbone.is_empty());
    }
}

#[test]
fn options_that_would_be_ignored_are_refused_before_anything_is_written() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 4, 4);
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let base = config(data.path(), &run_dir, Mining::BatchHard, 1);
    let refused = |change: &dyn Fn(&mut train::TrainConfig), expected: &str| {
        let mut config = base.clone();
        change(&mut config);
        let error = train::train(config, false, Arc::new(AtomicBool::new(false))).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(!run_dir.exists(), "nothing written");
    };
    refused(&|c| c.feature_views = 4, "--feature-views needs --freeze-backbone");
    refused(
        &|c| {
            c.feature_views = 4;
            c.freeze_backbone = true;
            c.no_augment = true;
        },
        "cannot go with --no-augment",
    );
    refused(
        &|c| {
            c.constant_coordinate = 0.25;
            c.head = sporeprint_host::model::head::HeadKind::Study;
        },
        "--constant-coordinate needs the residual head",
    );
    let mut fine = base.clone();
    fine.constant_coordinate = 0.25;
    fine.check().unwrap();
}
