//! The file format: round trips, and refusal of every corruption and truncation.

mod common;

use common::random_table;
use sporeprint_shared::format::{self, FormatError, MAGIC, PREAMBLE_LEN, VERSION};
use sporeprint_shared::store::{self, StoreError};
use sporeprint_shared::table::MAX_SPECIES;
use sporeprint_shared::{ModelFingerprint, TableError};

#[test]
fn round_trip_keeps_everything() {
    let mut table = random_table(1, 12, 32);
    table.set_open_set_threshold(0.71);
    let bytes = format::encode(&table);
    assert_eq!(&bytes[..4], &MAGIC);
    assert_eq!(format::decode(&bytes).unwrap(), table);
}

#[test]
fn every_single_byte_corruption_is_refused() {
    let bytes = format::encode(&random_table(2, 3, 8));
    let mut checked = 0;
    for at in 0..bytes.len() {
        for flip in 1..=255u8 {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= flip;
            let result = format::decode(&corrupt);
            assert!(result.is_err(), "byte {at} xor {flip:#04x} was accepted");
            checked += 1;
        }
    }
    assert_eq!(checked, bytes.len() * 255);
}

#[test]
fn every_truncation_is_refused() {
    let bytes = format::encode(&random_table(3, 3, 8));
    for len in 0..bytes.len() {
        let err = format::decode(&bytes[..len]).unwrap_err();
        match err {
            FormatError::TooShort { .. } => assert!(len < PREAMBLE_LEN),
            FormatError::Truncated { expected, found } => {
                assert_eq!(expected, bytes.len() - PREAMBLE_LEN);
                assert_eq!(found, len - PREAMBLE_LEN);
            }
            other => panic!("truncation to {len} bytes gave {other:?}"),
        }
    }
}

#[test]
fn each_check_has_its_own_error() {
    let bytes = format::encode(&random_table(4, 2, 8));
    let with = |at: usize, value: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + value.len()].copy_from_slice(value);
        format::decode(&b).unwrap_err()
    };
    assert_eq!(with(0, b"PNG\0"), FormatError::WrongMagic { found: *b"PNG\0" });
    assert_eq!(with(4, &(VERSION + 1).to_le_bytes()), FormatError::NewerVersion { found: VERSION + 1 });
    assert!(with(4, &(VERSION + 1).to_le_bytes()).to_string().contains("upgrade sporeprint"));
    assert_eq!(with(4, &0u16.to_le_bytes()), FormatError::UnsupportedVersion { found: 0 });
    assert!(matches!(with(PREAMBLE_LEN + 3, &[0xff]), FormatError::BadChecksum { .. }));
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(format::decode(&longer).unwrap_err(), FormatError::TrailingBytes { extra: 1 });
}

#[test]
fn a_file_with_more_species_than_a_table_holds_is_refused_before_it_is_kept() {
    let table = random_table(5, 1, 8);
    let many = vec![table.entries()[0].clone(); MAX_SPECIES + 3];
    let err = format::decode(&sealed(table.header(), &many)).unwrap_err();
    assert_eq!(err, FormatError::TooManySpecies { found: MAX_SPECIES + 3, capacity: MAX_SPECIES });
}

/// A file with a correct preamble and CRC around `header` and `entries`, as a buggy or hostile
/// writer could produce.
fn sealed(header: &sporeprint_shared::Header, entries: &[sporeprint_shared::Entry]) -> Vec<u8> {
    let no_tombstones: &[sporeprint_shared::Tombstone] = &[];
    file_of(VERSION, &postcard::to_allocvec(&(header, entries, no_tombstones)).unwrap())
}

