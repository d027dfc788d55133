"""A model's operating point: the pixel threshold and mask rule it runs at, chosen under a false-alarm budget.

An inspection line states how many false alarms it can afford (false blobs per image) and wants as many
defects as it can get within that. The threshold that maximises pixel F1 does not know about that budget: a
network trained to find faint defects (``hardpos``) puts its F1-best threshold where false blobs on Gaussian
noise are several times the budget. So the operating point is fitted on a *fitting set* — images with defects
and defect-free images — by sweeping thresholds and candidate rules:

* a point is *within budget* when its false blobs per image are ≤ ``budget`` in every group of the fitting
  set: a line has one kind of noise, and the budget has to hold on it. The generated fitting set has two
  groups, uniform and Gaussian noise (half of the images each; on uniform noise a network reading the hard
  bounds makes almost no false blobs, so a pooled rate would let Gaussian noise run up to twice the budget);
  a line's own images are one group;
* among those, the one with the highest ``defect_recall + dice`` wins: recall says whether a defect is found,
  Dice whether it is measured to size, and the line needs both (hysteresis can buy a point of recall with
  three points of Dice; the sum refuses that trade, it takes one point for one) — or, for a line that ranks
  escapes above measurement (``prefer="recall"``), the one with the highest recall, Dice between equals —
  among those that reach the Dice the line needs to size its defects (``min_dice``), when any does;
* when no point is within budget, the one with the fewest false blobs wins, and the result says so.

The rules decide *blobs*, not pixels. At a strict budget a pixel threshold alone has to rise until the rare
noise patch that looks like a faint defect no longer passes it, and the faint defects go with it. Extent tells
them apart better than height: a noise patch that passes a threshold is small, a defect of the same height is
as large as the defect. So a blob can be kept for its size (``min_area``, 32–128 px, with the threshold
lower), and a found blob can be grown over a lower level (``grow``) so that it covers the whole defect.

    points = sweep(defect_probs, masks, good_probs)     # + defect_groups=, good_groups= per image
    best, within_budget = choose(points, budget=0.005)
    best.threshold, best.rule            # what the manifest records; eval/predict/compare apply them

    point = fit(lambda images: predict_probs(runner, images), budget=0.005)   # all of it, on a fresh fitting set
    record("runs/demo/model.onnx", point)   # into the model's manifest
    best_per_rule(point)                    # what each rule offers, ranked as the fit ranks

``edgeseg train`` fits every new model this way; ``edgeseg operating-point`` refits a saved one for another
budget, or a quantized one for its own probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.data.dataset import Dataset, chunk_for
from edgeseg.data.synth import generate_batch, validation_config
from edgeseg.errors import EdgesegError
from edgeseg.metrics import FP_OVERLAP, HIT_FRACTION, MIN_BLOB, GroundTruth, overlaps
from edgeseg.postprocess import MaskRule
from edgeseg.progress import Progress, silent

#: The rules a fit chooses between: blobs grown over ``grow`` from pixels ≥ the threshold (or not grown), kept
#: when they hold at least ``min_area`` pixels ≥ the threshold — from 32 px (half the seed's smallest defect)
#: to 128. (0.2, 32) is the rule older models were trained with.
CANDIDATE_RULES: tuple[MaskRule, ...] = tuple(MaskRule(grow=grow, min_area=area) for grow in (None, 0.6, 0.5, 0.2)
                                              for area in (32, 64, 96, 128))
#: Thresholds swept: 0.30 … 0.95 in steps of 0.05 (probabilities of a trained network are steep; a finer grid
#: moves recall by less than one defect in a few hundred).
THRESHOLDS: tuple[float, ...] = tuple(round(0.30 + 0.05 * k, 2) for k in range(14))
#: False blobs per image a line affords by default: one false alarm in 200 images.
DEFAULT_BUDGET = 0.005
#: The fitting set's default size (defect images, and as many defect-free ones) and seed. Each noise kind gets
#: 2,000 images, where the default budget is 10 false blobs: with 500 it was 2.5, and one blob more or less
#: moved the chosen threshold by a step.
DEFAULT_COUNT, DEFAULT_SEED = 2000, 90_001


@dataclass(frozen=True)
class Point:
    """One (threshold, rule) and what it scores on the fitting set: Dice and recall over all images with
    defects; false blobs per image in the worst group, and in each group."""

    threshold: float
    rule: MaskRule
    dice: float
    defect_recall: float
    fp_blobs_per_image: float
    fp_by_group: tuple[tuple[str, float], ...] = ()

    def within(self, budget: float) -> bool:
        return self.fp_blobs_per_image <= budget + 1e-12

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "mask_rule": self.rule.to_dict(), "dice": round(self.dice, 5),
                "defect_recall": round(self.defect_recall, 5),
                "fp_blobs_per_image": round(self.fp_blobs_per_image, 5),
                "fp_by_group": {g: round(v, 5) for g, v in self.fp_by_group}}


class _Blobs:
    """The blobs one (low level, seed level) pass finds in one image: the 8-connected components of
    ``probs ≥ low``, each with its seed pixels (``≥ seed``), its area and its overlaps with the ground-truth
    defects. Every ``min_area`` of a :class:`~edgeseg.postprocess.MaskRule` then keeps a subset of them, and
    :func:`edgeseg.metrics.score`'s counts follow from these numbers without another pass over the pixels
    (the kept blobs are whole components, so they are the predicted mask's components)."""

    def __init__(self, probs: np.ndarray, low: float, seed: float, truth_labels: np.ndarray | None, n_true: int):
        mask = probs >= low
        n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
        self.area = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
        self.seeds = np.bincount(lab[probs >= seed], minlength=n)[1:] if low < seed else self.area
        self.tp = np.zeros(n - 1, np.int64)
        self.max_overlap = np.zeros(n - 1, np.int64)
        self.pair_blob = self.pair_defect = self.pair_count = np.zeros(0, np.int64)
        if n_true and n > 1:
            blob, defect, counts = overlaps(lab, truth_labels, n_true)
            self.pair_blob, self.pair_defect, self.pair_count = blob - 1, defect - 1, counts
            np.add.at(self.tp, self.pair_blob, counts)
            np.maximum.at(self.max_overlap, self.pair_blob, counts)

    def counts(self, rule: MaskRule, truth_areas: np.ndarray) -> tuple[int, int, int, int]:
        """(true-positive pixels, predicted pixels, defects found, false blobs) when ``rule`` drops the blobs
        with too few seed pixels."""
        keep = rule.keeps(self.seeds)
        found = 0
        if len(truth_areas):
            kept = keep[self.pair_blob]
            hits = np.bincount(self.pair_defect[kept], weights=self.pair_count[kept], minlength=len(truth_areas))
            found = int(np.count_nonzero(hits >= HIT_FRACTION * truth_areas))
        false = keep & (self.area >= MIN_BLOB) & (self.max_overlap < FP_OVERLAP * self.area)
        return int(self.tp[keep].sum()), int(self.area[keep].sum()), found, int(np.count_nonzero(false))


class Tally:
    """What every (rule, threshold) scores, counted chunk by chunk: a fitting set of any size is swept without
    holding its probability maps (4,000 images of 256² are 1 GB of float32). The counts are
    :func:`edgeseg.metrics.score`'s on :meth:`MaskRule.apply`'s masks; rules that differ only in
    ``min_area`` share one pass over the pixels per threshold.

        tally = Tally()
        tally.add(probs, masks, groups)   # images with defects (masks: their labels)
        tally.add(probs, None, groups)    # defect-free images
        points = tally.points()
    """

    def __init__(self, rules: Sequence[MaskRule] = CANDIDATE_RULES, thresholds: Sequence[float] = THRESHOLDS):
        self._keys = [(rule, float(t)) for rule in rules for t in thresholds]
        # One pass per (low level, seed level); the keys it serves, with their rules.
        self._passes: dict[tuple[float, float], list[tuple[int, MaskRule]]] = {}
        for k, (rule, t) in enumerate(self._keys):
            self._passes.setdefault((rule.level(t), t), []).append((k, rule))
        # Per key: true-positive, predicted and true defect pixels, defects found; per group: false blobs.
        self._pixels = np.zeros((len(self._keys), 3), np.int64)
        self._found = np.zeros(len(self._keys), np.int64)
        self._fp: list[dict[str, int]] = [{} for _ in self._keys]
        self._defects = self._good = 0
        self._images: dict[str, int] = {}

    def add(self, probs: np.ndarray, masks: np.ndarray | None = None, groups: Sequence[str] | None = None) -> None:
        """Count ``probs`` (N, H, W): images with defects when ``masks`` are given, else defect-free ones.
        ``groups`` names each image's group (None: one group)."""
        probs = np.asarray(probs)
        g = np.asarray(groups if groups is not None else ["all"] * len(probs), dtype=str)
        if len(g) != len(probs):
            raise EdgesegError("fitting set: one group label per image is needed")
        truth = np.asarray(masks) > 0 if masks is not None else np.zeros(probs.shape, bool)
        if truth.shape != probs.shape:
            raise EdgesegError(f"fitting set: masks {truth.shape} and probabilities {probs.shape} differ in shape")
        gt = GroundTruth.from_masks(truth)
        for name in set(g.tolist()):
            self._images[name] = self._images.get(name, 0) + int((g == name).sum())
        if masks is None:
            self._good += len(probs)
        self._defects += sum(len(a) for a in gt.areas)
        if masks is not None:
            self._pixels[:, 2] += int(np.count_nonzero(truth))  # Dice is over the images with defects
        peaks = probs.reshape(len(probs), -1).max(axis=1) if probs.size else np.zeros(len(probs))
        for i in range(len(probs)):
            for (low, seed), keys in self._passes.items():
                if peaks[i] < low:  # no blob at this level: nothing to count (most defect-free images)
                    continue
                blobs = _Blobs(probs[i], low, seed, gt.labels[i], len(gt.areas[i]))
                for k, rule in keys:
                    tp, pred, found, false = blobs.counts(rule, gt.areas[i])
                    if masks is not None:
                        self._pixels[k, :2] += (tp, pred)
                    self._found[k] += found
                    self._fp[k][g[i]] = self._fp[k].get(g[i], 0) + false

    def points(self) -> list[Point]:
        """One :class:`Point` per (rule, threshold): Dice and recall over all images with defects; false blobs
        per image counted per group, over the group's images with and without defects, and the worst group's
        rate as the point's."""
        if not self._defects:
            raise EdgesegError("fitting an operating point needs images with defects")
        if not self._good:
            raise EdgesegError("fitting an operating point needs defect-free images")
        points = []
        for k, (rule, t) in enumerate(self._keys):
            tp, pred, true = (int(v) for v in self._pixels[k])
            rates = tuple((name, self._fp[k].get(name, 0) / n) for name, n in sorted(self._images.items()))
            points.append(Point(t, rule, 2 * tp / max(pred + true, 1), int(self._found[k]) / self._defects,
                                max(r for _, r in rates), rates if len(rates) > 1 else ()))
        return points


def sweep(defect_probs: np.ndarray, masks: np.ndarray, good_probs: np.ndarray,
          defect_groups: Sequence[str] | None = None, good_groups: Sequence[str] | None = None,
          rules: Sequence[MaskRule] = CANDIDATE_RULES, thresholds: Sequence[float] = THRESHOLDS) -> list[Point]:
    """Score every (rule, threshold) on images with defects (``masks`` their labels) and defect-free ones,
    all in memory (:class:`Tally` counts chunk by chunk). ``defect_groups`` / ``good_groups`` name each
    image's group (e.g. its noise kind; None: one group)."""
    tally = Tally(rules, thresholds)
    tally.add(defect_probs, masks, defect_groups)
    tally.add(good_probs, None, good_groups)
    return tally.points()


#: How points within the budget are ranked: ``balanced`` = recall + Dice (one point for one); ``recall`` =
#: recall first, Dice between equal recalls (a line that ranks escapes above measuring a defect to size).
PREFERENCES: tuple[str, ...] = ("balanced", "recall")


def check_preference(prefer: str) -> str:
    """``prefer`` if it is one of :data:`PREFERENCES`, else a one-line :class:`EdgesegError`."""
    if prefer not in PREFERENCES:
        raise EdgesegError(f"unknown preference {prefer!r}: choose one of {', '.join(PREFERENCES)}")
    return prefer


def check_choice(budget: float, prefer: str, min_dice: float) -> None:
    """What :func:`choose` is asked for, checked before any work: a one-line :class:`EdgesegError` if wrong."""
    from edgeseg.validate import finite

    finite("false-alarm budget", budget, 0, unit="false blobs per image")  # NaN would be written into a manifest
    finite("the Dice floor", min_dice, 0, 1, hi_open=True)
    check_preference(prefer)


def merit(recall: float, dice: float, threshold: float, prefer: str = "balanced",
          min_dice: float = 0.0) -> tuple[float, ...]:
    """The sort key of a point under ``prefer`` (higher is better; ties go to the higher threshold), points that
    reach the Dice floor ``min_dice`` ahead of those that do not."""
    if check_preference(prefer) == "balanced":
        return (dice >= min_dice, recall + dice, threshold)
    return (dice >= min_dice, recall, dice, threshold)


def choose(points: Sequence[Point], budget: float = DEFAULT_BUDGET, prefer: str = "balanced",
           min_dice: float = 0.0) -> tuple[Point, bool]:
    """The best point within ``budget`` (by :func:`merit` under ``prefer``), and whether it is within budget
    at all (if not: the point with the fewest false blobs).

    ``min_dice`` is the Dice a line needs to measure its defects to size: points within the budget below it are
    passed over while any point within the budget reaches it (a recall-first line then takes the most defects it
    can still size); when none does, the floor is dropped (the caller can see it from the chosen point's Dice).
    """
    check_choice(budget, prefer, min_dice)  # fails here, whatever the points
    if not points:
        raise EdgesegError("no operating points to choose from")
    within = [p for p in points if p.within(budget)]
    if within:
        return max(within, key=lambda p: merit(p.defect_recall, p.dice, p.threshold, prefer, min_dice)), True
    return min(points, key=lambda p: (p.fp_blobs_per_image, -(p.defect_recall + p.dice))), False


@dataclass
class FittingSet:
    """Images with defects and their masks, defect-free images, and each image's group (noise kind)."""

    defect: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) uint8
    good: np.ndarray  # (M, S, S) uint8
    defect_groups: list[str]
    good_groups: list[str]


