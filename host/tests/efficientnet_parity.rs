//! The EfficientNet-Lite0 port reproduces the reference PyTorch outputs (fixture computed in
//! PyTorch 2.13, float32) with the ImageNet weights that scripts/setup.sh installs.

use sporeprint_host::model::efficientnet::{EfficientNetLite0, FEATURES};
use std::path::PathBuf;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

fn weights() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/weights/efficientnet-lite0.safetensors");
    assert!(path.exists(), "{} is missing: run scripts/setup.sh", path.display());
    path
}

#[derive(serde::Deserialize)]
struct Reference {
    features_1280_first8: Vec<f64>,
    features_sum: f64,
    logits_first8: Vec<f64>,
    logits_argmax: i64,
}

#[test]
fn features_and_logits_match_pytorch() {
    let reference: Reference = serde_json::from_str(include_str!("fixtures/efficientnet_lite0_parity.json")).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = EfficientNetLite0::new(&vs.root());
    let classifier = nn::linear(vs.root() / "_fc", FEATURES, 1000, Default::default());
    vs.load(weights()).unwrap();

    // x[0, c, h, w] = sin(0.001 * (c*224*224 + h*224 + w))
    let input = (Tensor::arange(3 * 224 * 224, (Kind::Float, Device::Cpu)) * 0.001).sin().view([1, 3, 224, 224]);
    let features = tch::no_grad(|| net.forward_t(&input, false));
    assert_eq!(features.size(), [1, FEATURES]);
    let logits = features.apply(&classifier);

    let sum = features.sum(Kind::Double).double_value(&[]);
    let first8: Vec<f64> = Vec::try_from(features.get(0).narrow(0, 0, 8).to_kind(Kind::Double)).unwrap();
    let logits8: Vec<f64> = Vec::try_from(logits.get(0).narrow(0, 0, 8).to_kind(Kind::Double)).unwrap();
    let argmax = logits.argmax(1, false).int64_value(&[0]);
    println!("features sum {sum:.4} (reference {}), argmax {argmax}", reference.features_sum);

    let relative = (sum - reference.features_sum).abs() / reference.features_sum;
    assert!(relative < 1e-3, "features sum {sum} vs {} (relative error {relative:e})", reference.features_sum);
    for (got, want) in first8.iter().zip(&reference.features_1280_first8) {
        assert!((got - want).abs() < 1e-4, "features {first8:?} vs {:?}", reference.features_1280_first8);
    }
    for (got, want) in logits8.iter().zip(&reference.logits_first8) {
        assert!((got - want).abs() < 1e-3, "logits {logits8:?} vs {:?}", reference.logits_first8);
    }
    assert_eq!(argmax, reference.logits_argmax);
}
