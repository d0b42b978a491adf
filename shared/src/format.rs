//! The prototype table file format (documented for other programs in `shared/FORMAT.md`).
//!
//! ```text
//! offset size  field
//! 0      4     magic "SPPT"
//! 4      2     format version, u16 little-endian
//! 6      4     payload length in bytes, u32 little-endian
//! 10     4     CRC-32 (ISO-HDLC, as zlib's crc32) of the payload, u32 little-endian
//! 14     n     payload: postcard encoding of { header, entries, tombstones }
//! ```
//!
//! Older files are still read. Version 2 entries have no genus: it is taken from the first word
//! of a binomial scientific name. Version 1 entries also have a single prototype and no
//! tombstones: each entry becomes one source from its origin.
//!
//! Every field is checked on load, so any single corrupted byte and any truncation is refused
//! with an error that says which check failed, never mis-read.

use crate::prototype::Prototype;
use crate::species::{Edibility, Name, Origin, SpeciesId};
use crate::table::{Entry, Header, MAX_SPECIES, NewSpecies, Source, Table, TableError, Tombstone};
use alloc::vec::Vec;
use core::marker::PhantomData;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

pub const MAGIC: [u8; 4] = *b"SPPT";
pub const VERSION: u16 = 3;
/// The oldest version still read.
pub const OLDEST_VERSION: u16 = 1;
pub const PREAMBLE_LEN: usize = 14;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The checksum of the format (CRC-32 ISO-HDLC, zlib's `crc32`); the sync protocol's frames and
/// transfers use the same one.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("file is {len} bytes, shorter than the {PREAMBLE_LEN}-byte preamble: truncated or not a table")]
    TooShort { len: usize },
    #[error("not a sporeprint prototype table (magic bytes {found:02x?}, expected \"SPPT\")")]
    WrongMagic { found: [u8; 4] },
    #[error("table format version {found} is newer than this program understands ({VERSION}): upgrade sporeprint")]
    NewerVersion { found: u16 },
    #[error(
        "table format version {found} is not supported (this program reads versions {OLDEST_VERSION} to {VERSION})"
    )]
    UnsupportedVersion { found: u16 },
    #[error("truncated: the preamble announces {expected} payload bytes but only {found} are present")]
    Truncated { expected: usize, found: usize },
    #[error("{extra} unexpected bytes after the payload")]
    TrailingBytes { extra: usize },
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupted")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("payload cannot be decoded: {0}")]
    Malformed(postcard::Error),
    #[error("the file holds {found} species; this table holds at most {capacity}")]
    TooManySpecies { found: usize, capacity: usize },
    #[error(transparent)]
    Invalid(#[from] TableError),
}

#[derive(Serialize)]
struct PayloadRef<'a> {
    header: &'a Header,
    entries: &'a [Entry],
    tombstones: &'a [Tombstone],
}

#[derive(Deserialize)]
struct Payload {
    header: Header,
    entries: Entries<Entry>,
    tombstones: Vec<Tombstone>,
}

#[derive(Deserialize)]
struct PayloadV1 {
    header: Header,
    entries: Entries<EntryV1>,
}

#[derive(Deserialize)]
struct PayloadV2 {
    header: Header,
    entries: Entries<EntryV2>,
    tombstones: Vec<Tombstone>,
}

/// A version 2 entry: no genus.
#[derive(Deserialize)]
struct EntryV2 {
    id: SpeciesId,
    name: Name,
    scientific_name: Option<Name>,
    edibility: Edibility,
    sources: Vec<Source>,
    revision: u32,
    origin: Origin,
}

impl TryFrom<EntryV2> for Entry {
    type Error = crate::prototype::ShotError;
    fn try_from(e: EntryV2) -> Result<Entry, Self::Error> {
        let species = NewSpecies {
            genus: e.scientific_name.as_ref().and_then(Name::genus_of_binomial),
            name: e.name,
            scientific_name: e.scientific_name,
            edibility: e.edibility,
            origin: e.origin,
        };
        Entry::new(e.id, species, e.sources, e.revision)
    }
}

/// A version 1 entry: one prototype, whoever took its shots, no genus.
#[derive(Deserialize)]
struct EntryV1 {
    id: SpeciesId,
    name: Name,
    scientific_name: Option<Name>,
    edibility: Edibility,
    prototype: Prototype,
    revision: u32,
    origin: Origin,
}

