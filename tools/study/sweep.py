"""Recall at a false-blob budget: the best recall over thresholds whose FP blobs/image stay within the budget.

    python tools/study/sweep.py runs/x/model.keras [BUDGET=0.01] [DATA_ROOT=runs/demo/data]

An oracle on the test set (the threshold is picked on the very data it is scored on), the same for every model,
so it compares models at an equal false-alarm rate; no mask rule.
"""
import sys
from pathlib import Path

from edgeseg import metrics
from edgeseg.data.dataset import load_dataset
from edgeseg.evaluate import predict_probs
from edgeseg.runners.base import load_runner

model = sys.argv[1]
budget = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
root = Path(sys.argv[3] if len(sys.argv) > 3 else "runs/demo/data")
thresholds = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999]
with load_runner(model) as runner:
    for name in ("seed", "gauss", "vary"):
        if not (root / name).is_dir():
            continue
        ds = load_dataset(root / name)
        probs = predict_probs(runner, ds.images)
        truth = metrics.GroundTruth.from_masks(ds.masks, ds.defects)
        best = None
        for t in thresholds:
            m = metrics.compute(probs, truth, t)
            if m["fp_blobs_per_image"] <= budget and (best is None or m["defect_recall"] > best[1]):
                best = (t, m["defect_recall"], m["dice"], m["fp_blobs_per_image"])
        print(f"{model} {name}: " + ("no threshold within budget" if best is None else
              f"threshold {best[0]} recall {best[1]:.3f} dice {best[2]:.3f} fp/img {best[3]:.3f}"), flush=True)
