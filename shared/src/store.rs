//! Tables on disk: atomic saves and checked loads.
//!
//! A save writes a temporary file in the same directory, fsyncs it, renames it over the target
//! and fsyncs the directory: a power cut or a kill at any instant leaves either the old or the
//! new table, never a mix. Readers therefore need no lock; a read-modify-write (enrollment, a
//! rename, a sync) holds a [`TableLock`] from before its load until after its save.

use crate::fingerprint::ModelFingerprint;
use crate::format::{self, FormatError};
use crate::table::Table;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::{fs, io};

// The messages carry their cause, so no field is a `source`: a report that walks the chain
// (`{:#}`) would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {problem}", path.display())]
    Io { path: PathBuf, problem: io::Error },
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: FormatError },
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

/// An exclusive lock on a table for one read-modify-write, released when dropped (or when the
/// process dies: the operating system drops it with the file descriptor, so a killed writer
/// never leaves a stale lock behind).
///
/// The lock is taken on a `<table>.lock` file beside the table, not on the table itself: every
/// save replaces the table's inode, and a lock on the replaced inode would not exclude the next
/// writer.
#[derive(Debug)]
pub struct TableLock {
    _file: fs::File,
}

/// Where the lock of the table at `path` lives.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Takes the table's lock, calling `waiting` once first if another process holds it (then
/// blocking until it is released).
pub fn lock(path: &Path, waiting: impl FnOnce()) -> Result<TableLock, StoreError> {
    let lock_path = lock_path(path);
    let io_error = |problem| StoreError::Io { path: lock_path.clone(), problem };
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            waiting();
            file.lock().map_err(io_error)?;
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_error(e)),
    }
    Ok(TableLock { _file: file })
}

pub fn save(path: &Path, table: &Table) -> Result<(), StoreError> {
    write_atomically(path, &format::encode(table)).map_err(|problem| StoreError::Io { path: path.into(), problem })
}

pub fn load(path: &Path) -> Result<Table, StoreError> {
    let bytes = fs::read(path).map_err(|problem| StoreError::Io { path: path.into(), problem })?;
    format::decode(&bytes).map_err(|problem| StoreError::Format { path: path.into(), problem })
}

/// Loads a table and checks it belongs to the model that will produce the queries.
pub fn load_for_model(path: &Path, model: &ModelFingerprint, embedding_dim: usize) -> Result<Table, StoreError> {
    let table = load(path)?;
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