/// A file of format `version` around `payload`, preamble and CRC correct.
fn file_of(version: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn checksum_valid_files_with_invalid_contents_are_refused() {
    let table = random_table(6, 3, 8);
    let (header, good) = (table.header(), table.entries().to_vec());
    assert_eq!(format::decode(&sealed(header, &good)).unwrap(), table, "the sealing is faithful");

    let refused = |entries: Vec<sporeprint_shared::Entry>| format::decode(&sealed(header, &entries)).unwrap_err();
    let mut wrong_dim = good.clone();
    wrong_dim[1].sources[0].prototype.vector.push(0.0);
    assert!(matches!(
        refused(wrong_dim),
        FormatError::Invalid(TableError::DimensionMismatch { expected: 8, found: 9 })
    ));
    let mut not_unit = good.clone();
    not_unit[0].sources[0].prototype.vector[0] += 0.5;
    assert!(refused(not_unit).to_string().contains("not unit length"));
    let mut duplicate = good.clone();
    duplicate[2].name = duplicate[0].name.clone();
    assert!(refused(duplicate).to_string().contains("name is used by an earlier entry"));
    let mut nan = good.clone();
    nan[0].sources[0].prototype.vector[3] = f32::NAN;
    assert!(refused(nan).to_string().contains("NaN"));
    let mut no_shots = good.clone();
    no_shots[1].sources[0].prototype.shots = 0;
    assert!(refused(no_shots).to_string().contains("no shots"));
    let mut no_sources = good.clone();
    no_sources[0].sources.clear();
    // Caught while decoding (an entry's prototype is built from its sources), not by validation.
    assert!(matches!(refused(no_sources), FormatError::Malformed(_)));
}

#[test]
fn files_name_themselves_in_errors_and_check_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prototypes.bin");
    let table = random_table(7, 4, 16);
    store::save(&path, &table).unwrap();
    let model = table.header().model_fingerprint;
    assert_eq!(store::load_for_model(&path, &model, 16).unwrap(), table);

    let other = ModelFingerprint::of_bytes(b"another model");
    let err = store::load_for_model(&path, &other, 16).unwrap_err();
    assert!(matches!(err, StoreError::WrongModel { .. }));
    let message = err.to_string();
    assert!(message.contains("prototypes.bin") && message.contains("built for model"), "{message}");

    let err = store::load_for_model(&path, &model, 64).unwrap_err();
    assert!(matches!(err, StoreError::WrongDimension { table: 16, model: 64, .. }), "{err}");

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let message = store::load(&path).unwrap_err().to_string();
    assert!(message.contains("prototypes.bin") && message.contains("truncated"), "{message}");

    let missing = dir.path().join("missing.bin");
    assert!(store::load(&missing).unwrap_err().to_string().contains("missing.bin"));
}

#[test]
fn saving_replaces_the_file_and_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table.bin");
    store::save(&path, &random_table(8, 3, 8)).unwrap();
    let newer = random_table(9, 5, 8);
    store::save(&path, &newer).unwrap();
    assert_eq!(store::load(&path).unwrap(), newer);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["table.bin"]);
}

