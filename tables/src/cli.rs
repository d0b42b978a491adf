//! The `sporeprint-tables` command line.

use crate::{info, sync};
use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::ProgressBar;
use sporeprint_shared::catalog::{self, Change};
use sporeprint_shared::sync::client::Patience;
use sporeprint_shared::{Edibility, Table, manifest, merge, store};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "sporeprint-tables",
    version,
    about = "sporeprint's prototype tables on the host: sync with a device, species, info, merge (no trainer needed)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exchange prototype tables with a device over a serial line (`sporeprint-device serve`).
    Sync(SyncArgs),
    /// List, rename or remove a table file's species, or set their edibility.
    Species {
        /// The table file (a host table, or a copy of a device's).
        #[arg(long)]
        table: PathBuf,
        #[command(subcommand)]
        action: SpeciesAction,
        #[arg(long, global = true)]
        json: bool,
    },
    /// What a table file holds: species, model, thresholds, format version.
    Info {
        table: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Merge two tables of the same model into a third, keeping both sides' enrollments and
    /// edits (what `sync --merge` does between host and device).
    Merge {
        ours: PathBuf,
        theirs: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// `species ...` here and on the device (`sporeprint-device species`).
#[derive(Debug, Subcommand)]
pub enum SpeciesAction {
    /// Every species in the table.
    List,
    Rename {
        old: String,
        new: String,
    },
    Remove {
        name: String,
    },
    SetEdibility {
        name: String,
        edibility: Edibility,
    },
}

impl SpeciesAction {
    /// The change it asks for; None for `list`.
    pub fn change(self) -> Option<Change> {
        match self {
            SpeciesAction::List => None,
            SpeciesAction::Rename { old, new } => Some(Change::Rename { old, new }),
            SpeciesAction::Remove { name } => Some(Change::Remove { name }),
            SpeciesAction::SetEdibility { name, edibility } => Some(Change::SetEdibility { name, edibility }),
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["pull", "push", "merge"])))]
pub struct SyncArgs {
    /// Serial port the device is on (a USB gadget shows up as /dev/ttyACM0).
    #[arg(long)]
    pub port: PathBuf,
    /// The host's prototype table.
    #[arg(long)]
    pub table: PathBuf,
    /// The device's table becomes the host's.
    #[arg(long)]
    pub pull: bool,
    /// The host's table becomes the device's.
    #[arg(long)]
    pub push: bool,
    /// Both tables become the merge of the two, keeping every side's enrollments and edits.
    #[arg(long)]
    pub merge: bool,
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Pairing key shared with the device: every frame is signed with it (HMAC-SHA256).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Model folder whose table says which model a first --pull is for (when --table does not
    /// exist yet). Default: $SPOREPRINT_MODEL, else the installed or the repository's default.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The binary's whole `main`.
pub fn main() -> std::process::ExitCode {
    exit_code(run(Cli::parse()))
}

/// How every sporeprint binary ends: on an error, one line, `error: ` and the chain of causes
/// joined by ": " (anyhow's `{:#}`), never the multi-line Debug dump `fn main() -> Result` prints.
pub fn exit_code(outcome: anyhow::Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sync(args) => sync(&args),
        Command::Species { table, action, json } => species(&table, action, json),
        Command::Info { table, json } => {
            let info = info::read(&table)?;
            match json {
                true => println!("{}", serde_json::to_string(&info)?),
                false => println!("{}", info::describe(&info)),
            }
            Ok(())
        }
        Command::Merge { ours, theirs, out, json } => {
            let load = |path: &Path| -> anyhow::Result<Table> { Ok(store::load(path)?) };
            let merged = merge::merge(&load(&ours)?, &load(&theirs)?)
                .with_context(|| format!("cannot merge {} and {}", ours.display(), theirs.display()))?;
            let _lock =
                store::lock(&out, || eprintln!("waiting for another program to finish with {}", out.display()))?;
            store::save(&out, &merged)?;
            let info = info::info(&merged, sporeprint_shared::format::VERSION);
            match json {
                true => println!("{}", serde_json::to_string(&info)?),
                false => println!("{}: {}", out.display(), info::describe(&info)),
            }
            Ok(())
        }
    }
}

/// `sync`: one sync with the device on `args.port` (also the trainer's `sporeprint sync`).
pub fn sync(args: &SyncArgs) -> anyhow::Result<()> {
    let mode = match (args.pull, args.push) {
        (true, _) => sync::Mode::Pull,
        (_, true) => sync::Mode::Push,
        _ => sync::Mode::Merge,
    };
    let sync = sync::Sync::new(
        &args.table,
        sync::table_model(&args.table, &manifest::model_dir(args.model.as_deref()))?,
        args.key.as_deref().map(sporeprint_shared::sync::read_key).transpose()?,
        Patience::for_baud(args.baud),
        if args.json { ProgressBar::hidden() } else { sync::transfer_bar() },
    );
    let outcome = sync.run(sync::open_port(&args.port, args.baud)?, mode)?;
    match args.json {
        true => println!("{}", serde_json::to_string(&outcome)?),
        false => println!("{}", sync::describe(&outcome)),
    }
    Ok(())
}

/// `species`: the listing, or one change made under the table's lock and saved atomically.
fn species(path: &Path, action: SpeciesAction, json: bool) -> anyhow::Result<()> {
    let Some(change) = action.change() else {
        let listing = catalog::list(&store::load(path)?);
        match json {
            true => println!("{}", serde_json::to_string(&listing)?),
            false => println!("{}", catalog::describe(&listing)),
        }
        return Ok(());
    };
    let _lock = store::lock(path, || eprintln!("waiting for another program to finish with {}", path.display()))?;
    let mut table: Table = store::load(path)?;
    let done = change.apply(&mut table).with_context(|| format!("{}: nothing changed", path.display()))?;
    store::save(path, &table)?;
    match json {
        true => println!("{}", serde_json::json!({ "table": path, "done": done })),
        false => println!("{done} in {}", path.display()),
    }
    Ok(())
}
