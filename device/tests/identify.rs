//! `sporeprint-device identify` end to end: a real ONNX model run by tract, real JPEGs, the
//! table created from the shipped one, bad photos and foreign tables.

mod common;

use common::*;
use sporeprint_shared::{Table, store};

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
    assert_eq!((&answers[0]["verdict"], &answers[0]["tone"]), (&"edible".into(), &"edible".into()), "{}", answers[0]);
    assert_eq!(answers[0]["do_not_eat"], false);
    assert!(answers[0]["warning"].as_str().unwrap().contains("ask an expert"), "{}", answers[0]);
    assert_eq!((&answers[1]["verdict"], &answers[1]["headline"]), (&"deadly".into(), &"DEADLY POISONOUS".into()));
    assert!(answers[1]["warning"].as_str().unwrap().contains("deadly poisonous"), "{}", answers[1]);
    assert_eq!(answers[1]["do_not_eat"], true);
    assert_eq!(answers[2]["verdict"], "inedible");
    assert_eq!(answers[3]["verdict"], "unknown-species");
    assert_eq!(answers[3]["species"], serde_json::Value::Null);
    assert_eq!(answers[3]["unknown"], true);
    assert!(answers[3]["warning"].as_str().unwrap().contains("Do not eat"));

    // The per-user table was created from the shipped one, which is untouched.
    let mut created: Vec<String> = std::fs::read_dir(s.state.join("sporeprint"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    created.sort();
    assert_eq!(created.len(), 2, "the table and its lock: {created:?}");
    assert!(created[0].starts_with("fp32-") && created[1] == format!("{}.lock", created[0]), "{created:?}");
    let shipped = std::fs::read(s.model.join("prototypes.bin")).unwrap();
    assert_eq!(std::fs::read(s.state.join("sporeprint").join(&created[0])).unwrap(), shipped);

    // The human-readable form names the species and the danger.
    let human = device(&["identify", "--model", s.model.to_str().unwrap(), args[5]], &s.state);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("DEADLY POISONOUS: death cap (deadly poisonous)") && text.contains("WARNING"), "{text}");
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
    // Each problem is said once (an error chain once repeated it: "X: not decodable: X: X").
    let notes = stderr.lines().find(|l| l.contains("notes.jpg")).unwrap();
    assert_eq!(notes.matches("not an image").count(), 1, "{notes}");
    let missing = stderr.lines().find(|l| l.contains("missing.jpg")).unwrap();
    assert_eq!(missing.matches("No such file").count(), 1, "{missing}");
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

#[test]
fn bench_times_every_stage() {
    let s = setup();
    let model = s.model.to_str().unwrap();
    let output = device(&["bench", "--json", "--runs", "3", "--model", model], &s.state);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = &json_lines(&output)[0];
    for key in ["decode_ms", "resize_ms", "embed_ms", "search_ms", "total_ms", "load_ms", "peak_rss_mb"] {
        assert!(report[key].as_f64().is_some_and(|ms| ms > 0.0), "{key}: {report}");
    }
    let stages: f64 =
        ["decode_ms", "resize_ms", "embed_ms", "search_ms"].iter().map(|k| report[k].as_f64().unwrap()).sum();
    assert!(report["total_ms"].as_f64().unwrap() <= stages * 1.5 + 1.0, "the total is the stages': {report}");
    assert_eq!((report["runs"].as_u64(), report["species"].as_u64()), (Some(3), Some(3)));

    let missing = s.photos.join("missing.jpg");
    let output = device(&["bench", "--model", model, "--photo", missing.to_str().unwrap()], &s.state);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.jpg"));
}

#[test]
fn a_species_of_unknown_edibility_is_do_not_eat_in_words_and_json() {
    let s = setup();
    let shot = s.photos.join("shot.png");
    photo(&shot, [140, 20, 160]);
    let model = s.model.to_str().unwrap();
    let enrolled = device(&["enroll", "--model", model, "--species", "purple thing", shot.to_str().unwrap()], &s.state);
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let json = device(&["identify", "--json", "--model", model, shot.to_str().unwrap()], &s.state);
    let answer = &json_lines(&json)[0];
    assert_eq!((&answer["species"], &answer["verdict"]), (&"purple thing".into(), &"edibility-unknown".into()));
    assert_eq!((&answer["tone"], &answer["do_not_eat"]), (&"caution".into(), &true.into()));
    let text = device(&["identify", "--model", model, shot.to_str().unwrap()], &s.state);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("EDIBILITY UNKNOWN: purple thing") && text.contains("Do not eat."), "{text}");
}

