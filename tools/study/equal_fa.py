"""Recall at an equal false-alarm rate on large sets, with paired counts against the classical detector.

    python tools/study/equal_fa.py ROOT OUTDIR NAME=MODEL [NAME=MODEL ...]

ROOT holds `seed` + `good` (uniform noise), `gauss` + `goodg` (Gaussian noise, mixed shapes) and `vary`
(drifting level, lighting, noise; no good twin), made as in docs/study.md. For each model,
a curve of settings: networks sweep the threshold with their own mask rule; `classical` sweeps its seed level
`t_high` at 0.5. The false-alarm rate of a setting is false blobs per image over the defect set and its good
twin together. Per model the curve (with each defect's found flag) is cached in OUTDIR/NAME.json; the table
gives, per budget, the best recall within it and, against `classical` at its own best setting for that
budget, how many defects only the model finds (+) and only the classical detector finds (−).

A second table scores each network at its own operating point (the threshold and mask rule its manifest
records, fitted in training) beside the classical detector's best recall at an equal or lower false-alarm rate;
cached in OUTDIR/NAME.own.json.
"""
import json
import sys
from pathlib import Path

import numpy as np

from edgeseg.data.dataset import load_dataset
from edgeseg.evaluate import model_mask_rule, model_threshold, predict_probs
from edgeseg.metrics import GroundTruth, score
from edgeseg.postprocess import MaskRule
from edgeseg.runners.base import load_runner

SETS = {"seed": "good", "gauss": "goodg", "vary": None}
NET_THRESHOLDS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99,
                  0.995, 0.998, 0.999]
CLASSICAL_LEVELS = [4.5, 4.75, 5.0, 5.25, 5.5, 5.75, 6.0, 6.25, 6.5, 7.0]
BUDGETS = [0.001, 0.0025, 0.005, 0.01]


def found_flags(pred: np.ndarray, truth: GroundTruth) -> list[bool]:
    """Per ground-truth defect (image order, then label order): ≥ 30 % of its pixels predicted."""
    flags = []
    for i, lab in enumerate(truth.labels):
        n = len(truth.areas[i])
        hit = np.bincount(lab[pred[i]], minlength=n + 1)[1:]
        flags += (hit >= 0.3 * truth.areas[i]).tolist()
    return flags


def curve(model: str, root: Path, thresholds: list[float] = NET_THRESHOLDS) -> dict:
    if model == "classical":
        settings = [(t, lambda t=t: load_runner("classical", t_high=t), MaskRule(), 0.5) for t in CLASSICAL_LEVELS]
    else:
        rule = model_mask_rule(model)
        settings = [(t, lambda: load_runner(model), rule, t) for t in thresholds]
    out = {}
    for name, good in SETS.items():
        ds = load_dataset(root / name)
        truth = GroundTruth.from_masks(ds.masks, ds.defects)
        dg = load_dataset(root / good) if good else None
        gtruth = GroundTruth.from_masks(dg.masks) if good else None
        rows, cached = [], None
        for key, make, rule, t in settings:
            if cached is None or model == "classical":  # a network's probabilities serve every threshold
                with make() as runner:
                    cached = (predict_probs(runner, ds.images), predict_probs(runner, dg.images) if good else None)
            p, pg = (None if a is None else (a[..., 0] if a.ndim == 4 else a) for a in cached)
            pred = rule.apply(p, t)
            m = score(pred, truth, t)
            row = {"setting": key, "recall": m["defect_recall"], "dice": m["dice"], "fa": m["fp_blobs_per_image"],
                   "found": found_flags(pred, truth)}
            if good:
                mg = score(rule.apply(pg, t), gtruth, t)
                row.update(fa=(m["fp_blobs_per_image"] + mg["fp_blobs_per_image"]) / 2, overkill=mg["overkill_rate"])
            rows.append(row)
            print(f"{model} {name} {key}: recall {row['recall']:.4f} dice {row['dice']:.4f} fa {row['fa']:.4f}",
                  file=sys.stderr, flush=True)
        out[name] = rows
    return out


def best(rows: list[dict], budget: float) -> dict | None:
    ok = [r for r in rows if r["fa"] <= budget + 1e-12]
    return max(ok, key=lambda r: (r["recall"], r["dice"])) if ok else None


def paired(a: list[bool], k: list[bool]) -> str:
    return f"+{sum(x and not y for x, y in zip(a, k))}/−{sum(y and not x for x, y in zip(a, k))}"


def main() -> None:
    root, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    curves, own = {}, {}
    for spec in sys.argv[3:]:
        name, model = spec.split("=", 1)
        path = outdir / f"{name}.json"
        if not path.exists():
            path.write_text(json.dumps({"model": model, "sets": curve(model, root)}))
        curves[name] = json.loads(path.read_text())["sets"]
        if model != "classical":
            path = outdir / f"{name}.own.json"
            if not path.exists():
                t = model_threshold(model)[0]
                path.write_text(json.dumps({"model": model, "threshold": t, "sets": curve(model, root, [t])}))
            own[name] = json.loads(path.read_text())
    for s in SETS:
        print(f"\n{s}: recall / Dice (setting) at false blobs per image ≤ budget; [+only model / −only classical]")
        print("| model | " + " | ".join(f"≤ {b}" for b in BUDGETS) + " |\n|---|" + "---|" * len(BUDGETS))
        for name, c in curves.items():
            cells = []
            for b in BUDGETS:
                r = best(c[s], b)
                if r is None:
                    cells.append("–")
                    continue
                cell = f"{r['recall']:.3f} / {r['dice']:.3f} ({r['setting']})"
                ref = best(curves["classical"][s], b) if "classical" in curves and name != "classical" else None
                if ref:
                    cell += f" [{paired(r['found'], ref['found'])}]"
                cells.append(cell)
            print(f"| {name} | " + " | ".join(cells) + " |")
    if own:
        print("\nAt each network's own operating point; classical: its best recall at an equal or lower rate")
        print("| model | " + " | ".join(f"{s} recall / Dice / FA" for s in SETS) + " |\n|---|" + "---|" * len(SETS))
        for name, o in own.items():
            cells = []
            for s in SETS:
                r = o["sets"][s][0]
                cell = f"{r['recall']:.3f} / {r['dice']:.3f} / {r['fa']:.4f}"
                ref = best(curves["classical"][s], r["fa"]) if "classical" in curves else None
                if ref:
                    cell += f" (classical {ref['recall']:.3f} / {ref['dice']:.3f}, {paired(r['found'], ref['found'])})"
                cells.append(cell)
            print(f"| {name} @ {o['threshold']:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
