"""How visible are a dataset's defects to *any* mean-shift detector? (``edgeseg detectability``)

A flat defect of contrast c over n pixels in white noise of std σ has a footprint z = c·√n / σ: the sum of
its unit-noise residual over its own pixels, the likelihood-ratio statistic of a detector told the defect's
exact place and shape. A detector that finds it has to call a patch with that z a defect. Pure noise also
makes such patches: scanning a defect-free image with boxes of the defects' sizes, the largest box z has a
median of ≈ 4.5 on a 256×256 image. Two columns follow from that, per level t:

* **defects at or above t** — the recall a detector firing from t upwards can reach at best;
* **good images with a noise box at or above t** — the share of defect-free images where a box of a defect's
  size reaches t by chance: the false alarms a detector that fires at t cannot avoid.

So a recall target whose missing share lies below the z where noise already fires in many images is out of
reach of every detector that looks at the mean shift, however it is trained. (A detector can still beat a
single level by being stricter on small boxes than on large ones, so read the table as a reference, not a
proof.) The other route is the noise's own shape: the seed's uniform noise never leaves 100..124, so a
patch's midrange locates a shift far better than its mean (the inline network's cell max/min use that), and
one pixel above 124 is a defect for certain — the shortcut the training recipe is built to avoid. On bounded
noise the table is therefore the mean-shift reference, not a limit.

    report = assess(load_dataset("data/seed"), load_dataset("data/good"))
    report["targets"]  # [..., {"recall": 0.99, "z": 4.11, "good_image_share": 0.91}]

Backgrounds are fitted per image by the classical detector's weighted quadratic regression, with the
ground-truth defects left out of the fit, and σ comes from neighbour differences, so lighting ramps and any
noise level map to unit noise.

Before any training, a line's defect-free images answer the same question (:func:`assess_line`): defects
of a chosen size and contrast are drawn onto random crops of them (:mod:`edgeseg.data.line`), other crops are
the good set, and :func:`assess_contrasts` gives, per contrast, the recall each false-alarm budget allows —
"how faint a defect can this surface show?". A textured surface (brick, machined metal) makes its own large
chance boxes, so there the table is the reference for a detector that does not know the texture.

    report = assess_line(load_backgrounds("line/good", 256), preset("seed"), crop=256, count=200, seed=0,
                         relative=True, contrasts=[0.5, 1, 2])
    report["contrasts"][1]["budgets"]  # [..., {"good_image_share": 0.01, "z": 5.1, "defect_share": 0.9}]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.dataset import CHUNK, Dataset
from edgeseg.errors import BadInput
from edgeseg.metrics import GroundTruth
from edgeseg.progress import Progress, silent

#: z levels reported by default; false-alarm budgets (share of good images) and recall targets, each turned
#: into the level it needs.
LEVELS = (4.0, 4.5, 5.0, 5.5, 6.0)
BUDGETS = (0.001, 0.005, 0.01)
TARGETS = (0.95, 0.98, 0.99)


def residual(image: np.ndarray, defect_mask: np.ndarray | None = None) -> np.ndarray:
    """``image`` minus its fitted background, in units of its noise σ; ``defect_mask`` pixels stay out of the
    fit (the ground truth here, so a large defect does not lift its own background)."""
    from edgeseg.runners.classical import ClassicalParams, background, noise_sigma

    x = np.asarray(image, dtype=np.float32)
    weight = np.ones_like(x) if defect_mask is None else (~np.asarray(defect_mask, bool)).astype(np.float32)
    params = ClassicalParams()  # the classical detector's fit: window and degree
    return (x - background(x, weight, params.background, params.background_degree)) / noise_sigma(x)


def footprint_z(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The footprint z of each labelled defect (labels 1..n of an int label image), in label order."""
    n = int(labels.max())
    if n == 0:
        return np.zeros(0)
    r = residual(image, labels > 0).astype(np.float64)
    sums = np.bincount(labels.ravel(), weights=r.ravel(), minlength=n + 1)[1:]
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return sums / np.sqrt(counts)


def box_sizes(lo: int, hi: int, steps: int = 8) -> list[tuple[int, int]]:
    """Box (width, height) pairs spanning defect sides lo..hi geometrically, every aspect included."""
    sides = sorted({int(round(s)) for s in np.geomspace(lo, hi, steps)})
    return [(w, h) for w in sides for h in sides]


def scan_max(image: np.ndarray, bank) -> float:
    """The largest box z anywhere in a defect-free ``image`` (the bank's boxes, borders included)."""
    return float(bank.zmax(residual(image)).max())


