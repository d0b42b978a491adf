//! The `sporeprint-device` command line.

use crate::identify;
use crate::model::{self, Model};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "sporeprint-device", version, about = "Identify and enroll mushrooms offline")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Which model and table a command works with.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model folder (model.toml, ONNX embedders, shipped tables). Default: $SPOREPRINT_MODEL, else
    /// the repository's models/default.
    #[arg(long, global = true)]
    pub model: Option<PathBuf>,
    /// Prototype table to use (created from the model's shipped table if missing). Default: a
    /// per-user file under $XDG_STATE_HOME/sporeprint.
    #[arg(long, global = true)]
    pub table: Option<PathBuf>,
    /// Run the fp32 embedder even when the model's default variant is another.
    #[arg(long, global = true)]
    pub fp32: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Identify mushrooms in photos: the nearest species, "unknown" beyond the threshold.
    Identify {
        #[command(flatten)]
        model: ModelArgs,
        /// How many candidates to list per photo.
        #[arg(long, default_value_t = 3)]
        top_k: usize,
        /// One JSON object per photo and line.
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// Print what the tables and models of this build agree on (format version).
    Info,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Identify { model: args, top_k, json, photos } => {
            let model = Model::open(&model::model_dir(args.model.as_deref()), args.fp32.then_some("fp32"))?;
            let (_, table) = model.open_table(args.table.as_deref())?;
            let mut failed = 0;
            for photo in &photos {
                match identify::identify(&model, &table, photo, top_k) {
                    Ok(answer) if json => println!("{}", serde_json::to_string(&answer)?),
                    Ok(answer) => println!("{}", identify::describe(&answer)),
                    Err(error) => {
                        failed += 1;
                        if json {
                            let line = serde_json::json!({ "path": photo, "error": format!("{error:#}") });
                            println!("{line}");
                        }
                        eprintln!("error: {error:#}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} photo(s) could not be identified", photos.len());
            }
            Ok(())
        }
        Command::Info => {
            println!("prototype table format version {}", sporeprint_shared::format::VERSION);
            Ok(())
        }
    }
}
