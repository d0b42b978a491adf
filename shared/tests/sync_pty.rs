//! The sync client and server over a real pseudo-terminal pair, without the host crate, so it
//! also runs on the Pi's architecture under qemu (`scripts/test.sh`).

mod common;

use common::{Rng, random_table};
use serialport::{SerialPort, TTYPort};
use sporeprint_shared::merge::merge;
use sporeprint_shared::sync::client::{Client, Patience};
use sporeprint_shared::sync::server::{Device, Server};
use sporeprint_shared::sync::{Apply, Key};
use sporeprint_shared::{Origin, Table, format, store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn a_signed_merge_over_a_pty_saves_the_merged_table_on_the_device() {
    let mut rng = Rng(11);
    let ancestor = random_table(11, 40, 16);
    let (mut host, mut device) = (ancestor.clone(), ancestor);
    host.rename("species 3", "Cep".parse().unwrap()).unwrap();
    device.add_shots("species 4", &[rng.unit_vector(16)], Origin::Device(2)).unwrap();
    device.remove("species 5").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.bin");
    store::save(&path, &device).unwrap();

    let (mut host_end, mut device_end) = TTYPort::pair().unwrap();
    host_end.set_timeout(Duration::from_millis(10)).unwrap();
    device_end.set_timeout(Duration::from_millis(10)).unwrap();
    let key = Key::new(&[3; 32]).unwrap();
    let model = host.header().model_fingerprint;
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, server_key, server_path) = (stop.clone(), key.clone(), path.clone());
    let server = std::thread::spawn(move || {
        let device = Device { table: server_path, model, embedding_dim: 16, id: 2 };
        Server::new(device).serve(device_end, Some(server_key), &flag, |_| {})
    });

    let patience = Patience { reply_timeout: Duration::from_secs(2), attempts: 4 };
    let (mut client, info) = Client::connect(host_end, Some(key), model, patience).unwrap();
    assert_eq!((info.id, info.table.species), (2, 39));
    let mut progress = Vec::new();
    let theirs: Table = format::decode(&client.read_table(info.table, |done, _| progress.push(done)).unwrap()).unwrap();
    assert_eq!(theirs, device);
    assert!(progress.len() > 1 && progress.windows(2).all(|w| w[0] < w[1]), "chunked: {progress:?}");
    let merged = merge(&host, &theirs).unwrap();
    let applied = client.write_table(&format::encode(&merged), Apply::Merge, |_, _| {}).unwrap();
    stop.store(true, Ordering::Relaxed);
    let traffic = server.join().unwrap();

    assert_eq!(store::load(&path).unwrap(), merged);
    assert_eq!(applied.species, 39);
    assert_eq!(traffic.rejected, 0);
    assert!(merged.get("cep").is_some() && merged.get("species 5").is_none());
}