def _sides(dataset: Dataset) -> tuple[int, int]:
    """The defect side range: the generator's when the manifest says, else the labelled defects' extent."""
    gen = dataset.config or {}
    if "defect_size" in gen:
        lo, hi = gen["defect_size"]
        return int(lo), int(hi)
    import cv2

    sides = []
    for m in dataset.masks:
        n, _, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        sides += [s for row in stats[1:] for s in (int(row[2]), int(row[3]))]
    return (min(sides), max(sides)) if sides else (8, 63)


def _budget_level(z: np.ndarray, null: np.ndarray, budget: float) -> dict[str, float | None]:
    if budget * len(null) < 1.0:
        return {"z": None, "defect_share": None}
    # The level noise goes above in at most ``budget`` of the good images; a detector firing above it.
    t = float(np.quantile(null, 1.0 - budget, method="higher"))
    return {"z": t, "defect_share": float(np.mean(z > t))}


def _target_level(z: np.ndarray, null: np.ndarray, recall: float) -> dict[str, float]:
    # The highest level that keeps ``recall`` of the defects at or above it, and the good images noise takes there.
    t = float(np.quantile(z, 1.0 - recall, method="lower"))
    return {"z": t, "good_image_share": float(np.mean(null >= t))}


def _footprints(defects: Dataset, progress: Progress, done: int, total: int, chunk_size: int) -> np.ndarray:
    """The footprint z of every labelled defect of ``defects``, read ``chunk_size`` images at a time."""
    z = []
    for part in defects.chunks(chunk_size):
        for image, labels in zip(part.images, GroundTruth.from_masks(part.masks).labels):
            z.append(footprint_z(image, labels))
            done += 1
            progress(done, total, "defects")
    return np.concatenate(z) if z else np.zeros(0)


def _noise_scan(good: Dataset, boxes: list[tuple[int, int]], progress: Progress, done: int, total: int) -> np.ndarray:
    """The largest box z of each defect-free image, read one at a time."""
    from edgeseg.runners.classical import MatchedFilterBank

    banks: dict[tuple[int, int], Any] = {}
    null = []
    for i, image in enumerate(good.images):
        bank = banks.setdefault(image.shape, MatchedFilterBank(boxes, image.shape))
        null.append(scan_max(image, bank))
        progress(done + i + 1, total, "noise scan")
    return np.asarray(null)


def _good_summary(good: Dataset, boxes: list[tuple[int, int]], null: np.ndarray) -> dict[str, Any]:
    return {"path": str(good.path), "n_images": len(good), "boxes": [list(b) for b in boxes],
            "scan_max_quantiles": {f"{q:g}": float(np.quantile(null, q)) for q in (0.5, 0.9, 0.99)}}


def _check_sets(defects: Dataset, good: Dataset) -> None:
    # Both sets are checked before any work; ``any`` stops at the first defect pixel.
    if not defects.masks.any():
        raise BadInput(f"{defects.path}: no labelled defect in the set, nothing to assess")
    if good.masks.any():
        raise BadInput(f"{good.path}: the good set has labelled defects; give a set of defect-free images")


def assess(defects: Dataset, good: Dataset, levels: Sequence[float] = LEVELS, budgets: Sequence[float] = BUDGETS,
           targets: Sequence[float] = TARGETS, progress: Progress = silent,
           chunk_size: int = CHUNK) -> dict[str, Any]:
    """The detectability report of ``defects`` against the noise of ``good`` (defect-free images of the same
    kind); JSON-ready. The defect set is read ``chunk_size`` images at a time and the good set one image at a
    time: what is kept is one number per defect and per good image."""
    _check_sets(defects, good)
    total = len(defects) + len(good)
    z = _footprints(defects, progress, 0, total, chunk_size)
    boxes = box_sizes(*_sides(defects))
    null = _noise_scan(good, boxes, progress, len(defects), total)
    return {
        "defects": {"path": str(defects.path), "n_images": len(defects), "n_defects": int(z.size),
                    "z_quantiles": {f"{q:g}": float(np.quantile(z, q)) for q in (0.005, 0.01, 0.02, 0.05, 0.5)}},
        "good": _good_summary(good, boxes, null),
        "levels": [{"z": float(t), "defect_share": float(np.mean(z >= t)), "good_image_share": float(np.mean(null >= t))}
                   for t in levels],
        # The level that keeps the chance boxes within each budget, and the defects that level still finds.
        # A budget under one image in the good set cannot be resolved from it: None.
        "budgets": [{"good_image_share": float(b), **_budget_level(z, null, b)} for b in budgets],
        # The level a recall target needs (its missing share of footprint z lies below it), and how many
        # good images noise alone takes over that level.
        "targets": [{"recall": float(r), **_target_level(z, null, r)} for r in targets],
        "footprint_z": z.tolist(),
        "scan_max": null.tolist(),
    }


