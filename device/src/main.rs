use clap::Parser;

fn main() -> anyhow::Result<()> {
    sporeprint_device::cli::run(sporeprint_device::cli::Cli::parse())
}
