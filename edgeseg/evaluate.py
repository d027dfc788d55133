"""Run a model over a dataset and score it: the library behind ``edgeseg eval`` (and ``edgeseg compare``).

    with load_runner("runs/demo/model.onnx") as runner:
        probs = predict_probs(runner, dataset.images, batch_size=16)
        report = evaluate(runner, dataset, {"0.5": 0.5, "best": model_threshold("runs/demo/model.onnx")},
                          rule=model_mask_rule("runs/demo/model.onnx"))
        report["thresholds"]["best"]["dice"]

    evaluate_models(["runs/demo/model.onnx", "classical"], ["data/seed", "data/good"])   # what edgeseg eval shows

A set is scored chunk by chunk (read, predict, score, drop), so ``edgeseg eval`` on 4,000 images needs
the memory of one chunk, not of the set. Images of any size and bit depth are scored: a model that takes
another size runs them in tiles (:func:`edgeseg.tiling.any_size`).

Metric definitions live in :mod:`edgeseg.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import metrics
from edgeseg.artifacts import manifest_path, read_manifest
from edgeseg.data.dataset import Dataset, ImageStack, chunk_for, load_dataset
from edgeseg.errors import EdgesegError
from edgeseg.postprocess import MaskRule
from edgeseg.progress import Progress, silent
from edgeseg.runners.base import Runner

#: The threshold of the classical detector (tuned so 0.5 is its operating point) and the table's first column.
DEFAULT_THRESHOLD = 0.5


def predict_probs(runner: Runner, images: np.ndarray | ImageStack, batch_size: int = 16,
                  progress: Progress = silent) -> np.ndarray:
    """Probabilities (N, H, W) float32 for ``images`` (N, H, W), in batches of ``batch_size``.

    ``images`` may be an :class:`~edgeseg.data.dataset.ImageStack`: it is read one batch at a time (the
    probabilities of the whole stack are still returned; :func:`evaluate` asks for one chunk at a time).
    The runner must be active (``with runner:``); progress is reported in images done.
    """
    if batch_size < 1:
        raise EdgesegError(f"batch size must be at least 1, got {batch_size}")
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    n = len(images)
    out = np.empty(images.shape[:3], dtype=np.float32)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        out[start:stop] = runner.infer(np.asarray(images[start:stop]))
        progress(stop, n, "")
    return out


def _no_point(model: str | Path, why: str) -> EdgesegError:
    return EdgesegError(f"{model} {why}, so nothing says which threshold and mask rule it runs at: fit them with "
                        f"edgeseg operating-point --model {model}, or pass --threshold T to run it at T with a "
                        "plain threshold")


def _manifest_value(model: str | Path, key: str) -> tuple[Any, Path]:
    """``key`` from the model's manifest and the manifest's path. A model without a manifest, or whose
    manifest lacks the key, is refused in one line (it would run at a default nobody chose); so are bad JSON
    and a manifest written for another file (:func:`~edgeseg.artifacts.read_manifest`)."""
    from edgeseg.runners.registry import backend_of

    if not Path(model).exists():
        raise EdgesegError(f"model file not found: {model}")
    backend_of(model)  # a file no backend reads is refused for that, not for its missing manifest
    record = read_manifest(model)
    mpath = manifest_path(model)
    if record is None:
        raise _no_point(model, f"has no manifest ({mpath.name})")
    if key not in record:
        raise _no_point(model, f"has no {key} in its manifest ({mpath.name})")
    return record[key], mpath


def model_threshold(model: str | Path) -> tuple[float, str]:
    """The model's own threshold (the operating point fitted in training) from its manifest, and where it came from.

    ``classical`` gets (0.5, "default"); a model without a manifest, or whose manifest has no ``threshold``,
    is a one-line :class:`EdgesegError` that names ``--threshold``.
    """
    if str(model) == "classical":
        return DEFAULT_THRESHOLD, "default"
    t, mpath = _manifest_value(model, "threshold")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < float(t) < 1.0:
        raise EdgesegError(f"{mpath}: threshold must be a number in (0, 1), got {t!r}")
    return float(t), "manifest"


def model_mask_rule(model: str | Path) -> MaskRule:
    """The model's mask rule (hysteresis, minimum blob) from its manifest; ``classical`` cleans up its own mask
    and gets a plain threshold. A model without one is refused, as in :func:`model_threshold`."""
    if str(model) == "classical":
        return MaskRule()
    d, mpath = _manifest_value(model, "mask_rule")
    if not isinstance(d, dict):
        raise EdgesegError(f"{mpath}: mask_rule must be an object, got {d!r}")
    return MaskRule.from_dict(d)


def model_point(model: str | Path, threshold: float | None = None) -> tuple[float, str, MaskRule]:
    """(threshold, where it came from, mask rule) a command runs ``model`` at.

    Without ``threshold``: the manifest's (:func:`model_threshold`, :func:`model_mask_rule`). With it (a
    command's ``--threshold``): that threshold, with the manifest's mask rule when the model has a complete
    manifest, else a plain threshold — so a model without a manifest runs only at a threshold someone chose.
    """
    if threshold is None:
        t, source = model_threshold(model)
        return t, source, model_mask_rule(model)
    record = None if str(model) == "classical" else read_manifest(model)
    rule = (record or {}).get("mask_rule")
    return float(threshold), "--threshold", MaskRule.from_dict(rule) if isinstance(rule, dict) else MaskRule()


def evaluate(runner: Runner, dataset: Dataset, thresholds: Mapping[str, float] | Sequence[float] = (0.5,),
             batch_size: int = 16, progress: Progress = silent, probs: np.ndarray | None = None,
             rule: MaskRule | None = None, chunk_size: int | None = None) -> dict[str, Any]:
    """Score ``runner`` on ``dataset`` at each threshold; a JSON-ready dict.

    ``thresholds``: {label: value} (e.g. {"0.5": 0.5, "best": 0.42}) or a list of values (labelled by their
    value). ``probs``: pass predictions already computed to skip inference. ``rule``: how probabilities
    become masks beyond the threshold (hysteresis, minimum blob; :func:`model_mask_rule` reads the model's).
    Result: model, backend, precision, data, n_images, thresholds {label: metrics.compute(...)}, and
    ``oracle_threshold`` — the F1-best threshold on this very data (optimistic; shows how far the
    model's own threshold is from ideal here; None for a set without defect pixels).

    The set is read, predicted and scored ``chunk_size`` images at a time (default: :func:`chunk_for` the
    images' size; :meth:`Dataset.chunks`,
    :class:`metrics.Counts`, :class:`metrics.F1Curve`), so memory does not grow with the set; the numbers are
    those of the whole set at once.
    """
    if not isinstance(thresholds, Mapping):
        thresholds = {f"{t:g}": float(t) for t in thresholds}
    if probs is not None:
        probs = metrics.as_stack(probs)
        if len(probs) != len(dataset):
            raise ValueError(f"{len(probs)} probability maps for {len(dataset)} images")
    counts = {label: metrics.Counts() for label in thresholds}
    curve = metrics.F1Curve()
    done = 0
    for part in dataset.chunks(chunk_size or chunk_for(dataset.images.shape[1:])):
        if probs is None:
            p = predict_probs(runner, part.images, batch_size,
                              lambda d, n, m="", base=done: progress(base + d, len(dataset), m))
        else:
            p = probs[done : done + len(part)]
        truth = metrics.GroundTruth.from_masks(part.masks, part.defects)
        if p.shape != truth.masks.shape:
            raise ValueError(f"probabilities {p.shape} and masks {truth.masks.shape} differ in shape")
        for label, t in thresholds.items():
            counts[label].add(metrics.predicted(p, t, rule), truth)
        curve.add(p, part.masks)
        done += len(part)
    return {
        "model": str(runner.path) if runner.path is not None else runner.backend_name,
        "backend": runner.backend_name,
        "precision": runner.precision.value,
        "data": str(dataset.path),
        "n_images": len(dataset),
        "mask_rule": (rule or MaskRule()).to_dict(),
        "thresholds": {label: counts[label].report(t) for label, t in thresholds.items()},
        # F1 needs defect pixels: on a defect-free set every threshold above the highest score ties.
        "oracle_threshold": curve.best_threshold() if curve.defect_pixels else None,
    }


def evaluate_models(models: Sequence[str | Path], data: Sequence[str | Path], threshold: float | None = None,
                    batch_size: int = 16, mask_rule: bool = True,
                    progress: Callable[[str], ContextManager[Progress]] = lambda label: nullcontext(silent),
                    tile: int | None = None, overlap: int | None = None) -> dict[str, Any]:
    """Score every model on every labelled set (:func:`evaluate`), at 0.5 and at the model's own point
    (:func:`model_point`; ``threshold`` overrides the manifest's), with its mask rule unless ``mask_rule`` is
    False; ``{"results": [...]}``, one result per (model, set) in that order, each with its threshold's source
    and the runner's config where it has one.

    Every model's point is read, then every set opened, before any model is loaded: a model without its point
    or a bad set fails before the work. ``progress(label)`` opens a progress callback per (model, set).
    ``tile``, ``overlap``: how images a model does not take whole are tiled (:func:`edgeseg.tiling.any_size`)."""
    from edgeseg.runners import load_runner
    from edgeseg.tiling import any_size, check_tiling

    check_tiling(tile, overlap)

    points = {m: model_point(m, threshold) for m in models}
    datasets = [load_dataset(d) for d in data]
    results = []
    for m in models:
        best, source, rule = points[m]
        with any_size(load_runner(m), tile, overlap) as runner:
            for ds in datasets:
                with progress(f"{Path(m).name} on {ds.path.name}") as done:
                    r = evaluate(runner, ds, {"0.5": DEFAULT_THRESHOLD, "best": best}, batch_size, done,
                                 rule=rule if mask_rule else MaskRule())
                r["threshold_source"] = source
                if isinstance(getattr(runner, "config", None), dict):
                    r["runner_config"] = runner.config
                results.append(r)
    return {"results": results}
