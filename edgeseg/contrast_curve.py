"""Recall against defect contrast on a line's own surface, every detector at the same false-alarm budget
(``edgeseg contrast-curve``).

The question a line asks of any detector — a network trained on its images, one trained on synthetic noise,
the classical matched filter — is how faint a defect it finds at the false-alarm rate the line affords. The
answer here is measured on the line's own defect-free images, with the generator's defects placed on them
(:mod:`edgeseg.data.backgrounds`), in two parts that never share an image:

1. **fit** — on held-out images (``val``): each detector's threshold and mask rule are chosen the way training
   chooses them (:func:`edgeseg.operating.fit_on`: the best recall + Dice whose false blobs per image stay
   within the budget), from ``fit_count`` crops with defects (contrasts spread over the curve's range) and as
   many without. The classical detector has no training, so its seed level ``t_high`` is fitted too (a grid:
   a textured surface needs a stricter level than white noise);
2. **measure** — on the test images: for each contrast, ``count`` crops with 1–2 defects of that contrast, and
   ``count`` crops without defects; recall (defects found / placed, with its 95 % interval), pixel Dice, and
   the false blobs per defect-free image that the fitted point costs *there*.

Natural structure of the surface (pits, edges, texture) that a detector calls a defect counts against it:
the false alarm a line would see. Contrast is in the images' gray levels or, ``relative``, in local noise σ.

    report = measure(["runs/line/model.keras", "runs/demo/model.keras", "classical"], test, val,
                     contrasts=[0.5, 1, 2], relative=True)
    report["models"][0]["curve"]  # [{"contrast": 0.5, "defect_recall": ..., "fp_blobs_per_image": ...}, ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg import metrics, operating
from edgeseg.data.backgrounds import Backgrounds, inject, random_crop
from edgeseg.data.synth import SynthConfig
from edgeseg.errors import EdgesegError
from edgeseg.postprocess import MaskRule
from edgeseg.progress import Progress, silent

#: Seed levels tried for the classical detector (its default, 6, is tuned to white noise).
CLASSICAL_T_HIGH = (6.0, 7.0, 8.0, 10.0, 12.0, 15.0, 19.0, 24.0, 30.0, 40.0, 55.0, 75.0, 100.0, 140.0)
#: Thresholds tried for the matched curve, lowest first: the fit's grid, then finer steps towards 1.
MATCH_THRESHOLDS = tuple(sorted(set(operating.THRESHOLDS) | {0.97, 0.98, 0.99, 0.995, 0.998, 0.999}))
#: The gap between its seed and grow levels, as in its defaults (6 and 3.5).
CLASSICAL_T_GAP = 2.5
#: The defects placed: the seed's sizes and test count, rectangles and ellipses.
DEFECTS = SynthConfig(defects=(1, 2), defect_size=(8, 63), shape="mixed", contrast_continuous=True)


@dataclass(frozen=True)
class Sets:
    """The crops a curve is measured on (uint8/uint16 images, {0, 1} masks, per-image defect records)."""

    fit_defect: np.ndarray
    fit_masks: np.ndarray
    fit_good: np.ndarray
    test_good: np.ndarray
    test: dict[float, tuple[np.ndarray, np.ndarray, list[list[dict]]]]


def _draw(rng: np.random.Generator, bg: Backgrounds, crop: int, cfg: SynthConfig | None, relative: bool):
    i = int(rng.choice(len(bg), p=bg.weights(crop)))
    image, _ = random_crop(rng, bg.images[i], crop)
    if cfg is None:
        return image, np.zeros(image.shape, np.uint8), []
    s = inject(rng, image, cfg, relative)
    return s.image, s.mask, s.defects


def draw_sets(test: Backgrounds, val: Backgrounds, contrasts: Sequence[float], relative: bool, count: int,
              fit_count: int, crop: int, seed: int, defects: SynthConfig = DEFECTS) -> Sets:
    """The fitting crops (from ``val``) and the test crops (from ``test``), drawn from rng ``[seed, part]``."""
    lo, hi = min(contrasts), max(contrasts)
    cfg = defects.replace(image_size=max(crop, defects.defect_size[1] + 1))

    def many(part: int, n: int, c: SynthConfig | None, source: Backgrounds):
        rng = np.random.default_rng([seed, part])
        draws = [_draw(rng, source, crop, c, relative) for _ in range(n)]
        return np.stack([d[0] for d in draws]), np.stack([d[1] for d in draws]), [d[2] for d in draws]

    fit_defect, fit_masks, _ = many(0, fit_count, cfg.replace(contrast=(lo, hi)), val)
    fit_good = many(1, fit_count, None, val)[0]
    test_good = many(2, count, None, test)[0]
    per = {float(c): many(10 + k, count, cfg.replace(contrast=(c, c)), test) for k, c in enumerate(contrasts)}
    return Sets(fit_defect, fit_masks, fit_good, test_good, per)


def _predictor(runner, batch: int = 16):
    from edgeseg.evaluate import predict_probs

    return lambda images: predict_probs(runner, images, batch)


def _fit(model: str, sets: Sets, budget: float, progress: Progress) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The runner of ``model`` with its fitted point: (runner, operating point, runner options)."""
    from edgeseg.runners import load_runner

    candidates = ([{"t_high": t, "t_low": t - CLASSICAL_T_GAP} for t in CLASSICAL_T_HIGH] if model == "classical"
                  else [{}])
    best = None
    for options in candidates:
        runner = load_runner(model, **options).activate()
        point = operating.fit_on(_predictor(runner), sets.fit_defect, sets.fit_masks, sets.fit_good, budget)
        c = point["chosen"]
        key = (point["within_budget"], operating.merit(c["defect_recall"], c["dice"], c["threshold"])
               if point["within_budget"] else -c["fp_blobs_per_image"])
        if best is None or key > best[0]:
            if best is not None:
                best[1].deactivate()
            best = (key, runner, point, options)
        else:
            runner.deactivate()
        progress(0, None, f"fitted {model} {options or ''}".strip())
    return best[1], best[2], best[3]


