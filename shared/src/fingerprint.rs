//! Which model a prototype table belongs to: the SHA-256 of the ONNX file its embeddings came
//! from. Embeddings of two different models live in unrelated spaces, so a table is only ever
//! used with the model it was computed by.

use core::fmt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelFingerprint(pub [u8; 32]);

impl ModelFingerprint {
    pub fn of_bytes(model: &[u8]) -> ModelFingerprint {
        ModelFingerprint(Sha256::digest(model).into())
    }

    /// SHA-256 of the file at `path`, streamed (models are tens of megabytes).
    #[cfg(feature = "std")]
    pub fn of_file(path: &std::path::Path) -> std::io::Result<ModelFingerprint> {
        let mut file = std::fs::File::open(path)?;
        let mut hash = Sha256::new();
        std::io::copy(&mut file, &mut hash)?;
        Ok(ModelFingerprint(hash.finalize().into()))
    }

    /// The first 12 hex digits: enough to tell models apart in a message.
    pub fn short(&self) -> ShortFingerprint<'_> {
        ShortFingerprint(self)
    }
}

impl fmt::Display for ModelFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ModelFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelFingerprint({self})")
    }
}

pub struct ShortFingerprint<'a>(&'a ModelFingerprint);

impl fmt::Display for ShortFingerprint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.0[..6].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn sha256_of_known_input() {
        let fp = ModelFingerprint::of_bytes(b"abc");
        assert_eq!(format!("{fp}"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(format!("{}", fp.short()), "ba7816bf8f01");
    }
}
