//! The `sporeprint` command line.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sporeprint", version, about = "Train, evaluate and export sporeprint's mushroom embedder")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what the tables and models of this build agree on (format version, preprocessing).
    Info,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info => {
            println!("prototype table format version {}", sporeprint_shared::format::VERSION);
            println!("preprocessing (EfficientNet-Lite): {:?}", sporeprint_shared::PreprocessSpec::EFFICIENTNET_LITE);
            Ok(())
        }
    }
}
