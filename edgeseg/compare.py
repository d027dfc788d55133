"""What each precision costs: one model in several forms (Keras FP32, ONNX FP32/FP16/INT8, TensorRT engines)
scored side by side on the same labelled sets, the first model being the reference.

For every (model, dataset): the inspection metrics at the model's own threshold (its manifest's operating
point, fitted in training and copied from the Keras model through export and quantization), the F1-best
threshold recomputed on these predictions (does INT8 move the operating point?), and agreement with the
reference — IoU of the binary masks each produces at its own threshold and mask rule, max and mean |Δprob|.

    report = compare(["runs/demo/model.keras", "runs/demo/model.int8.onnx"], ["data/seed"])
    report["rows"][1]["delta_dice"]       # INT8 Dice − Keras Dice on data/seed

Each set is read once, a chunk at a time, and every model predicts that chunk before the next is read: the
agreement with the reference needs both models' probabilities of the same images, and nothing larger than a
chunk of them is held.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress, silent

#: numpy's pairwise summation sums runs of at most this many elements in eight lanes (``PW_BLOCKSIZE``).
_PAIRWISE_BLOCK = 128


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean mask stacks (1.0 when both are empty)."""
    inter = np.count_nonzero(a & b)
    union = np.count_nonzero(a | b)
    return float(inter) / union if union else 1.0


class StreamingMean:
    """``np.mean`` of one long array fed in consecutive pieces, equal to the last bit to the mean of the whole.

    numpy sums a contiguous float array pairwise: a run of n > 128 elements is the sum of its two halves, split
    at n // 2 rounded down to a multiple of 8; a shorter run is summed in eight lanes. The runs depend only on
    the total length, so each run is summed (by numpy itself: a run's sum is numpy's sum of that run alone) as
    soon as its elements are in, and joined to its sibling when that is summed too. Only the elements of a
    run cut by the end of a piece wait for the next one (fewer than a chunk). A float32 mean of |Δprob| over
    a whole set is thus reproduced chunk by chunk, where a float64 running sum would differ in the last digits.

        mean = StreamingMean(total=n_images * 256 * 256)
        for part in parts:
            mean.add(part)
        mean.value()          # == float(np.concatenate(parts).mean())
    """

    def __init__(self, total: int):
        self.total = int(total)
        self._pos = 0  # index of the first element not in a summed run
        self._pending: np.ndarray | None = None  # elements from _pos on, waiting for their run to fill
        self._runs: list[tuple[int, int, Any]] = []  # summed runs, left to right: (start, length, sum)

    def _split(self, n: int) -> int:
        half = n // 2
        return half - half % 8

    def _run_from(self, start: int, end: int) -> int | None:
        """The length of the longest run that begins at ``start`` and ends by ``end``, or None."""
        s, n = 0, self.total
        while True:
            if s == start and s + n <= end:
                return n
            if n <= _PAIRWISE_BLOCK:
                return None
            left = self._split(n)
            s, n = (s, left) if start < s + left else (s + left, n - left)

    def _is_run(self, start: int, length: int) -> bool:
        s, n = 0, self.total
        while n >= length:
            if s == start and n == length:
                return True
            if n <= _PAIRWISE_BLOCK:
                return False
            left = self._split(n)
            s, n = (s, left) if start < s + left else (s + left, n - left)
        return False

    def add(self, values: np.ndarray) -> None:
        """The next ``values`` of the array, in order (any shape: C order is the array's order)."""
        v = np.ascontiguousarray(values).ravel()
        pending = v if self._pending is None else np.concatenate([self._pending, v])
        end = self._pos + len(pending)
        if end > self.total:
            raise ValueError(f"more than the {self.total} elements announced")
        while self._pos < end and (n := self._run_from(self._pos, end)) is not None:
            self._runs.append((self._pos, n, np.add.reduce(pending[:n])))
            pending = pending[n:]
            self._pos += n
            while len(self._runs) >= 2 and self._is_run(self._runs[-2][0], self._runs[-2][1] + self._runs[-1][1]):
                (s, a, x), (_, b, y) = self._runs[-2:]
                self._runs[-2:] = [(s, a + b, x + y)]
        self._pending = pending.copy() if len(pending) else None  # not a view that keeps the piece alive

    def value(self) -> float:
        """The mean, once all ``total`` elements are in (numpy's: the sum divided by the count, in its dtype)."""
        if self._pos != self.total or len(self._runs) != 1:
            raise ValueError(f"{self._pos} of {self.total} elements summed")
        total = self._runs[0][2]
        return float(total.dtype.type(total / np.intp(self.total)))


class _Agreement:
    """A model's agreement with the reference on one set, summed chunk by chunk: the masks' intersection and
    union, the largest |Δprob| and its mean."""

    def __init__(self, n_pixels: int):
        self.inter = self.union = 0
        self.max = 0.0
        self.mean = StreamingMean(n_pixels)

    def add(self, pred: np.ndarray, ref_pred: np.ndarray, probs: np.ndarray, ref_probs: np.ndarray) -> None:
        self.inter += int(np.count_nonzero(pred & ref_pred))
        self.union += int(np.count_nonzero(pred | ref_pred))
        diff = np.abs(probs - ref_probs)
        self.max = max(self.max, float(diff.max()))
        self.mean.add(diff)

    def report(self) -> dict[str, float]:
        return {"mask_iou_vs_ref": float(self.inter) / self.union if self.union else 1.0,
                "max_abs_dprob": self.max, "mean_abs_dprob": self.mean.value()}


