"""Tune and measure the classical baseline on generated sets, held-out seeds kept apart.

    python -m edgeseg.classical_tune report            # held-out seeds 1001..1004, tuned defaults
    python -m edgeseg.classical_tune report --split tune

Sets (the project brief's): the seed preset, a Gaussian-noise mixed-shape variant, strong lighting with
level shifts, and defect-free images for overkill. Tuning uses seeds 0..3 (and 5 for 1000 extra defect-free
images that pin the false-alarm tail); reports use seeds 1001..1004, never seen while tuning.

Metrics (object-level ones as the inspection line counts them):
- pixel Dice, micro-averaged over the set;
- defect recall: a ground-truth 8-connected component is found when ≥ 30 % of its pixels are predicted;
- false-positive blobs per image: predicted 8-connected components ≥ 16 px with < 10 % of their pixels on
  a defect;
- overkill: the fraction of defect-free images with any predicted component ≥ 16 px.
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


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return n, lab, stats[:, cv2.CC_STAT_AREA]


def score_masks(pred: np.ndarray, gt: np.ndarray, min_blob: int = 16) -> dict[str, float]:
    """Dice, recall, FP blobs/image and overkill for stacks of binary masks (N, H, W)."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    inter, total = 0, 0
    found, defects, fp_blobs, flagged_good, good = 0, 0, 0, 0, 0
    for p, g in zip(pred, gt):
        inter += int(np.count_nonzero(p & g))
        total += int(np.count_nonzero(p)) + int(np.count_nonzero(g))
        n, lab, area = _components(g)
        if n > 1:
            hit = np.bincount(lab[p], minlength=n)
            found += int(np.count_nonzero(hit[1:] >= 0.3 * area[1:]))
            defects += n - 1
        n, lab, area = _components(p)
        if n > 1:
            on_gt = np.bincount(lab[g], minlength=n)
            big = area[1:] >= min_blob
            fp_blobs += int(np.count_nonzero(big & (on_gt[1:] < 0.1 * area[1:])))
        if not g.any():
            good += 1
            flagged_good += int(n > 1 and (area[1:] >= min_blob).any())
    return {
        "dice": 2 * inter / total if total else 1.0,
        "recall": found / defects if defects else float("nan"),
        "fp_blobs_per_image": fp_blobs / len(pred),
        "overkill": flagged_good / good if good else float("nan"),
        "images": len(pred),
    }


def evaluate(params: ClassicalParams, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Metrics per set at the 0.5 operating point, plus images/s on this process's core."""
    runner = ClassicalRunner(**params.to_dict()).activate()
    out: dict[str, Any] = {}
    for name, (images, masks) in sets.items():
        t0 = time.perf_counter()
        probs = runner.infer(images)
        dt = time.perf_counter() - t0
        out[name] = {**score_masks(probs > 0.5, masks), "images_per_s": len(images) / dt}
    return out


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
    result = evaluate(params, make_sets(args.split))
    print(json.dumps({"split": args.split, "params": params.to_dict(), "results": result}, indent=1))


if __name__ == "__main__":
    main()