/// Reads a one-species table by hand, following FORMAT.md byte by byte, without serde: the
/// documentation is what another program would rely on.
#[test]
fn the_documented_layout_is_the_real_one() {
    use sporeprint_shared::table::NewSpecies;
    use sporeprint_shared::{Edibility, Name, Origin, Table};
    let mut table = Table::new(common::header(3));
    table
        .add_species(
            NewSpecies {
                name: Name::new("cep").unwrap(),
                scientific_name: Some(Name::new("Boletus edulis").unwrap()),
                genus: Some(Name::new("Boletus").unwrap()),
                edibility: Edibility::Edible,
                origin: Origin::Device(300),
            },
            &[vec![0.0, 3.0, 4.0]],
        )
        .unwrap();
    let bytes = format::encode(&table);
    let mut reader = Reader { bytes: &bytes, at: 0 };
    let mut take = |n: usize| reader.take(n);
    assert_eq!(take(4), b"SPPT");
    assert_eq!(take(2), &[3, 0]);
    let length = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;
    assert_eq!(length, bytes.len() - 14);
    let crc = u32::from_le_bytes(take(4).try_into().unwrap());
    assert_eq!(crc, crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes[14..]));
    let f32_at = |b: &[u8]| f32::from_le_bytes(b.try_into().unwrap());
    // header
    assert_eq!(take(1), &[3], "embedding_dim varint");
    assert_eq!(take(1), &[0], "metric: euclidean");
    assert_eq!(take(32), &table.header().model_fingerprint.0);
    assert_eq!(take(1), &[224], "input_size varint, low 7 bits + continuation");
    assert_eq!(take(1), &[1]);
    assert_eq!(take(2), &[128, 2], "resize_shorter_to = 256");
    assert_eq!(f32_at(take(4)), 127.0 / 255.0, "mean[0]");
    take(8 + 12);
    assert_eq!(take(1), &[1], "filter: triangle");
    assert_eq!(f32_at(take(4)), 2.0, "open_set_threshold");
    assert_eq!(f32_at(take(4)), 0.1, "lookalike_margin");
    assert_eq!(f32_at(take(4)), 0.1, "temperature");
    assert_eq!(take(1), &[1], "revision");
    // entries
    assert_eq!(take(1), &[1], "one entry");
    let mut id = 0u64;
    for shift in (0..).step_by(7) {
        let byte = take(1)[0];
        id |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    assert_eq!(id, table.entries()[0].id.0);
    assert_eq!(take(4), b"\x03cep");
    assert_eq!(take(16), b"\x01\x0eBoletus edulis");
    assert_eq!(take(9), b"\x01\x07Boletus", "genus");
    assert_eq!(take(1), &[0], "edibility: edible");
    assert_eq!(take(1), &[1], "one source");
    assert_eq!(take(3), &[1, 0xac, 0x02], "source origin: device 300");
    assert_eq!(take(1), &[3], "vector length");
    assert_eq!([f32_at(take(4)), f32_at(take(4)), f32_at(take(4))], [0.0, 0.6, 0.8]);
    assert_eq!(f32_at(take(4)), 1.0, "mean_norm");
    assert_eq!(take(1), &[1], "shots");
    assert_eq!(take(1), &[1], "revision");
    assert_eq!(take(3), &[1, 0xac, 0x02], "origin: device 300");
    assert_eq!(take(1), &[0], "no tombstones");
    assert_eq!(reader.at, bytes.len());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        self.at += n;
        &self.bytes[self.at - n..self.at]
    }
}

/// Version 1 files (one prototype per entry, no tombstones) are still read: each entry becomes one
/// source from its origin, so a table saved before sync existed keeps working.
#[test]
fn version_1_files_are_still_read() {
    #[derive(serde::Serialize)]
    struct EntryV1<'a> {
        id: sporeprint_shared::SpeciesId,
        name: &'a sporeprint_shared::Name,
        scientific_name: &'a Option<sporeprint_shared::Name>,
        edibility: sporeprint_shared::Edibility,
        prototype: &'a sporeprint_shared::prototype::Prototype,
        revision: u32,
        origin: sporeprint_shared::Origin,
    }
    let table = random_table(10, 4, 8);
    let entries: Vec<_> = table
        .entries()
        .iter()
        .map(|e| EntryV1 {
            id: e.id,
            name: &e.name,
            scientific_name: &e.scientific_name,
            edibility: e.edibility,
            prototype: &e.prototype,
            revision: e.revision,
            origin: e.origin,
        })
        .collect();
    let bytes = file_of(1, &postcard::to_allocvec(&(table.header(), entries)).unwrap());
    // The same table, each genus taken from its binomial.
    let read = format::decode(&bytes).unwrap();
    let named: Vec<_> = read.entries().iter().filter(|e| e.scientific_name.is_some()).collect();
    assert!(!named.is_empty() && named.iter().all(|e| e.genus.as_ref().map(|g| g.as_str()) == Some("Fungus")));
    let without: Vec<_> =
        read.entries().iter().map(|e| sporeprint_shared::Entry { genus: None, ..e.clone() }).collect();
    assert_eq!((read.header(), &without[..]), (table.header(), table.entries()));
}

