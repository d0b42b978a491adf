//! The `sporeprint` command line.

use crate::eval::{self, EvalArgs};
use crate::export::{self, ExportArgs};
use crate::report::{self, ReportArgs};
use crate::sync;
use crate::train::{self, TrainConfig};
use clap::{Parser, Subcommand};
use indicatif::ProgressBar;
use sporeprint_shared::sync::client::Patience;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Parser)]
#[command(name = "sporeprint", version, about = "Train, evaluate and export sporeprint's mushroom embedder")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the embedding network with triplet loss (Ctrl-C saves a checkpoint; --resume continues).
    Train {
        #[command(flatten)]
        config: TrainConfig,
        /// Continue the run in --out from its last checkpoint (its saved configuration is used).
        #[arg(long)]
        resume: bool,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Measure a trained run (or the pretrained backbone) with the study's and the field's metrics.
    Eval(EvalArgs),
    /// Charts (PNG) and one self-contained HTML page from one or more evaluated runs.
    Report(ReportArgs),
    /// Write what a device needs: the ONNX embedder, the prototype table and model.toml.
    Export(ExportArgs),
    /// Exchange prototype tables with a device over a serial line (`sporeprint-device serve`).
    Sync(SyncArgs),
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
    /// exist yet). Default: the repository's models/default.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train { config, resume, json } => {
            let interrupt = Arc::new(AtomicBool::new(false));
            let flag = interrupt.clone();
            ctrlc::set_handler(move || {
                eprintln!("\nstopping after this step: saving a checkpoint...");
                flag.store(true, Ordering::SeqCst);
            })?;
            let summary = train::train(config, resume, interrupt)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "{} epoch(s) done; best validation prototype top-1 {} (loss {}) at epoch {}{}",
                    summary.epochs_done,
                    summary.best_validation_accuracy.map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
                    summary.best_validation_loss.map_or("-".into(), |l| format!("{l:.4}")),
                    summary.best_epoch.map_or("-".into(), |e| e.to_string()),
                    if summary.stopped_early { " (stopped early)" } else { "" }
                );
            }
            Ok(())
        }
        Command::Eval(args) => {
            let (report, embeddings) = eval::evaluate(&args)?;
            if let Some(dir) = args.save.as_ref().or(args.run.as_ref()) {
                eval::save(dir, &report, &embeddings, args.features && args.run.is_some())?;
            }
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", eval::table(&report));
            }
            Ok(())
        }
        Command::Export(args) => {
            let summary = export::export(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("{}: default variant {:?}", summary.out.display(), summary.default);
                for v in std::iter::once(&summary.fp32).chain(&summary.int8) {
                    println!(
                        "  {} ({:.1} MB, fingerprint {}): cosine to the trained model mean {:.5} / worst {:.5}; \
                         {} species; open-set threshold {:.3}; validation prototype top-1 {:.1}%, top-3 {:.1}%, 5-NN {:.1}%",
                        v.embedder,
                        v.embedder_bytes as f64 / 1e6,
                        &v.fingerprint[..12],
                        v.mean_cosine,
                        v.min_cosine,
                        v.species,
                        v.open_set_threshold,
                        100.0 * v.validation_prototype_top1,
                        100.0 * v.validation_prototype_top3,
                        100.0 * v.validation_knn5
                    );
                    if let Some(c) = &v.calibration {
                        println!(
                            "    confidence: temperature {:.4}; ECE validation {:.3} (uncalibrated {:.3}), shifted \
                             variants {:.3} (uncalibrated {:.3}); shifted prototype top-1 {:.1}%",
                            c.temperature,
                            c.validation_ece,
                            c.uncalibrated_validation_ece,
                            c.shifted_ece,
                            c.uncalibrated_shifted_ece,
                            100.0 * c.shifted_prototype_top1
                        );
                        for (set, a) in [("validation", &c.validation_answers), ("shifted", &c.shifted_answers)] {
                            let Some(a) = a else { continue };
                            println!(
                                "    the device's verdicts, {set} photos ({}): species {} ({} right), genus {} ({} \
                                 right), unknown {}",
                                a.photos, a.species, a.species_right, a.genus, a.genus_right, a.unknown
                            );
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Sync(args) => {
            let mode = match (args.pull, args.push) {
                (true, _) => sync::Mode::Pull,
                (_, true) => sync::Mode::Push,
                _ => sync::Mode::Merge,
            };
            let sync = sync::Sync::new(
                &args.table,
                sync::table_model(&args.table, &args.model.unwrap_or_else(sync::shipped_model_dir))?,
                args.key.as_deref().map(sporeprint_shared::sync::read_key).transpose()?,
                Patience::for_baud(args.baud),
                if args.json { ProgressBar::hidden() } else { sync::transfer_bar() },
            );
            let outcome = sync.run(sync::open_port(&args.port, args.baud)?, mode)?;
            if args.json {
                println!("{}", serde_json::to_string(&outcome)?);
            } else {
                println!(
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
                );
            }
            Ok(())
        }
        Command::Report(args) => {
            let index = report::report(&args)?;
            println!("{}", index.display());
            Ok(())
        }
    }
}
