//! Host <-> device sync over real pseudo-terminals: the host's `Sync` (and the
//! `sporeprint-tables sync` binary) against the device's `Server`, directly and through a relay that damages the line.

use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serialport::{SerialPort, TTYPort};
use sporeprint_shared::merge::merge;
use sporeprint_shared::sync::client::Patience;
use sporeprint_shared::sync::message::CHUNK_LEN;
use sporeprint_shared::sync::server::{Device, Server};
use sporeprint_shared::sync::{Key, Link};
use sporeprint_shared::table::NewSpecies;
use sporeprint_shared::{Edibility, Header, ModelFingerprint, Name, Origin, PreprocessSpec, Table, format, store};
use sporeprint_tables::sync::{Mode, Outcome, Sync};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const DIM: usize = 16;

fn model() -> ModelFingerprint {
    ModelFingerprint::of_bytes(b"sync test model")
}

fn unit(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn new_species(name: &str, origin: Origin) -> NewSpecies {
    NewSpecies {
        name: Name::new(name).unwrap(),
        scientific_name: None,
        genus: None,
        edibility: Edibility::Unknown,
        origin,
    }
}

/// A table both sides start from, then the host's and the device's versions after each made
/// its own changes (new species, new shots, a rename, a removal).
fn diverged(seed: u64, species: usize) -> (Table, Table) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ancestor = Table::new(Header::new(DIM as u32, model(), PreprocessSpec::EFFICIENTNET_LITE));
    for i in 0..species {
        let shots: Vec<_> = (0..3).map(|_| unit(&mut rng)).collect();
        ancestor.add_species(new_species(&format!("species {i}"), Origin::Host), &shots).unwrap();
    }
    let (mut host, mut device) = (ancestor.clone(), ancestor);
    host.add_species(new_species("trained centrally", Origin::Host), &[unit(&mut rng)]).unwrap();
    host.rename("species 0", Name::new("Cep").unwrap()).unwrap();
    device
        .add_species(new_species("found in the field", Origin::Device(7)), &[unit(&mut rng), unit(&mut rng)])
        .unwrap();
    device.add_shots("species 1", &[unit(&mut rng)], Origin::Device(7)).unwrap();
    device.remove("species 2").unwrap();
    (host, device)
}

struct Ends {
    _dir: tempfile::TempDir,
    host_table: PathBuf,
    device_table: PathBuf,
}

impl Ends {
    fn new(host: &Table, device: &Table) -> Ends {
        let dir = tempfile::tempdir().unwrap();
        let (host_table, device_table) = (dir.path().join("host.bin"), dir.path().join("device.bin"));
        store::save(&host_table, host).unwrap();
        store::save(&device_table, device).unwrap();
        Ends { _dir: dir, host_table, device_table }
    }

    fn host(&self) -> Table {
        store::load(&self.host_table).unwrap()
    }

    fn device(&self) -> Table {
        store::load(&self.device_table).unwrap()
    }
}

/// The device's server on `port` in a thread, until the returned flag is set.
fn serve(port: TTYPort, table: &Path, key: Option<Key>) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let device = Device { table: table.into(), model: model(), embedding_dim: DIM, id: 7 };
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        Server::new(device).serve(port, key, &flag, |_| {});
    });
    (stop, thread)
}

fn pair() -> (TTYPort, TTYPort) {
    let (mut a, mut b) = TTYPort::pair().expect("a pseudo-terminal pair");
    a.set_timeout(Duration::from_millis(10)).unwrap();
    b.set_timeout(Duration::from_millis(10)).unwrap();
    (a, b)
}

fn quick() -> Patience {
    Patience { reply_timeout: Duration::from_millis(150), attempts: 6 }
}

fn sync<L: Link>(link: L, table: &Path, mode: Mode, key: Option<Key>) -> anyhow::Result<Outcome> {
    sync_with(link, table, mode, key, quick())
}

fn sync_with<L: Link>(
    link: L,
    table: &Path,
    mode: Mode,
    key: Option<Key>,
    patience: Patience,
) -> anyhow::Result<Outcome> {
    Sync::new(table, model(), key, patience, ProgressBar::hidden()).run(link, mode)
}