def _score(probs: np.ndarray, masks: np.ndarray, records: list, t: float, rule: MaskRule) -> dict[str, Any]:
    counts = metrics.Counts()
    for s in range(0, len(probs), 64):
        counts.add(metrics.predicted(probs[s : s + 64].astype(np.float32), t, rule),
                   metrics.GroundTruth.from_masks(masks[s : s + 64], records[s : s + 64]))
    return counts.report(t)


def _curve(probs: dict[float, np.ndarray], sets: Sets, t: float, rule: MaskRule) -> list[dict[str, Any]]:
    out = []
    for c, (_, masks, records) in sets.test.items():
        r = _score(probs[c], masks, records, t, rule)
        out.append({"contrast": c, "defect_recall": r["defect_recall"], "recall_ci95": r["defect_recall_ci95"],
                    "n_defects": r["n_defects"], "dice": r["dice"], "fp_blobs_per_image": r["fp_blobs_per_image"]})
    return out


def _probs(runner, images: np.ndarray) -> np.ndarray:
    """Probabilities of ``images``, 64 at a time, kept as float16 (half the memory; thresholds are far coarser)."""
    predict = _predictor(runner)
    return np.concatenate([predict(images[s : s + 64]).astype(np.float16) for s in range(0, len(images), 64)])


def _lowest_within(good_probs, sets: Sets, rule: MaskRule, budget: float) -> tuple[float, float] | None:
    """The lowest threshold of :data:`MATCH_THRESHOLDS` whose false blobs per defect-free test crop stay within
    ``budget``, and that rate; None when none does."""
    zeros, none = np.zeros(sets.test_good.shape, np.uint8), [[] for _ in sets.test_good]
    for t in MATCH_THRESHOLDS:
        fp = _score(good_probs, zeros, none, t, rule)["fp_blobs_per_image"]
        if fp <= budget:
            return t, fp
    return None


def _matched(good_probs, probs, sets: Sets, rule: MaskRule, budget: float) -> dict[str, Any] | None:
    """The recall per contrast at :func:`_lowest_within`'s threshold; None when there is none."""
    found = _lowest_within(good_probs, sets, rule, budget)
    if found is None:
        return None
    return {"threshold": found[0], "fp_blobs_per_image": found[1], "curve": _curve(probs, sets, found[0], rule)}


def _matched_classical(sets: Sets, rule: MaskRule, budget: float) -> dict[str, Any] | None:
    """:func:`_matched` for the classical detector over its seed levels, lowest first: the defect-free test crops
    decide the level, then the defect crops are run once at it."""
    from edgeseg.runners import load_runner

    for t_high in CLASSICAL_T_HIGH:
        options = {"t_high": t_high, "t_low": t_high - CLASSICAL_T_GAP}
        runner = load_runner("classical", **options).activate()
        try:
            good_probs = _probs(runner, sets.test_good)
            if _lowest_within(good_probs, sets, rule, budget) is None:
                continue
            probs = {c: _probs(runner, images) for c, (images, _, _) in sets.test.items()}
        finally:
            runner.deactivate()
        return {**_matched(good_probs, probs, sets, rule, budget), "options": options}
    return None


