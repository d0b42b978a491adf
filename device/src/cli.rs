//! The `sporeprint-device` command line.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sporeprint-device", version, about = "Identify and enroll mushrooms offline")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what the tables and models of this build agree on (format version).
    Info,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info => {
            println!("prototype table format version {}", sporeprint_shared::format::VERSION);
            Ok(())
        }
    }
}
