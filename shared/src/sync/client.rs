//! The host's end: asks, waits, retries. Every request is sent again when its answer does not
//! come in time, up to a bound; the device answers repeated requests the same way, so a retry
//! is always safe.

use super::frame::{self, FrameError, Key};
use super::link::{Framed, Link, Traffic};
use super::message::*;
use crate::fingerprint::ModelFingerprint;
use std::io;
use std::time::{Duration, Instant};

/// How long to wait for an answer and how often to ask again.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    pub reply_timeout: Duration,
    pub attempts: u32,
}

impl Patience {
    /// For a line of `baud` bits per second: long enough for the largest frame both ways, plus
    /// the device's time to save a table.
    pub fn for_baud(baud: u32) -> Patience {
        let frame_time = Duration::from_secs_f64(2.0 * 10.0 * super::frame::MAX_FRAME_LEN as f64 / baud as f64);
        Patience { reply_timeout: frame_time + Duration::from_millis(500), attempts: 8 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the device did not answer {request} after {attempts} attempts{hint}")]
    NoAnswer { request: &'static str, attempts: u32, hint: String },
    #[error("the device refused: {0}")]
    Refused(Refusal),
    #[error("the device's answer does not fit the request ({0})")]
    Unexpected(&'static str),
    #[error("the table is {len} bytes; the protocol carries at most 4 GiB")]
    TooLarge { len: usize },
    // No `source`: the message already carries it (see image_io's errors).
    #[error("serial line: {0}")]
    Io(io::Error),
}

impl From<io::Error> for SyncError {
    fn from(e: io::Error) -> SyncError {
        SyncError::Io(e)
    }
}

/// The device as its `Hello` described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: u32,
    pub model: ModelFingerprint,
    pub table: TableSummary,
}

pub struct Client<L: Link> {
    framed: Framed<L>,
    patience: Patience,
    model: ModelFingerprint,
    session: u64,
    seq: u32,
}

impl<L: Link> Client<L> {
    /// Opens a session with the device on `link`, for a table of `model`.
    pub fn connect(
        link: L,
        key: Option<Key>,
        model: ModelFingerprint,
        patience: Patience,
    ) -> Result<(Client<L>, DeviceInfo), SyncError> {
        let mut client = Client { framed: Framed::new(link, key), patience, model, session: 0, seq: 0 };
        let device = client.hello()?;
        Ok((client, device))
    }

    /// Opens a new session on the same link: the device reads its table afresh.
    pub fn hello(&mut self) -> Result<DeviceInfo, SyncError> {
        let hello = Request::Hello { protocol: PROTOCOL_VERSION, model: self.model, nonce: super::unpredictable_u64() };
        let (session, reply) = self.ask("hello", hello)?;
        match reply {
            Reply::Hello { protocol, model, device, table } => {
                if protocol != PROTOCOL_VERSION {
                    return Err(SyncError::Refused(Refusal::Protocol { host: PROTOCOL_VERSION, device: protocol }));
                }
                self.session = session;
                Ok(DeviceInfo { id: device, model, table })
            }
            _ => Err(SyncError::Unexpected("hello")),
        }
    }

    pub fn traffic(&self) -> Traffic {
        self.framed.traffic
    }

    /// The device's table as of `hello` (its encoded bytes), chunk by chunk.
    pub fn read_table(
        &mut self,
        table: TableSummary,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Vec<u8>, SyncError> {
        let snapshot = table.snapshot;
        let mut bytes = Vec::with_capacity(snapshot.len as usize);
        while bytes.len() < snapshot.len as usize {
            let offset = bytes.len() as u32;
            match self.ask("read", Request::Read { snapshot, offset })?.1 {
                Reply::Data { snapshot: s, offset: o, bytes: chunk } if s == snapshot && o == offset => {
                    if chunk.is_empty() || bytes.len() + chunk.len() > snapshot.len as usize {
                        return Err(SyncError::Unexpected("a chunk beyond the table's end"));
                    }
                    bytes.extend_from_slice(&chunk);
                    progress(bytes.len() as u64, snapshot.len as u64);
                }
                _ => return Err(SyncError::Unexpected("read")),
            }
        }
        if Snapshot::of(&bytes) != snapshot {
            return Err(SyncError::Unexpected("the table read does not match its checksum"));
        }
        Ok(bytes)
    }

    /// Sends a table's bytes and has the device apply them; resumes a transfer the device
    /// already holds part of.
    pub fn write_table(
        &mut self,
        bytes: &[u8],
        apply: Apply,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<TableSummary, SyncError> {
        let len = u32::try_from(bytes.len()).map_err(|_| SyncError::TooLarge { len: bytes.len() })?;
        let snapshot = Snapshot::of(bytes);
        let mut offset = match self.ask("write", Request::Write { snapshot, apply })?.1 {
            Reply::Have { offset } if offset <= len => offset,
            _ => return Err(SyncError::Unexpected("write")),
        };
        while offset < len {
            progress(offset as u64, len as u64);
            let end = (offset as usize + CHUNK_LEN).min(bytes.len());
            let chunk = bytes[offset as usize..end].to_vec();
            match self.ask("data", Request::Data { snapshot, offset, bytes: chunk })?.1 {
                Reply::Have { offset: have } if have <= len => offset = have,
                _ => return Err(SyncError::Unexpected("data")),
            }
        }
        progress(len as u64, len as u64);
        match self.ask("commit", Request::Commit { snapshot })?.1 {
            Reply::Applied { table } => Ok(table),
            _ => Err(SyncError::Unexpected("commit")),
        }
    }

    /// Sends `request` until its answer comes; a refusal is an error.
    fn ask(&mut self, name: &'static str, request: Request) -> Result<(u64, Reply), SyncError> {
        self.seq = self.seq.wrapping_add(1);
        // A hello's answer opens the session; every other answer must belong to the open one.
        let opening = matches!(request, Request::Hello { .. });
        let packet = Packet { session: self.session, seq: self.seq, message: request };
        let mut rejected: Option<FrameError> = None;
        let mut refused_unsigned = false;
        for _ in 0..self.patience.attempts {
            self.framed.send(&packet, true)?;
            let deadline = Instant::now() + self.patience.reply_timeout;
            loop {
                let received = self.framed.receive::<Reply>(deadline, |e, raw| {
                    // A paired device that cannot check our signature says so unsigned: it has
                    // no secret to sign with that we would accept. That one message is read.
                    let says_unauthenticated = || {
                        frame::decode::<Reply>(raw, None)
                            .is_ok_and(|o| o.packet.message == Reply::Refused(Refusal::Unauthenticated))
                    };
                    refused_unsigned |= e == FrameError::Unsigned && says_unauthenticated();
                    rejected = Some(e);
                })?;
                if refused_unsigned {
                    return Err(SyncError::Refused(Refusal::Unauthenticated));
                }
                let Some(opened) = received else { break };
                let reply = opened.packet;
                if let Reply::Refused(Refusal::Unauthenticated) = reply.message {
                    return Err(SyncError::Refused(Refusal::Unauthenticated));
                }
                // Answers to earlier attempts or requests arrive late on a slow line: skip them.
                let this_session = opening || reply.session == self.session;
                if reply.seq != self.seq || !this_session {
                    continue;
                }
                return match reply.message {
                    Reply::Refused(refusal) => Err(SyncError::Refused(refusal)),
                    message => Ok((reply.session, message)),
                };
            }
        }
        let hint = match rejected {
            Some(FrameError::Unsigned) => "; it answered without signing: it is not paired (no key file)".into(),
            Some(FrameError::BadSignature) => "; its answers are signed with another key".into(),
            Some(e) => format!("; the last frame it sent was damaged ({e})"),
            None if self.framed.key().is_some() => "; check the port, the baud rate and the key file".into(),
            None => "; check the port and the baud rate, and that `sporeprint-device serve` runs".into(),
        };
        Err(SyncError::NoAnswer { request: name, attempts: self.patience.attempts, hint })
    }
}
