//! Frames on the wire.
//!
//! ```text
//! frame = 0x00 ++ COBS(body ++ crc32(body)) ++ 0x00
//! body  = flags: u8 ++ postcard(Packet) ++ [HMAC-SHA256(key, flags ++ postcard(Packet)) if flags & SIGNED]
//! ```
//!
//! COBS leaves no zero byte inside a frame, so a reader that lost its place (garbage on the line,
//! a cut cable) finds the next frame at the next zero; the leading zero ends any garbage sent
//! before the frame, so it cannot run into it. The CRC catches line noise; the HMAC,
//! when the two ends share a key, catches everything else.

use alloc::vec::Vec;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use super::message::Packet;

/// Most bytes of one frame on the wire, delimiter included. A reader drops anything longer
/// unread, so a stream of garbage without zeros cannot make it buffer without bound.
pub const MAX_FRAME_LEN: usize = 1400;

const SIGNED: u8 = 1;
const TAG_LEN: usize = 32;
const CRC_LEN: usize = 4;

/// The pre-shared pairing key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// Shortest key accepted: 128 bits.
    pub const MIN_LEN: usize = 16;

    pub fn new(bytes: &[u8]) -> Result<Key, FrameError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(FrameError::ShortKey { len: bytes.len() });
        }
        Ok(Key(bytes.to_vec()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(..)")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a COBS frame")]
    Cobs,
    #[error("frame of {len} bytes is too short to hold a message and its checksum")]
    TooShort { len: usize },
    #[error("frame checksum mismatch: damaged on the line")]
    Checksum,
    #[error("frame is not signed, and this end is paired")]
    Unsigned,
    #[error("frame signature does not match this end's key")]
    BadSignature,
    #[error("frame holds no valid message")]
    Malformed,
    #[error("a pairing key must be at least 16 bytes; this one is {len}")]
    ShortKey { len: usize },
}

/// The bytes to send for `packet`, signed when `key` is given.
pub fn encode<M: Serialize>(packet: &Packet<M>, key: Option<&Key>) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    body.push(if key.is_some() { SIGNED } else { 0 });
    let mut body = postcard::to_extend(packet, body).expect("serialising into memory cannot fail");
    if let Some(key) = key {
        let mut mac = key.mac();
        mac.update(&body);
        body.extend_from_slice(&mac.finalize().into_bytes());
    }
    let crc = crate::format::crc32(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let mut wire = Vec::with_capacity(cobs::max_encoding_length(body.len()) + 2);
    wire.push(0);
    wire.extend_from_slice(&cobs::encode_vec(&body));
    wire.push(0);
    wire
}

/// What a received frame says, and whether it was signed with the key.
#[derive(Debug, PartialEq)]
pub struct Opened<M> {
    pub packet: Packet<M>,
    pub signed: bool,
}

/// Decodes one frame (without its zero delimiter). With `key`, a frame must carry a valid
/// signature; without, a signature is not checked (this end is not paired).
pub fn decode<M: DeserializeOwned>(frame: &[u8], key: Option<&Key>) -> Result<Opened<M>, FrameError> {
    let body = cobs::decode_vec(frame).map_err(|_| FrameError::Cobs)?;
    if body.len() < 1 + CRC_LEN {
        return Err(FrameError::TooShort { len: body.len() });
    }
    let (body, crc) = body.split_at(body.len() - CRC_LEN);
    if crate::format::crc32(body).to_le_bytes() != crc {
        return Err(FrameError::Checksum);
    }
    let signed = body[0] & SIGNED != 0;
    let message = match (signed, key) {
        (false, Some(_)) => return Err(FrameError::Unsigned),
        (true, _) if body.len() < 1 + TAG_LEN => return Err(FrameError::TooShort { len: body.len() }),
        (true, key) => {
            let (signed_part, tag) = body.split_at(body.len() - TAG_LEN);
            if let Some(key) = key {
                let mut mac = key.mac();
                mac.update(signed_part);
                mac.verify_slice(tag).map_err(|_| FrameError::BadSignature)?;
            }
            &signed_part[1..]
        }
        (false, None) => &body[1..],
    };
    let packet = postcard::from_bytes(message).map_err(|_| FrameError::Malformed)?;
    Ok(Opened { packet, signed })
}

/// Cuts a byte stream into frames at zero bytes, dropping oversized runs.
#[derive(Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// Inside a run longer than [`MAX_FRAME_LEN`]: dropped up to the next zero.
    overflowed: bool,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Feeds one byte; returns a complete frame (without its delimiter) when `byte` ends one.
    pub fn push(&mut self, byte: u8) -> Option<Vec<u8>> {
        if byte != 0 {
            if self.buffer.len() < MAX_FRAME_LEN {
                self.buffer.push(byte);
            } else {
                self.overflowed = true;
                self.buffer.clear();
            }
            return None;
        }
        let frame = core::mem::take(&mut self.buffer);
        let complete = !core::mem::replace(&mut self.overflowed, false) && !frame.is_empty();
        complete.then_some(frame)
    }
}