/// Version 2 had no genus: a table from then loads, each genus taken from its binomial.
#[test]
fn version_2_files_are_still_read_with_the_genus_of_the_binomial() {
    #[derive(serde::Serialize)]
    struct EntryV2<'a> {
        id: sporeprint_shared::SpeciesId,
        name: &'a sporeprint_shared::Name,
        scientific_name: &'a Option<sporeprint_shared::Name>,
        edibility: sporeprint_shared::Edibility,
        sources: &'a [sporeprint_shared::Source],
        revision: u32,
        origin: sporeprint_shared::Origin,
    }
    let mut table = random_table(12, 6, 8);
    let names = ["Amanita phalloides", "Boletus edulis", "amanita lowercase", "Monomial"];
    for scientific in names {
        // The first entry is always one not yet given a name here (they go to the end).
        let name = table.entries()[0].name.to_string();
        let mut entry = table.remove(&name).unwrap();
        entry.scientific_name = Some(sporeprint_shared::Name::new(scientific).unwrap());
        table.insert(entry).unwrap();
    }
    let entries: Vec<_> = table
        .entries()
        .iter()
        .map(|e| EntryV2 {
            id: e.id,
            name: &e.name,
            scientific_name: &e.scientific_name,
            edibility: e.edibility,
            sources: &e.sources,
            revision: e.revision,
            origin: e.origin,
        })
        .collect();
    let bytes = file_of(2, &postcard::to_allocvec(&(table.header(), entries, table.tombstones())).unwrap());
    let read = format::decode(&bytes).unwrap();
    let genus = |scientific: &str| {
        let entry =
            read.entries().iter().find(|e| e.scientific_name.as_ref().is_some_and(|n| n.as_str() == scientific));
        entry.unwrap().genus.as_ref().map(|g| g.to_string())
    };
    assert_eq!(genus("Amanita phalloides").as_deref(), Some("Amanita"));
    assert_eq!(genus("Boletus edulis").as_deref(), Some("Boletus"));
    assert_eq!(genus("amanita lowercase"), None, "not a binomial's capitalised genus");
    assert_eq!(genus("Monomial"), None, "one word is no binomial");
    // Apart from the genus, the table is the same one.
    let mut without: Vec<_> = read.entries().to_vec();
    without.iter_mut().for_each(|e| e.genus = None);
    assert_eq!(without, table.entries());
}

/// Found by fuzzing (`tests/fuzz/table_decoder/crash-nan-preprocess-std`): a checksum-valid file
/// whose preprocessing had a NaN standard deviation was accepted; images would have become NaN.
#[test]
fn a_header_with_unusable_preprocessing_is_refused() {
    let table = random_table(11, 2, 8);
    let entries = table.entries().to_vec();
    type Spoil = fn(&mut sporeprint_shared::PreprocessSpec);
    let cases: [(Spoil, &str); 5] = [
        (|p| p.std[0] = f32::NAN, "standard deviation"),
        (|p| p.std[2] = 0.0, "standard deviation"),
        (|p| p.mean[1] = f32::INFINITY, "mean"),
        (|p| p.input_size = 0, "input size is 0"),
        (|p| p.resize_shorter_to = p.input_size - 1, "resized smaller"),
    ];
    for (spoil, expected) in cases {
        let mut header = table.header().clone();
        spoil(&mut header.preprocess);
        let err = format::decode(&sealed(&header, &entries)).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    let mut header = table.header().clone();
    header.lookalike_margin = f32::INFINITY;
    let err = format::decode(&sealed(&header, &entries)).unwrap_err();
    assert!(err.to_string().contains("finite"), "{err}");
}

/// Found by fuzzing (`tests/fuzz/table_decoder/crash-sources-of-two-dimensions`): an entry whose
/// sources had different dimensions panicked while its prototype was combined, so a hostile
/// sync peer could crash a device. Now refused, like a source that is itself invalid.
#[test]
fn sources_that_cannot_be_combined_are_refused() {
    let table = random_table(12, 3, 8);
    let header = table.header();
    let mut entries = table.entries().to_vec();
    let mut other = entries[0].sources[0].clone();
    other.origin = sporeprint_shared::Origin::Device(1);
    other.prototype.vector.truncate(4);
    entries[0].sources.push(other.clone());
    assert!(matches!(format::decode(&sealed(header, &entries)), Err(FormatError::Malformed(_))));

    let mut entries = table.entries().to_vec();
    other.prototype = entries[1].sources[0].prototype.clone();
    other.prototype.shots = u32::MAX;
    entries[1].sources.push(other);
    assert!(matches!(format::decode(&sealed(header, &entries)), Err(FormatError::Malformed(_))));
}
