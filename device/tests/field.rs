//! Field mode end to end: `run --camera dir: --display png: --buttons stdin` with a scripted key
//! sequence; the screens are checked pixel-wise, the enrollment in the table.

mod common;

use common::*;
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use sporeprint_device::field::ui;
use sporeprint_shared::{Origin, Table, store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PURPLE: [u8; 3] = [140, 20, 160];

fn run_field(s: &Setup, camera: &Path, frames: &Path, script: &str, extra: &[&str]) -> std::process::Output {
    let table = s.state.join("table.bin");
    let mut args = vec!["run", "--model", s.model.to_str().unwrap(), "--table", table.to_str().unwrap()];
    let camera = format!("dir:{}", camera.display());
    let display = format!("png:{}", frames.display());
    args.extend(["--camera", &camera, "--display", &display, "--buttons", "stdin"]);
    args.extend(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sporeprint-device"))
        .args(&args)
        .env("XDG_STATE_HOME", &s.state)
        .env("SPOREPRINT_DEVICE_ID", "0000beef")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The PNG frames written, in order, as (file name, image).
fn frames(dir: &Path) -> Vec<(String, image::RgbImage)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), image::open(&p).unwrap().into_rgb8()))
        .collect()
}

fn rgb(colour: Rgb565) -> [u8; 3] {
    let c = Rgb888::from(colour);
    [c.r(), c.g(), c.b()]
}

/// Share of white (text) pixels in a band of rows.
fn ink(frame: &image::RgbImage, rows: std::ops::Range<u32>) -> f64 {
    let (mut white, mut all) = (0, 0);
    for y in rows {
        for x in 0..frame.width() {
            all += 1;
            white += usize::from(frame.get_pixel(x, y).0 == rgb(Rgb565::WHITE));
        }
    }
    white as f64 / all as f64
}

