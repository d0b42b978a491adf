//! Host <-> device sync over a serial line: postcard messages in COBS frames, each with a
//! CRC-32 and, when the two are paired, an HMAC-SHA256 (see `shared/PROTOCOL.md`).
//!
//! [`message`] and [`frame`] are `no_std`; the two ends, which need clocks and files, are behind
//! the `std` feature: [`client`] (the host) and [`server`] (the device).

pub mod frame;
pub mod message;

#[cfg(feature = "std")]
pub mod client;
#[cfg(feature = "std")]
mod link;
#[cfg(feature = "std")]
pub mod server;

pub use frame::{FrameError, FrameReader, Key};
#[cfg(feature = "std")]
pub use link::Link;
pub use message::{Apply, PROTOCOL_VERSION, Packet, Refusal, Reply, Request, Snapshot, TableSummary};

/// A number no earlier run is likely to have picked (clock, process id, a counter, hashed):
/// session ids and hello nonces. Not a key: the pairing key is what keeps strangers out.
#[cfg(feature = "std")]
fn unpredictable_u64() -> u64 {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(now.as_nanos().to_le_bytes());
    hash.update(std::process::id().to_le_bytes());
    hash.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let digest = hash.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")).max(1)
}

#[cfg(feature = "std")]
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{}: cannot read the pairing key: {problem}", path.display())]
    Io { path: std::path::PathBuf, problem: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Unusable { path: std::path::PathBuf, problem: FrameError },
}

/// Reads a pairing key file; its bytes are the key (`head -c 32 /dev/urandom > pair.key`, then
/// the same file on both ends).
#[cfg(feature = "std")]
pub fn read_key(path: &std::path::Path) -> Result<Key, KeyFileError> {
    let bytes = std::fs::read(path).map_err(|problem| KeyFileError::Io { path: path.into(), problem })?;
    Key::new(&bytes).map_err(|problem| KeyFileError::Unusable { path: path.into(), problem })
}
