//! The model a device runs and the prototype table it answers from.
//!
//! - Model folder: `--model DIR`, else `SPOREPRINT_MODEL`, else the installed
//!   `/usr/share/sporeprint/models/default` (Debian package), else the repository's `models/default`.
//!   Its `model.toml` names the variants; the embedder's SHA-256 must be the one recorded there.
//! - Table: `--table FILE`, else a per-user state file (`$XDG_STATE_HOME/sporeprint/`, or
//!   `~/.local/state/sporeprint/`) named after the model's fingerprint. A table file that does
//!   not exist yet starts as a copy of the model's shipped table; the shipped files themselves
//!   are never written.

use anyhow::{Context, bail};
use sporeprint_shared::Table;
use sporeprint_shared::embedder::Embedder;
use sporeprint_shared::manifest::{Manifest, Variant};
use sporeprint_shared::store::{self, TableLock};
use std::path::{Path, PathBuf};

pub struct Model {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub variant_name: String,
    pub variant: Variant,
    pub embedder: Embedder,
}

pub use sporeprint_shared::manifest::{INSTALLED_MODEL, model_dir};

impl Model {
    /// Loads the folder's `variant` (default: the manifest's) and checks the embedder is the
    /// file the manifest describes.
    pub fn open(dir: &Path, variant: Option<&str>) -> anyhow::Result<Model> {
        let manifest = Manifest::read(dir)?;
        let chosen = manifest.variant(dir, variant)?.clone();
        let variant_name = variant.unwrap_or(&manifest.default).to_string();
        let path = dir.join(&chosen.embedder);
        let embedder = Embedder::load(&path, manifest.preprocess)?;
        if embedder.fingerprint().to_string() != chosen.fingerprint {
            bail!(
                "{}: this file's SHA-256 is {}, but {} says {}: the model folder is inconsistent",
                path.display(),
                embedder.fingerprint(),
                dir.join(sporeprint_shared::manifest::MANIFEST).display(),
                chosen.fingerprint
            );
        }
        Ok(Model { dir: dir.into(), manifest, variant_name, variant: chosen, embedder })
    }

    /// The table shipped with this variant.
    pub fn shipped_table(&self) -> PathBuf {
        self.dir.join(&self.variant.prototypes)
    }

    /// Where this user's table lives unless `--table` says otherwise.
    pub fn default_table(&self) -> PathBuf {
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        let fingerprint = self.embedder.fingerprint().to_string();
        state.join("sporeprint").join(format!("{}-{}.bin", self.variant_name, &fingerprint[..16]))
    }

    /// `--table`, else this user's default table.
    pub fn table_path(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf).unwrap_or_else(|| self.default_table())
    }

    /// Takes the lock for a read-modify-write of the table at `path` (creating its folder),
    /// saying so on stderr when another process holds it.
    pub fn lock_table(&self, path: &Path) -> anyhow::Result<TableLock> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        Ok(store::lock(path, || eprintln!("waiting for another sporeprint-device to finish with {}", path.display()))?)
    }

    /// The table at `path`, checked to belong to this model; created from the shipped table
    /// when missing. For readers: the lock is taken only to create it.
    pub fn open_table(&self, path: &Path) -> anyhow::Result<Table> {
        if path.exists() {
            return Ok(store::load_for_model(path, &self.embedder.fingerprint(), self.embedder.dim())?);
        }
        let lock = self.lock_table(path)?;
        self.open_table_locked(path, &lock)
    }

    /// As [`Model::open_table`], for a writer already holding the table's lock.
    pub fn open_table_locked(&self, path: &Path, _lock: &TableLock) -> anyhow::Result<Table> {
        let (fingerprint, dim) = (self.embedder.fingerprint(), self.embedder.dim());
        // Checked again under the lock: another process may have created it meanwhile.
        if !path.exists() {
            let shipped: Table = store::load_for_model(&self.shipped_table(), &fingerprint, dim)?;
            store::save(path, &shipped)?;
        }
        Ok(store::load_for_model(path, &fingerprint, dim)?)
    }
}
