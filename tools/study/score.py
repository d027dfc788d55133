"""Score a model (or `classical`) on the study's held-out sets at threshold 0.5, without and with its mask rule.

    python tools/study/score.py runs/x/model.keras [DATA_ROOT]     # DATA_ROOT holds seed/ gauss/ vary/ good/

Make the sets once (the commands in docs/study.md), e.g. with `make demo` they are in
runs/demo/data (the default DATA_ROOT). Prints Dice / defect recall / FP blobs per image and writes
MODEL.score.json beside the model.
"""
import sys
from pathlib import Path

from edgeseg import metrics
from edgeseg.artifacts import write_json
from edgeseg.data.dataset import load_dataset
from edgeseg.evaluate import model_mask_rule, predict_probs
from edgeseg.runners.base import load_runner

model = sys.argv[1]
root = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/demo/data")
rule = model_mask_rule(model)
rows = {}
with load_runner(model) as runner:
    for name in ("seed", "gauss", "vary", "good"):
        if not (root / name).is_dir():
            continue
        ds = load_dataset(root / name)
        probs = predict_probs(runner, ds.images)
        truth = metrics.GroundTruth.from_masks(ds.masks, ds.defects)
        for label, r in (("raw", None), ("rule", rule)):
            m = metrics.compute(probs, truth, 0.5, rule=r)
            rows[f"{name}/{label}"] = m
            print(f"{Path(model).parent.name or model:10s} {name:6s} {label:4s} dice {m['dice'] or 0:.3f} "
                  f"recall {m['defect_recall'] or 0:.3f} fp/img {m['fp_blobs_per_image']:.3f} "
                  f"overkill {m['overkill_rate']}", flush=True)
if model != "classical":
    write_json(model + ".score.json", rows)
