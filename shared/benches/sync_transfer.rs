//! Sync transfer cost: a large table pulled and pushed between the host client and the device
//! server over a real pseudo-terminal, at full pty speed and paced to 115200 baud (8N1: 11 520
//! bytes/s each way). Prints a Markdown table: payload vs bytes on the wire, and times.
//!
//! `cargo bench -p sporeprint-shared --bench sync_transfer [-- SPECIES PACED_SPECIES]`
//! (defaults 10000 and 300: the paced run is measured on the smaller table and scaled by bytes,
//! since at 115200 baud the full one takes many minutes each way).

use serialport::{SerialPort, TTYPort};
use sporeprint_shared::sync::client::{Client, Patience};
use sporeprint_shared::sync::server::{Device, Server};
use sporeprint_shared::sync::{Apply, Link};
use sporeprint_shared::table::NewSpecies;
use sporeprint_shared::{Edibility, Header, ModelFingerprint, Name, Origin, PreprocessSpec, Table, format, store};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const DIM: usize = 128;
const BAUD: u32 = 115_200;

fn table(species: usize) -> Table {
    let model = ModelFingerprint::of_bytes(b"bench model");
    let mut table = Table::new(Header::new(DIM as u32, model, PreprocessSpec::EFFICIENTNET_LITE));
    let mut state = 1u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    for i in 0..species {
        let shots: Vec<Vec<f32>> = (0..3).map(|_| (0..DIM).map(|_| next()).collect()).collect();
        let species = NewSpecies {
            name: Name::new(&format!("species number {i}")).unwrap(),
            scientific_name: Some(Name::new(&format!("Fungus exemplaris {i}")).unwrap()),
            genus: Some(Name::new("Fungus").unwrap()),
            edibility: Edibility::Unknown,
            origin: Origin::Host,
        };
        table.add_species(species, &shots).unwrap();
    }
    table
}

fn pair() -> (TTYPort, TTYPort) {
    let (mut a, mut b) = TTYPort::pair().unwrap();
    a.set_timeout(Duration::from_millis(5)).unwrap();
    b.set_timeout(Duration::from_millis(5)).unwrap();
    (a, b)
}

/// A relay that carries bytes no faster than `baud` allows, each way.
fn paced(baud: u32, stop: Arc<AtomicBool>) -> (TTYPort, TTYPort) {
    let (host_end, relay_host) = pair();
    let (relay_device, device_end) = pair();
    let directions = [
        (relay_host.try_clone_native().unwrap(), relay_device.try_clone_native().unwrap()),
        (relay_device, relay_host),
    ];
    for (mut from, mut to) in directions {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let per_byte = Duration::from_secs_f64(10.0 / baud as f64);
            let mut buffer = [0u8; 64];
            let mut free_at = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = from.read(&mut buffer) else { continue };
                free_at = free_at.max(Instant::now()) + per_byte * n as u32;
                std::thread::sleep(free_at.saturating_duration_since(Instant::now()));
                let _ = to.write_all(&buffer[..n]);
            }
        });
    }
    (host_end, device_end)
}

struct Measured {
    payload: u64,
    wire: u64,
    seconds: f64,
}

/// Pulls then pushes (Replace) `table` through `link` to a server holding it.
fn transfer<L: Link>(host: L, device: TTYPort, table: &Table, patience: Patience) -> (Measured, Measured) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.bin");
    store::save(&path, table).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let model = table.header().model_fingerprint;
    let server_device = Device { table: path, model, embedding_dim: DIM, id: 1 };
    let server = std::thread::spawn(move || Server::new(server_device).serve(device, None, &flag, |_| {}));

    let (mut client, info) = Client::connect(host, None, model, patience).unwrap();
    let (start, before) = (Instant::now(), client.traffic());
    let bytes = client.read_table(info.table, |_, _| {}).unwrap();
    let after = client.traffic();
    let pull = Measured {
        payload: bytes.len() as u64,
        wire: (after.sent + after.received) - (before.sent + before.received),
        seconds: start.elapsed().as_secs_f64(),
    };
    let (start, before) = (Instant::now(), client.traffic());
    client.write_table(&bytes, Apply::Replace, |_, _| {}).unwrap();
    let after = client.traffic();
    let push = Measured {
        payload: bytes.len() as u64,
        wire: (after.sent + after.received) - (before.sent + before.received),
        seconds: start.elapsed().as_secs_f64(),
    };
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    (pull, push)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (species, paced_species) = (args.first().copied().unwrap_or(10_000), args.get(1).copied().unwrap_or(300));

    let big = table(species);
    let (host, device) = pair();
    let (pull, push) = transfer(host, device, &big, Patience::for_baud(BAUD));

    let small = table(paced_species);
    let stop = Arc::new(AtomicBool::new(false));
    let (host, device) = paced(BAUD, stop.clone());
    let (paced_pull, paced_push) = transfer(host, device, &small, Patience::for_baud(BAUD));
    stop.store(true, Ordering::Relaxed);
    let scale = format::encode(&big).len() as f64 / format::encode(&small).len() as f64;

    println!("| table | link | operation | payload bytes | bytes on the wire | wire / payload | time |");
    println!("|---|---|---|---:|---:|---:|---:|");
    let row = |t: &str, link: &str, op: &str, m: &Measured, time: String| {
        println!(
            "| {t} | {link} | {op} | {} | {} | {:.3} | {time} |",
            m.payload,
            m.wire,
            m.wire as f64 / m.payload as f64
        );
    };
    let label = format!("{species} species x {DIM}-D");
    row(&label, "pty (unpaced)", "pull", &pull, format!("{:.2} s", pull.seconds));
    row(&label, "pty (unpaced)", "push", &push, format!("{:.2} s", push.seconds));
    let small_label = format!("{paced_species} species x {DIM}-D");
    row(&small_label, "115200 baud (paced pty)", "pull", &paced_pull, format!("{:.1} s", paced_pull.seconds));
    row(&small_label, "115200 baud (paced pty)", "push", &paced_push, format!("{:.1} s", paced_push.seconds));
    for (op, m) in [("pull", &paced_pull), ("push", &paced_push)] {
        let floor = pull.payload as f64 * 10.0 / BAUD as f64;
        println!(
            "| {label} | 115200 baud (scaled x{scale:.1} from the paced run) | {op} | {} | {} | {:.3} | {:.0} s (payload alone at line rate: {floor:.0} s) |",
            pull.payload,
            (m.wire as f64 * scale) as u64,
            m.wire as f64 / m.payload as f64,
            m.seconds * scale
        );
    }
}
