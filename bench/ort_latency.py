"""ONNX Runtime side of the sporeprint-bench embedder latency: times RUNS runs (after WARMUP)
of MODEL on a 1x3xSIZExSIZE input with THREADS intra-op threads, prints the milliseconds as a
JSON list.

usage: ort_latency.py MODEL SIZE THREADS WARMUP RUNS
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

model, size, threads, warmup, runs = sys.argv[1], *map(int, sys.argv[2:6])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
x = ((np.arange(3 * size * size) * 7919) % 255).astype(np.float32).reshape(1, 3, size, size) / 127.5 - 1.0
for _ in range(warmup):
    session.run(None, {name: x})
times = []
for _ in range(runs):
    started = time.perf_counter()
    session.run(None, {name: x})
    times.append((time.perf_counter() - started) * 1e3)
print(json.dumps(times))
