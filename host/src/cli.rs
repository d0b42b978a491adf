//! The `sporeprint` command line.

use crate::eval::{self, EvalArgs};
use crate::export::{self, ExportArgs};
use crate::report::{self, ReportArgs};
use crate::train::{self, TrainConfig};
use clap::{Parser, Subcommand};
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
    Sync(sporeprint_tables::cli::SyncArgs),
}

/// The binary's whole `main` (errors printed as every sporeprint binary prints them).
pub fn main() -> std::process::ExitCode {
    sporeprint_tables::cli::exit_code(run(Cli::parse()))
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
            match json {
                true => println!("{}", serde_json::to_string_pretty(&summary)?),
                false => println!("{}", summary.describe()),
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
            match args.json {
                true => println!("{}", serde_json::to_string(&summary)?),
                false => println!("{}", export::describe(&summary)),
            }
            Ok(())
        }
        Command::Sync(args) => sporeprint_tables::cli::sync(&args),
        Command::Report(args) => {
            let index = report::report(&args)?;
            println!("{}", index.display());
            Ok(())
        }
    }
}
