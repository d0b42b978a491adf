//! `enroll` and `species` end to end on the real binary: k-shot enrollment, then identification
//! of other photos; the table's safety (bad input saves nothing, a kill loses nothing saved,
//! two shells enrolling at once both land).

mod common;

use common::*;
use sporeprint_shared::{Table, store};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const PURPLE: [u8; 3] = [140, 20, 160];

fn table_of(s: &Setup) -> PathBuf {
    s.state.join("table.bin")
}

/// `sporeprint-device <command> --model M --table T <rest>`.
fn run(s: &Setup, command: &[&str], rest: &[String]) -> std::process::Output {
    let mut args: Vec<String> = command.iter().map(|a| a.to_string()).collect();
    args.extend(["--model".into(), s.model.display().to_string(), "--table".into(), table_of(s).display().to_string()]);
    args.extend(rest.iter().cloned());
    device(&strs(&args), &s.state)
}

fn photos(s: &Setup, stem: &str, colour: [u8; 3], count: u32) -> Vec<String> {
    (0..count)
        .map(|i| {
            let path = s.photos.join(format!("{stem}-{i}.jpg"));
            photo(&path, colour.map(|c| c.saturating_sub(i as u8 * 3)));
            path.display().to_string()
        })
        .collect()
}

fn listing(s: &Setup) -> Vec<serde_json::Value> {
    let out = run(s, &["species", "list", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap().as_array().unwrap().clone()
}

fn names(s: &Setup) -> Vec<String> {
    listing(s).iter().map(|l| l["species"].as_str().unwrap().to_string()).collect()
}

#[test]
fn an_enrolled_species_is_then_identified() {
    let s = setup();
    let mut rest = vec!["--species".into(), "purple brittlegill".into(), "--edibility".into(), "inedible".into()];
    rest.push("--json".into());
    rest.extend(photos(&s, "purple", PURPLE, 3));
    let out = run(&s, &["enroll"], &rest);
    assert!(out.status.success(), "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(done["species"], "purple brittlegill");
    assert_eq!(done["new"], true);
    assert_eq!(done["shots"], 3);
    assert_eq!(done["edibility"], "inedible");
    assert_eq!(done["neighbours"].as_array().unwrap().len(), 3, "{done}");
    assert!(done["warning"].is_null(), "purple is far from every shipped species: {done}");
    assert!(done["spread"].as_f64().unwrap() > 0.0 && done["spread"].as_f64().unwrap() < 0.05);

    // Another purple photo is now that species; before, it was unknown.
    let query = s.photos.join("query.jpg");
    photo(&query, [135, 25, 150]);
    let out = run(&s, &["identify", "--json"], &[query.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer = &json_lines(&out)[0];
    assert_eq!(answer["species"], "purple brittlegill", "{answer}");
    assert_eq!(answer["unknown"], false);

    // More shots for a known species (any case of its name): a running mean, not a new entry.
    let mut rest = vec!["--species".into(), "Purple Brittlegill".into(), "--json".into()];
    rest.extend(photos(&s, "more", PURPLE, 2));
    let out = run(&s, &["enroll"], &rest);
    assert!(out.status.success(), "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((done["new"].as_bool(), done["shots"].as_u64()), (Some(false), Some(5)));
    assert_eq!(names(&s), ["chanterelle", "death cap", "blue roundhead", "purple brittlegill"]);

    // Near another species: enrolled, with a warning naming it.
    let mut rest = vec!["--species".into(), "golden chanterelle".into(), "--edibility".into(), "edible".into()];
    rest.extend(photos(&s, "golden", SPECIES[0].1, 2));
    let out = run(&s, &["enroll"], &rest);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("enrolled new species golden chanterelle (edible)"), "{text}");
    assert!(text.contains("WARNING") && text.contains("from chanterelle"), "{text}");

    // The shipped table is never what enrollment writes to.
    let shipped: Table = store::load(&s.model.join("prototypes.bin")).unwrap();
    assert_eq!(shipped.len(), 3);
}

#[test]
fn species_are_listed_renamed_and_removed() {
    let s = setup();
    let list = listing(&s);
    assert_eq!(list.len(), 3);
    assert_eq!(list[1]["species"], "death cap");
    assert_eq!(list[1]["edibility"], "deadly");
    assert_eq!(list[1]["shots"], 1);
    assert_eq!(list[1]["origin"], "host");
    let human = stdout(&run(&s, &["species", "list"], &[]));
    assert!(human.contains("death cap") && human.contains("deadly") && human.contains("3 species"), "{human}");

    let out = run(&s, &["species", "rename", "blue roundhead", "Stropharia caerulea"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&s, &["species", "set-edibility", "Stropharia caerulea", "poisonous"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&s, &["species", "remove", "chanterelle"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = listing(&s);
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["species"], "Stropharia caerulea");
    assert_eq!(list[1]["edibility"], "poisonous");
    assert_eq!(list[1]["revision"], 3, "created, renamed, edibility changed");

    let before = std::fs::read(table_of(&s)).unwrap();
    for (command, problem) in [
        (vec!["species", "rename", "death cap", "stropharia CAERULEA"], "already in the table"),
        (vec!["species", "rename", "morel", "true morel"], "no species named \"morel\""),
        (vec!["species", "remove", "morel"], "no species named \"morel\""),
        (vec!["species", "rename", "death cap", "bad\tname"], "control character"),
    ] {
        let out = run(&s, &command, &[]);
        assert!(!out.status.success(), "{command:?} succeeded");
        assert!(stderr(&out).contains(problem), "{command:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read(table_of(&s)).unwrap(), before, "a refused change writes nothing");
}

#[test]
fn a_refused_enrollment_saves_nothing() {
    let s = setup();
    let good = photos(&s, "good", PURPLE, 2);
    let truncated = s.photos.join("truncated.jpg");
    let bytes = std::fs::read(&good[0]).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    names(&s); // creates the table
    let before = std::fs::read(table_of(&s)).unwrap();

    let species = |name: &str| vec!["--species".to_string(), name.to_string()];
    let with = |mut a: Vec<String>, b: &[String]| {
        a.extend(b.iter().cloned());
        a
    };
    let long = "x".repeat(65);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (species("purple"), "no photos given"),
        (with(species(""), &good), "species name is empty"),
        (with(species("bad\nname"), &good), "control character"),
        (with(species(&long), &good), "65 bytes long; at most 64"),
        (with(species("purple"), &[good[0].clone(), truncated.display().to_string()]), "truncated.jpg"),
        (with(with(species("Death Cap"), &["--new".into()]), &good), "already enrolled"),
        (with(with(species("death cap"), &["--edibility".into(), "edible".into()]), &good), "enrolled as deadly"),
    ];
    for (rest, problem) in cases {
        let out = run(&s, &["enroll"], &rest);
        assert!(!out.status.success(), "{rest:?} succeeded");
        assert!(stderr(&out).contains(problem), "{rest:?}: {}", stderr(&out));
        assert_eq!(std::fs::read(table_of(&s)).unwrap(), before, "{rest:?} changed the table");
    }
}

fn spawn_enroll(s: &Setup, species: &str, photos: &[String]) -> std::process::Child {
    let table = table_of(s).display().to_string();
    let mut args = vec!["enroll", "--model", s.model.to_str().unwrap(), "--table", &table, "--species", species];
    args.extend(strs(photos));
    Command::new(env!("CARGO_BIN_EXE_sporeprint-device"))
        .args(args)
        .env("XDG_STATE_HOME", &s.state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn big_photos(s: &Setup, stem: &str, colour: [u8; 3], count: u32) -> Vec<String> {
    (0..count)
        .map(|i| {
            let path = s.photos.join(format!("{stem}-{i}.jpg"));
            big_photo(&path, colour, i);
            path.display().to_string()
        })
        .collect()
}

#[test]
fn two_enrollments_at_once_both_land() {
    let s = setup();
    // Each enrollment decodes 30 large photos between loading the table and saving it: without
    // the lock, both would load the same table and the later save would drop the other species.
    let purple = big_photos(&s, "purple", PURPLE, 30);
    let grey = big_photos(&s, "grey", [90, 90, 90], 30);
    names(&s);
    for round in 0..2 {
        let (a, b) = (format!("purple {round}"), format!("grey {round}"));
        let first = spawn_enroll(&s, &a, &purple);
        let second = spawn_enroll(&s, &b, &grey);
        for child in [first, second] {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let now = names(&s);
        assert!(now.contains(&a) && now.contains(&b), "round {round}: an enrollment was lost: {now:?}");
    }
    assert_eq!(names(&s).len(), 7);
}

#[test]
fn a_kill_during_enrollment_loses_nothing_saved() {
    let s = setup();
    let purple = big_photos(&s, "purple", PURPLE, 20);
    names(&s);
    // How long one whole enrollment takes, to spread the kills over it.
    let started = Instant::now();
    let out = spawn_enroll(&s, "purple", &purple).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let whole = started.elapsed();

    let mut expected = names(&s);
    let (mut killed, mut finished) = (0, 0);
    for trial in 0..8u32 {
        let species = format!("grey {trial}");
        let mut child = spawn_enroll(&s, &species, &purple);
        // From early in the run to just past its usual end.
        std::thread::sleep(whole.mul_f64(0.15 * f64::from(trial)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let table: Table = store::load(Path::new(&table_of(&s)))
            .unwrap_or_else(|e| panic!("trial {trial}: the table does not load after a kill: {e}"));
        let now: Vec<String> = table.entries().iter().map(|e| e.name.to_string()).collect();
        if status.success() {
            finished += 1;
            expected.push(species);
        } else if now.contains(&species) {
            // Killed after its save, before exiting: saved means kept.
            expected.push(species);
        } else {
            killed += 1;
        }
        assert_eq!(now, expected, "trial {trial}");
    }
    println!("8 kills over an enrollment of {whole:?}: {killed} cut short, {finished} finished first");
    assert!(killed >= 3, "the kills did not land inside enrollments");
    // The lock died with its holder: the next enrollment does not wait.
    let out = spawn_enroll(&s, "after", &purple[..1]).wait_with_output().unwrap();
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("waiting"));
}
