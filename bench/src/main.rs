use clap::Parser;

fn main() -> anyhow::Result<()> {
    sporeprint_bench::cli::run(sporeprint_bench::cli::Cli::parse())
}
