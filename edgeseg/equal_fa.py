"""Recall at an equal false-alarm rate: models compared where a line compares them, at the same false alarms.

A model's own operating point says little against another model's: one may buy its recall with more false
blobs. So each model gets a *curve* of settings on the same sets — a network sweeps its threshold with its own
mask rule (:data:`NET_THRESHOLDS`), the classical detector its seed level ``t_high`` at 0.5
(:data:`CLASSICAL_LEVELS`) — and, per false-alarm budget, the best recall (Dice between equals) of the settings
whose false blobs per image stay within it. The false-alarm rate of a setting is counted over a set *and its
defect-free twin* together (false blobs over both, per image of both), since a line sees both kinds of part;
a set without a twin counts its own images alone.

Against the classical detector (when it is among the models) each cell also counts the defects only the model
finds and only the classical detector finds, at its own best setting for the same budget: two recalls a point
apart on 1,900 defects are 19 defects, and the paired counts say whether those are one detector's gain or
both detectors' noise. Each network is also scored at its own point (its manifest's threshold and mask rule),
beside the classical detector's best recall at an equal or lower rate.

    report = measure(["classical", "runs/demo/model.keras"],
                     [EvalSet("seed", "big/seed", "big/good"), EvalSet("vary", "big/vary")])
    report["best"][0]      # {"model", "set", "budget", "setting", "recall", "dice", "fa", "only_model", ...}

Counts follow :mod:`edgeseg.metrics` (a defect is found when ≥ 30 % of its pixels are predicted; a false blob
is a predicted blob of ≥ 16 px overlapping no single defect by 10 % of its own pixels). Every setting is an
oracle on the very data it is scored on — the same for every model, which is what makes the comparison fair;
the operating point a line runs at is fitted on other images (:mod:`edgeseg.operating`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.metrics import HIT_FRACTION, Counts, GroundTruth
from edgeseg.operating import merit
from edgeseg.postprocess import MaskRule
from edgeseg.progress import Progress, silent

#: A network's thresholds: dense near 1, where a steep network's false blobs die out.
NET_THRESHOLDS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95,
                                     0.97, 0.98, 0.99, 0.995, 0.998, 0.999)
#: The classical detector's seed levels (z): its default 6.0 among them, from where noise alone passes (≈ 4.5).
CLASSICAL_LEVELS: tuple[float, ...] = (4.5, 4.75, 5.0, 5.25, 5.5, 5.75, 6.0, 6.25, 6.5, 7.0)
#: False blobs per image: from one in 1,000 images to one in 100.
BUDGETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01)
CLASSICAL = "classical"


@dataclass(frozen=True)
class EvalSet:
    """A labelled set with defects and, optionally, its defect-free twin of the same noise."""

    name: str
    data: Path
    good: Path | None = None


@dataclass
class _Setting:
    """One point of a model's curve, counted chunk by chunk: on the set, on its twin, and each defect's flag.
    ``own``: the network's own point (its manifest's threshold), scored beside the curve, not on it."""

    key: float  # the threshold (networks) or the seed level (classical)
    threshold: float
    rule: MaskRule
    own: bool = False

    def __post_init__(self) -> None:
        self.counts, self.good, self.found = Counts(), Counts(), []

    def add(self, probs: np.ndarray, truth: GroundTruth, twin: bool) -> None:
        pred = self.rule.apply(probs, self.threshold)
        (self.good if twin else self.counts).add(pred, truth)
        if not twin:
            for lab, areas, p in zip(truth.labels, truth.areas, pred):
                hits = np.bincount(lab[p], minlength=len(areas) + 1)[1:]
                self.found.append(hits >= HIT_FRACTION * np.asarray(areas))

    def row(self) -> dict[str, Any]:
        m, g = self.counts.report(self.threshold), self.good.report(self.threshold)
        fp, n = m["fp_blobs"] + g["fp_blobs"], m["n_images"] + g["n_images"]
        return {"setting": self.key, "recall": m["defect_recall"], "dice": m["dice"], "fa": fp / max(n, 1),
                "fp_blobs": fp, "images": n, "defects": m["n_defects"], "overkill": g["overkill_rate"],
                "found": np.concatenate(self.found) if self.found else np.zeros(0, bool)}


def _settings(model: str, raw: bool) -> list[tuple[Any, list[_Setting]]]:
    """(runner, the settings its probabilities serve): one runner for a network's thresholds (with its mask
    rule unless ``raw``; and its own point unless ``raw``), one per seed level for the classical detector."""
    from edgeseg.evaluate import model_mask_rule, model_threshold
    from edgeseg.runners import load_runner
    from edgeseg.tiling import any_size

    if model == CLASSICAL:
        return [(any_size(load_runner(CLASSICAL, t_high=t)), [_Setting(t, 0.5, MaskRule())])
                for t in CLASSICAL_LEVELS]
    if raw:
        return [(any_size(load_runner(model)), [_Setting(t, t, MaskRule()) for t in NET_THRESHOLDS])]
    rule, t_own = model_mask_rule(model), model_threshold(model)[0]
    return [(any_size(load_runner(model)),
             [_Setting(t, t, rule) for t in NET_THRESHOLDS] + [_Setting(t_own, t_own, rule, own=True)])]


def _check(models: Sequence[str], sets: Sequence[EvalSet], budgets: Sequence[float], raw: bool) -> None:
    from edgeseg.evaluate import model_mask_rule, model_threshold
    from edgeseg.validate import finite

    if not models or not sets:
        raise EdgesegError("recall at an equal false-alarm rate needs at least one model and one set")
    if not budgets:
        raise EdgesegError("give at least one false-alarm budget")
    for b in budgets:
        finite("false-alarm budget", b, 0, unit="false blobs per image")
    names = [s.name for s in sets]
    if len(set(names)) < len(names):
        raise EdgesegError(f"two sets are named {next(n for n in names if names.count(n) > 1)!r}; give each "
                           "set its own folder name")
    for m in models:
        if m != CLASSICAL and not raw:  # a network without its point fails here, before any inference
            model_threshold(m), model_mask_rule(m)


def _curves(model: str, sets: list[tuple[EvalSet, Any, Any]], raw: bool, batch_size: int, progress: Progress,
            done: list[int], total: int) -> dict[str, list[dict[str, Any]]]:
    """Per set, the rows of ``model``'s settings (its own point last); each set and twin read a chunk at a
    time, every runner predicting the chunk once for all the settings it serves."""
    import contextlib

    from edgeseg.data.dataset import chunk_for
    from edgeseg.evaluate import predict_probs

    out = {}
    with contextlib.ExitStack() as stack:
        groups = [(stack.enter_context(runner), settings) for runner, settings in _settings(model, raw)]
        for ts, defects, good in sets:
            fresh = [(runner, [_Setting(s.key, s.threshold, s.rule, s.own) for s in settings])
                     for runner, settings in groups]
            for ds, twin in ((defects, False), (good, True)):
                if ds is None:
                    continue
                for part in ds.chunks(chunk_for(ds.images.shape[1:])):
                    truth = GroundTruth.from_masks(part.masks)
                    for runner, settings in fresh:
                        probs = predict_probs(runner, part.images, batch_size)
                        for s in settings:
                            s.add(probs, truth, twin)
                    done[0] += len(part) * len(fresh)
                    progress(done[0], total, f"{Path(model).name} on {ts.name}")
            out[ts.name] = [s.row() | {"own": s.own} for _, settings in fresh for s in settings]
    return out


def best(rows: Sequence[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    """The row with the best recall (Dice between equals) among those within ``budget``; None if none is."""
    within = [r for r in rows if r["fa"] <= budget + 1e-12]
    return max(within, key=lambda r: merit(r["recall"] or 0.0, r["dice"], r["setting"], "recall")) if within else None


def paired(model: dict[str, Any], reference: dict[str, Any]) -> tuple[int, int]:
    """(defects only ``model``'s row finds, defects only ``reference``'s finds), on the same set."""
    a, b = model["found"], reference["found"]
    return int(np.count_nonzero(a & ~b)), int(np.count_nonzero(b & ~a))


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("found", "own")}


def measure(models: Sequence[str], sets: Sequence[EvalSet], budgets: Sequence[float] = BUDGETS,
            raw: bool = False, batch_size: int = 16, progress: Progress = silent) -> dict[str, Any]:
    """Every model's curve on every set, its best setting within each budget (paired against ``classical`` when
    it is among ``models``), and each network at its own point; a JSON-ready dict. ``raw``: networks sweep the
    threshold alone instead of with their mask rule (their own point is then not scored).

    Result: ``best`` (one cell per set × model × budget: the chosen row, ``setting`` None when no setting is
    within the budget, and ``only_model`` / ``only_classical``), ``own_point`` (per network × set: its row and
    ``classical``, the reference's best row at an equal or lower rate with the paired counts) and ``curves``
    (every row)."""
    from edgeseg.data.dataset import load_dataset, load_good

    models = [str(m) for m in models]
    _check(models, sets, budgets, raw)
    opened = []
    for ts in sets:
        good = None if ts.good is None else load_good(ts.good)
        if good is not None and good.masks.any():
            raise EdgesegError(f"{ts.good}: the defect-free twin of {ts.data} has labelled defects")
        opened.append((ts, load_dataset(ts.data), good))
    images = sum(len(d) + (len(g) if g is not None else 0) for _, d, g in opened)
    runs = sum(len(CLASSICAL_LEVELS) if m == CLASSICAL else 1 for m in models)
    done = [0]
    rows = {m: _curves(m, opened, raw, batch_size, progress, done, images * runs) for m in models}
    curves = {m: {s: [r for r in rs if not r["own"]] for s, rs in per_set.items()} for m, per_set in rows.items()}
    reference = curves.get(CLASSICAL)

    table = []
    for ts in sets:
        for m in models:
            for b in budgets:
                r = best(curves[m][ts.name], b)
                cell = {"model": m, "set": ts.name, "budget": b, **(_public(r) if r else {"setting": None})}
                ref = best(reference[ts.name], b) if reference and m != CLASSICAL and r else None
                if ref:
                    cell["only_model"], cell["only_classical"] = paired(r, ref)
                table.append(cell)
    at_own = []
    for m in models:
        for ts in sets:
            for r in (r for r in rows[m][ts.name] if r["own"]):
                cell = {"model": m, "set": ts.name, **_public(r)}
                ref = best(reference[ts.name], r["fa"]) if reference else None
                if ref:
                    only_model, only_classical = paired(r, ref)
                    cell["classical"] = {**_public(ref), "only_model": only_model, "only_classical": only_classical}
                at_own.append(cell)
    return {"budgets": list(budgets), "raw": raw,
            "sets": [{"name": ts.name, "data": str(ts.data), "good": None if ts.good is None else str(ts.good)}
                     for ts in sets],
            "settings": {"network_thresholds": list(NET_THRESHOLDS), "classical_t_high": list(CLASSICAL_LEVELS)},
            "curves": {m: {s: [_public(r) for r in rs] for s, rs in c.items()} for m, c in curves.items()},
            "best": table, "own_point": at_own}
