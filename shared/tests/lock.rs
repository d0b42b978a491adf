//! The table lock excludes a second writer until the first lets go, and says it is waiting.

use sporeprint_shared::store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

#[test]
fn a_second_writer_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("prototypes.bin");
    let first = store::lock(&table, || panic!("nobody holds the lock yet")).unwrap();
    assert!(store::lock_path(&table).ends_with("prototypes.bin.lock"));

    let waited = Arc::new(AtomicBool::new(false));
    let (acquired, done) = mpsc::channel();
    let second = {
        let (table, waited) = (table.clone(), waited.clone());
        std::thread::spawn(move || {
            let _lock = store::lock(&table, || waited.store(true, Ordering::SeqCst)).unwrap();
            acquired.send(()).unwrap();
        })
    };
    assert!(
        done.recv_timeout(Duration::from_millis(300)).is_err(),
        "the second writer got in while the first held the lock"
    );
    assert!(waited.load(Ordering::SeqCst), "the second writer was not told it is waiting");
    drop(first);
    done.recv_timeout(Duration::from_secs(10)).expect("the second writer gets the lock once it is free");
    second.join().unwrap();
    // Released again: a third takes it at once.
    store::lock(&table, || panic!("the lock was not released")).unwrap();
}
