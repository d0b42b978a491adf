//! The device binary on the hostile corpus (shared/tests/hostile/) with the shipped default
//! model: each input is answered or refused with one `error:` line naming the file, the exit
//! status says which, and no input costs more than 1.5x the memory of a normal photo.
//!
//! `cargo test -p sporeprint-device --test hostile -- --nocapture` prints the table of inputs,
//! results, peak memory and time.

mod common;

use common::*;
use image::{Rgb, RgbImage};
use sporeprint_device::bench::{Measured, measure_child};
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/hostile").join(name)
}

fn identify(photo: &Path, state: &Path) -> Measured {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sporeprint-device"));
    command.args(["identify", "--json"]).arg(photo).env("XDG_STATE_HOME", state).env_remove("SPOREPRINT_MODEL");
    measure_child(command).unwrap()
}

/// What the device is expected to say: `Ok` an answer, `Err` words its error contains.
const CORPUS: [(&str, Result<(), &str>); 18] = [
    ("normal.jpg", Ok(())),
    ("progressive.jpg", Ok(())),
    ("cmyk.jpg", Ok(())),
    ("grey.png", Ok(())),
    ("palette.png", Ok(())),
    ("rgb16.png", Ok(())),
    ("portrait-exif6.jpg", Ok(())),
    ("webp-renamed.jpg", Ok(())),
    ("empty.jpg", Err("the file is empty")),
    ("truncated.jpg", Err("corrupt or truncated JPEG")),
    ("truncated.png", Err("corrupt or truncated PNG")),
    ("wrong-length-marker.jpg", Err("corrupt or truncated JPEG")),
    ("one-pixel.png", Err("too small to show a mushroom")),
    ("strip-20000x1.png", Err("a shape no camera photo has")),
    ("bomb.png", Err("10000.0 MP")),
    ("bomb.jpg", Err("4225.0 MP")),
    ("gif-renamed.jpg", Err("a GIF file")),
    ("heic-renamed.jpg", Err("a HEIC/HEIF file")),
];

#[test]
fn every_hostile_input_is_answered_or_refused_in_bounded_memory() {
    let state = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // A normal photo: the data set's size (512 x 512).
    let normal = scratch.path().join("normal-512.jpg");
    big_photo(&normal, [150, 110, 70], 0);
    let baseline = identify(&normal, state.path());
    assert!(baseline.status.success(), "{}", baseline.stderr);

    // A phone's 48 MP photo (8000 x 6000): decoded at 1/8 scale, not whole.
    let phone = scratch.path().join("phone-48mp.jpg");
    let pixels = RgbImage::from_fn(8000, 6000, |x, y| Rgb([(x / 40) as u8, (y / 30) as u8, 80]));
    image::codecs::jpeg::JpegEncoder::new_with_quality(std::fs::File::create(&phone).unwrap(), 70)
        .encode_image(&pixels)
        .unwrap();
    drop(pixels);
    // The largest photo decoded whole: a 2048 x 2048 PNG (16-bit, the costliest kind).
    let largest_png = scratch.path().join("png-2048x2048x16bit.png");
    image::ImageBuffer::<Rgb<u16>, _>::from_fn(2048, 2048, |x, y| Rgb([(x * 32) as u16, (y * 32) as u16, 9000]))
        .save(&largest_png)
        .unwrap();
    let folder = scratch.path().join("a-folder.jpg");
    std::fs::create_dir(&folder).unwrap();
    let fifo = scratch.path().join("a-fifo.jpg");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());

    let mut cases: Vec<(PathBuf, Result<(), &str>)> = CORPUS.iter().map(|(n, e)| (corpus(n), *e)).collect();
    cases.push((phone, Ok(())));
    cases.push((largest_png, Ok(())));
    cases.push((folder, Err("a directory, not a photo file")));
    cases.push((fifo, Err("a FIFO, socket or device, not a photo file")));

    println!("| input | result | peak RSS (MB) | time (s) |\n|---|---|---:|---:|");
    println!("| normal 512x512 JPEG (baseline) | answered | {:.0} | {:.2} |", baseline.peak_rss_mb, baseline.seconds);
    let mut worst: f64 = 0.0;
    for (path, expected) in &cases {
        let run = identify(path, state.path());
        let name = path.file_name().unwrap().to_string_lossy();
        let result = match expected {
            Ok(()) => {
                assert!(run.status.success(), "{name}: {}", run.stderr);
                let answer: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
                assert!(answer["verdict"].is_string() && answer["warning"].is_string(), "{name}: {answer}");
                format!("answered: {}", answer["verdict"].as_str().unwrap())
            }
            Err(words) => {
                assert!(!run.status.success(), "{name} was answered: {}", run.stdout);
                let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(words)).collect();
                assert_eq!(lines.len(), 1, "{name}: the cause once, on one line: {}", run.stderr);
                assert!(
                    lines[0].starts_with("error: ") && lines[0].contains(&*path.to_string_lossy()),
                    "{name}: {}",
                    lines[0]
                );
                assert!(!run.stderr.contains("Caused by"), "{name}: {}", run.stderr);
                let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
                assert!(json["error"].as_str().unwrap().contains(words), "{name}: {json}");
                format!("refused: {words}")
            }
        };
        println!("| {name} | {result} | {:.0} | {:.2} |", run.peak_rss_mb, run.seconds);
        worst = worst.max(run.peak_rss_mb);
    }
    assert!(
        worst <= 1.5 * baseline.peak_rss_mb,
        "worst input peaked at {worst:.0} MB, over 1.5x the {:.0} MB of a normal photo",
        baseline.peak_rss_mb
    );
}

#[test]
fn a_portrait_photo_reports_its_rotation() {
    let state = tempfile::tempdir().unwrap();
    let run = identify(&corpus("portrait-exif6.jpg"), state.path());
    assert!(run.status.success(), "{}", run.stderr);
    let answer: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(answer["photo"]["orientation"], "rotated-90-clockwise", "{answer}");
    assert_eq!((answer["photo"]["width"].as_u64(), answer["photo"]["height"].as_u64()), (Some(240), Some(320)));
}
