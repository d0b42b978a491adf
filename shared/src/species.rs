//! Who a prototype is: its stable id, names, edibility and where it was enrolled.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest species name, in bytes (UTF-8). Small enough for a 240-pixel-wide screen and a
/// fixed-size `heapless::String`.
pub const NAME_MAX_BYTES: usize = 64;

/// A species name as people type it: non-empty, at most [`NAME_MAX_BYTES`] bytes, no control
/// characters, no leading or trailing whitespace. Validated on construction and on decoding.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "heapless::String<NAME_MAX_BYTES>")]
pub struct Name(heapless::String<NAME_MAX_BYTES>);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("species name is empty")]
    Empty,
    #[error("species name is {len} bytes long; at most {NAME_MAX_BYTES} are allowed")]
    TooLong { len: usize },
    #[error("species name contains a control character at byte {position}")]
    ControlCharacter { position: usize },
    #[error("species name starts or ends with whitespace")]
    SurroundingWhitespace,
}

impl Name {
    pub fn new(name: &str) -> Result<Name, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some((position, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
            return Err(NameError::ControlCharacter { position });
        }
        if name.trim() != name {
            return Err(NameError::SurroundingWhitespace);
        }
        let inner = heapless::String::try_from(name).map_err(|_| NameError::TooLong { len: name.len() })?;
        Ok(Name(inner))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The genus a binomial scientific name starts with ("Amanita" of "Amanita phalloides"):
    /// what tables older than format version 3, which did not store the genus, are given.
    pub fn genus_of_binomial(&self) -> Option<Name> {
        let mut words = self.as_str().split_whitespace();
        let genus = words.next()?;
        let capitalised = genus.chars().next().is_some_and(char::is_uppercase);
        (capitalised && words.next().is_some()).then(|| Name::new(genus).ok()).flatten()
    }
}

impl TryFrom<heapless::String<NAME_MAX_BYTES>> for Name {
    type Error = NameError;
    fn try_from(value: heapless::String<NAME_MAX_BYTES>) -> Result<Self, NameError> {
        Name::new(&value)
    }
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Name::new(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What eating it does. Coarse on purpose: it drives the badge and the warnings on screen, it is
/// not a field guide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edibility {
    Edible,
    Inedible,
    Poisonous,
    Deadly,
    Unknown,
}

impl Edibility {
    pub const ALL: [Edibility; 5] =
        [Edibility::Edible, Edibility::Inedible, Edibility::Poisonous, Edibility::Deadly, Edibility::Unknown];

    /// How much harm eating it may do, for ranking: deadly, poisonous, unknown (which may be
    /// either), inedible, edible.
    pub fn danger(self) -> u8 {
        match self {
            Edibility::Deadly => 4,
            Edibility::Poisonous => 3,
            Edibility::Unknown => 2,
            Edibility::Inedible => 1,
            Edibility::Edible => 0,
        }
    }

    /// Poisonous or deadly: what a look-alike warning is about.
    pub fn is_dangerous(self) -> bool {
        matches!(self, Edibility::Poisonous | Edibility::Deadly)
    }

    /// As a forager reads it: "deadly poisonous" rather than the label "deadly".
    pub fn in_words(self) -> &'static str {
        match self {
            Edibility::Deadly => "deadly poisonous",
            Edibility::Unknown => "of unknown edibility",
            other => other.as_str(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Edibility::Edible => "edible",
            Edibility::Inedible => "inedible",
            Edibility::Poisonous => "poisonous",
            Edibility::Deadly => "deadly",
            Edibility::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Edibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown edibility; expected one of edible, inedible, poisonous, deadly, unknown")]
pub struct EdibilityError;

impl FromStr for Edibility {
    type Err = EdibilityError;
    fn from_str(s: &str) -> Result<Self, EdibilityError> {
        Edibility::ALL.into_iter().find(|e| e.as_str().eq_ignore_ascii_case(s.trim())).ok_or(EdibilityError)
    }
}

/// Where an entry was last enrolled: the host's training set, or a device in the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Origin {
    Host,
    Device(u32),
}

/// The identity of a species entry, stable across renames and across host/device syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpeciesId(pub u64);

impl SpeciesId {
    /// The id a new entry of `name` enrolled at `origin` gets: the same inputs give the same id on
    /// every machine, so a host and a device that enroll the same species agree on its id.
    /// `salt` resolves the rare clash with an existing id (e.g. of a renamed entry).
    pub fn derive(name: &Name, origin: Origin, salt: u32) -> SpeciesId {
        let mut hash = Sha256::new();
        hash.update(name.as_str().as_bytes());
        match origin {
            Origin::Host => hash.update([0]),
            Origin::Device(device) => {
                hash.update([1]);
                hash.update(device.to_le_bytes());
            }
        }
        hash.update(salt.to_le_bytes());
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        SpeciesId(u64::from_le_bytes(first))
    }
}

impl fmt::Display for SpeciesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(Name::new("Amanita phalloides").unwrap().as_str(), "Amanita phalloides");
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new("a\nb"), Err(NameError::ControlCharacter { position: 1 }));
        assert_eq!(Name::new(" cep"), Err(NameError::SurroundingWhitespace));
        let long = "x".repeat(65);
        assert_eq!(Name::new(&long), Err(NameError::TooLong { len: 65 }));
        assert!(Name::new(&long[..64]).is_ok());
        // 32 two-byte characters are 64 bytes: allowed; one more is not.
        assert!(Name::new(&"é".repeat(32)).is_ok());
        assert_eq!(Name::new(&"é".repeat(33)), Err(NameError::TooLong { len: 66 }));
    }

    #[test]
    fn edibility_parses_its_own_display() {
        for e in Edibility::ALL {
            assert_eq!(e.as_str().parse::<Edibility>(), Ok(e));
        }
        assert_eq!("Poisonous".parse::<Edibility>(), Ok(Edibility::Poisonous));
        assert!("tasty".parse::<Edibility>().is_err());
        assert!(Edibility::Deadly.is_dangerous() && !Edibility::Inedible.is_dangerous());
    }

    #[test]
    fn ids_depend_on_name_origin_and_salt() {
        let cep = Name::new("cep").unwrap();
        let id = SpeciesId::derive(&cep, Origin::Host, 0);
        assert_eq!(id, SpeciesId::derive(&cep, Origin::Host, 0));
        assert_ne!(id, SpeciesId::derive(&cep, Origin::Device(1), 0));
        assert_ne!(id, SpeciesId::derive(&cep, Origin::Host, 1));
        assert_ne!(id, SpeciesId::derive(&Name::new("chanterelle").unwrap(), Origin::Host, 0));
    }
}