#[test]
fn a_model_that_computes_nan_is_refused_by_name_never_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, colour_model_with([f32::NAN, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, 0.1, 0.0, 0.0, 1.0, 0.1]))
        .unwrap();
    let embedder = sporeprint_shared::embedder::Embedder::load(&path, SPEC).unwrap();
    let shot = dir.path().join("shot.png");
    photo(&shot, [140, 20, 160]);
    let error = embedder.observe_file(&shot).unwrap_err().to_string();
    assert!(error.contains("broken.onnx") && error.contains("not a finite number (NaN)"), "{error}");
}

/// `identify --find`: one answer for the views of one mushroom, each view's own beside it, and
/// the combined answer is the mean of the views' embeddings identified by the table.
#[test]
fn a_find_is_answered_once_from_all_its_views() {
    use sporeprint_shared::embedder::Embedder;
    use sporeprint_shared::find::{self, View};
    let s = setup();
    // Three views of the edible species, one of them off-colour enough to be a weaker view.
    let (name, colour, _) = SPECIES[0];
    let shades = [colour, colour.map(|c| c.saturating_sub(10)), colour.map(|c| c.saturating_add(25))];
    let paths: Vec<String> = shades
        .iter()
        .enumerate()
        .map(|(i, shade)| {
            let path = s.photos.join(format!("view{i}.jpg"));
            photo(&path, *shade);
            path.display().to_string()
        })
        .collect();
    let mut args = vec!["identify", "--find", "--json", "--model", s.model.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    let output = device(&args, &s.state);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "one answer for the find");
    let find = &lines[0];
    assert_eq!(find["answer"]["views"], 3);
    assert_eq!(find["answer"]["species"], name);
    assert_eq!(find["photos"].as_array().unwrap().len(), 3);
    let each = find["each"].as_array().unwrap();
    assert_eq!(each.len(), 3);
    assert!(each.iter().all(|view| view["views"] == 1 && view["photo"]["format"] == "jpeg"), "{find}");

    // The rule applied by hand, with the device's own embedder and table.
    let embedder = Embedder::load(&s.model.join("embedder.onnx"), SPEC).unwrap();
    let table: Table = store::load(&s.model.join("prototypes.bin")).unwrap();
    let observed: Vec<_> = paths.iter().map(|p| embedder.observe_file(p.as_ref()).unwrap().0).collect();
    let views: Vec<View> =
        observed.iter().map(|o| View { embedding: &o.embedding, atypicality: o.atypicality }).collect();
    let (embedding, atypicality) = find::combine(&views).unwrap();
    let by_hand = table.identify_with(&embedding, atypicality, 3).unwrap();
    let distance = find["answer"]["top"][0]["distance"].as_f64().unwrap();
    assert!((distance - by_hand.top[0].distance as f64).abs() < 1e-5, "{distance} vs {:?}", by_hand.top[0]);
    let confidence = find["answer"]["confidence"].as_f64().unwrap();
    assert!((confidence - by_hand.top[0].confidence as f64).abs() < 1e-5);
    assert!(["likely", "possible", "a guess"].contains(&find["answer"]["confidence_band"].as_str().unwrap()));

    // The text says how many views the answer rests on, in words, never "100%".
    let mut args = vec!["identify", "--find", "--model", s.model.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    let text = stdout(&device(&args, &s.state));
    assert!(text.starts_with("find (") && text.contains("(from 3 views)"), "{text}");
    assert_eq!(text.lines().filter(|l| l.trim_start().starts_with("view ")).count(), 3, "{text}");
    assert!(!text.contains("100%") && !text.contains("confidence"), "{text}");

    // A view that cannot be read fails the find, naming it.
    let missing = s.photos.join("missing.jpg").display().to_string();
    let args = vec!["identify", "--find", "--model", s.model.to_str().unwrap(), &paths[0], &missing];
    let output = device(&args, &s.state);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("missing.jpg"), "{}", stderr(&output));
}
