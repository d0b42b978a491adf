//! The device's end: answers the host's requests against the table file.
//!
//! The table on disk changes only at `Commit`, after every byte arrived, the CRC matched, the
//! table decoded and validated and belongs to this device's model; then it is saved through
//! the atomic save under the table lock. Until then the received bytes are only in memory, kept
//! across sessions so that an interrupted transfer resumes where it stopped.

use super::frame::{FrameError, Key};
use super::link::{Framed, Link, Traffic};
use super::message::*;
use crate::fingerprint::ModelFingerprint;
use crate::format;
use crate::merge;
use crate::store;
use crate::table::Table;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the device's table and model are.
pub struct Device {
    pub table: PathBuf,
    pub model: ModelFingerprint,
    pub embedding_dim: usize,
    /// This device's id ([`Origin::Device`](crate::Origin::Device)), told to the host.
    pub id: u32,
}

/// Something worth a line in the device's log.
#[derive(Debug, PartialEq)]
pub enum Event {
    Hello { session: u64 },
    Sent { snapshot: Snapshot },
    Applied { apply: Apply, table: TableSummary },
    Refused(Refusal),
    Rejected(FrameError),
}

pub struct Server {
    device: Device,
    session: Option<u64>,
    /// The table being read by the host, as of its `Hello`.
    outgoing: Option<(TableSummary, Vec<u8>)>,
    incoming: Option<Incoming>,
    /// The last table applied, so a `Commit` repeated after a lost reply is answered again
    /// instead of being refused.
    applied: Option<(Snapshot, TableSummary)>,
    /// The nonce of the hello that opened the current session.
    hello_nonce: u64,
}

struct Incoming {
    snapshot: Snapshot,
    apply: Apply,
    bytes: Vec<u8>,
}

impl Server {
    pub fn new(device: Device) -> Server {
        Server { device, session: None, outgoing: None, incoming: None, applied: None, hello_nonce: 0 }
    }

