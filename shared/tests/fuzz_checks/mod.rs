//! What the fuzz targets check on each input, shared by `shared/fuzz` (which includes this file)
//! and `tests/fuzz_regressions.rs` (which runs the committed corpus through it).

use sporeprint_shared::Table;
use sporeprint_shared::format::{self, PREAMBLE_LEN};
use sporeprint_shared::sync::frame::{self, FrameReader};
use sporeprint_shared::sync::{Key, Reply, Request};

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Bytes off the serial line: cut into frames and decoded as either side would, paired and not.
/// Nothing may panic, and a frame that decodes must encode back to one that decodes the same.
/// The input is also framed as it is (COBS and a correct CRC), so the fuzzer gets past the
/// checksum into the message decoder. Returns how many requests decoded.
pub fn frame_input(data: &[u8]) -> usize {
    let key = Key::new(&[0x5a; 32]).unwrap();
    let mut reader = FrameReader::new();
    let mut decoded = 0;
    for frame in data.iter().filter_map(|&b| reader.push(b)) {
        decoded += frame_body(&frame, &key);
    }
    let mut body = data.to_vec();
    body.extend_from_slice(&CRC.checksum(data).to_le_bytes());
    decoded + frame_body(&cobs::encode_vec(&body), &key)
}

fn frame_body(frame: &[u8], key: &Key) -> usize {
    let mut decoded = 0;
    for signing in [None, Some(key)] {
        if let Ok(opened) = frame::decode::<Request>(frame, signing) {
            let again = frame::encode(&opened.packet, signing);
            let reopened = frame::decode::<Request>(&again[1..again.len() - 1], signing).unwrap();
            assert_eq!(reopened.packet, opened.packet);
            decoded += 1;
        }
        let _ = frame::decode::<Reply>(frame, signing);
    }
    decoded
}

/// A table file (or a table received in a sync): nothing may panic, and a table that decodes is
/// valid and encodes back to the same table. The input is also tried with its preamble's length
/// and CRC fixed up, to reach the payload decoder. Returns how many tables decoded.
pub fn table_input(data: &[u8]) -> usize {
    let mut decoded = table_bytes(data);
    if data.len() >= PREAMBLE_LEN {
        let mut fixed = data.to_vec();
        fixed[6..10].copy_from_slice(&((data.len() - PREAMBLE_LEN) as u32).to_le_bytes());
        fixed[10..14].copy_from_slice(&CRC.checksum(&data[PREAMBLE_LEN..]).to_le_bytes());
        decoded += table_bytes(&fixed);
    }
    decoded
}

fn table_bytes(data: &[u8]) -> usize {
    let Ok(table): Result<Table, _> = format::decode(data) else { return 0 };
    table.validate().unwrap();
    assert_eq!(format::decode(&format::encode(&table)).unwrap(), table);
    1
}
