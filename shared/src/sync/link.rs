//! Frames over a byte stream (a serial port, a pseudo-terminal): send a packet, wait for the
//! next one until a deadline. The stream's own read timeout sets how often the deadline is
//! checked; a read that times out is not an error here.

use super::frame::{self, FrameError, FrameReader, Key, Opened};
use super::message::Packet;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

/// A byte stream whose reads return within a short timeout (`TimedOut` or `WouldBlock` when
/// nothing came): `serialport`'s ports are.
pub trait Link: Read + Write {}
impl<T: Read + Write> Link for T {}

/// Byte counts, for the transfer statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
    /// Frames dropped as damaged, unsigned or not understood.
    pub rejected: u64,
}

pub(crate) struct Framed<L> {
    link: L,
    key: Option<Key>,
    reader: FrameReader,
    frames: VecDeque<Vec<u8>>,
    pub(crate) traffic: Traffic,
}

impl<L: Link> Framed<L> {
    pub(crate) fn new(link: L, key: Option<Key>) -> Framed<L> {
        Framed { link, key, reader: FrameReader::new(), frames: VecDeque::new(), traffic: Traffic::default() }
    }

    pub(crate) fn key(&self) -> Option<&Key> {
        self.key.as_ref()
    }

    pub(crate) fn send<M: Serialize>(&mut self, packet: &Packet<M>, signed: bool) -> io::Result<()> {
        let bytes = frame::encode(packet, if signed { self.key.as_ref() } else { None });
        self.link.write_all(&bytes)?;
        self.link.flush()?;
        self.traffic.sent += bytes.len() as u64;
        Ok(())
    }

    /// The next frame that decodes, or `None` at `deadline`. Frames that do not decode are
    /// counted and skipped; `rejected` gets them, so a caller can tell a peer that answers with
    /// the wrong key from one that does not answer.
    pub(crate) fn receive<M: DeserializeOwned>(
        &mut self,
        deadline: Instant,
        mut rejected: impl FnMut(FrameError, &[u8]),
    ) -> io::Result<Option<Opened<M>>> {
        loop {
            while let Some(raw) = self.frames.pop_front() {
                match frame::decode(&raw, self.key.as_ref()) {
                    Ok(opened) => return Ok(Some(opened)),
                    Err(e) => {
                        self.traffic.rejected += 1;
                        rejected(e, &raw);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let mut buffer = [0u8; 512];
            match self.link.read(&mut buffer) {
                Ok(0) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Ok(n) => {
                    self.traffic.received += n as u64;
                    self.frames.extend(buffer[..n].iter().filter_map(|&b| self.reader.push(b)));
                }
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
