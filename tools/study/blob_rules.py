"""Recall at an equal false-alarm rate when blobs are decided by size or peak instead of by a pixel threshold.

    python tools/study/blob_rules.py ROOT OUTDIR NAME=MODEL [NAME=MODEL ...]

ROOT holds the large sets of docs/study.md: `seed` + `good`, `gauss` + `goodg`, `vary`.
For each segmentation level s (0.4 … 0.7) the blobs are the 8-connected components of probability ≥ s, and
a blob is kept when a statistic of it reaches a level τ, swept over the statistic's range:

* `area` — its pixels (τ = 32 at s is the rule `threshold s, min_area 32`);
* `max` — its peak (hysteresis: seeded at τ, grown over s);
* `excess` — the sum of (p − s) over it (size and height together).

False blobs per image are counted over the defect set and its good twin together, as in
`tools/study/equal_fa.py`, and the counts follow `edgeseg.metrics.score` (found: ≥ 30 % of a defect's pixels;
false: a blob of ≥ 16 px overlapping no single defect by 10 % of its own pixels). Per budget the best recall
within it is printed as recall/Dice(τ). Probabilities are cached in OUTDIR/NAME/*.npy (float16).
"""
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.dataset import load_dataset
from edgeseg.evaluate import predict_probs
from edgeseg.metrics import FP_OVERLAP, HIT_FRACTION, MIN_BLOB, GroundTruth, overlaps
from edgeseg.runners.base import load_runner

SETS = {"seed": "good", "gauss": "goodg", "vary": None}
LEVELS = [0.4, 0.5, 0.6, 0.65, 0.7]
STATS = ["area", "max", "excess"]
BUDGETS = [0.001, 0.0025, 0.005, 0.01]


def cached_probs(model: str, cache: Path, name: str, images: np.ndarray) -> np.ndarray:
    f = cache / f"{name}.npy"
    if not f.exists():
        with load_runner(model) as runner:
            p = predict_probs(runner, images)
        np.save(f, (p[..., 0] if p.ndim == 4 else p).astype(np.float16))
    return np.load(f).astype(np.float32)


def blobs(probs: np.ndarray, truth: GroundTruth, level: float):
    """Per blob: (area, max, excess), its overlaps [(defect index over the set, pixels)]; defect areas."""
    stats, touching, areas, first = [], [], [], 0
    for i, p in enumerate(probs):
        lab_gt, area_gt = truth.labels[i], truth.areas[i]
        k = len(area_gt)
        n, lab, st, _ = cv2.connectedComponentsWithStats((p >= level).astype(np.uint8), connectivity=8)
        flat = lab.ravel()
        peak = np.zeros(n)
        np.maximum.at(peak, flat, p.ravel())
        excess = np.bincount(flat, weights=(p - level).ravel(), minlength=n)
        per_blob = [[] for _ in range(n - 1)]
        if k and n > 1:
            for b, g, c in zip(*overlaps(lab, lab_gt, k)):
                per_blob[b - 1].append((first + g - 1, int(c)))
        for b in range(1, n):
            stats.append((st[b, cv2.CC_STAT_AREA], peak[b], excess[b]))
            touching.append(per_blob[b - 1])
        areas += list(area_gt)
        first += k
    return np.array(stats, np.float64).reshape(-1, 3), touching, np.array(areas, np.int64)


def sweep(stats, touching, areas, gt_pixels, column, taus):
    """Per τ: false blobs, found flags and the pixel counts for Dice."""
    area, score = stats[:, 0], stats[:, column]
    best = np.array([max((c for _, c in o), default=0) for o in touching])
    tp = np.array([sum(c for _, c in o) for o in touching])
    false = (area >= MIN_BLOB) & (best < FP_OVERLAP * area)
    blob = np.array([b for b, o in enumerate(touching) for _ in o], np.int64)
    defect = np.array([d for o in touching for d, _ in o], np.int64)
    count = np.array([c for o in touching for _, c in o], np.int64)
    out = []
    for t in taus:
        keep = score >= t
        hit = np.bincount(defect[keep[blob]], weights=count[keep[blob]], minlength=len(areas))
        pred = area[keep].sum()
        out.append((int((keep & false).sum()), hit >= HIT_FRACTION * areas,
                    2 * tp[keep].sum() / max(pred + gt_pixels, 1)))
    return out


def models(argv: list[str]) -> Iterator[tuple[Path, str, str, Path]]:
    """``ROOT OUTDIR NAME=MODEL …`` → (ROOT, NAME, MODEL, its probability cache OUTDIR/NAME, created)."""
    root, outdir = Path(argv[1]), Path(argv[2])
    for spec in argv[3:]:
        name, model = spec.split("=", 1)
        (outdir / name).mkdir(parents=True, exist_ok=True)
        yield root, name, model, outdir / name


def main() -> None:
    for root, name, model, cache in models(sys.argv):
        for s, g in SETS.items():
            ds = load_dataset(root / s)
            truth = GroundTruth.from_masks(ds.masks)
            p = cached_probs(model, cache, s, ds.images)
            if g:
                dg = load_dataset(root / g)
                pg, tg = cached_probs(model, cache, g, dg.images), GroundTruth.from_masks(dg.masks)
            for level in LEVELS:
                st, ov, areas = blobs(p, truth, level)
                sg, og, _ = blobs(pg, tg, level) if g else (np.zeros((0, 3)), [], None)
                for column, stat in enumerate(STATS):
                    values = np.concatenate([st[:, column], sg[:, column]])
                    taus = (np.arange(1, 200) if stat == "area" else
                            np.unique(np.quantile(values, np.linspace(0, 1, 400))) if len(values) else [0.0])
                    rows = sweep(st, ov, areas, int(truth.masks.sum()), column, taus)
                    rows_g = sweep(sg, og, np.zeros(0, np.int64), 0, column, taus) if g else None
                    n = len(p) + (len(pg) if g else 0)
                    curve = [(tau, found.mean(), dice, (fp + (rows_g[j][0] if g else 0)) / n)
                             for j, (tau, (fp, found, dice)) in enumerate(zip(taus, rows))]
                    cells = []
                    for b in BUDGETS:
                        ok = [c for c in curve if c[3] <= b + 1e-12]
                        c = max(ok, key=lambda c: (c[1], c[2])) if ok else None
                        cells.append(f"{c[1]:.3f}/{c[2]:.3f}({c[0]:.3g})" if c else "-")
                    print(f"{name} {s} {stat}@{level}: " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
