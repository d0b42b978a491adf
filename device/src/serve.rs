//! `sporeprint-device serve`: answers the host's `sporeprint-tables sync` on a serial port (on a Pi in
//! USB gadget mode, `/dev/ttyGS0`). Also run beside field mode when `run --sync-port` is given.

use crate::model::Model;
use anyhow::Context;
use sporeprint_shared::sync::server::{Device, Event, Server};
use sporeprint_shared::{ModelFingerprint, Origin};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct Listen {
    pub port: PathBuf,
    pub baud: u32,
    pub key: Option<PathBuf>,
}

/// What the served table must fit: the device's model.
#[derive(Clone, Copy, Debug)]
pub struct ModelId {
    pub fingerprint: ModelFingerprint,
    pub dim: usize,
}

impl ModelId {
    /// `model`'s identity, after making sure `table` exists: a first sync sees the shipped species.
    pub fn prepare(model: &Model, table: &Path) -> anyhow::Result<ModelId> {
        model.open_table(table)?;
        Ok(ModelId { fingerprint: model.embedder.fingerprint(), dim: model.embedder.dim() })
    }
}

/// Serves `table` until `stop` is set, logging each event on stderr.
pub fn serve(model: ModelId, table: &Path, listen: &Listen, device: Origin, stop: &AtomicBool) -> anyhow::Result<()> {
    let key = listen.key.as_deref().map(sporeprint_shared::sync::read_key).transpose()?;
    let port = serialport::new(listen.port.to_string_lossy(), listen.baud)
        .timeout(Duration::from_millis(50))
        .open_native()
        .with_context(|| format!("{}: cannot open the serial port", listen.port.display()))?;
    let id = match device {
        Origin::Device(id) => id,
        Origin::Host => 0,
    };
    let mut server =
        Server::new(Device { table: table.to_path_buf(), model: model.fingerprint, embedding_dim: model.dim, id });
    eprintln!(
        "serving {} on {} at {} baud{}",
        table.display(),
        listen.port.display(),
        listen.baud,
        if key.is_some() { " (paired: unsigned frames are refused)" } else { "" }
    );
    let traffic = server.serve(port, key, stop, |event| match event {
        Event::Hello { .. } => eprintln!("host connected"),
        Event::Sent { snapshot } => eprintln!("sent the table ({} bytes)", snapshot.len),
        Event::Applied { apply, table } => {
            eprintln!("{apply:?}: table saved, {} species, revision {}", table.species, table.revision)
        }
        Event::Refused(refusal) => eprintln!("refused: {refusal}"),
        // Line noise is normal on a serial line; the host resends.
        Event::Rejected(_) => {}
    });
    eprintln!(
        "stopped: {} bytes received, {} sent, {} frames rejected",
        traffic.received, traffic.sent, traffic.rejected
    );
    Ok(())
}
