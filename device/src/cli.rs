//! The `sporeprint-device` command line.

use crate::field::camera::CameraSpec;
use crate::field::display::DisplaySpec;
use crate::field::input::ButtonSpec;
use crate::field::session;
use crate::model::{self, Model};
use crate::{bench, enroll, identify, serve, species};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sporeprint_shared::Edibility;
use sporeprint_tables::cli::SpeciesAction;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    #[arg(long, global = true, conflicts_with = "int8")]
    pub fp32: bool,
    /// Run the int8 embedder even when the model's default variant is another.
    #[arg(long, global = true)]
    pub int8: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Serial port to answer on: /dev/ttyGS0 on a Pi in USB gadget mode, /dev/ttyAMA0 for a UART.
    #[arg(long)]
    pub port: PathBuf,
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Pairing key shared with the host (its bytes are the key); unsigned frames are then refused.
    #[arg(long)]
    pub key: Option<PathBuf>,
}

impl ModelArgs {
    fn open(&self) -> anyhow::Result<(Model, PathBuf)> {
        let variant = if self.fp32 {
            Some("fp32")
        } else if self.int8 {
            Some("int8")
        } else {
            None
        };
        let model = Model::open(&model::model_dir(self.model.as_deref()), variant)?;
        let table = model.table_path(self.table.as_deref());
        Ok((model, table))
    }
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
        /// One JSON object per photo and line (with --find: one for the find, `answer` combined
        /// and `each` view's own).
        #[arg(long)]
        json: bool,
        /// The photos are views of one mushroom (cap, gills, stem...): one answer for all of them.
        #[arg(long)]
        find: bool,
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// Enroll a species from a few photos, or add photos to one already enrolled.
    Enroll {
        #[command(flatten)]
        model: ModelArgs,
        /// The species' name (at most 64 bytes, no control characters).
        #[arg(long)]
        species: String,
        /// edible, inedible, poisonous, deadly or unknown (a new species without it is unknown).
        #[arg(long)]
        edibility: Option<Edibility>,
        /// Only enroll a new species: refuse a name already in the table.
        #[arg(long)]
        new: bool,
        #[arg(long)]
        json: bool,
        photos: Vec<PathBuf>,
    },
    /// List, rename or remove the table's species.
    Species {
        #[command(flatten)]
        model: ModelArgs,
        #[command(subcommand)]
        action: SpeciesAction,
        #[arg(long, global = true)]
        json: bool,
    },
    /// Per-stage latency of one identification (median of --runs) and peak memory.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Photo to time (default: a generated 512x512 JPEG).
        #[arg(long)]
        photo: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Field mode: camera, screen and buttons. Press: add a view to the find and identify it
    /// (all views together); double press: a new find; hold: enroll a new species.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// dir:PATH (replay photos), rpicam (Pi camera module) or v4l:/dev/videoN (webcam).
        #[arg(long, default_value = "rpicam")]
        camera: CameraSpec,
        /// png:DIR (numbered PNG per screen), fb:/dev/fbN (HDMI, SPI panels via fbtft) or none.
        #[arg(long, default_value = "fb:/dev/fb0")]
        display: DisplaySpec,
        /// stdin (lines: empty/press, new, hold, quit) or gpio:/dev/gpiochipN:LINE (a push button).
        #[arg(long, default_value = "stdin")]
        buttons: ButtonSpec,
        /// Screen size for displays without their own (png, none).
        #[arg(long, default_value = "240x240", value_parser = session::parse_size)]
        size: (u32, u32),
        /// Photos per field enrollment.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
        shots: u16,
        /// A file of names, one per line, given in turn to species enrolled in the field
        /// (default: "field species N"; rename later with `species rename`).
        #[arg(long)]
        names: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        top_k: usize,
        /// Seconds without a press after which the next press starts a new find (another
        /// mushroom) instead of adding a view to the current one.
        #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
        find_pause: f64,
        /// Also answer `sporeprint-tables sync` on this serial port (e.g. /dev/ttyGS0) while in the field.
        #[arg(long)]
        sync_port: Option<PathBuf>,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Pairing key shared with the host; unsigned frames are then refused.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Answer `sporeprint-tables sync` from the host on a serial port until stopped (Ctrl-C).
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        listen: ListenArgs,
    },
    /// Print what the tables and models of this build agree on (format version).
    Info,
}

