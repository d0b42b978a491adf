//! Where tract spends one embedding of each model given, operator by operator:
//! `cargo run --release -p sporeprint-bench --example profile -- [--nodes OP] FAMILY:VARIANT=PATH...`
//!
//! `--nodes OP` lists, besides, every node running operator OP (say `QDepthwise`) with its
//! shapes and time, in plan order: which layers of a kind cost what.

use sporeprint_bench::embedder::ModelFile;
use sporeprint_bench::profile;
use sporeprint_bench::timing::ms;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let op = if args.peek().map(String::as_str) == Some("--nodes") { args.nth(1) } else { None };
    for arg in args {
        let model: ModelFile = arg.parse()?;
        let p = profile::profile(&model, 10)?;
        let total: f64 = p.ops.iter().map(|o| o.ms_per_run).sum();
        println!("{}: {} ms, {:.2} GFLOP, layout nodes: {:?}", p.model, ms(total), p.flops / 1e9, p.layout_nodes);
        for o in p.ops.iter().take(10) {
            println!("  {:<28} {:>4} nodes {:>8} ms {:>5.1}%", o.op, o.nodes, ms(o.ms_per_run), 100.0 * o.share);
        }
        if let Some(op) = &op {
            for n in p.nodes.iter().filter(|n| &n.op == op) {
                println!("    {:>8} ms  {:<40} {}", ms(n.ms_per_run), n.name, n.info);
            }
        }
    }
    Ok(())
}