#[test]
fn merge_leaves_both_sides_with_every_change_and_equal_tables() {
    let (host, device) = diverged(1, 6);
    let ends = Ends::new(&host, &device);
    let (host_end, device_end) = pair();
    let (stop, server) = serve(device_end, &ends.device_table, None);

    let outcome = sync(host_end, &ends.host_table, Mode::Merge, None).unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();

    let expected = merge(&host, &device).unwrap();
    assert_eq!(ends.host(), expected);
    assert_eq!(ends.device(), expected);
    assert_eq!(outcome.host, outcome.device_table);
    assert_eq!((outcome.rounds, outcome.host.species), (1, 7));
    let names: Vec<_> = expected.entries().iter().map(|e| e.name.to_string()).collect();
    assert_eq!(
        names,
        ["Cep", "found in the field", "species 1", "species 3", "species 4", "species 5", "trained centrally"]
    );
    assert_eq!(expected.get("species 1").unwrap().prototype.shots, 4, "the device's extra shot");
    assert!(outcome.wire_bytes_sent > outcome.payload_bytes / 2, "{outcome:?}");
}

#[test]
fn pull_and_push_copy_one_side_over_the_other() {
    let (host, device) = diverged(2, 4);
    let ends = Ends::new(&host, &device);
    let (host_end, device_end) = pair();
    let (stop, server) = serve(device_end, &ends.device_table, None);

    let link = host_end.try_clone_native().unwrap();
    sync(link, &ends.host_table, Mode::Pull, None).unwrap();
    assert_eq!(ends.host(), device);
    let mut edited = device.clone();
    edited.set_edibility("species 3", Edibility::Deadly).unwrap();
    store::save(&ends.host_table, &edited).unwrap();
    sync(host_end, &ends.host_table, Mode::Push, None).unwrap();
    assert_eq!(ends.device(), edited);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn a_device_with_another_model_refuses_and_says_so() {
    let (host, device) = diverged(3, 3);
    let ends = Ends::new(&host, &device);
    let (host_end, device_end) = pair();
    let stop = Arc::new(AtomicBool::new(false));
    let other = Device {
        table: ends.device_table.clone(),
        model: ModelFingerprint::of_bytes(b"another model"),
        embedding_dim: DIM,
        id: 7,
    };
    let flag = stop.clone();
    let server = std::thread::spawn(move || {
        Server::new(other).serve(device_end, None, &flag, |_| {});
    });
    let err = sync(host_end, &ends.host_table, Mode::Merge, None).unwrap_err();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let message = format!("{err:#}");
    assert!(message.contains("the device runs another model"), "{message}");
    assert_eq!(ends.device(), device, "nothing written");
    assert_eq!(ends.host(), host);
}

#[test]
fn a_paired_device_refuses_unsigned_frames_and_a_paired_host_refuses_unpaired_devices() {
    let (host, device) = diverged(4, 3);
    let key = Key::new(b"0123456789abcdef0123456789abcdef").unwrap();
    let other_key = Key::new(b"fedcba9876543210fedcba9876543210").unwrap();

    let cases: [(Option<Key>, Option<Key>, Option<&str>); 4] = [
        (Some(key.clone()), Some(key.clone()), None),
        (None, Some(key.clone()), Some("did not sign with the device's key")),
        (Some(key.clone()), None, Some("it is not paired")),
        (Some(other_key), Some(key), Some("did not sign with the device's key")),
    ];
    for (host_key, device_key, error) in cases {
        let ends = Ends::new(&host, &device);
        let (host_end, device_end) = pair();
        let (stop, server) = serve(device_end, &ends.device_table, device_key.clone());
        let result = sync(host_end, &ends.host_table, Mode::Merge, host_key.clone());
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        match (result, error) {
            (Ok(_), None) => assert_eq!(ends.device(), merge(&host, &device).unwrap()),
            (Err(e), Some(expected)) => {
                let message = format!("{e:#}");
                assert!(message.contains(expected), "host key {host_key:?}, device key {device_key:?}: {message}");
                assert_eq!(ends.device(), device);
            }
            (result, _) => panic!("host key {host_key:?}, device key {device_key:?}: {result:?}"),
        }
    }
}

/// What the relay does to the bytes passing through it.
#[derive(Clone, Copy, Debug)]
struct Faults {
    /// Per byte.
    drop: f64,
    flip: f64,
    duplicate: f64,
    /// Per read: hold the bytes back a few milliseconds.
    delay: f64,
    /// Per frame: throw random garbage onto the line after it.
    garbage: f64,
    /// Stop carrying anything after this many bytes (the cable is pulled).
    cut_after: Option<usize>,
}

impl Faults {
    const NONE: Faults = Faults { drop: 0.0, flip: 0.0, duplicate: 0.0, delay: 0.0, garbage: 0.0, cut_after: None };
}

/// Two pty pairs with a thread per direction carrying bytes from one to the other through
/// `faults`. Returns the host's and the device's ends.
fn relay(faults: Faults, seed: u64) -> (TTYPort, TTYPort, Arc<AtomicBool>) {
    let (host_end, relay_host) = pair();
    let (relay_device, device_end) = pair();
    let stop = Arc::new(AtomicBool::new(false));
    let carried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let directions = [
        (relay_host.try_clone_native().unwrap(), relay_device.try_clone_native().unwrap()),
        (relay_device, relay_host),
    ];
    for (i, (mut from, mut to)) in directions.into_iter().enumerate() {
        let (stop, carried) = (stop.clone(), carried.clone());
        let mut rng = StdRng::seed_from_u64(seed * 2 + i as u64);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 256];
            let mut zeros = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let n = match from.read(&mut buffer) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                let total = carried.fetch_add(n, Ordering::Relaxed) + n;
                if faults.cut_after.is_some_and(|cut| total > cut) {
                    continue;
                }
                let mut out = Vec::with_capacity(2 * n);
                for &byte in &buffer[..n] {
                    // Frames are 0, ..., 0: after every second zero the line is between frames.
                    zeros += usize::from(byte == 0);
                    if byte == 0 && zeros.is_multiple_of(2) && rng.random_bool(faults.garbage) {
                        out.push(0);
                        out.extend((0..rng.random_range(1..40)).map(|_| rng.random_range(1..=255u8)));
                    }
                    if rng.random_bool(faults.drop) {
                        continue;
                    }
                    let byte = if rng.random_bool(faults.flip) { byte ^ (1 << rng.random_range(0..8)) } else { byte };
                    out.push(byte);
                    if rng.random_bool(faults.duplicate) {
                        out.push(byte);
                    }
                }
                if rng.random_bool(faults.delay) {
                    std::thread::sleep(Duration::from_millis(rng.random_range(1..60)));
                }
                let _ = to.write_all(&out);
            }
        });
    }
    (host_end, device_end, stop)
}

