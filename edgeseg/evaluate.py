"""Run a model over a dataset and score it: the library behind ``edgeseg eval`` (and ``edgeseg compare``).

    with load_runner("runs/demo/model.onnx") as runner:
        probs = predict_probs(runner, dataset.images, batch_size=16)
        report = evaluate(runner, dataset, {"0.5": 0.5, "best": model_threshold("runs/demo/model.onnx")},
                          rule=model_mask_rule("runs/demo/model.onnx"))
        report["thresholds"]["best"]["dice"]

Metric definitions live in :mod:`edgeseg.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import metrics
from edgeseg.artifacts import manifest_path, read_manifest
from edgeseg.data.dataset import Dataset
from edgeseg.errors import EdgesegError
from edgeseg.postprocess import MaskRule
from edgeseg.progress import Progress, silent
from edgeseg.runners.base import Runner

#: The threshold of a model whose manifest has none, and of the classical detector (tuned so 0.5 is its
#: operating point).
DEFAULT_THRESHOLD = 0.5


def predict_probs(runner: Runner, images: np.ndarray, batch_size: int = 16,
                  progress: Progress = silent) -> np.ndarray:
    """Probabilities (N, H, W) float32 for ``images`` (N, H, W), in batches of ``batch_size``.

    The runner must be active (``with runner:``); progress is reported in images done.
    """
    if batch_size < 1:
        raise EdgesegError(f"batch size must be at least 1, got {batch_size}")
    images = np.asarray(images)
    n = len(images)
    out = np.empty(images.shape[:3], dtype=np.float32)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        out[start:stop] = runner.infer(images[start:stop])
        progress(stop, n, "")
    return out


def _manifest_value(model: str | Path, key: str) -> tuple[Any, Path | None]:
    """``key`` from the model's manifest and the manifest's path; (None, None) for ``classical`` or a model
    without a manifest, (None, path) when the manifest lacks the key. Bad JSON, or a manifest written for
    another file than the model (:func:`~edgeseg.artifacts.read_manifest`), is a user error."""
    if str(model) == "classical":
        return None, None
    record = read_manifest(model)
    if record is None:
        return None, None
    return record.get(key), manifest_path(model)


def model_threshold(model: str | Path) -> tuple[float, str]:
    """The model's own threshold (the operating point fitted in training) from its manifest, and where it came from.

    ``classical`` (and a model without a manifest or a ``threshold`` key) gets (0.5, "default").
    """
    t, mpath = _manifest_value(model, "threshold")
    if t is None:
        return DEFAULT_THRESHOLD, "default"
    if not isinstance(t, (int, float)) or not 0.0 < float(t) < 1.0:
        raise EdgesegError(f"{mpath}: threshold must be a number in (0, 1), got {t!r}")
    return float(t), "manifest"


def model_mask_rule(model: str | Path) -> MaskRule:
    """The model's mask rule (hysteresis, minimum blob) from its manifest; a plain threshold without one
    (``classical`` cleans up its own mask)."""
    d, mpath = _manifest_value(model, "mask_rule")
    if d is not None and not isinstance(d, dict):
        raise EdgesegError(f"{mpath}: mask_rule must be an object, got {d!r}")
    return MaskRule.from_dict(d)


def evaluate(runner: Runner, dataset: Dataset, thresholds: Mapping[str, float] | Sequence[float] = (0.5,),
             batch_size: int = 16, progress: Progress = silent, probs: np.ndarray | None = None,
             rule: MaskRule | None = None) -> dict[str, Any]:
    """Score ``runner`` on ``dataset`` at each threshold; a JSON-ready dict.

    ``thresholds``: {label: value} (e.g. {"0.5": 0.5, "best": 0.42}) or a list of values (labelled by their
    value). ``probs``: pass predictions already computed to skip inference. ``rule``: how probabilities
    become masks beyond the threshold (hysteresis, minimum blob; :func:`model_mask_rule` reads the model's).
    Result: model, backend, precision, data, n_images, thresholds {label: metrics.compute(...)}, and
    ``oracle_threshold`` — the F1-best threshold on this very data (optimistic; shows how far the
    model's own threshold is from ideal here; None for a set without defect pixels).
    """
    if not isinstance(thresholds, Mapping):
        thresholds = {f"{t:g}": float(t) for t in thresholds}
    if probs is None:
        probs = predict_probs(runner, dataset.images, batch_size, progress)
    truth = metrics.GroundTruth.from_masks(dataset.masks, dataset.defects)
    return {
        "model": str(runner.path) if runner.path is not None else runner.backend.value,
        "backend": runner.backend.value,
        "precision": runner.precision.value,
        "data": str(dataset.path),
        "n_images": len(dataset),
        "mask_rule": (rule or MaskRule()).to_dict(),
        "thresholds": {label: metrics.compute(probs, truth, t, rule=rule) for label, t in thresholds.items()},
        # F1 needs defect pixels: on a defect-free set every threshold above the highest score ties.
        "oracle_threshold": metrics.f1_best_threshold(probs, dataset.masks) if dataset.masks.any() else None,
    }
