//! The embedders `bench/run.sh` times that are not shipped: fp32 and int8 ONNX files of a
//! backbone with its head, written by the exporter's own code (`Network::export`,
//! `export::quantize`).
//!
//! EfficientNet-Lite0 gets its ImageNet weights; ResNet-50 has no pretrained weights here and
//! keeps tch's random initialisation. Latency does not depend on the weights' values, only on
//! the graph, so these files time what a trained ResNet-50 would.
//!
//! `cargo run --release -p sporeprint-host --example bench_models -- BACKBONE OUT_DIR [PHOTOS_DIR]`
//! with BACKBONE `efficientnet-lite0` or `resnet50`; int8 ranges come from up to 32 photos of
//! PHOTOS_DIR, else from generated ones.

use anyhow::{Context, bail};
use clap::ValueEnum;
use image::{Rgb, RgbImage};
use sporeprint_host::export;
use sporeprint_host::export::onnx::{self, WeightScales};
use sporeprint_host::model::BackboneKind;
use sporeprint_host::model::head::HeadKind;
use sporeprint_host::train::{self, Network};
use std::path::{Path, PathBuf};
use tch::Device;

const DIM: i64 = 128;
const CALIBRATION_PHOTOS: usize = 32;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backbone, out, rest @ ..] = args.as_slice() else {
        bail!("usage: bench_models BACKBONE OUT_DIR [PHOTOS_DIR]");
    };
    let kind = BackboneKind::from_str(backbone, true).map_err(|e| anyhow::anyhow!("{backbone}: {e}"))?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;

    let network = match train::default_weights(kind) {
        Some(_) => Network::pretrained(kind, DIM, Device::Cpu)?,
        None => {
            tch::manual_seed(0);
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let net = sporeprint_host::model::EmbeddingNet::new(&vs.root(), kind, HeadKind::Study, DIM, 0.0);
            Network { vs, net }
        }
    };
    let scratch = tempfile::tempdir()?;
    let photos = match rest.first() {
        Some(dir) => export::spread_evenly(&export::photos_under(Path::new(dir))?, CALIBRATION_PHOTOS)
            .with_context(|| format!("{dir}: no photos"))?,
        None => generated_photos(scratch.path())?,
    };

    let write = |name: &str, bytes: Vec<u8>| -> anyhow::Result<()> {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
        println!("{}", path.display());
        Ok(())
    };
    write("embedder.onnx", onnx::encode(&network.net.export()))?;
    write("embedder.int8.onnx", onnx::encode(&export::quantize(&network.net, &photos, WeightScales::PerChannel)?))?;
    write(
        "embedder.int8-per-tensor.onnx",
        onnx::encode(&export::quantize(&network.net, &photos, WeightScales::PerTensor)?),
    )?;
    Ok(())
}

fn generated_photos(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    (0..CALIBRATION_PHOTOS)
        .map(|i| {
            let path = dir.join(format!("photo_{i}.jpg"));
            let k = i as u32;
            RgbImage::from_fn(256, 256, |x, y| Rgb([(x * (k + 1)) as u8, (y + 3 * k) as u8, ((x ^ y) * k) as u8]))
                .save(&path)?;
            Ok(path)
        })
        .collect()
}