def assess_contrasts(sets: Sequence[tuple[float, Dataset]], good: Dataset, budgets: Sequence[float] = BUDGETS,
                     progress: Progress = silent, chunk_size: int = CHUNK) -> dict[str, Any]:
    """Per contrast, the recall each false-alarm budget allows: ``sets`` pairs each contrast with a set of its
    defects (the same places and sizes at every contrast, ideally), all scanned against one noise scan of
    ``good`` — the question "how faint a defect can this surface still show?" before any training.

    ``contrasts[i]["budgets"]`` holds, per budget, the level noise stays under (``z``) and the share of
    defects above it (``defect_share``: the best recall a detector with that false-alarm rate reaches)."""
    if not sets:
        raise BadInput("no contrast to assess")
    for _, defects in sets:
        _check_sets(defects, good)
    total = sum(len(d) for _, d in sets) + len(good)
    sides = [_sides(d) for _, d in sets]
    boxes = box_sizes(min(lo for lo, _ in sides), max(hi for _, hi in sides))
    null = _noise_scan(good, boxes, progress, 0, total)
    done, rows = len(good), []
    for contrast, defects in sets:
        z = _footprints(defects, progress, done, total, chunk_size)
        done += len(defects)
        rows.append({"contrast": float(contrast), "n_images": len(defects), "n_defects": int(z.size),
                     "z_median": float(np.median(z)),
                     "budgets": [{"good_image_share": float(b), **_budget_level(z, null, b)} for b in budgets]})
    return {"good": _good_summary(good, boxes, null), "contrasts": rows, "scan_max": null.tolist()}


def plot_contrasts(report: dict[str, Any], path: str | Path, unit: str) -> Path:
    """Recall vs contrast, one line per false-alarm budget (PNG, written atomically); budgets the good set
    cannot resolve are left out."""
    from edgeseg.artifacts import write_figure
    from edgeseg.deps import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["contrasts"]
    if all(b["z"] is None for b in rows[0]["budgets"]):
        raise BadInput(f"no false-alarm budget is resolved by {report['good']['n_images']} defect-free crops, "
                       "nothing to plot; draw more (--count)")
    xs = [r["contrast"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, b in enumerate(rows[0]["budgets"]):
        if b["z"] is None:
            continue
        ax.plot(xs, [r["budgets"][k]["defect_share"] for r in rows], marker="o",
                label=f"{100 * b['good_image_share']:g} % of good images flagged (z > {b['z']:.2f})")
    ax.set_xlabel(f"defect contrast ({unit})")
    ax.set_ylabel("best recall (share of defects above the level)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"detectability on {Path(report['good']['path']).name}: recall vs contrast", fontsize=10)
    fig.tight_layout()
    return write_figure(path, fig)


def assess_line(backgrounds, cfg, crop: int, count: int, seed: int, relative: bool = False,
                contrasts: Sequence[float] | None = None, progress: Progress = silent) -> dict[str, Any]:
    """Detectability on a line's own defect-free images (:class:`~edgeseg.data.backgrounds.Backgrounds`)
    before any training: ``count`` random ``crop``² crops with ``cfg``'s defects (contrast in 8-bit gray
    levels, or ``relative`` in local noise σ) against ``count`` other crops without defects, drawn a chunk at
    a time. With ``contrasts``, the per-contrast view of :func:`assess_contrasts` (the same crops and defect
    places at every contrast); else :func:`assess` over ``cfg``'s contrast range. The report's ``line`` says
    what was drawn and ``contrast_unit`` in which unit."""
    from edgeseg.data.line import LEVELS, UNITS, defect_config, defect_set, good_set

    good = good_set(backgrounds, crop, count, seed)
    if contrasts is None:
        report = assess(defect_set(backgrounds, cfg, crop, count, seed, relative), good, progress=progress)
    else:
        sets = [(c, defect_set(backgrounds, cfg.replace(contrast=(c, c), contrast_continuous=True), crop, count,
                               seed, relative)) for c in contrasts]
        report = assess_contrasts(sets, good, progress=progress)
    report["contrast_unit"] = UNITS[relative]
    report["line"] = {"backgrounds": backgrounds.describe(), "crop": crop, "count": count, "seed": seed,
                      "gray_levels": LEVELS, "defects": defect_config(cfg)}
    return report
