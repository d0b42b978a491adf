//! What host and device say to each other. The host asks, the device answers: every
//! [`Request`] gets exactly one [`Reply`] with the same sequence number.

use crate::fingerprint::ModelFingerprint;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Bumped on any change to the messages or the framing.
pub const PROTOCOL_VERSION: u16 = 1;

/// Table bytes per `Data` message. With the framing this keeps every frame under
/// [`MAX_FRAME_LEN`](super::frame::MAX_FRAME_LEN): about 0.1 s at 115200 baud, so a damaged
/// frame costs little to resend.
pub const CHUNK_LEN: usize = 1024;

/// One message with what is needed to match it to its answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Packet<M> {
    /// Chosen by the device in its `Hello` reply; 0 in the host's `Hello`. Frames of another
    /// session (delayed, or replayed) are ignored.
    pub session: u64,
    /// The host's request number, echoed in the reply. A retried request keeps its number.
    pub seq: u32,
    pub message: M,
}

/// A table's encoded bytes, named by their length and CRC-32: what a transfer is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub len: u32,
    pub crc: u32,
}

impl Snapshot {
    /// The snapshot naming `bytes` (at most 4 GiB: callers check longer ones first).
    pub fn of(bytes: &[u8]) -> Snapshot {
        Snapshot { len: bytes.len() as u32, crc: crate::format::crc32(bytes) }
    }
}

/// What the device does with a table once all of it has arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Apply {
    /// It becomes the device's table.
    Replace,
    /// It is merged into the device's table as it is then (see `shared::merge`), so changes the
    /// device made since the host read it are kept.
    Merge,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Opens a session: which protocol and model the host's table is for. `nonce` is new for
    /// each connection and the same in its retries, so a retried hello is answered with the
    /// same session instead of a second one.
    Hello { protocol: u16, model: ModelFingerprint, nonce: u64 },
    /// Up to [`CHUNK_LEN`] bytes of the device's table, as of `snapshot`, from `offset`.
    Read { snapshot: Snapshot, offset: u32 },
    /// Announces a table the host is about to send.
    Write { snapshot: Snapshot, apply: Apply },
    /// Table bytes at `offset` of the announced table.
    Data { snapshot: Snapshot, offset: u32, bytes: Vec<u8> },
    /// All bytes are sent: check them and apply the table.
    Commit { snapshot: Snapshot },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Hello {
        protocol: u16,
        model: ModelFingerprint,
        device: u32,
        table: TableSummary,
    },
    /// Bytes of the table, answering `Read`.
    Data {
        snapshot: Snapshot,
        offset: u32,
        bytes: Vec<u8>,
    },
    /// How many bytes of the announced table the device holds: 0 for a new transfer, more when
    /// an interrupted one resumes; the host sends from there.
    Have {
        offset: u32,
    },
    /// The table was applied; this is the device's table now.
    Applied {
        table: TableSummary,
    },
    Refused(Refusal),
}

/// The device's table at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    pub snapshot: Snapshot,
    pub revision: u64,
    pub species: u32,
}

/// Why the device did not do what was asked. Every variant reads as a sentence for the person
/// at the host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("the device speaks sync protocol {device}, the host {host}: update the older one")]
    Protocol { host: u16, device: u16 },
    #[error("the device runs another model ({}): its prototypes cannot be merged with a table for this one", device.short())]
    OtherModel { device: ModelFingerprint },
    #[error("the device's table changed since the host started reading it: sync again")]
    Changed,
    #[error("the transfer is incomplete: the device holds {have} of {len} bytes")]
    Incomplete { have: u32, len: u32 },
    #[error("the table the host sent is not valid: {0}")]
    Invalid(String),
    #[error("the device could not save its table: {0}")]
    Save(String),
    #[error("the device cannot read its own table: {0}")]
    Unreadable(String),
    #[error("the device is paired, and the host did not sign with the device's key (no key file, or another one)")]
    Unauthenticated,
    #[error("the request does not fit the transfer in progress")]
    OutOfOrder,
}