/// The binary's whole `main` (errors printed as every sporeprint binary prints them).
pub fn main() -> std::process::ExitCode {
    sporeprint_tables::cli::exit_code(run(Cli::parse()))
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Identify { model, top_k, json, find: true, photos } => run_find(&model, top_k, json, &photos),
        Command::Identify { model, top_k, json, find: false, photos } => run_identify(&model, top_k, json, &photos),
        Command::Enroll { model, species, edibility, new, json, photos } => {
            let (model, table) = model.open()?;
            let request = enroll::Request { species, edibility, new_only: new };
            let done = enroll::enroll_photos(&model, &table, &request, &photos, crate::this_device())?;
            if json {
                println!("{}", serde_json::to_string(&done)?);
            } else {
                println!("{}", enroll::describe(&done));
            }
            Ok(())
        }
        Command::Species { model, action, json } => {
            let (model, table) = model.open()?;
            let Some(change) = action.change() else {
                let listing = species::list(&model.open_table(&table)?);
                match json {
                    true => println!("{}", serde_json::to_string(&listing)?),
                    false => println!("{}", species::describe(&listing)),
                }
                return Ok(());
            };
            let done = species::change(&model, &table, &change)?;
            match json {
                true => println!("{}", serde_json::json!({ "table": table, "done": done })),
                false => println!("{done} in {}", table.display()),
            }
            Ok(())
        }
        Command::Bench { model, runs, photo, json } => {
            let started = std::time::Instant::now();
            let (model, table) = model.open()?;
            let load_ms = started.elapsed().as_secs_f64() * 1e3;
            let table = model.open_table(&table)?;
            let (bytes, name) = match &photo {
                Some(path) => (
                    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?,
                    path.display().to_string(),
                ),
                None => (bench::synthetic_jpeg(), "generated 512x512 JPEG".to_string()),
            };
            let report = bench::run(&model, &table, &bytes, &name, runs, load_ms)
                .with_context(|| format!("benchmarking on {name}"))?;
            match json {
                true => println!("{}", serde_json::to_string(&report)?),
                false => println!("{}", bench::describe(&report)),
            }
            Ok(())
        }
        Command::Serve { model, listen } => {
            let (model, table) = model.open()?;
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
            let listen = serve::Listen { port: listen.port, baud: listen.baud, key: listen.key };
            serve::serve(serve::ModelId::prepare(&model, &table)?, &table, &listen, crate::this_device(), &stop)
        }
        Command::Run {
            model,
            camera,
            display,
            buttons,
            size,
            shots,
            names,
            top_k,
            find_pause,
            sync_port,
            baud,
            key,
        } => {
            let (model, table) = model.open()?;
            if let Some(port) = sync_port {
                let listen = serve::Listen { port, baud, key };
                let (id, table) = (serve::ModelId::prepare(&model, &table)?, table.clone());
                // Ends with the process; the table's mtime tells the field session to reload.
                std::thread::spawn(move || {
                    let never = AtomicBool::new(false);
                    if let Err(e) = serve::serve(id, &table, &listen, crate::this_device(), &never) {
                        eprintln!("sync: {e:#}");
                    }
                });
            }
            let names = match names {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("{}: cannot read the names", path.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect(),
                None => vec![],
            };
            let find_pause = std::time::Duration::from_secs_f64(find_pause);
            let settings =
                session::Settings { camera, display, buttons, size, shots: shots.into(), names, top_k, find_pause };
            session::Session::open(&model, &table, settings, crate::this_device())?.run()
        }
        Command::Info => {
            println!("prototype table format version {}", sporeprint_shared::format::VERSION);
            Ok(())
        }
    }
}

fn run_find(args: &ModelArgs, top_k: usize, json: bool, photos: &[PathBuf]) -> anyhow::Result<()> {
    let (model, table) = args.open()?;
    let table = model.open_table(&table)?;
    let find = identify::identify_find(&model, &table, photos, top_k)?;
    if json {
        println!("{}", serde_json::to_string(&find)?);
    } else {
        println!("{}", identify::describe_find(&find));
    }
    Ok(())
}

fn run_identify(args: &ModelArgs, top_k: usize, json: bool, photos: &[PathBuf]) -> anyhow::Result<()> {
    let (model, table) = args.open()?;
    let table = model.open_table(&table)?;
    let mut failed = 0;
    for photo in photos {
        match identify::identify(&model, &table, photo, top_k) {
            Ok(answer) if json => println!("{}", serde_json::to_string(&answer)?),
            Ok(answer) => println!("{}", identify::describe(&answer)),
            Err(error) => {
                failed += 1;
                if json {
                    println!("{}", serde_json::json!({ "path": photo, "error": format!("{error:#}") }));
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

/// A positive, finite number of seconds.
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(v),
        _ => Err(format!("{s:?}: expected a positive number of seconds")),
    }
}