def compare(models: Sequence[str | Path], datasets: Sequence[str | Path], batch_size: int = 16,
            runner_options: dict[str, Any] | None = None, progress: Progress = silent,
            chunk_size: int | None = None, threshold: float | None = None, tile: int | None = None,
            overlap: int | None = None) -> dict[str, Any]:
    """Rows of metrics per (dataset, model); ``models[0]`` is the reference (see the module docstring).
    ``chunk_size``: images read and predicted at a time (default :func:`edgeseg.data.dataset.chunk_for` their size).
    ``threshold``: every model at this threshold instead of its manifest's (:func:`edgeseg.evaluate.model_point`).
    ``tile``, ``overlap``: how images a model does not take whole are tiled (:func:`edgeseg.tiling.any_size`;
    a model exported for 256² and another for the line's full size are compared on the same images)."""
    from edgeseg import metrics
    from edgeseg.data.dataset import chunk_for, load_dataset
    from edgeseg.evaluate import model_point, predict_probs
    from edgeseg.runners.registry import backend_of, load_runner
    from edgeseg.tiling import any_size, check_tiling

    if not models:
        raise EdgesegError("give at least one model to compare (the first is the reference)")
    if not datasets:
        raise EdgesegError("give at least one --data folder")
    check_tiling(tile, overlap)
    options = runner_options or {}  # each option reaches the backends that take it (thread counts: ONNX Runtime)
    points = [model_point(m, threshold) for m in models]
    thresholds = [(t, source) for t, source, _ in points]
    rules = [rule for _, _, rule in points]
    runners = [any_size(load_runner(m, **backend_of(m).accepts(options)), tile, overlap) for m in models]
    sets = [load_dataset(d) for d in datasets]
    total = len(models) * sum(len(s) for s in sets)
    rows: list[dict[str, Any]] = []
    done = 0
    try:
        for runner in runners:
            runner.activate()
        for ds in sets:
            counts = [metrics.Counts() for _ in models]
            curves = [metrics.F1Curve() for _ in models]
            agreement = [_Agreement(len(ds) * int(np.prod(ds.images.shape[1:]))) for _ in models[1:]]
            for part in ds.chunks(chunk_size or chunk_for(ds.images.shape[1:])):
                truth = metrics.GroundTruth.from_masks(part.masks, part.defects)
                ref_probs = ref_pred = None
                for k, (runner, model, (thr, _), rule) in enumerate(zip(runners, models, thresholds, rules)):
                    message = f"{Path(str(model)).name} on {ds.path.name}"
                    probs = predict_probs(runner, part.images, batch_size,
                                          lambda d, n, m="", base=done, say=message: progress(base + d, total, say))
                    done += len(part)
                    pred = rule.apply(probs, thr)
                    counts[k].add(pred, truth)
                    curves[k].add(probs, part.masks)
                    if k == 0:
                        ref_probs, ref_pred = probs, pred
                    else:
                        agreement[k - 1].add(pred, ref_pred, probs, ref_probs)
            rows += _rows(ds, models, runners, thresholds, rules, counts, curves, agreement)
    finally:
        for runner in runners:
            runner.deactivate()
    return {"reference": str(models[0]), "models": [str(m) for m in models], "data": [str(d) for d in datasets],
            "rows": rows}


def _rows(ds, models, runners, thresholds, rules, counts, curves, agreement) -> list[dict[str, Any]]:
    """One row per model on the set ``ds``, from what was counted over its chunks."""
    rows: list[dict[str, Any]] = []
    has_defects = curves[0].defect_pixels > 0  # Dice and an F1-best threshold need defect pixels
    for k, (runner, model, (thr, thr_source), rule) in enumerate(zip(runners, models, thresholds, rules)):
        m = counts[k].report(thr)
        row = {
            "model": str(model), "backend": runner.backend_name, "precision": runner.precision.value,
            "data": str(ds.path), "n_images": len(ds), "threshold": thr, "threshold_source": thr_source,
            "mask_rule": rule.to_dict(),
            "dice": m["dice"] if has_defects else None, "iou": m["iou"] if has_defects else None,
            "defect_recall": m["defect_recall"],
            "fp_blobs_per_image": m["fp_blobs_per_image"], "escape_rate": m["escape_rate"],
            "overkill_rate": m["overkill_rate"],
            "f1_best_threshold": curves[k].best_threshold() if has_defects else None,
            "metrics": m,
        }
        ref = rows[0] if rows else row
        if k == 0:
            row.update(reference=True, mask_iou_vs_ref=1.0, max_abs_dprob=0.0, mean_abs_dprob=0.0)
        else:
            row.update(reference=False, **agreement[k - 1].report())
        row.update(delta_dice=_delta(row["dice"], ref["dice"]),
                   delta_recall=_delta(m["defect_recall"], ref["metrics"]["defect_recall"]))
        rows.append(row)
    return rows


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
