//! `sporeprint-tables info | species | merge` as a user runs them, on copies of the shipped table.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shipped_table() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default/prototypes.bin")
}

fn tables(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sporeprint-tables")).args(args).output().unwrap()
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn names(table: &Path) -> Vec<String> {
    let listing = json(&tables(&["species", "--table", table.to_str().unwrap(), "list", "--json"]));
    listing.as_array().unwrap().iter().map(|l| l["species"].as_str().unwrap().to_string()).collect()
}

#[test]
fn info_describes_the_shipped_table() {
    let info = json(&tables(&["info", shipped_table().to_str().unwrap(), "--json"]));
    assert_eq!(info["species"], 200);
    assert_eq!(info["dangerous"], 54, "species.csv's poisonous and deadly species");
    assert_eq!(info["deadly"], 12);
    assert_eq!(info["without_genus"], 0, "taxonomy.csv gives every species a genus");
    assert_eq!(info["format_version"], 3);
    assert_eq!(info["embedding_dim"], 128);
    let temperature = info["temperature"].as_f64().unwrap();
    assert!(
        temperature > 0.0 && temperature < 0.1,
        "export's fitted temperature, not the uncalibrated 0.1: {temperature}"
    );
    let manifest = std::fs::read_to_string(shipped_table().with_file_name("model.toml")).unwrap();
    assert!(
        manifest.contains(info["model_fingerprint"].as_str().unwrap()),
        "the fingerprint is the fp32 embedder's sha256"
    );

    let text = tables(&["info", shipped_table().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).starts_with("200 species (54 poisonous or deadly, 12 deadly;"));
}

#[test]
fn species_changes_are_saved_and_bad_ones_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("host.bin");
    std::fs::copy(shipped_table(), &table).unwrap();
    let t = table.to_str().unwrap();

    let renamed = tables(&["species", "--table", t, "rename", "almond mushroom", "Almond mushroom"]);
    assert!(renamed.status.success(), "{}", String::from_utf8_lossy(&renamed.stderr));
    assert!(String::from_utf8_lossy(&renamed.stdout).contains("renamed almond mushroom to Almond mushroom"));
    let after = names(&table);
    assert!(after.contains(&"Almond mushroom".to_string()) && !after.contains(&"almond mushroom".to_string()));
    assert_eq!(after.len(), 200);

    json(&tables(&["species", "--table", t, "set-edibility", "Almond mushroom", "unknown", "--json"]));
    let listing = json(&tables(&["species", "--table", t, "list", "--json"]));
    let almond = listing.as_array().unwrap().iter().find(|l| l["species"] == "Almond mushroom").unwrap();
    assert_eq!(almond["edibility"], "unknown");

    let before = std::fs::read(&table).unwrap();
    for (args, problem) in [
        (vec!["rename", "Almond mushroom", ""], "species name is empty"),
        (vec!["remove", "no such mushroom"], "no species named \"no such mushroom\""),
        (vec!["rename", "Almond mushroom", "amethyst deceiver"], "already in the table"),
    ] {
        let mut full = vec!["species", "--table", t];
        full.extend(args);
        let failed = tables(&full);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(!failed.status.success());
        assert!(stderr.contains(t) && stderr.contains("nothing changed") && stderr.contains(problem), "{stderr}");
        assert_eq!(std::fs::read(&table).unwrap(), before, "a refused change leaves the file as it was");
    }

    let removed = json(&tables(&["species", "--table", t, "remove", "Almond mushroom", "--json"]));
    assert!(removed["done"].as_str().unwrap().starts_with("removed Almond mushroom"));
    assert_eq!(names(&table).len(), 199);
}

#[test]
fn merge_keeps_both_sides_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs, out) =
        (dir.path().join("ours.bin"), dir.path().join("theirs.bin"), dir.path().join("merged.bin"));
    for copy in [&ours, &theirs] {
        std::fs::copy(shipped_table(), copy).unwrap();
    }
    json(&tables(&["species", "--table", ours.to_str().unwrap(), "remove", "almond mushroom", "--json"]));
    json(&tables(&[
        "species",
        "--table",
        theirs.to_str().unwrap(),
        "rename",
        "amethyst deceiver",
        "Amethyst deceiver",
        "--json",
    ]));
    let merged = json(&tables(&[
        "merge",
        ours.to_str().unwrap(),
        theirs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(merged["species"], 199);
    assert_eq!(merged["tombstones"], 1, "the removal is remembered, so a later merge does not bring it back");
    let names = names(&out);
    assert!(!names.contains(&"almond mushroom".to_string()));
    assert!(names.contains(&"Amethyst deceiver".to_string()));
}

#[test]
fn a_damaged_table_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("damaged.bin");
    let mut bytes = std::fs::read(shipped_table()).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&table, &bytes).unwrap();
    let output = tables(&["info", table.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("damaged.bin") && stderr.contains("checksum mismatch"), "{stderr}");
}