#[test]
fn a_scripted_session_identifies_and_enrolls() {
    let s = setup();
    let camera = s.photos.join("camera");
    std::fs::create_dir_all(&camera).unwrap();
    photo(&camera.join("01-chanterelle.jpg"), SPECIES[0].1);
    photo(&camera.join("02-purple.jpg"), PURPLE);
    photo(&camera.join("03-deathcap.jpg"), SPECIES[1].1);
    std::fs::write(camera.join("04-corrupt.jpg"), b"\xFF\xD8\xFF not really a jpeg").unwrap();
    for i in 5..8 {
        photo(&camera.join(format!("0{i}-purple-shot.jpg")), PURPLE.map(|c| c.saturating_sub(i)));
    }
    photo(&camera.join("08-purple-query.jpg"), [135, 25, 150]);
    let names = s.photos.join("names.txt");
    std::fs::write(&names, "purple brittlegill\n").unwrap();
    let out_dir = s.photos.join("frames");

    // Three finds of one view each (a double press, "new", between them), a bad frame, hold
    // (enroll), 3 shots, identify the query, quit.
    let script = "press\nnew\npress\nnew\npress\nnew\npress\nhold\npress\npress\npress\npress\nquit\n";
    let output = run_field(&s, &camera, &out_dir, script, &["--names", names.to_str().unwrap(), "--size", "240x240"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let frames = frames(&out_dir);
    let kinds: Vec<&str> = frames.iter().map(|(n, _)| &n[5..n.len() - 4]).collect();
    assert_eq!(
        kinds,
        [
            "ready", "answer", "ready", "unknown", "ready", "answer", "ready", "problem", "enroll", "enroll", "enroll",
            "enrolled", "answer"
        ],
        "{}",
        stderr(&output)
    );
    let banner = |i: usize| frames[i].1.get_pixel(3, 3).0;
    assert_eq!(frames[0].1.dimensions(), (240, 240));
    assert_eq!(banner(1), rgb(ui::EDIBLE), "chanterelle: green");
    assert_eq!(banner(3), rgb(ui::UNKNOWN), "purple before enrollment: unknown");
    assert_eq!(banner(5), rgb(ui::DANGER), "death cap: red");
    assert_eq!(banner(8), rgb(ui::ENROLL));
    assert_eq!(banner(12), rgb(ui::UNKNOWN), "enrolled without an edibility: unknown, amber");
    for (i, (name, frame)) in frames.iter().enumerate() {
        assert!(ink(frame, 8..32) > 0.02, "{name}: no title in the banner");
        if i > 0 {
            assert!(ink(frame, 46..90) > 0.02, "{name}: nothing written under the banner");
        }
    }
    // The enrollment landed in the table, from this device.
    let table: Table = store::load(&s.state.join("table.bin")).unwrap();
    let entry = table.get("purple brittlegill").expect("enrolled in the field");
    assert_eq!(entry.prototype.shots, 3);
    assert_eq!(entry.origin, Origin::Device(0xbeef));
    let log = stderr(&output);
    assert!(log.contains("04-corrupt.jpg"), "the bad frame is named: {log}");

    // Without preset names, field enrollments get fresh names, also across sessions.
    for session in 1..=2 {
        let frames_dir = s.photos.join(format!("frames-{session}"));
        let output = run_field(&s, &camera, &frames_dir, "hold\npress\npress\npress\nquit\n", &["--shots", "3"]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let table: Table = store::load(&s.state.join("table.bin")).unwrap();
    for name in ["field species 1", "field species 2"] {
        assert_eq!(table.get(name).map(|e| e.prototype.shots), Some(3), "{name}");
    }
}

/// Presses add views to one find until a double press or a pause: the screen answers from all
/// views so far and says how many.
#[test]
fn presses_build_a_find_until_a_double_press_or_a_pause() {
    let s = setup();
    let camera = s.photos.join("camera");
    std::fs::create_dir_all(&camera).unwrap();
    let (chanterelle, death_cap) = (SPECIES[0].1, SPECIES[1].1);
    photo(&camera.join("01-cap.jpg"), chanterelle);
    photo(&camera.join("02-gills.jpg"), chanterelle.map(|c| c.saturating_sub(12)));
    photo(&camera.join("03-stem.jpg"), chanterelle.map(|c| c.saturating_add(12)));
    photo(&camera.join("04-deathcap.jpg"), death_cap);
    let out_dir = s.photos.join("frames");
    let output = run_field(&s, &camera, &out_dir, "press\npress\npress\nnew\npress\nquit\n", &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let frames = frames(&out_dir);
    let kinds: Vec<&str> = frames.iter().map(|(n, _)| &n[5..n.len() - 4]).collect();
    assert_eq!(kinds, ["ready", "answer", "answer", "answer", "ready", "answer"], "{}", stderr(&output));
    let log = stderr(&output);
    let answers: Vec<&str> = log.lines().filter(|l| l.starts_with("field mode: answer")).collect();
    assert_eq!(answers.len(), 4, "{log}");
    assert!(!answers[0].contains("views)") && answers[1].contains("(from 2 views)"), "{log}");
    assert!(answers[2].contains("(from 3 views)") && answers[2].contains("chanterelle"), "{log}");
    assert!(answers[3].contains("death cap") && !answers[3].contains("views)"), "a new find: {log}");
    let banner = |i: usize| frames[i].1.get_pixel(3, 3).0;
    assert_eq!((banner(3), banner(5)), (rgb(ui::EDIBLE), rgb(ui::DANGER)));
    // The view count is on the screen, under the confidence bar: the 3-view screen has ink
    // there that the 1-view one has not.
    let (one, three) = (&frames[1].1, &frames[3].1);
    let differs = (0..240).any(|y| ink(one, y..y + 1) != ink(three, y..y + 1));
    assert!(differs, "the find's screens look the same");

    // After a pause (here a microsecond), each press is a find of its own.
    let out_dir = s.photos.join("frames-pause");
    let output = run_field(&s, &camera, &out_dir, "press\npress\npress\nquit\n", &["--find-pause", "0.000001"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("views)"), "{}", stderr(&output));
}

#[test]
fn no_camera_is_a_clear_error() {
    let s = setup();
    let missing = s.photos.join("no-such-folder");
    let output = run_field(&s, &missing, &s.photos.join("frames"), "", &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("camera dir: cannot read") && stderr(&output).contains("no-such-folder"),
        "{}",
        stderr(&output)
    );
    let empty = s.photos.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = run_field(&s, &empty, &s.photos.join("frames"), "", &[]);
    assert!(stderr(&output).contains("no .jpg, .jpeg or .png photos"), "{}", stderr(&output));
}

#[test]
fn sigterm_stops_the_loop_cleanly() {
    let s = setup();
    let camera = s.photos.join("camera");
    std::fs::create_dir_all(&camera).unwrap();
    photo(&camera.join("a.jpg"), PURPLE);
    let frames_dir = s.photos.join("frames");
    let table = s.state.join("table.bin");
    let camera_arg = format!("dir:{}", camera.display());
    let display = format!("png:{}", frames_dir.display());
    let child = Command::new(env!("CARGO_BIN_EXE_sporeprint-device"))
        .args(["run", "--model", s.model.to_str().unwrap(), "--table", table.to_str().unwrap()])
        .args(["--camera", &camera_arg, "--display", &display])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first screen, keeping stdin open (no quit from there).
    let started = Instant::now();
    while !frames_dir.join("0001-ready.png").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no first screen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit after SIGTERM: {:?} {}", output.status, stderr(&output));
    assert!(stderr(&output).contains("stopped"));
}