def fitting_set(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT, image_size: int = 256) -> FittingSet:
    """``count`` images with defects and ``count`` without, from the evaluation-like distribution
    (:func:`~edgeseg.data.synth.validation_config`), half of each with uniform noise and half with Gaussian
    noise (the groups), drawn from rng ``[seed, 1]`` — apart from the validation set (rng ``seed``)."""
    if count < 2:
        raise EdgesegError(f"fitting set: count must be at least 2 (one image per noise kind), got {count}")
    cfg = validation_config(image_size)
    rng = np.random.default_rng([seed, 1])
    parts: dict[str, list[np.ndarray]] = {"defect": [], "masks": [], "good": []}
    groups: list[str] = []
    for noise, n in (("uniform", count // 2), ("gaussian", count - count // 2)):
        images, masks = generate_batch(rng, cfg.replace(noise=noise, good_fraction=0.0), n)
        good, _ = generate_batch(rng, cfg.replace(noise=noise, good_fraction=1.0), n)
        parts["defect"].append(images)
        parts["masks"].append(masks)
        parts["good"].append(good)
        groups += [noise] * n
    return FittingSet(*(np.concatenate(parts[k]) for k in ("defect", "masks", "good")), groups, list(groups))


def fit_on(predict: Callable[[np.ndarray], np.ndarray], defect: np.ndarray, masks: np.ndarray, good: np.ndarray,
           budget: float = DEFAULT_BUDGET, defect_groups: Sequence[str] | None = None,
           good_groups: Sequence[str] | None = None, chunk: int | None = None, progress: Progress = silent,
           prefer: str = "balanced", min_dice: float = 0.0) -> dict[str, Any]:
    """Run ``predict`` ((N, H, W) uint8 images → (N, H, W) probabilities) on images with defects (``masks``
    their labels) and defect-free ones, ``chunk`` images at a time, sweep and choose (:func:`choose` under
    ``prefer`` and ``min_dice``). The result is a manifest's ``operating_point``: budget, preference, Dice floor,
    within_budget, the chosen point, and the whole sweep (what a stricter budget would cost). ``progress`` is
    called with images done. The images and masks may be :class:`~edgeseg.data.dataset.ImageStack` s: a set on
    disk is then read a chunk at a time, and memory does not grow with it."""
    check_choice(budget, prefer, min_dice)  # fail before the predictions, not after
    tally = Tally()
    total, done = len(defect) + len(good), 0
    for images, labels, groups in ((defect, masks, defect_groups), (good, None, good_groups)):
        groups = list(groups) if groups is not None else None
        step = chunk or chunk_for(images.shape[1:])  # fewer images at a time where they are large
        for s in range(0, len(images), step):
            part = slice(s, s + step)
            probs = predict(np.asarray(images[part]))  # an ImageStack reads the chunk from disk here
            tally.add(probs, None if labels is None else np.asarray(labels[part]),
                      None if groups is None else groups[part])
            done += len(probs)
            progress(done, total, "")
    points = tally.points()
    best, within = choose(points, budget, prefer, min_dice)
    return {"budget": budget, "prefer": prefer, "min_dice": min_dice, "within_budget": within, "chosen": best.to_dict(),
            "sweep": [p.to_dict() for p in points]}


def fit(predict: Callable[[np.ndarray], np.ndarray], budget: float = DEFAULT_BUDGET, count: int = DEFAULT_COUNT,
        seed: int = DEFAULT_SEED, progress: Progress = silent, prefer: str = "balanced",
        min_dice: float = 0.0) -> dict[str, Any]:
    """:func:`fit_on` a freshly drawn :func:`fitting_set` (the budget holds for each noise kind), recorded
    under ``fitting_set``."""
    fs = fitting_set(seed, count)
    return {**fit_on(predict, fs.defect, fs.masks, fs.good, budget, fs.defect_groups, fs.good_groups,
                     progress=progress, prefer=prefer, min_dice=min_dice),
            "fitting_set": {"defect_images": count, "good_images": count, "seed": [seed, 1],
                            "groups": "noise: uniform | gaussian, half of the images each"}}


def fit_line(predict: Callable[[np.ndarray], np.ndarray], defects: Dataset, good: Dataset,
             budget: float = DEFAULT_BUDGET, progress: Progress = silent, prefer: str = "balanced",
             min_dice: float = 0.0) -> dict[str, Any]:
    """:func:`fit_on` a line's own images (a labelled set of defect images and a set of defect-free ones, one
    group), recorded under ``fitting_set``."""
    return {**fit_on(predict, defects.images, defects.masks, good.images, budget, progress=progress, prefer=prefer,
                     min_dice=min_dice),
            "fitting_set": {"data": str(defects.path), "good": str(good.path), "defect_images": len(defects),
                            "good_images": len(good)}}


@dataclass(frozen=True)
class RuleRow:
    """One candidate rule's best point in a fit (as :meth:`Point.to_dict`): its best threshold within the budget
    or, if none is, its fewest false blobs; whether that point is within the budget, and whether it is the
    chosen one."""

    rule: str  # MaskRule.describe()
    point: dict[str, Any]
    within: bool
    chosen: bool


def best_per_rule(point: dict[str, Any]) -> list[RuleRow]:
    """What a fit (an ``operating_point``: :func:`fit_on`'s result) offers per candidate rule, best first, ranked
    as :func:`choose` ranks (the fit's ``prefer`` and ``min_dice``), the rules with a point within the budget
    ahead of those without."""
    budget, prefer, floor = point["budget"], point.get("prefer", "balanced"), point.get("min_dice", 0.0)

    def key(p: dict) -> tuple[float, ...]:
        return merit(p["defect_recall"], p["dice"], p["threshold"], prefer, floor)

    rules: dict[str, list[dict]] = {}
    for p in point["sweep"]:
        rules.setdefault(MaskRule.from_dict(p["mask_rule"]).describe(), []).append(p)
    rows = []
    for name, points in rules.items():
        within = [p for p in points if p["fp_blobs_per_image"] <= budget + 1e-12]
        best = max(within, key=key) if within else min(points, key=lambda p: p["fp_blobs_per_image"])
        rows.append(RuleRow(name, best, bool(within), best == point["chosen"]))
    rows.sort(key=lambda r: (r.within, *key(r.point)), reverse=True)
    return rows


def record(model: str | Path, point: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write the fit's threshold, mask_rule and ``operating_point`` into the model's manifest (a new one if it has
    none), the rest of the manifest kept; with ``out``, into a copy of the model and its manifest there, the
    original left as it was. Returns the manifest written.

    The copy's manifest is written first and names the model's sha256, then the model is copied: a crash
    between the two leaves either no model (nothing runs) or an older file whose hash the manifest refuses
    (:func:`edgeseg.artifacts.read_manifest`), never a model that silently runs at the default threshold."""
    import shutil

    from edgeseg.artifacts import atomic_path, manifest, manifest_path, read_manifest, sha256_file, write_json

    chosen = {"threshold": point["chosen"]["threshold"], "mask_rule": point["chosen"]["mask_rule"],
              "operating_point": point}
    merged = {**(read_manifest(model) or manifest("model", config={})), **chosen}
    merged.setdefault("sha256", sha256_file(model))
    if out is None:
        return write_json(manifest_path(model), merged)
    # The copy names its source among its inputs: a later refit into the same --out replaces it without --force.
    merged["inputs"] = {**(merged.get("inputs") or {}), str(model): merged["sha256"]}
    written = write_json(manifest_path(out), merged)
    with atomic_path(out) as tmp:
        shutil.copyfile(model, tmp)
    return written
