use clap::Parser;

fn main() -> anyhow::Result<()> {
    sporeprint_host::cli::run(sporeprint_host::cli::Cli::parse())
}
