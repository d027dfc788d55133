"""Images/s of one ONNX model through `OnnxRuntimeRunner`, one multi-threaded call per batch against throughput
mode (batches split over worker threads, at several chunk sizes), side by side in interleaved rounds.

    python tools/study/speed_workers.py runs/demo/model.onnx [BATCHES=1,2,8,32] [CHUNKS=1,2,4,8]

Rounds alternate between the settings so a busy machine slows all of them alike; medians of 5 rounds.
"""
import sys

import numpy as np

from edgeseg.data.synth import PRESETS, generate_batch
from edgeseg.runners.base import load_runner
from timing import images_per_s  # tools/study/timing.py

model = sys.argv[1]
batches = [int(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "1,2,8,32").split(",")]
chunks = [int(c) for c in (sys.argv[3] if len(sys.argv) > 3 else "1,2,4,8").split(",")]
images, _ = generate_batch(np.random.default_rng(0), PRESETS["seed"], max(batches))
settings = {"one call": {"workers": 1}, **{f"workers, chunk {c}": {"chunk": c} for c in chunks}}
runners = {name: load_runner(model, **opts).activate() for name, opts in settings.items()}
rates = {(name, b): [] for name in settings for b in batches}
for _ in range(5):
    for name, runner in runners.items():
        for b in batches:
            x = images[:b]
            rates[(name, b)].append(images_per_s(lambda: runner.infer(x), b, max(10, 160 // b)))
print(f"{model}: images/s, medians of 5 interleaved rounds ({runners['one call'].config['intra_op_num_threads']} threads)")
print("| setting | " + " | ".join(f"batch {b}" for b in batches) + " |")
print("|---|" + "---|" * len(batches))
for name in settings:
    print(f"| {name} | " + " | ".join(f"{np.median(rates[(name, b)]):,.0f}" for b in batches) + " |")
