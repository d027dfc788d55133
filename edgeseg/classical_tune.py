"""Tune and measure the classical baseline on generated sets, held-out seeds kept apart.

    python -m edgeseg.classical_tune report            # held-out seeds 1001..1004, tuned defaults
    python -m edgeseg.classical_tune report --split tune

Sets (the project brief's): the seed preset, a Gaussian-noise mixed-shape variant, strong lighting with
level shifts, and defect-free images for overkill. Tuning uses seeds 0..3 (and 5 for 1000 extra defect-free
images that pin the false-alarm tail); reports use seeds 1001..1004, never seen while tuning.

Metrics are :mod:`edgeseg.metrics`' (the ones ``edgeseg eval`` reports): pixel Dice micro-averaged over
the set; defect recall (a ground-truth 8-connected component is found when ≥ 30 % of its pixels are
predicted); false-positive blobs per image (predicted components ≥ 16 px overlapping no defect by ≥ 10 %);
overkill (defect-free images with any blob).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from edgeseg.data.synth import PRESETS, SynthConfig, generate_batch
from edgeseg.runners.classical import ClassicalParams, ClassicalRunner

SETS: dict[str, SynthConfig] = {
    "seed": PRESETS["seed"],
    "gaussian_mixed": PRESETS["seed"].replace(noise="gaussian", shape="mixed"),
    "lighting": PRESETS["seed"].replace(illumination=16, level_shift=(-40, 40)),
    "defect_free": PRESETS["seed"].replace(good_fraction=1.0),
}
SPLITS = {"tune": ((0, 1, 2, 3), 120), "held": ((1001, 1002, 1003, 1004), 200)}


def make_sets(split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    seeds, count = SPLITS[split]
    return {name: generate_batch(np.random.default_rng(s), cfg, count) for (name, cfg), s in zip(SETS.items(), seeds)}


def summary(probs: np.ndarray, masks: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """The project's metrics (:mod:`edgeseg.metrics`, as ``edgeseg eval`` computes them), the headline ones."""
    from edgeseg.metrics import compute

    m = compute(probs, np.asarray(masks, dtype=bool), threshold=threshold)
    keys = ("n_images", "dice", "defect_recall", "fp_blobs_per_image", "overkill_rate", "escape_rate")
    out = {k: m[k] for k in keys}
    out["recall_by_size"] = {k: round(v["recall"], 4) for k, v in m["recall_by_size"].items()}
    return out


def evaluate(params: ClassicalParams, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Metrics per set at the 0.5 operating point, plus images/s on this process's core."""
    runner = ClassicalRunner(**params.to_dict()).activate()
    out: dict[str, Any] = {}
    for name, (images, masks) in sets.items():
        t0 = time.perf_counter()
        probs = runner.infer(images)
        dt = time.perf_counter() - t0
        out[name] = {**summary(probs, masks), "images_per_s": round(len(images) / dt, 1)}
    return out


def speed(images: np.ndarray, params: ClassicalParams, batch: int = 1, repeats: int = 3) -> dict[str, float]:
    """Images/s on one core: the median over ``repeats`` passes of the per-batch median latency."""
    cv2.setNumThreads(1)
    runner = ClassicalRunner(**params.to_dict()).activate()
    runner.infer(images[:batch])  # warm-up: builds the filter bank for this image size
    medians, cpu = [], []
    for _ in range(repeats):
        lat = []
        c0 = time.process_time()
        for i in range(0, len(images) - batch + 1, batch):
            t0 = time.perf_counter()
            runner.infer(images[i : i + batch])
            lat.append(time.perf_counter() - t0)
        cpu.append((time.process_time() - c0) / (len(lat) * batch))
        medians.append(float(np.median(lat)))
    per_batch = float(np.median(medians))
    # CPU seconds per image as well: on a shared machine wall time includes waiting for the core.
    return {"batch": batch, "ms_per_batch": round(per_batch * 1e3, 3), "images_per_s": round(batch / per_batch, 1),
            "cpu_ms_per_image": round(float(np.median(cpu)) * 1e3, 3),
            "images_per_cpu_s": round(1.0 / float(np.median(cpu)), 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["report"])
    ap.add_argument("--split", choices=list(SPLITS), default="held")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter (JSON value)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)  # the speed figure is per core
    params = ClassicalParams()
    if args.set:
        params = replace(params, **{k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)})
    sets = make_sets(args.split)
    result = evaluate(params, sets)
    images = sets["seed"][0][:100]
    timing = [speed(images, params, batch) for batch in (1, 16)]
    print(json.dumps({"split": args.split, "params": params.to_dict(), "results": result, "speed_one_core": timing},
                     indent=1))


if __name__ == "__main__":
    main()