def measure(models: Sequence[str], test: Backgrounds, val: Backgrounds, contrasts: Sequence[float],
            relative: bool = True, count: int = 200, fit_count: int = 200, crop: int = 192,
            budget: float = 0.01, seed: int = 0, progress: Progress = silent,
            defects: SynthConfig = DEFECTS) -> dict[str, Any]:
    """Each model's recall-vs-contrast curve (see the module docstring); JSON-ready.

    Two per model: ``curve`` at the point fitted on ``val`` (what a deployment gets, with the false blobs it
    costs on the test images), and ``matched``: at the lowest threshold (same mask rule) whose false blobs per
    defect-free *test* image stay within ``budget`` — every detector at the same measured false-alarm rate.
    """
    if not models:
        raise EdgesegError("give at least one --model")
    if not contrasts:
        raise EdgesegError("give at least one contrast")
    operating.check_choice(budget, "balanced", 0.0)
    sets = draw_sets(test, val, contrasts, relative, count, fit_count, crop, seed, defects)
    zeros = np.zeros(sets.test_good.shape, np.uint8)
    no_defects = [[] for _ in sets.test_good]
    out = []
    for i, model in enumerate(models):
        runner, point, options = _fit(str(model), sets, budget, progress)
        chosen = point["chosen"]
        t, rule = chosen["threshold"], MaskRule.from_dict(chosen["mask_rule"])
        good_probs = _probs(runner, sets.test_good)
        probs = {c: _probs(runner, images) for c, (images, _, _) in sets.test.items()}
        runner.deactivate()
        progress(i + 1, len(models), f"{model}: measured")
        good = _score(good_probs, zeros, no_defects, t, rule)
        if str(model) == "classical":
            # Its seed level was fitted on the validation region; on the test region a lower one may keep within
            # the budget, so the matched curve searches the level there too, lowest (most sensitive) first.
            matched = _matched_classical(sets, rule, budget)
        else:
            matched = _matched(good_probs, probs, sets, rule, budget)
            if matched is not None:
                matched["options"] = options
        out.append({"model": str(model), "label": label(model), "options": options, "threshold": t,
                    "mask_rule": chosen["mask_rule"],
                    "fit": {"within_budget": point["within_budget"], "defect_recall": chosen["defect_recall"],
                            "fp_blobs_per_image": chosen["fp_blobs_per_image"]},
                    "test_good": {"n_images": good["n_images"], "fp_blobs_per_image": good["fp_blobs_per_image"],
                                  "overkill_rate": good["overkill_rate"]},
                    "curve": _curve(probs, sets, t, rule), "matched": matched})
    return {"contrast_unit": "local noise sigma" if relative else "gray levels", "budget": budget, "crop": crop,
            "count": count, "fit_count": fit_count, "seed": seed, "test": test.describe(), "val": val.describe(),
            "defects": {k: v for k, v in defects.to_dict().items() if k in ("defects", "defect_size", "shape")},
            "models": out}


def label(model: str) -> str:
    """A short name for a model in tables and legends: ``classical``, or the file with its folder
    (``brick/model.keras``), since runs name their models alike."""
    p = Path(str(model))
    return str(model) if str(model) == "classical" else f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def plot(report: dict[str, Any], path, title: str = "") -> None:
    """Recall vs contrast, one line per model: at the same false-alarm rate on the test images (``matched``), or
    dashed, for a model that fires more often at every threshold, at its fitted point with what that costs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeseg.artifacts import write_figure

    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    for m in report["models"]:
        matched = m.get("matched")
        curve = matched["curve"] if matched else m["curve"]
        xs = [p["contrast"] for p in curve]
        ys = [p["defect_recall"] for p in curve]
        lo = [p["recall_ci95"][0] for p in curve]
        hi = [p["recall_ci95"][1] for p in curve]
        # At the test's own budget where some threshold reaches it; else (dashed) its fitted point and the
        # false blobs that costs.
        name = m.get("label") or m["model"]
        if m["model"] == "classical":
            name += f" t_high {((matched or {}).get('options') or m['options'])['t_high']:g}"
        label_ = name + (f" (threshold {matched['threshold']:g})" if matched else
                         f" ({m['test_good']['fp_blobs_per_image']:.2f} FP/img: over budget)")
        (line,) = ax.plot(xs, ys, marker="o", label=label_, linestyle="-" if matched else "--")
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    unit = "local noise σ" if report["contrast_unit"] == "local noise sigma" else "gray levels"
    ax.set(xlabel=f"defect contrast ({unit})", ylabel="defect recall", ylim=(0, 1.02),
           title=(f"{title}: " if title else "") + f"≤ {report['budget']:g} false blobs per defect-free test image")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    write_figure(path, fig, dpi="figure")
