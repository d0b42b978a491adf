//! `sporeprint-tables sync` (and the trainer's `sporeprint sync`): the host's side of a sync with a device over a serial line.
//!
//! - `--pull`: the device's table becomes the host's file.
//! - `--push`: the host's file becomes the device's table.
//! - `--merge`: both become the merge of the two (`shared::merge`); afterwards they are equal.
//!
//! The host's file is locked for the whole sync and replaced through the atomic save, so an
//! interrupted sync leaves it as it was or as the finished sync left it.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sporeprint_shared::manifest::Manifest;
use sporeprint_shared::merge;
use sporeprint_shared::store;
use sporeprint_shared::sync::client::{Client, DeviceInfo, Patience};
use sporeprint_shared::sync::server::summarize;
use sporeprint_shared::sync::{Apply, Key, Link, TableSummary};
use sporeprint_shared::{ModelFingerprint, Table, format};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Pull,
    Push,
    Merge,
}

/// What happened, for people and for `--json`.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub mode: Mode,
    pub device: u32,
    /// The host's table afterwards.
    pub host: TableState,
    /// The device's table afterwards.
    pub device_table: TableState,
    /// Pull-merge-push rounds a merge took (more than one when the device changed meanwhile).
    pub rounds: u32,
    /// Table bytes carried each way, and bytes on the wire (frames, checksums, retries).
    pub payload_bytes: u64,
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    pub frames_rejected: u64,
    /// Bytes of a table the device already held from an interrupted earlier push, not sent again.
    pub resumed_bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TableState {
    pub species: u32,
    pub revision: u64,
    pub crc: u32,
}

impl From<TableSummary> for TableState {
    fn from(s: TableSummary) -> TableState {
        TableState { species: s.species, revision: s.revision, crc: s.snapshot.crc }
    }
}

/// Most pull-merge-push rounds before giving up on a device whose table keeps changing.
const MAX_MERGE_ROUNDS: u32 = 3;

/// The model the host's table is for: the table's own, or when there is no table yet (a first
/// pull), the one of the model folder's shipped table.
pub fn table_model(table: &Path, model_dir: &Path) -> anyhow::Result<ModelFingerprint> {
    if table.exists() {
        return Ok(store::load(table)?.header().model_fingerprint);
    }
    let manifest = Manifest::read(model_dir)?;
    let shipped = model_dir.join(&manifest.variant(model_dir, None)?.prototypes);
    let header = store::load(&shipped)
        .with_context(|| format!("{} does not exist yet, and the model's table cannot be read", table.display()))?;
    Ok(header.header().model_fingerprint)
}

pub struct Sync<'a> {
    pub table: &'a Path,
    pub model: ModelFingerprint,
    pub key: Option<Key>,
    pub patience: Patience,
    pub progress: ProgressBar,
    /// Set by the first progress report of each push: where the device said it resumes.
    resumed: std::cell::Cell<Option<u64>>,
}