impl TryFrom<EntryV1> for Entry {
    type Error = crate::prototype::ShotError;
    /// As the version 2 entry it would have been: its shots one source from its origin.
    fn try_from(e: EntryV1) -> Result<Entry, Self::Error> {
        let sources = alloc::vec![Source { origin: e.origin, prototype: e.prototype }];
        let v2 = EntryV2 {
            id: e.id,
            name: e.name,
            scientific_name: e.scientific_name,
            edibility: e.edibility,
            sources,
            revision: e.revision,
            origin: e.origin,
        };
        v2.try_into()
    }
}

/// Entries decoded from records of type `R`, at most [`MAX_SPECIES`] of them: what is beyond is
/// counted, not kept, so a hostile file cannot make the reader allocate without bound.
struct Entries<R> {
    entries: Vec<Entry>,
    overflow: usize,
    record: PhantomData<R>,
}

impl<R> Entries<R> {
    /// The entries, unless there were too many.
    fn into_entries(self) -> Result<Vec<Entry>, FormatError> {
        if self.overflow > 0 {
            return Err(FormatError::TooManySpecies { found: MAX_SPECIES + self.overflow, capacity: MAX_SPECIES });
        }
        Ok(self.entries)
    }
}

impl<'de, R> Deserialize<'de> for Entries<R>
where
    R: Deserialize<'de> + TryInto<Entry>,
    R::Error: core::fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<R>(PhantomData<R>);
        impl<'de, R> Visitor<'de> for EntriesVisitor<R>
        where
            R: Deserialize<'de> + TryInto<Entry>,
            R::Error: core::fmt::Display,
        {
            type Value = Entries<R>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("a sequence of species entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries<R>, A::Error> {
                let mut decoded = Entries { entries: Vec::new(), overflow: 0, record: PhantomData };
                while let Some(record) = seq.next_element::<R>()? {
                    let entry = record.try_into().map_err(serde::de::Error::custom)?;
                    if decoded.entries.len() < MAX_SPECIES {
                        decoded.entries.push(entry);
                    } else {
                        decoded.overflow += 1;
                    }
                }
                Ok(decoded)
            }
        }
        deserializer.deserialize_seq(EntriesVisitor(PhantomData))
    }
}

/// The file's bytes for `table`.
pub fn encode(table: &Table) -> Vec<u8> {
    let payload = postcard::to_allocvec(&PayloadRef {
        header: table.header(),
        entries: table.entries(),
        tombstones: table.tombstones(),
    })
    .expect("serialising into memory cannot fail");
    let mut bytes = Vec::with_capacity(PREAMBLE_LEN + payload.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

/// Reads a table from the file's bytes, checking every field (see the module docs).
pub fn decode(bytes: &[u8]) -> Result<Table, FormatError> {
    let Some((preamble, payload)) = bytes.split_first_chunk::<PREAMBLE_LEN>() else {
        return Err(FormatError::TooShort { len: bytes.len() });
    };
    let field = |at: usize| u32::from_le_bytes(preamble[at..at + 4].try_into().expect("4 bytes"));
    let magic: [u8; 4] = preamble[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(FormatError::WrongMagic { found: magic });
    }
    let version = match u16::from_le_bytes([preamble[4], preamble[5]]) {
        found if found > VERSION => return Err(FormatError::NewerVersion { found }),
        found if found < OLDEST_VERSION => return Err(FormatError::UnsupportedVersion { found }),
        found => found,
    };
    let expected = field(6) as usize;
    if payload.len() < expected {
        return Err(FormatError::Truncated { expected, found: payload.len() });
    }
    if payload.len() > expected {
        return Err(FormatError::TrailingBytes { extra: payload.len() - expected });
    }
    let (stored, computed) = (field(10), crc32(payload));
    if stored != computed {
        return Err(FormatError::BadChecksum { stored, computed });
    }
    let (header, entries, tombstones) = if version == 1 {
        let decoded: PayloadV1 = read_payload(payload)?;
        (decoded.header, decoded.entries.into_entries()?, Vec::new())
    } else if version == 2 {
        let decoded: PayloadV2 = read_payload(payload)?;
        (decoded.header, decoded.entries.into_entries()?, decoded.tombstones)
    } else {
        let decoded: Payload = read_payload(payload)?;
        (decoded.header, decoded.entries.into_entries()?, decoded.tombstones)
    };
    let table = Table::from_parts(header, entries, tombstones);
    table.validate()?;
    Ok(table)
}

fn read_payload<'de, T: Deserialize<'de>>(payload: &'de [u8]) -> Result<T, FormatError> {
    let (decoded, rest) = postcard::take_from_bytes::<T>(payload).map_err(FormatError::Malformed)?;
    if !rest.is_empty() {
        return Err(FormatError::TrailingBytes { extra: rest.len() });
    }
    Ok(decoded)
}