#[test]
fn garbage_between_frames_is_skipped() {
    let (host, device) = diverged(5, 30);
    let ends = Ends::new(&host, &device);
    let faults = Faults { garbage: 0.5, ..Faults::NONE };
    let (host_end, device_end, relay_stop) = relay(faults, 5);
    let (stop, server) = serve(device_end, &ends.device_table, None);
    let outcome = sync(host_end, &ends.host_table, Mode::Merge, None).unwrap();
    stop.store(true, Ordering::Relaxed);
    relay_stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert_eq!(ends.device(), merge(&host, &device).unwrap());
    assert!(outcome.frames_rejected > 0, "the garbage reached the host too: {outcome:?}");
}

/// The fault injection: 100 merges through a line that drops, flips, duplicates and
/// delays bytes and throws garbage, a third of them with the cable pulled mid-transfer. After
/// each, each side's table is its old one or the full merge, never anything between; a rerun
/// over a clean line then completes the sync.
#[test]
fn a_damaged_or_cut_line_never_leaves_a_partial_table_and_a_rerun_completes() {
    let trials = 100;
    let (mut completed, mut failed) = (0, 0);
    for trial in 0..trials {
        let mut rng = StdRng::seed_from_u64(1000 + trial);
        let (host, device) = diverged(trial, rng.random_range(3..40));
        let expected = merge(&host, &device).unwrap();
        let ends = Ends::new(&host, &device);
        let wire_estimate = 2 * (format::encode(&host).len() + format::encode(&device).len());
        let faults = Faults {
            drop: rng.random_range(0.0..0.0005),
            flip: rng.random_range(0.0..0.0005),
            duplicate: rng.random_range(0.0..0.0005),
            delay: rng.random_range(0.0..0.2),
            garbage: rng.random_range(0.0..0.1),
            cut_after: (trial % 3 == 0).then(|| rng.random_range(0..wire_estimate)),
        };
        let (host_end, device_end, relay_stop) = relay(faults, trial);
        let (stop, server) = serve(device_end, &ends.device_table, None);
        let impatient = Patience { reply_timeout: Duration::from_millis(100), attempts: 4 };
        let result = sync_with(host_end, &ends.host_table, Mode::Merge, None, impatient);
        stop.store(true, Ordering::Relaxed);
        relay_stop.store(true, Ordering::Relaxed);
        server.join().unwrap();

        let (host_after, device_after) = (ends.host(), ends.device());
        assert!(host_after == host || host_after == expected, "trial {trial}: host table is partial ({faults:?})");
        assert!(
            device_after == device || device_after == expected,
            "trial {trial}: device table is partial ({faults:?})"
        );
        match result {
            Ok(_) => {
                completed += 1;
                assert_eq!((&host_after, &device_after), (&expected, &expected), "trial {trial} ({faults:?})");
            }
            Err(_) => failed += 1,
        }

        let (host_end, device_end) = pair();
        let (stop, server) = serve(device_end, &ends.device_table, None);
        sync(host_end, &ends.host_table, Mode::Merge, None).unwrap_or_else(|e| panic!("trial {trial} rerun: {e:#}"));
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert_eq!((ends.host(), ends.device()), (expected.clone(), expected), "trial {trial} rerun");
    }
    println!("{trials} trials over a damaged line: {completed} syncs completed, {failed} failed and were rerun");
    // The faults must be real enough to break some syncs, and the retries good enough to get
    // most of the uncut ones through.
    // (Measured: 51 completed, 49 failed; the thresholds leave room for the machine's timing.)
    assert!(failed >= trials / 5, "only {failed} of {trials} syncs failed: the faults are too mild");
    assert!(completed >= trials * 3 / 10, "only {completed} of {trials} syncs completed despite retries");
}