impl Sync<'_> {
    pub fn new(
        table: &Path,
        model: ModelFingerprint,
        key: Option<Key>,
        patience: Patience,
        progress: ProgressBar,
    ) -> Sync<'_> {
        Sync { table, model, key, patience, progress, resumed: std::cell::Cell::new(None) }
    }

    pub fn run<L: Link>(&self, link: L, mode: Mode) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let _lock = store::lock(self.table, || {
            eprintln!("waiting for another program to finish with {}", self.table.display())
        })?;
        let (mut client, device) = Client::connect(link, self.key.clone(), self.model, self.patience)
            .context("cannot open a sync session with the device")?;
        let mut payload = 0u64;
        let mut rounds = 1;
        let (host, device_table) = match mode {
            Mode::Pull => {
                let bytes = self.read(&mut client, device.table)?;
                payload += bytes.len() as u64;
                let table = self.check_received(&bytes)?;
                if self.table.exists() {
                    let ours = store::load(self.table)?;
                    merge::check_compatible(ours.header(), table.header())?;
                }
                store::write_atomically(self.table, &bytes)
                    .with_context(|| format!("{}: cannot save", self.table.display()))?;
                (device.table.into(), device.table.into())
            }
            Mode::Push => {
                let ours = store::load(self.table)?;
                let bytes = format::encode(&ours);
                payload += bytes.len() as u64;
                let applied = self.write(&mut client, &bytes, Apply::Replace)?;
                (summarize(&ours, &bytes).into(), applied.into())
            }
            Mode::Merge => {
                let mut device = device;
                loop {
                    let (merged, applied, carried) = self.merge_round(&mut client, &device)?;
                    payload += carried;
                    if applied == merged || rounds == MAX_MERGE_ROUNDS {
                        if applied != merged {
                            bail!(
                                "the device's table kept changing during {rounds} merge rounds; sync again when it is idle"
                            );
                        }
                        break (merged.into(), applied.into());
                    }
                    // The device changed between our read and our write, and merged our table
                    // into its newer one: read that and merge again.
                    rounds += 1;
                    device = client.hello().context("cannot reopen the sync session")?;
                }
            }
        };
        self.progress.finish_and_clear();
        let traffic = client.traffic();
        Ok(Outcome {
            mode,
            device: device.id,
            host,
            device_table,
            rounds,
            payload_bytes: payload,
            wire_bytes_sent: traffic.sent,
            wire_bytes_received: traffic.received,
            frames_rejected: traffic.rejected,
            resumed_bytes: self.resumed.get().unwrap_or(0),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Reads the device's table, merges it into ours, saves ours and sends the merge back.
    /// Returns the summaries of the merge and of what the device then holds.
    fn merge_round<L: Link>(
        &self,
        client: &mut Client<L>,
        device: &DeviceInfo,
    ) -> anyhow::Result<(TableSummary, TableSummary, u64)> {
        let theirs_bytes = self.read(client, device.table)?;
        let theirs = self.check_received(&theirs_bytes)?;
        let ours = store::load(self.table)?;
        let merged = merge::merge(&ours, &theirs)
            .with_context(|| format!("cannot merge {} with the device's table", self.table.display()))?;
        let bytes = format::encode(&merged);
        if merged != ours {
            store::write_atomically(self.table, &bytes)
                .with_context(|| format!("{}: cannot save", self.table.display()))?;
        }
        let summary = summarize(&merged, &bytes);
        let applied = if summary == device.table { summary } else { self.write(client, &bytes, Apply::Merge)? };
        Ok((summary, applied, (theirs_bytes.len() + bytes.len()) as u64))
    }

    fn read<L: Link>(&self, client: &mut Client<L>, table: TableSummary) -> anyhow::Result<Vec<u8>> {
        self.start_bar("pull", table.snapshot.len as u64);
        let bytes = client
            .read_table(table, |done, _| self.progress.set_position(done))
            .context("cannot read the device's table")?;
        Ok(bytes)
    }

    fn write<L: Link>(&self, client: &mut Client<L>, bytes: &[u8], apply: Apply) -> anyhow::Result<TableSummary> {
        self.start_bar("push", bytes.len() as u64);
        let mut first = true;
        let applied = client
            .write_table(bytes, apply, |done, _| {
                if std::mem::take(&mut first) {
                    self.resumed.set(Some(self.resumed.get().unwrap_or(0) + done));
                }
                self.progress.set_position(done)
            })
            .context("cannot send the table to the device")?;
        Ok(applied)
    }

    fn start_bar(&self, what: &str, len: u64) {
        self.progress.set_length(len);
        self.progress.set_position(0);
        self.progress.set_message(what.to_string());
    }

    fn check_received(&self, bytes: &[u8]) -> anyhow::Result<Table> {
        let table: Table = format::decode(bytes).context("the device sent a table that does not decode")?;
        if table.header().model_fingerprint != self.model {
            bail!(
                "the device's table is for model {}, not {}",
                table.header().model_fingerprint.short(),
                self.model.short()
            );
        }
        Ok(table)
    }
}

/// The outcome as a person reads it: one line.
pub fn describe(outcome: &Outcome) -> String {
    format!(
        "{:?} with device {}: host {} species (revision {}), device {} species (revision {}); \
         {} table bytes, {} bytes on the wire{}, {:.1} s",
        outcome.mode,
        outcome.device,
        outcome.host.species,
        outcome.host.revision,
        outcome.device_table.species,
        outcome.device_table.revision,
        outcome.payload_bytes,
        outcome.wire_bytes_sent + outcome.wire_bytes_received,
        match outcome.resumed_bytes {
            0 => String::new(),
            n => format!(" ({n} bytes of an interrupted push not sent again)"),
        },
        outcome.seconds
    )
}

/// A progress bar for table transfers (hidden when stderr is not a terminal).
pub fn transfer_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>5} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Opens a serial port for sync: raw, 8N1, reads returning within 50 ms.
pub fn open_port(path: &Path, baud: u32) -> anyhow::Result<serialport::TTYPort> {
    serialport::new(path.to_string_lossy(), baud)
        .timeout(Duration::from_millis(50))
        .open_native()
        .with_context(|| format!("{}: cannot open the serial port", path.display()))
}
