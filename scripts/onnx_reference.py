"""The reference client: ONNX's checker and ONNX Runtime on an exported embedder.

    onnx_reference.py MODEL.onnx INPUTS.f32 N

INPUTS.f32 holds N preprocessed images (N x 3 x S x S little-endian float32, S from the model's
input). Prints JSON: {"checker": "ok", "embeddings": [[...], ...]} or exits non-zero with the
checker's complaint. Used by the export tests to hold tract's embeddings against ONNX Runtime's.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime


def main(model_path, inputs_path, count):
    onnx.checker.check_model(onnx.load(model_path), full_check=True)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    # Exact int8 products on x86-64 CPUs without VNNI: there ONNX Runtime's u8s8 kernels add
    # pairs of products in 16-bit lanes (vpmaddubsw), which saturate on real photos (worst cosine
    # 0.63 to tract's int8 on an AVX2 AMD EPYC; see onnxruntime issue #16105 and pull request
    # #12088, which added this option). With it, weights beyond [-64, 63] go through u8u8
    # kernels that do not saturate; VNNI CPUs and aarch64 compute exactly either way.
    options.add_session_config_entry("session.x64quantprecision", "1")
    session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    images = np.fromfile(inputs_path, dtype="<f4").reshape(int(count), *shape[1:])
    name = session.get_inputs()[0].name
    embeddings = [session.run(None, {name: image[None]})[0][0].tolist() for image in images]
    print(json.dumps({"checker": "ok", "embeddings": embeddings}))


if __name__ == "__main__":
    main(*sys.argv[1:])
