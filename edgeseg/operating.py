"""A model's operating point: the pixel threshold and mask rule it runs at, chosen under a false-alarm budget.

An inspection line states how many false alarms it can afford (false blobs per image) and wants as many
defects as it can get within that. The threshold that maximises pixel F1 does not know about that budget: a
network trained to find faint defects (``hardpos``) puts its F1-best threshold where false blobs on Gaussian
noise are several times the budget. So the operating point is fitted on a *fitting set* — images with defects
and defect-free images — by sweeping thresholds and candidate rules:

* a point is *within budget* when its false blobs per image over the whole fitting set are ≤ ``budget``;
* among those, the one with the highest ``defect_recall + dice`` wins: recall says whether a defect is found,
  Dice whether it is measured to size, and the line needs both (hysteresis can buy a point of recall with
  three points of Dice; the sum refuses that trade, it takes one point for one);
* when no point is within budget, the one with the fewest false blobs wins, and the result says so.

    points = sweep(defect_probs, GroundTruth.from_masks(masks), good_probs)
    best, within_budget = choose(points, budget=0.005)
    best.threshold, best.rule            # what the manifest records; eval/predict/compare apply them

    fit(lambda images: predict_probs(runner, images), budget=0.005)   # all of it, on a fresh fitting set

``edgeseg train`` fits every new model this way; ``edgeseg operating-point`` refits a saved one for another
budget, or a quantized one for its own probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.data.synth import generate_batch, validation_config
from edgeseg.errors import EdgesegError
from edgeseg.metrics import GroundTruth, score
from edgeseg.postprocess import MaskRule

#: The rules a fit chooses between: no hysteresis, and the hysteresis rule older models were trained with.
#: Both drop blobs under 32 px (half the seed's smallest defect).
CANDIDATE_RULES: tuple[MaskRule, ...] = (MaskRule(grow=None, min_area=32), MaskRule(grow=0.2, min_area=32))
#: Thresholds swept: 0.30 … 0.95 in steps of 0.05 (probabilities of a trained network are steep; a finer grid
#: moves recall by less than one defect in a few hundred).
THRESHOLDS: tuple[float, ...] = tuple(round(0.30 + 0.05 * k, 2) for k in range(14))
#: False blobs per image a line affords by default: one false alarm in 200 images.
DEFAULT_BUDGET = 0.005
#: The fitting set's default size (defect images, and as many defect-free ones) and seed.
DEFAULT_COUNT, DEFAULT_SEED = 500, 90_001


@dataclass(frozen=True)
class Point:
    """One (threshold, rule) and what it scores on the fitting set."""

    threshold: float
    rule: MaskRule
    dice: float
    defect_recall: float
    fp_blobs_per_image: float

    def within(self, budget: float) -> bool:
        return self.fp_blobs_per_image <= budget + 1e-12

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "mask_rule": self.rule.to_dict(), "dice": round(self.dice, 5),
                "defect_recall": round(self.defect_recall, 5),
                "fp_blobs_per_image": round(self.fp_blobs_per_image, 5)}


def sweep(defect_probs: np.ndarray, truth: GroundTruth, good_probs: np.ndarray,
          rules: Sequence[MaskRule] = CANDIDATE_RULES, thresholds: Sequence[float] = THRESHOLDS) -> list[Point]:
    """Score every (rule, threshold): Dice and recall on the defect images, false blobs per image over the
    defect images and the defect-free ones together."""
    if not truth.masks.any():
        raise EdgesegError("fitting an operating point needs images with defects")
    if len(good_probs) == 0:
        raise EdgesegError("fitting an operating point needs defect-free images")
    good_truth = GroundTruth.from_masks(np.zeros(good_probs.shape, np.uint8))
    n = len(defect_probs) + len(good_probs)
    points = []
    for rule in rules:
        for t in thresholds:
            d = score(rule.apply(defect_probs, t), truth, t)
            g = score(rule.apply(good_probs, t), good_truth, t)
            points.append(Point(float(t), rule, d["dice"], d["defect_recall"], (d["fp_blobs"] + g["fp_blobs"]) / n))
    return points


def choose(points: Sequence[Point], budget: float = DEFAULT_BUDGET) -> tuple[Point, bool]:
    """The best point within ``budget`` (highest recall + Dice; ties go to the higher threshold), and
    whether it is within budget at all (if not: the point with the fewest false blobs)."""
    if not points:
        raise EdgesegError("no operating points to choose from")
    if budget < 0:
        raise EdgesegError(f"false-alarm budget must be >= 0, got {budget}")
    within = [p for p in points if p.within(budget)]
    if within:
        return max(within, key=lambda p: (p.defect_recall + p.dice, p.threshold)), True
    return min(points, key=lambda p: (p.fp_blobs_per_image, -(p.defect_recall + p.dice))), False


def fitting_set(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT,
                image_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(defect images (N, S, S) uint8, their masks (N, S, S) uint8, defect-free images (N, S, S) uint8):
    ``count`` of each from the evaluation-like distribution (:func:`~edgeseg.data.synth.validation_config`),
    drawn from rng ``[seed, 1]`` — apart from the validation set, which training draws from rng ``seed``."""
    if count < 1:
        raise EdgesegError(f"fitting set: count must be at least 1, got {count}")
    cfg = validation_config(image_size)
    rng = np.random.default_rng([seed, 1])
    defect, masks = generate_batch(rng, cfg.replace(good_fraction=0.0), count)
    good, _ = generate_batch(rng, cfg.replace(good_fraction=1.0), count)
    return defect, masks, good


def fit_on(predict: Callable[[np.ndarray], np.ndarray], defect: np.ndarray, masks: np.ndarray, good: np.ndarray,
           budget: float = DEFAULT_BUDGET) -> dict[str, Any]:
    """Run ``predict`` ((N, H, W) uint8 images → (N, H, W) probabilities) on images with defects (``masks``
    their labels) and defect-free ones, sweep and choose. The result is a manifest's ``operating_point``:
    budget, within_budget, the chosen point, and the whole sweep (what a stricter budget would cost)."""
    if budget < 0:
        raise EdgesegError(f"false-alarm budget must be >= 0, got {budget}")
    points = sweep(predict(defect), GroundTruth.from_masks(masks), predict(good))
    best, within = choose(points, budget)
    return {"budget": budget, "within_budget": within, "chosen": best.to_dict(),
            "sweep": [p.to_dict() for p in points]}


def fit(predict: Callable[[np.ndarray], np.ndarray], budget: float = DEFAULT_BUDGET, count: int = DEFAULT_COUNT,
        seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """:func:`fit_on` a freshly drawn :func:`fitting_set`, recorded under ``fitting_set``."""
    defect, masks, good = fitting_set(seed, count)
    return {**fit_on(predict, defect, masks, good, budget),
            "fitting_set": {"defect_images": count, "good_images": count, "seed": [seed, 1]}}
