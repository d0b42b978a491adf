//! Tables on disk: atomic saves and checked loads.
//!
//! A save writes a temporary file in the same directory, fsyncs it, renames it over the target
//! and fsyncs the directory: a power cut or a kill at any instant leaves either the old or the
//! new table, never a mix.

use crate::fingerprint::ModelFingerprint;
use crate::format::{self, FormatError};
use crate::table::{EntryStore, PrototypeTable};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::{fs, io};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Format { path: PathBuf, source: FormatError },
    #[error(
        "{}: this table was built for model {table} but the model in use is {model}; \
         use the table that came with the model, or rebuild it with `sporeprint export`",
        path.display()
    )]
    WrongModel { path: PathBuf, table: ModelFingerprint, model: ModelFingerprint },
    #[error(
        "{}: this table holds {table}-dimensional embeddings but the model produces {model}; \
         use the table that came with the model",
        path.display()
    )]
    WrongDimension { path: PathBuf, table: usize, model: usize },
}

/// Writes `bytes` to `path` atomically (see the module docs). Any file a program must not lose
/// half of goes through here.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sporeprint-").suffix(".tmp");
    // A replaced file keeps its permissions; a new one gets the usual 0644 (less the umask),
    // not the temporary file's private 0600: models and tables are read by other users (the
    // device's service account).
    let permissions = match fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        Err(_) => default_permissions(),
    };
    builder.permissions(permissions);
    let mut temp = builder.tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    // The rename is only durable once the directory entry is.
    fs::File::open(dir)?.sync_all()
}

#[cfg(unix)]
fn default_permissions() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o644)
}

#[cfg(not(unix))]
fn default_permissions() -> fs::Permissions {
    let mut permissions = fs::metadata(".").map(|m| m.permissions()).expect("the working directory");
    permissions.set_readonly(false);
    permissions
}

pub fn save<E: EntryStore>(path: &Path, table: &PrototypeTable<E>) -> Result<(), StoreError> {
    write_atomically(path, &format::encode(table)).map_err(|source| StoreError::Io { path: path.into(), source })
}

pub fn load<E: EntryStore>(path: &Path) -> Result<PrototypeTable<E>, StoreError> {
    let bytes = fs::read(path).map_err(|source| StoreError::Io { path: path.into(), source })?;
    format::decode(&bytes).map_err(|source| StoreError::Format { path: path.into(), source })
}

/// Loads a table and checks it belongs to the model that will produce the queries.
pub fn load_for_model<E: EntryStore>(
    path: &Path,
    model: &ModelFingerprint,
    embedding_dim: usize,
) -> Result<PrototypeTable<E>, StoreError> {
    let table = load::<E>(path)?;
    if table.header().model_fingerprint != *model {
        return Err(StoreError::WrongModel {
            path: path.into(),
            table: table.header().model_fingerprint,
            model: *model,
        });
    }
    if table.dim() != embedding_dim {
        return Err(StoreError::WrongDimension { path: path.into(), table: table.dim(), model: embedding_dim });
    }
    Ok(table)
}
