//! The shipped default embedder gives the same embedding on every CPU tract runs on: x86's and
//! the Pi's (aarch64, under qemu in CI) kernels must agree with the reference computed when the
//! model was exported. A table built on the host is only valid on the device if they do.
//!
//! The references (`fixtures/default-embedding.txt`, one number per line, and the photo's
//! atypicality in `fixtures/default-atypicality.txt`) are tied to
//! `models/default/embedder.onnx`; after shipping another model, regenerate it with
//! `SPOREPRINT_UPDATE_FIXTURES=1 cargo test -p sporeprint-shared --features tract --test embedder_parity`.

use image::{Rgb, RgbImage};
use sporeprint_shared::embedder::Embedder;
use sporeprint_shared::manifest::Manifest;
use sporeprint_shared::vector;
use std::path::Path;

/// A photo-like test image: smooth colour gradients with some texture, the same on every machine.
fn test_image() -> RgbImage {
    RgbImage::from_fn(320, 256, |x, y| {
        let texture = ((x * 7 + y * 3) % 17) as u8;
        Rgb([(x * 255 / 320) as u8 ^ texture, (y * 255 / 256) as u8, 120u8.wrapping_add(texture * 3)])
    })
}

#[test]
fn the_default_embedder_matches_its_reference_on_this_cpu() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = root.join("models/default");
    let manifest = Manifest::read(&model).unwrap();
    let embedder = Embedder::load(&model.join(&manifest.variants["fp32"].embedder), manifest.preprocess).unwrap();
    let observed = embedder.observe_image(&test_image()).unwrap();
    let embedding = observed.embedding;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (fixture, atypicality_fixture) =
        (fixtures.join("default-embedding.txt"), fixtures.join("default-atypicality.txt"));
    if std::env::var_os("SPOREPRINT_UPDATE_FIXTURES").is_some() {
        let text: String = embedding.iter().map(|v| format!("{v:e}\n")).collect();
        std::fs::write(&fixture, text).unwrap();
        std::fs::write(&atypicality_fixture, format!("{:e}\n", observed.atypicality)).unwrap();
    }
    // The open-set rule's second number agrees too (in distance units: 1e-3 is far below
    // anything that moves a decision).
    assert_eq!(embedder.has_atypicality(), manifest.variants["fp32"].atypicality);
    let reference: f32 = std::fs::read_to_string(&atypicality_fixture).unwrap().trim().parse().unwrap();
    println!("{}: atypicality {} (reference {reference})", std::env::consts::ARCH, observed.atypicality);
    assert!((observed.atypicality - reference).abs() < 1e-3, "{} vs {reference}", observed.atypicality);
    let reference: Vec<f32> = std::fs::read_to_string(&fixture).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(reference.len(), embedding.len());
    let cosine = vector::cosine_similarity(&reference, &embedding);
    println!("{}: cosine to the reference {cosine:.7}", std::env::consts::ARCH);
    assert!(cosine >= 0.9999, "cosine {cosine} on {}", std::env::consts::ARCH);
}
