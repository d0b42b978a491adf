//! Frames: every message type survives the trip, and damage is refused, not misread.

use sporeprint_shared::sync::frame::{self, FrameError, FrameReader, MAX_FRAME_LEN};
use sporeprint_shared::sync::message::CHUNK_LEN;
use sporeprint_shared::sync::*;
use sporeprint_shared::{ModelFingerprint, sync::Key};

fn snapshot() -> Snapshot {
    Snapshot { len: 123_456, crc: 0xdead_beef }
}

fn summary() -> TableSummary {
    TableSummary { snapshot: snapshot(), revision: 42, species: 200 }
}

fn requests() -> Vec<Request> {
    let model = ModelFingerprint::of_bytes(b"model");
    vec![
        Request::Hello { protocol: PROTOCOL_VERSION, model, nonce: u64::MAX },
        Request::Read { snapshot: snapshot(), offset: 1024 },
        Request::Write { snapshot: snapshot(), apply: Apply::Merge },
        Request::Write { snapshot: snapshot(), apply: Apply::Replace },
        Request::Data { snapshot: snapshot(), offset: 2048, bytes: (0..CHUNK_LEN).map(|i| i as u8).collect() },
        Request::Commit { snapshot: snapshot() },
    ]
}

fn replies() -> Vec<Reply> {
    let model = ModelFingerprint::of_bytes(b"model");
    let mut replies = vec![
        Reply::Hello { protocol: PROTOCOL_VERSION, model, device: 7, table: summary() },
        Reply::Data { snapshot: snapshot(), offset: 0, bytes: vec![0; CHUNK_LEN] },
        Reply::Have { offset: 99 },
        Reply::Applied { table: summary() },
    ];
    let refusals = [
        Refusal::Protocol { host: 1, device: 2 },
        Refusal::OtherModel { device: model },
        Refusal::Changed,
        Refusal::Incomplete { have: 1, len: 2 },
        Refusal::Invalid("bad".into()),
        Refusal::Save("disk full".into()),
        Refusal::Unreadable("corrupt".into()),
        Refusal::Unauthenticated,
        Refusal::OutOfOrder,
    ];
    replies.extend(refusals.into_iter().map(Reply::Refused));
    replies
}

fn through_reader(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut reader = FrameReader::new();
    wire.iter().filter_map(|&b| reader.push(b)).collect()
}

#[test]
fn every_message_type_round_trips_signed_and_unsigned() {
    let key = Key::new(&[7; 32]).unwrap();
    for signing in [None, Some(&key)] {
        for message in requests() {
            let packet = Packet { session: 3, seq: 9, message };
            let wire = frame::encode(&packet, signing);
            assert!(wire.len() <= MAX_FRAME_LEN, "{} bytes", wire.len());
            let zeros: Vec<_> = wire.iter().enumerate().filter(|(_, b)| **b == 0).map(|(i, _)| i).collect();
            assert_eq!(zeros, [0, wire.len() - 1], "delimiters at both ends only");
            let frames = through_reader(&wire);
            let opened = frame::decode::<Request>(&frames[0], signing).unwrap();
            assert_eq!((opened.packet, opened.signed), (packet, signing.is_some()));
        }
        for message in replies() {
            let packet = Packet { session: 3, seq: 9, message };
            let wire = frame::encode(&packet, signing);
            assert!(wire.len() <= MAX_FRAME_LEN);
            let opened = frame::decode::<Reply>(&through_reader(&wire)[0], signing).unwrap();
            assert_eq!(opened.packet, packet);
        }
    }
}

#[test]
fn signatures_are_checked_when_paired() {
    let key = Key::new(&[7; 32]).unwrap();
    let other = Key::new(&[8; 32]).unwrap();
    let packet = Packet { session: 1, seq: 1, message: Request::Commit { snapshot: snapshot() } };
    let unsigned = frame::encode(&packet, None);
    let signed = frame::encode(&packet, Some(&key));
    let body = |wire: &[u8]| wire[1..wire.len() - 1].to_vec();
    assert_eq!(frame::decode::<Request>(&body(&unsigned), Some(&key)).unwrap_err(), FrameError::Unsigned);
    assert_eq!(frame::decode::<Request>(&body(&signed), Some(&other)).unwrap_err(), FrameError::BadSignature);
    // An end without a key reads signed frames (it cannot check them).
    assert!(frame::decode::<Request>(&body(&signed), None).unwrap().signed);
    assert!(Key::new(b"short").is_err());
}

#[test]
fn every_single_byte_corruption_is_refused() {
    let key = Key::new(&[1; 16]).unwrap();
    for signing in [None, Some(&key)] {
        let packet = Packet { session: 5, seq: 6, message: Request::Read { snapshot: snapshot(), offset: 7 } };
        let wire = frame::encode(&packet, signing);
        for at in 0..wire.len() - 1 {
            for flip in 1..=255u8 {
                let mut damaged = wire.clone();
                damaged[at] ^= flip;
                for frame in through_reader(&damaged) {
                    let decoded = frame::decode::<Request>(&frame, signing);
                    assert!(decoded.is_err(), "byte {at} ^ {flip:#04x} was accepted as {decoded:?}");
                }
            }
        }
    }
}

#[test]
fn garbage_is_skipped_up_to_the_next_frame() {
    let packet = Packet { session: 1, seq: 2, message: Request::Commit { snapshot: snapshot() } };
    let frame = frame::encode(&packet, None);
    let mut wire = vec![0x55, 0x00, 0xff, 0x13];
    wire.extend(&frame);
    wire.extend(vec![0xaa; 3 * MAX_FRAME_LEN]);
    wire.push(0);
    wire.extend(&frame);
    let decoded: Vec<_> = through_reader(&wire).iter().filter_map(|f| frame::decode::<Request>(f, None).ok()).collect();
    assert_eq!(decoded.len(), 2);
    assert!(decoded.iter().all(|o| o.packet == packet));
}
