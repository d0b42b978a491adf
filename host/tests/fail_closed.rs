//! The host's inputs fail closed: options that cannot work are refused before anything is
//! written, `species.csv`/`taxonomy.csv` problems are errors naming the file and line, an
//! evaluation without unseen species measures what it can, an export skips unreadable photos.

mod common;

use common::{TORCH_RNG, config, make_photos, run};
use sporeprint_host::eval::{self, EvalArgs};
use sporeprint_host::export::{self, ExportArgs};
use sporeprint_host::photos::data::Collection;
use sporeprint_host::train::mining::Mining;
use sporeprint_shared::Table;
use std::path::Path;
use std::process::Command;

fn sporeprint(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sporeprint")).args(args).output().unwrap()
}

#[test]
fn impossible_training_options_are_refused_before_anything_is_written() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let base = ["train", "--data", data.path().to_str().unwrap(), "--out", run_dir.to_str().unwrap()];
    for (option, value) in [
        ("--species-per-batch", "0"),
        ("--photos-per-species", "1"),
        ("--batch-size", "0"),
        ("--embedding-dim", "-5"),
        ("--embedding-dim", "0"),
        ("--lr", "0"),
        ("--margin", "NaN"),
        ("--temperature", "-1"),
    ] {
        let pair = format!("{option}={value}");
        let output = sporeprint(&[&base[..], &[pair.as_str()]].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(stderr.contains(option), "{option} {value}: {stderr}");
        assert!(!run_dir.exists(), "{option} {value}: nothing is written");
    }
}

#[test]
fn errors_print_one_line_with_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("host-table.bin");
    std::fs::write(&table, b"SPRT but not a table at all").unwrap();
    let port = dir.path().join("no-such-port");
    let output = sporeprint(&["sync", "--port", port.to_str().unwrap(), "--table", table.to_str().unwrap(), "--pull"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("host-table.bin"), "{stderr}");
    // The cause once, not once per level of the chain ("x.bin: not a table: not a table").
    assert_eq!(stderr.matches("not a sporeprint prototype table").count(), 1, "{stderr}");
}

#[test]
fn species_csv_problems_name_the_file_and_the_line() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 3, 2);
    let csv = data.path().join("species.csv");
    for (content, expected) in [
        (&b"species,edibility\nspecies_00,edible\nspecies_01,tasty\n"[..], "species.csv:3: bad edibility \"tasty\""),
        (
            b"species,edibility\nspecies_00,edible\nchanterelle,edible\n",
            "species.csv:3: species \"chanterelle\" has no photo folder",
        ),
        (
            b"species,edibility\nspecies_00,edible\nspecies_00,deadly\n",
            "species.csv:3: species \"species_00\" is listed again (first on line 2)",
        ),
        (b"species,edibility\nspecies_00,\xff\xfe\n", "species.csv:2: not UTF-8"),
        (b"species,edibility\nspecies_00\n", "species.csv"),
    ] {
        std::fs::write(&csv, content).unwrap();
        let error = format!("{:#}", Collection::scan(data.path()).unwrap_err());
        assert!(error.contains(expected), "{expected}: {error}");
    }
    // There but unreadable (here: a folder by that name) is an error, not "no edibility".
    std::fs::remove_file(&csv).unwrap();
    std::fs::create_dir(&csv).unwrap();
    let error = format!("{:#}", Collection::scan(data.path()).unwrap_err());
    assert!(error.contains("species.csv: cannot read"), "{error}");
    // Absent: every species of unknown edibility, and the scan goes on.
    std::fs::remove_dir(&csv).unwrap();
    let collection = Collection::scan(data.path()).unwrap();
    assert!(collection.species.iter().all(|s| s.edibility == sporeprint_shared::Edibility::Unknown));

    // taxonomy.csv: RFC 4180, a quoted field may hold commas.
    std::fs::write(
        data.path().join("taxonomy.csv"),
        "species,scientific_name,genus,source\nspecies_01,Amanita phalloides,Amanita,\"a, b\"\n",
    )
    .unwrap();
    let collection = Collection::scan(data.path()).unwrap();
    assert_eq!(collection.species[1].scientific_name.as_deref(), Some("Amanita phalloides"));
    assert_eq!(collection.species[1].genus.as_deref(), Some("Amanita"));
    assert_eq!(collection.species[0].scientific_name, None);
}

#[test]
fn a_run_without_unseen_species_is_evaluated_on_the_known_ones() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 6, 5);
    let out = tempfile::tempdir().unwrap();
    run(
        sporeprint_host::train::TrainConfig { unseen: 0, ..config(data.path(), out.path(), Mining::BatchHard, 1) },
        false,
    );
    let args = EvalArgs { unseen: 15, draws: 5, ..common::eval_args(out.path(), data.path()) };
    let (report, _) = {
        let _one_at_a_time = TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        eval::evaluate(&args).unwrap()
    };
    assert_eq!((report.seen_species, report.unseen_species, report.unseen_photos), (6, 0, 0));
    for v in &report.variants {
        assert!(v.unseen.is_none() && v.open_set.unseen_rejected.is_none() && v.open_set.auroc.is_none(), "{v:?}");
        assert!((0.0..=1.0).contains(&v.prototype_top1), "{v:?}");
    }
    let table = eval::table(&report);
    assert!(table.contains("unseen-species metrics are absent"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["variants"][0].get("kshot").is_none() && json["variants"][0]["open_set"]["auroc"].is_null());
}

#[test]
fn an_export_skips_and_lists_unreadable_photos() {
    let data = tempfile::tempdir().unwrap();
    make_photos(data.path(), 5, 5);
    let run_dir = tempfile::tempdir().unwrap();
    run(config(data.path(), run_dir.path(), Mining::BatchHard, 1), false);
    // Broken after training: the export meets them first.
    let broken = data.path().join("species_00/photo_1.jpg");
    std::fs::write(&broken, b"not a photo").unwrap();
    let empty = data.path().join("species_02/photo_3.jpg");
    std::fs::write(&empty, b"").unwrap();
    let out = tempfile::tempdir().unwrap();
    let args = ExportArgs { int8: false, calibration_photos: 10, ..common::export_args(run_dir.path(), out.path()) };
    let summary = export::export(&args).unwrap();
    let mut skipped = summary.skipped.clone();
    skipped.sort();
    assert_eq!(skipped, [broken, empty]);
    let table: Table = sporeprint_shared::store::load(&out.path().join(export::PROTOTYPES)).unwrap();
    // 3 seen species x 5 photos, less the two broken ones.
    assert_eq!(table.entries().iter().map(|e| e.prototype.shots).sum::<u32>(), 13);
    assert!(Path::new(&out.path().join(export::EMBEDDER)).exists());
}
