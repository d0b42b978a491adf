//! `sporeprint-device serve` on a real pseudo-terminal, driven by the host's sync client: the
//! host reads the device's table, sends a merged one, and the device saves it.

mod common;

use common::*;
use serialport::{SerialPort, TTYPort};
use sporeprint_shared::merge::merge;
use sporeprint_shared::sync::client::{Client, Patience};
use sporeprint_shared::sync::{Apply, Key};
use sporeprint_shared::{Edibility, Origin, Table, format, store};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Served {
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on the named end of a new pty pair; returns the other end for the host.
fn serve(s: &Setup, extra: &[&str]) -> (Served, TTYPort) {
    let (mut host_end, device_end) = TTYPort::pair().unwrap();
    host_end.set_timeout(Duration::from_millis(10)).unwrap();
    let port = device_end.name().unwrap();
    drop(device_end);
    let table = s.state.join("table.bin");
    let child = Command::new(env!("CARGO_BIN_EXE_sporeprint-device"))
        .args(["serve", "--port", &port, "--model"])
        .arg(&s.model)
        .arg("--table")
        .arg(&table)
        .args(extra)
        .env("SPOREPRINT_DEVICE_ID", "0000002a")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut served = Served { child };
    // Serving starts once the table exists (made from the shipped one) and the port is open.
    let mut log = served.child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8];
    while !String::from_utf8_lossy(&seen).contains("serving") {
        assert_eq!(log.read(&mut byte).unwrap(), 1, "serve exited: {}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    (served, host_end)
}

fn patience() -> Patience {
    Patience { reply_timeout: Duration::from_millis(500), attempts: 6 }
}

#[test]
fn serve_answers_a_merge_from_the_host() {
    let s = setup();
    let (_served, link) = serve(&s, &[]);
    let shipped: Table = store::load(&s.model.join("prototypes.bin")).unwrap();
    let model = shipped.header().model_fingerprint;

    let (mut client, device) = Client::connect(link, None, model, patience()).unwrap();
    assert_eq!(device.id, 0x2a, "SPOREPRINT_DEVICE_ID");
    assert_eq!(device.table.species, 3, "a first sync sees the shipped species");
    let bytes = client.read_table(device.table, |_, _| {}).unwrap();
    let theirs: Table = format::decode(&bytes).unwrap();
    assert_eq!(theirs, shipped);

    let mut ours = shipped.clone();
    ours.set_edibility("blue roundhead", Edibility::Poisonous).unwrap();
    ours.add_shots("chanterelle", &[vec![0.5, 0.5, 0.5, 0.5]], Origin::Host).unwrap();
    let merged = merge(&ours, &theirs).unwrap();
    let applied = client.write_table(&format::encode(&merged), Apply::Merge, |_, _| {}).unwrap();
    assert_eq!(applied.species, 3);
    let saved: Table = store::load(&s.state.join("table.bin")).unwrap();
    assert_eq!(saved, merged);
    assert_eq!(saved.get("blue roundhead").unwrap().edibility, Edibility::Poisonous);
}

#[test]
fn a_paired_serve_refuses_an_unpaired_host() {
    let s = setup();
    let key_file = s.state.join("pair.key");
    std::fs::write(&key_file, [9u8; 32]).unwrap();
    let (_served, link) = serve(&s, &["--key", key_file.to_str().unwrap()]);
    let shipped: Table = store::load(&s.model.join("prototypes.bin")).unwrap();
    let model = shipped.header().model_fingerprint;
    let err = Client::connect(link, None, model, patience()).err().expect("refused");
    assert!(err.to_string().contains("did not sign with the device's key"), "{err}");

    let (_served, link) = serve(&s, &["--key", key_file.to_str().unwrap()]);
    let key = Key::new(&[9u8; 32]).unwrap();
    let (_, device) = Client::connect(link, Some(key), model, patience()).unwrap();
    assert_eq!(device.table.species, 3);
}

#[test]
fn a_short_key_file_is_refused_with_its_name() {
    let s = setup();
    let key_file = s.state.join("short.key");
    std::fs::write(&key_file, b"too short").unwrap();
    let output = device(
        &["serve", "--port", "/dev/null", "--model", s.model.to_str().unwrap(), "--key", key_file.to_str().unwrap()],
        &s.state,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("short.key") && message.contains("at least 16 bytes"), "{message}");
}
