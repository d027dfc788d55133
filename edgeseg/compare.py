"""What each precision costs: one model in several forms (Keras FP32, ONNX FP32/FP16/INT8, TensorRT engines)
scored side by side on the same labelled sets, the first model being the reference.

For every (model, dataset): the inspection metrics at the model's own threshold (its manifest's operating
point, fitted in training and copied from the Keras model through export and quantization), the F1-best
threshold recomputed on these predictions (does INT8 move the operating point?), and agreement with the
reference — IoU of the binary masks each produces at its own threshold and mask rule, max and mean |Δprob|.

    report = compare(["runs/demo/model.keras", "runs/demo/model.int8.onnx"], ["data/seed"])
    report["rows"][1]["delta_dice"]       # INT8 Dice − Keras Dice on data/seed
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress, silent


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean mask stacks (1.0 when both are empty)."""
    inter = np.count_nonzero(a & b)
    union = np.count_nonzero(a | b)
    return float(inter) / union if union else 1.0


def compare(models: Sequence[str | Path], datasets: Sequence[str | Path], batch_size: int = 16,
            runner_options: dict[str, Any] | None = None, progress: Progress = silent) -> dict[str, Any]:
    """Rows of metrics per (dataset, model); ``models[0]`` is the reference (see the module docstring)."""
    from edgeseg import metrics
    from edgeseg.data.dataset import load_dataset
    from edgeseg.evaluate import model_mask_rule, model_threshold, predict_probs
    from edgeseg.runners.base import load_runner

    if not models:
        raise EdgesegError("give at least one model to compare (the first is the reference)")
    if not datasets:
        raise EdgesegError("give at least one --data folder")
    onnx_options = runner_options or {}  # thread counts etc. apply to the ONNX Runtime runners only
    runners = [load_runner(m, **(onnx_options if str(m).endswith(".onnx") else {})) for m in models]
    thresholds = [model_threshold(m) for m in models]
    rules = [model_mask_rule(m) for m in models]
    sets = [load_dataset(d) for d in datasets]
    total = len(sets) * len(models) * max(len(s) for s in sets)
    rows: list[dict[str, Any]] = []
    done = 0
    try:
        for runner in runners:
            runner.activate()
        for ds in sets:
            truth = metrics.GroundTruth.from_masks(ds.masks, ds.defects)
            ref_probs = ref_mask = ref_metrics = ref_dice = None
            for runner, model, (thr, thr_source), rule in zip(runners, models, thresholds, rules):
                probs = predict_probs(runner, ds.images, batch_size,
                                      lambda d, n, m="": progress(done + d, total, f"{Path(str(model)).name} on {ds.path.name}"))
                done += len(ds)
                pred = rule.apply(probs, thr)
                m = metrics.score(pred, truth, thr)
                has_defects = bool(ds.masks.any())  # Dice and an F1-best threshold need defect pixels
                row = {
                    "model": str(model), "backend": runner.backend.value, "precision": runner.precision.value,
                    "data": str(ds.path), "n_images": len(ds), "threshold": thr, "threshold_source": thr_source,
                    "mask_rule": rule.to_dict(),
                    "dice": m["dice"] if has_defects else None, "iou": m["iou"] if has_defects else None,
                    "defect_recall": m["defect_recall"],
                    "fp_blobs_per_image": m["fp_blobs_per_image"], "escape_rate": m["escape_rate"],
                    "overkill_rate": m["overkill_rate"],
                    "f1_best_threshold": metrics.f1_best_threshold(probs, ds.masks) if has_defects else None,
                    "metrics": m,
                }
                if ref_probs is None:
                    ref_probs, ref_mask, ref_metrics, ref_dice = probs, pred, m, row["dice"]
                    row.update(reference=True, mask_iou_vs_ref=1.0, max_abs_dprob=0.0, mean_abs_dprob=0.0,
                               delta_dice=_delta(row["dice"], row["dice"]),
                               delta_recall=_delta(m["defect_recall"], m["defect_recall"]))
                else:
                    diff = np.abs(probs - ref_probs)
                    row.update(reference=False, mask_iou_vs_ref=mask_iou(pred, ref_mask),
                               max_abs_dprob=float(diff.max()), mean_abs_dprob=float(diff.mean()),
                               delta_dice=_delta(row["dice"], ref_dice),
                               delta_recall=_delta(m["defect_recall"], ref_metrics["defect_recall"]))
                rows.append(row)
    finally:
        for runner in runners:
            runner.deactivate()
    return {"reference": str(models[0]), "models": [str(m) for m in models], "data": [str(d) for d in datasets],
            "rows": rows}


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
