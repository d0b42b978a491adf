use clap::Parser;
use std::process::ExitCode;

/// One line, `error: ` and the chain of causes joined by ": " (anyhow's `{:#}`).
fn main() -> ExitCode {
    match sporeprint_tables::cli::run(sporeprint_tables::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
