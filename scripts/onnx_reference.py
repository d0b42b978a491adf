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
    session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    images = np.fromfile(inputs_path, dtype="<f4").reshape(int(count), *shape[1:])
    name = session.get_inputs()[0].name
    embeddings = [session.run(None, {name: image[None]})[0][0].tolist() for image in images]
    print(json.dumps({"checker": "ok", "embeddings": embeddings}))


if __name__ == "__main__":
    main(*sys.argv[1:])
