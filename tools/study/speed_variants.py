"""Images/s of `inline` variants side by side: ONNX Runtime (2 threads), batch 1 and 32, interleaved rounds.

    python tools/study/speed_variants.py '{"extremes": 0, "estimate_noise": false, "gate_extremes": false}' '{}'

Each argument is a JSON dict of `build("inline", ...)` keyword arguments (untrained weights: speed only).
Rounds alternate between the variants so a busy machine slows all of them alike; medians of 5 rounds.
"""
import json
import sys

import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

import edgeseg.models as models
from edgeseg.data.synth import PRESETS, generate_batch
from timing import images_per_s  # tools/study/timing.py

variants = [json.loads(a) for a in sys.argv[1:]] or [{}]
images, _ = generate_batch(np.random.default_rng(0), PRESETS["seed"], 32)
x = images[..., None].astype(np.float32)
spec = (tf.TensorSpec((None, 256, 256, 1), tf.float32, name="image"),)
sessions = []
for kw in variants:
    proto, _ = tf2onnx.convert.from_keras(models.build("inline", **kw), input_signature=spec, opset=17)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    sessions.append(ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]))
rates = {(i, b): [] for i in range(len(variants)) for b in (1, 32)}
for _ in range(5):
    for i, s in enumerate(sessions):
        for b in (1, 32):
            feed = {"image": x[:b]}
            rates[(i, b)].append(images_per_s(lambda: s.run(None, feed), b, max(10, 100 // b)))
for i, kw in enumerate(variants):
    print(json.dumps(kw), {f"batch {b}": round(float(np.median(rates[(i, b)]))) for b in (1, 32)})
