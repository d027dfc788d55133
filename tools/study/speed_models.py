"""Images/s of saved models side by side, through the runner `edgeseg bench` uses, interleaved rounds.

    python tools/study/speed_models.py runs/demo/model.onnx runs/demo/model.int8.onnx OTHER.onnx [--rounds 7]

Each round times every model at batch 1 and 32 (the runner's defaults: 2 threads, a batch split over two
workers), so a busy host slows all of them alike; the table gives the median over rounds and the range, which
says how noisy the host was. Unlike `speed_variants.py` (untrained builder variants) this times the files
themselves, e.g. two trained networks or one network's FP32 and INT8 exports.
"""
import argparse

import numpy as np

from edgeseg.data.synth import PRESETS, generate_batch
from edgeseg.runners.base import load_runner
from timing import images_per_s  # tools/study/timing.py

BATCHES = (1, 32)

parser = argparse.ArgumentParser()
parser.add_argument("models", nargs="+")
parser.add_argument("--rounds", type=int, default=7)
args = parser.parse_args()
images, _ = generate_batch(np.random.default_rng(0), PRESETS["seed"], max(BATCHES))
runners = [load_runner(p).activate() for p in args.models]
rates = {(i, b): [] for i in range(len(runners)) for b in BATCHES}
for _ in range(args.rounds):
    for i, runner in enumerate(runners):
        for b in BATCHES:
            x = images[:b]
            rates[i, b].append(images_per_s(lambda: runner.infer(x), b, max(10, 200 // b)))
print(f"images/s, median (range) of {args.rounds} interleaved rounds")
print("| model | " + " | ".join(f"batch {b}" for b in BATCHES) + " |")
print("|---|" + "---|" * len(BATCHES))
for i, path in enumerate(args.models):
    cells = [f"{np.median(r):,.0f} ({min(r):,.0f}–{max(r):,.0f})" for r in (rates[i, b] for b in BATCHES)]
    print(f"| {path} | " + " | ".join(cells) + " |")
for r in runners:
    r.deactivate()