    /// Answers requests on `link` until `stop` is set. Link errors (a cable pulled out) are
    /// reported and waited out, not fatal: the host may come back.
    pub fn serve<L: Link>(
        &mut self,
        link: L,
        key: Option<Key>,
        stop: &AtomicBool,
        mut event: impl FnMut(Event),
    ) -> Traffic {
        let mut framed = Framed::new(link, key);
        while !stop.load(Ordering::Relaxed) {
            let deadline = Instant::now() + Duration::from_millis(100);
            let mut unsigned = false;
            let received = framed.receive::<Request>(deadline, |e, _| {
                unsigned |= matches!(e, FrameError::Unsigned | FrameError::BadSignature);
                event(Event::Rejected(e));
            });
            if unsigned {
                // Tell the host why nothing else will be answered; no secret is in this reply.
                let packet = Packet { session: 0, seq: 0, message: Reply::Refused(Refusal::Unauthenticated) };
                let _ = framed.send(&packet, false);
            }
            match received {
                Ok(Some(opened)) => {
                    let (reply, happened) = self.handle(opened.packet);
                    if let Some(happened) = happened {
                        event(happened);
                    }
                    if let Some(reply) = reply
                        && framed.send(&reply, true).is_err()
                    {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Ok(None) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        framed.traffic
    }

    /// The answer to one request, if it deserves one, and what to log. Requests of another
    /// session than the current one are ignored: they are delayed copies or replays.
    pub fn handle(&mut self, packet: Packet<Request>) -> (Option<Packet<Reply>>, Option<Event>) {
        let Packet { session, seq, message } = packet;
        let (reply, event) = match message {
            Request::Hello { protocol, model, nonce } => {
                let (reply, event) = self.hello(protocol, model, nonce);
                let session = self.session.unwrap_or(0);
                return (Some(Packet { session, seq, message: reply }), event);
            }
            _ if Some(session) != self.session => return (None, None),
            Request::Read { snapshot, offset } => self.read(snapshot, offset),
            Request::Write { snapshot, apply } => self.write(snapshot, apply),
            Request::Data { snapshot, offset, bytes } => self.data(snapshot, offset, bytes),
            Request::Commit { snapshot } => self.commit(snapshot),
        };
        let event = event.or_else(|| match &reply {
            Reply::Refused(r) => Some(Event::Refused(r.clone())),
            _ => None,
        });
        (Some(Packet { session, seq, message: reply }), event)
    }

    fn hello(&mut self, protocol: u16, model: ModelFingerprint, nonce: u64) -> (Reply, Option<Event>) {
        if protocol != PROTOCOL_VERSION {
            let refusal = Refusal::Protocol { host: protocol, device: PROTOCOL_VERSION };
            return (Reply::Refused(refusal.clone()), Some(Event::Refused(refusal)));
        }
        if model != self.device.model {
            let refusal = Refusal::OtherModel { device: self.device.model };
            return (Reply::Refused(refusal.clone()), Some(Event::Refused(refusal)));
        }
        let retried = self.session.is_some() && nonce == self.hello_nonce;
        if !retried {
            self.session = Some(super::unpredictable_u64());
            self.hello_nonce = nonce;
            self.outgoing = None;
        }
        if self.outgoing.is_none() {
            match self.current_table() {
                Ok(current) => self.outgoing = Some(current),
                Err(problem) => return (Reply::Refused(Refusal::Unreadable(problem)), None),
            }
        }
        let summary = self.outgoing.as_ref().expect("just read").0;
        let session = self.session.expect("just opened");
        let reply = Reply::Hello {
            protocol: PROTOCOL_VERSION,
            model: self.device.model,
            device: self.device.id,
            table: summary,
        };
        (reply, Some(Event::Hello { session }))
    }

    fn read(&mut self, snapshot: Snapshot, offset: u32) -> (Reply, Option<Event>) {
        let Some((current, bytes)) = self.outgoing.as_ref().filter(|(s, _)| s.snapshot == snapshot) else {
            return (Reply::Refused(Refusal::Changed), None);
        };
        let current = &current.snapshot;
        let start = (offset as usize).min(bytes.len());
        let end = (start + CHUNK_LEN).min(bytes.len());
        let event = (end == bytes.len()).then_some(Event::Sent { snapshot: *current });
        (Reply::Data { snapshot: *current, offset: start as u32, bytes: bytes[start..end].to_vec() }, event)
    }

    fn write(&mut self, snapshot: Snapshot, apply: Apply) -> (Reply, Option<Event>) {
        match &mut self.incoming {
            // The same table again: resume, whatever the host now wants done with it.
            Some(incoming) if incoming.snapshot == snapshot => incoming.apply = apply,
            _ => {
                let capacity = (snapshot.len as usize).min(64 << 20);
                self.incoming = Some(Incoming { snapshot, apply, bytes: Vec::with_capacity(capacity) });
            }
        }
        let have = self.incoming.as_ref().map_or(0, |i| i.bytes.len() as u32);
        (Reply::Have { offset: have }, None)
    }

    fn data(&mut self, snapshot: Snapshot, offset: u32, bytes: Vec<u8>) -> (Reply, Option<Event>) {
        let Some(incoming) = self.incoming.as_mut().filter(|i| i.snapshot == snapshot) else {
            return (Reply::Refused(Refusal::OutOfOrder), None);
        };
        let held = incoming.bytes.len();
        let fits = held + bytes.len() <= snapshot.len as usize;
        // A repeated chunk (its ack was lost) or one from the future (one before it was lost)
        // changes nothing: the reply tells the host where to go on from.
        if offset as usize == held && fits {
            incoming.bytes.extend_from_slice(&bytes);
        }
        (Reply::Have { offset: incoming.bytes.len() as u32 }, None)
    }

    fn commit(&mut self, snapshot: Snapshot) -> (Reply, Option<Event>) {
        if let Some((_, summary)) = self.applied.filter(|(s, _)| *s == snapshot) {
            return (Reply::Applied { table: summary }, None);
        }
        let Some(incoming) = self.incoming.as_ref().filter(|i| i.snapshot == snapshot) else {
            return (Reply::Refused(Refusal::OutOfOrder), None);
        };
        if Snapshot::of(&incoming.bytes) != snapshot {
            let have = incoming.bytes.len() as u32;
            // Complete but wrong: start over rather than resume into the same bytes.
            if have == snapshot.len {
                self.incoming = None;
            }
            return (Reply::Refused(Refusal::Incomplete { have, len: snapshot.len }), None);
        }
        let apply = incoming.apply;
        match self.apply(apply) {
            Ok(summary) => {
                self.incoming = None;
                self.applied = Some((snapshot, summary));
                // The table changed: a later `Read` of the old snapshot must be refused.
                self.outgoing = None;
                (Reply::Applied { table: summary }, Some(Event::Applied { apply, table: summary }))
            }
            Err(refusal) => {
                if matches!(refusal, Refusal::Invalid(_)) {
                    self.incoming = None;
                }
                (Reply::Refused(refusal), None)
            }
        }
    }

    fn apply(&self, apply: Apply) -> Result<TableSummary, Refusal> {
        let bytes = &self.incoming.as_ref().expect("checked by commit").bytes;
        let received: Table = format::decode(bytes).map_err(|e| Refusal::Invalid(e.to_string()))?;
        if received.header().model_fingerprint != self.device.model || received.dim() != self.device.embedding_dim {
            return Err(Refusal::OtherModel { device: self.device.model });
        }
        let path = &self.device.table;
        let _lock = store::lock(path, || {}).map_err(|e| Refusal::Save(e.to_string()))?;
        let table = match apply {
            Apply::Replace => received,
            Apply::Merge => match store::load(path) {
                Ok(current) => merge::merge(&current, &received).map_err(|e| Refusal::Invalid(e.to_string()))?,
                Err(store::StoreError::Io { problem, .. }) if problem.kind() == std::io::ErrorKind::NotFound => {
                    received
                }
                Err(e) => return Err(Refusal::Save(e.to_string())),
            },
        };
        let bytes = format::encode(&table);
        store::write_atomically(path, &bytes).map_err(|e| Refusal::Save(format!("{}: {e}", path.display())))?;
        Ok(summarize(&table, &bytes))
    }

    fn current_table(&self) -> Result<(TableSummary, Vec<u8>), String> {
        let table: Table = store::load_for_model(&self.device.table, &self.device.model, self.device.embedding_dim)
            .map_err(|e| e.to_string())?;
        // Re-encoded rather than sent as read: a version 1 file goes out as the current format.
        let bytes = format::encode(&table);
        Ok((summarize(&table, &bytes), bytes))
    }
}

/// What the other side needs to know about a table and its bytes.
pub fn summarize(table: &Table, bytes: &[u8]) -> TableSummary {
    TableSummary { snapshot: Snapshot::of(bytes), revision: table.header().revision, species: table.len() as u32 }
}