/// The `sporeprint-tables sync` binary against the device's server on a pty, with `--json`.
#[test]
fn the_sync_command_merges_and_reports_json() {
    let (host, device) = diverged(6, 5);
    let ends = Ends::new(&host, &device);
    // The binary opens the pty's named end itself: close ours first (ports are opened exclusively).
    let (device_end, host_end) = pair();
    let port = host_end.name().expect("the pty's path");
    drop(host_end);
    let (stop, server) = serve(device_end, &ends.device_table, None);
    let output = Command::new(env!("CARGO_BIN_EXE_sporeprint-tables"))
        .args(["sync", "--merge", "--json", "--port", &port, "--table"])
        .arg(&ends.host_table)
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["mode"], "merge");
    assert_eq!(json["host"], json["device_table"]);
    assert_eq!(json["host"]["species"], 6);
    assert_eq!(ends.device(), merge(&host, &device).unwrap());
}

/// A push cut off halfway resumes where it stopped: the device keeps what it received.
#[test]
fn an_interrupted_push_resumes_instead_of_restarting() {
    let (host, device) = diverged(7, 300);
    let ends = Ends::new(&host, &device);
    let table_len = format::encode(&host).len();
    assert!(table_len > 20 * CHUNK_LEN, "{table_len} bytes: too small to cut in the middle");
    let (host_cut, device_cut, relay_stop) = relay(Faults { cut_after: Some(table_len / 2), ..Faults::NONE }, 7);
    let (clean_host, clean_device) = pair();

    // One server, as on the device, first on the line that is cut, then on a good one.
    let (first, second) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (stop_first, stop_second) = (first.clone(), second.clone());
    let dev = Device { table: ends.device_table.clone(), model: model(), embedding_dim: DIM, id: 7 };
    let server = std::thread::spawn(move || {
        let mut server = Server::new(dev);
        server.serve(device_cut, None, &stop_first, |_| {});
        server.serve(clean_device, None, &stop_second, |_| {});
    });
    let err = sync(host_cut, &ends.host_table, Mode::Push, None).unwrap_err();
    assert!(format!("{err:#}").contains("did not answer"), "{err:#}");
    assert_eq!(ends.device(), device, "nothing applied from half a table");
    first.store(true, Ordering::Relaxed);
    relay_stop.store(true, Ordering::Relaxed);

    let outcome = sync(clean_host, &ends.host_table, Mode::Push, None).unwrap();
    second.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert_eq!(ends.device(), host);
    let resumed = outcome.resumed_bytes as usize;
    assert!(resumed >= table_len / 4 && resumed < table_len, "resumed at {resumed} of {table_len} bytes");
    assert!(outcome.wire_bytes_sent < table_len as u64, "{outcome:?}");
}
