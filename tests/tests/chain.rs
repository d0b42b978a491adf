//! The chain a user runs, end to end, through the real command lines: train -> export -> enroll
//! in the field (killed mid-enrollment, then finished) -> serve <- a serial line that drops bytes
//! in the middle -> sync --merge -> the merged table identifies on the host and on the device.
//! Every shot is accounted for at each step.

#[path = "../../host/tests/common/photos.rs"]
mod photos;

use serialport::{SerialPort, TTYPort};
use sporeprint_shared::{Table, store};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SPECIES: usize = 6;
const PHOTOS: usize = 5;
const FIELD_SPECIES: &str = "field find";
const FIELD_SHOTS: u32 = 3;

fn run(binary: &str, args: &[&str]) -> Output {
    let output = Command::new(binary).args(args).env("SPOREPRINT_DEVICE_ID", "0000002a").output().unwrap();
    assert!(
        output.status.success(),
        "{binary} {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

fn photo(path: &Path, species: usize, variant: usize) {
    photos::striped(species, variant).save(path).unwrap();
}

fn shots_of(table: &Table, species: &str) -> Option<u32> {
    table.entries().iter().find(|e| e.name.as_str() == species).map(|e| e.prototype.shots)
}

fn total_shots(table: &Table) -> u32 {
    table.entries().iter().map(|e| e.prototype.shots).sum()
}

fn str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Two pty pairs and a thread per direction carrying bytes between them; from the host towards
/// the device, `dropped` bytes are lost once `after` bytes have crossed (a glitch mid-transfer).
/// Returns the names of the ends for the host's and the device's programs.
fn glitching_line(after: usize, dropped: usize, stop: Arc<AtomicBool>) -> (String, String, Arc<AtomicUsize>) {
    let pair = || {
        let (mut kept, named) = TTYPort::pair().expect("a pseudo-terminal pair");
        kept.set_timeout(Duration::from_millis(10)).unwrap();
        let name = named.name().expect("the pty's path");
        // The programs open the named ends themselves (exclusively): close ours.
        drop(named);
        (kept, name)
    };
    let ((host_side, host_name), (device_side, device_name)) = (pair(), pair());
    let lost = Arc::new(AtomicUsize::new(0));
    let directions = [
        (host_side.try_clone_native().unwrap(), device_side.try_clone_native().unwrap(), true),
        (device_side, host_side, false),
    ];
    for (mut from, mut to, towards_device) in directions {
        let (stop, lost) = (stop.clone(), lost.clone());
        std::thread::spawn(move || {
            let (mut buffer, mut carried) = ([0u8; 256], 0usize);
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = from.read(&mut buffer) else { continue };
                let mut out = Vec::with_capacity(n);
                for &byte in &buffer[..n] {
                    carried += 1;
                    if towards_device && carried > after && carried <= after + dropped {
                        lost.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    out.push(byte);
                }
                let _ = to.write_all(&out);
            }
        });
    }
    (host_name, device_name, lost)
}

/// `sporeprint-device serve` on `port`, returned once it says it is serving.
fn serve(model: &Path, table: &Path, port: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e-device"))
        .args(["serve", "--port", port, "--model", str(model), "--table", str(table)])
        .env("SPOREPRINT_DEVICE_ID", "0000002a")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = child.stderr.take().unwrap();
    let (mut seen, mut byte) = (Vec::new(), [0u8]);
    while !String::from_utf8_lossy(&seen).contains("serving") {
        assert_eq!(log.read(&mut byte).unwrap(), 1, "serve exited: {}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    child
}

#[test]
fn train_export_enroll_serve_sync_and_identify_on_both_sides() {
    let (host, device, tables) =
        (env!("CARGO_BIN_EXE_e2e-sporeprint"), env!("CARGO_BIN_EXE_e2e-device"), env!("CARGO_BIN_EXE_e2e-tables"));
    let dir = tempfile::tempdir().unwrap();
    let (data, run_dir, model) = (dir.path().join("data"), dir.path().join("run"), dir.path().join("model"));
    for s in 0..SPECIES {
        let folder = data.join(format!("species_{s:02}"));
        std::fs::create_dir_all(&folder).unwrap();
        for p in 0..PHOTOS {
            photo(&folder.join(format!("photo_{p}.jpg")), s, p);
        }
    }
    std::fs::write(data.join("species.csv"), "species,edibility\nspecies_00,edible\nspecies_01,deadly\n").unwrap();

    // Host: train the tiny backbone, export a real ONNX embedder and the prototype table.
    let train = ["--backbone", "tiny", "--embedding-dim", "16", "--epochs", "3", "--unseen", "0"];
    run(host, &[&["train", "--data", str(&data), "--out", str(&run_dir)][..], &train].concat());
    let exported: serde_json::Value =
        serde_json::from_slice(&run(host, &["export", "--run", str(&run_dir), "--out", str(&model), "--json"]).stdout)
            .unwrap();
    assert!(model.join("embedder.onnx").exists(), "{exported}");
    let shipped: Table = store::load(&model.join("prototypes.bin")).unwrap();
    let shipped_shots = total_shots(&shipped);
    assert_eq!(shipped.entries().len(), SPECIES);

    // Device: enrollments in the field of a species the host has never seen, killed at several
    // points; each leaves the table as it was or with the whole enrollment, never part of it.
    let (field, device_table) = (dir.path().join("field"), dir.path().join("device.bin"));
    std::fs::create_dir_all(&field).unwrap();
    let field_photos: Vec<PathBuf> = (0..FIELD_SHOTS as usize)
        .map(|p| {
            let path = field.join(format!("shot_{p}.jpg"));
            photo(&path, SPECIES + 3, p);
            path
        })
        .collect();
    let mut enroll_args = vec!["enroll", "--model", str(&model), "--table", str(&device_table)];
    enroll_args.extend(["--species", FIELD_SPECIES, "--edibility", "inedible"]);
    enroll_args.extend(field_photos.iter().map(|p| str(p)));
    // The device's table, made from the shipped one by its first use.
    run(device, &["species", "--model", str(&model), "--table", str(&device_table), "list"]);
    // How long a whole enrollment takes (into a scratch table), to spread the kills over it.
    let scratch = dir.path().join("scratch.bin");
    let mut scratch_args = enroll_args.clone();
    scratch_args[4] = str(&scratch);
    let started = Instant::now();
    run(device, &scratch_args);
    let whole = started.elapsed();
    let (mut cut_short, mut finished) = (0, 0);
    for trial in 1..=5u32 {
        let mut child = Command::new(device)
            .args(&enroll_args)
            .env("SPOREPRINT_DEVICE_ID", "0000002a")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole.mul_f64(0.2 * f64::from(trial)));
        child.kill().unwrap();
        child.wait().unwrap();
        let table: Table = store::load(&device_table).expect("the table loads after a kill");
        match shots_of(&table, FIELD_SPECIES) {
            None => {
                cut_short += 1;
                assert_eq!(total_shots(&table), shipped_shots, "trial {trial}: nothing of a cut-short enrollment")
            }
            Some(shots) => {
                finished += 1;
                // Saved before the kill: whole. Removed again, so that the next trial enrolls anew.
                assert_eq!(shots, FIELD_SHOTS, "trial {trial}: an enrollment lands whole");
                run(
                    device,
                    &["species", "--model", str(&model), "--table", str(&device_table), "remove", FIELD_SPECIES],
                );
            }
        }
    }
    println!("5 kills over an enrollment of {whole:?}: {cut_short} cut short, {finished} saved first");
    run(device, &enroll_args);
    let enrolled: Table = store::load(&device_table).unwrap();
    assert_eq!(shots_of(&enrolled, FIELD_SPECIES), Some(FIELD_SHOTS));

    // Host: its own copy of the shipped table, where a species is renamed meanwhile.
    let host_table = dir.path().join("host.bin");
    std::fs::copy(model.join("prototypes.bin"), &host_table).unwrap();
    run(tables, &["species", "--table", str(&host_table), "rename", "species 00", "Chanterelle"]);

    // Sync over a line that loses 200 bytes in the middle of the transfer.
    let stop = Arc::new(AtomicBool::new(false));
    let (host_port, device_port, lost) = glitching_line(400, 200, stop.clone());
    let mut served = serve(&model, &device_table, &device_port);
    let synced = Command::new(tables)
        .args(["sync", "--merge", "--json", "--port", &host_port, "--table", str(&host_table)])
        .output()
        .unwrap();
    served.kill().unwrap();
    served.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(synced.status.success(), "{}", String::from_utf8_lossy(&synced.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&synced.stdout).unwrap();
    assert_eq!(lost.load(Ordering::Relaxed), 200, "the line lost its bytes: {outcome}");

    let (host_after, device_after): (Table, Table) =
        (store::load(&host_table).unwrap(), store::load(&device_table).unwrap());
    assert_eq!(host_after.entries(), device_after.entries(), "after a merge both sides hold the same table");
    assert_eq!(shots_of(&host_after, FIELD_SPECIES), Some(FIELD_SHOTS), "the field's shots reached the host");
    assert!(shots_of(&device_after, "Chanterelle").is_some(), "the host's rename reached the device");
    assert_eq!(total_shots(&host_after), shipped_shots + FIELD_SHOTS, "every shot accounted for, none twice");

    // The merged table names the field species from a new photo of it, on the host's table and
    // back on the device.
    let query = field.join("query.jpg");
    photo(&query, SPECIES + 3, 7);
    for table in [&host_table, &device_table] {
        let answer: serde_json::Value = serde_json::from_slice(
            &run(device, &["identify", "--model", str(&model), "--table", str(table), "--json", str(&query)]).stdout,
        )
        .unwrap();
        assert_eq!(answer["top"][0]["species"], FIELD_SPECIES, "{}: {answer}", table.display());
    }
}
