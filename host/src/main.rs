use clap::Parser;
use std::process::ExitCode;

/// One line, `error: ` and the chain of causes joined by ": " (anyhow's `{:#}`), never the
/// multi-line Debug dump `fn main() -> Result` prints.
fn main() -> ExitCode {
    match sporeprint_host::cli::run(sporeprint_host::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
