//! Where tract spends one embedding of each model given, operator by operator:
//! `cargo run --release -p sporeprint-bench --example profile -- FAMILY:VARIANT=PATH...`

use sporeprint_bench::embedder::ModelFile;
use sporeprint_bench::profile;
use sporeprint_bench::timing::ms;

fn main() -> anyhow::Result<()> {
    for arg in std::env::args().skip(1) {
        let model: ModelFile = arg.parse()?;
        let p = profile::profile(&model, 10)?;
        let total: f64 = p.ops.iter().map(|o| o.ms_per_run).sum();
        println!("{}: {} ms, {:.2} GFLOP, layout nodes: {:?}", p.model, ms(total), p.flops / 1e9, p.layout_nodes);
        for o in p.ops.iter().take(10) {
            println!("  {:<28} {:>4} nodes {:>8} ms {:>5.1}%", o.op, o.nodes, ms(o.ms_per_run), 100.0 * o.share);
        }
    }
    Ok(())
}
