"""Benchmark output: the JSON record, the rich table, the PNG plot, and the accuracy read beside speed.

A row is one measurement (model × backend × precision × mode × batch size). The accuracy of the same
artifact comes from an ``edgeseg compare`` JSON, so speed and what a precision loses are read in one row.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeseg.artifacts import environment, read_json, write_figure, write_json
from edgeseg.bench.stats import SATURATION_GAIN, saturation_batch
from edgeseg.errors import EdgesegError

# Accuracy columns taken from a compare JSON: our column ← the first numeric value whose key (the last part
# of a flattened, dotted key; top level first) is one of these names. Exact names, so ``delta_dice`` or
# ``mask_iou_vs_ref`` never stand in for the metric itself.
_ACCURACY_KEYS = {
    "dice": ("dice",),
    "recall": ("defect_recall", "recall"),
    "fp_blobs_per_image": ("fp_blobs_per_image",),
}


_SHORT = {"onnxruntime": "ort", "tensorrt": "trt"}


def label(row: dict[str, Any]) -> str:
    """A short name for a row's artifact: ``parent/file backend precision`` (e.g. ``demo/model.onnx ort fp32``)."""
    p = Path(str(row["model"]))
    name = f"{p.parent.name}/{p.name}" if p.parent.name else p.name
    return f"{name} {_SHORT.get(row['backend'], row['backend'])} {row['precision']}"


# -- accuracy --------------------------------------------------------------------------------------------
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _entries(obj: Any) -> list[dict[str, Any]]:
    """Every dict in a JSON tree that names a model (keys model/path/artifact holding a string)."""
    found = []
    if isinstance(obj, dict):
        if any(isinstance(obj.get(k), str) for k in ("model", "path", "artifact")):
            found.append(obj)
        for v in obj.values():
            found.extend(_entries(v))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(_entries(v))
    return found


def load_accuracy(path: str | Path) -> list[dict[str, Any]]:
    """The per-model entries of an ``edgeseg compare`` JSON (one line of error if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"accuracy file not found: {path} (write one with `edgeseg compare --json`)")
    try:
        data = read_json(path)
    except ValueError as e:
        raise EdgesegError(f"{path} is not JSON: {e}") from None
    entries = _entries(data)
    if not entries:
        raise EdgesegError(f"{path} holds no per-model results: expected the JSON of `edgeseg compare`")
    return entries


def accuracy_for(entries: Sequence[dict[str, Any]], model: str | Path) -> dict[str, float]:
    """Dice, recall and FP blobs/image of ``model`` (matched by path, else by file name); the mean over
    the compare's datasets when it has several. Empty when the compare did not include the model."""
    model = Path(str(model))

    def names(e: dict[str, Any]) -> set[str]:
        return {str(e[k]) for k in ("model", "path", "artifact") if isinstance(e.get(k), str)}

    matches = [e for e in entries if str(model) in names(e) or str(model.resolve()) in names(e)]
    if not matches:
        matches = [e for e in entries if model.name in {Path(n).name for n in names(e)}]
    out: dict[str, float] = {}
    for column, words in _ACCURACY_KEYS.items():
        values = []
        for e in matches:
            flat = _flatten(e)
            for word in words:
                # The first key of that name decides: a None there (recall on a defect-free set) means
                # "not defined for this row", not "look for another value".
                key = next((k for k in flat if k.rsplit(".", 1)[-1].lower() == word), None)
                if key is None:
                    continue
                hit = flat[key]
                if isinstance(hit, (int, float)) and not isinstance(hit, bool):
                    values.append(float(hit))
                break
        values = [v for v in values if not math.isnan(v)]
        if values:
            out[f"accuracy_{column}"] = sum(values) / len(values)
    return out


# -- summaries --------------------------------------------------------------------------------------------
def saturation(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model × backend × precision: the batch size after which images/s grows < 5 %."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("mode") in ("single", "batched"):
            groups.setdefault((r["model"], r["backend"], r["precision"]), []).append(r)
    out = []
    for (model, backend, precision), rs in groups.items():
        sizes = [r["batch_size"] for r in rs]
        best = max(rs, key=lambda r: r["images_per_s"])
        out.append({
            "model": model, "backend": backend, "precision": precision,
            "saturation_batch": saturation_batch(sizes, [r["images_per_s"] for r in rs]),
            "gain_threshold": SATURATION_GAIN,
            "best_images_per_s": best["images_per_s"], "best_batch": best["batch_size"],
            "batch_sizes": sorted(sizes),
        })
    return out


def record(rows: list[dict[str, Any]], config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The JSON document: rows, the saturation summary, config, machine, versions, the exact command."""
    return {
        "kind": "bench",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "config": config,
        "environment": environment(),
        "rows": rows,
        "saturation": saturation(rows),
        **extra,
    }


def write_record(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_json(path, doc)


# -- table -------------------------------------------------------------------------------------------------
def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(rows: Sequence[dict[str, Any]], title: str = "edgeseg bench"):
    """A rich Table of the rows; optional column groups appear only when some row has them."""
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    cols: list[tuple[str, str, int]] = [
        ("model", "model", 0), ("mode", "mode", 0), ("batch_size", "batch", 0),
        ("images_per_s", "img/s", 1), ("images_per_s_p50", "img/s@p50", 1), ("latency_ms_p50", "p50 ms", 2), ("latency_ms_p90", "p90 ms", 2),
        ("latency_ms_p99", "p99 ms", 2), ("latency_per_image_ms_p50", "p50 ms/img", 2),
    ]
    optional = [("h2d_ms_p50", "H2D ms", 3), ("compute_ms_p50", "compute ms", 3), ("d2h_ms_p50", "D2H ms", 3),
                ("enqueue_ms_p50", "enqueue ms", 3), ("frames_in", "in", 0), ("frames_out", "out", 0),
                ("dropped", "dropped", 0), ("rss_mb_start", "RSS start MB", 1), ("rss_mb_end", "RSS end MB", 1),
                ("accuracy_dice", "Dice", 4), ("accuracy_recall", "recall", 4),
                ("accuracy_fp_blobs_per_image", "FP blobs/img", 3)]
    cols += [c for c in optional if any(c[0] in r for r in rows)]
    for key, head, _ in cols:
        t.add_column(head, justify="left" if key in ("model", "mode") else "right",
                     overflow="fold" if key == "model" else "ellipsis")
    for r in rows:
        t.add_row(*[label(r) if key == "model" else _fmt(r.get(key), d) for key, _, d in cols])
    return t


def saturation_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One sentence per artifact: where throughput stops growing."""
    lines = []
    for s in saturation(rows):
        if len(s["batch_sizes"]) < 2:
            continue
        name = label(s)
        b = s["saturation_batch"]
        if b == s["batch_sizes"][-1]:
            lines.append(f"{name}: images/s still grows ≥ {SATURATION_GAIN:.0%} up to batch {b} "
                         f"(best {s['best_images_per_s']:.1f} img/s)")
        else:
            lines.append(f"{name}: throughput stops growing after batch {b} (next size adds < "
                         f"{SATURATION_GAIN:.0%}; best {s['best_images_per_s']:.1f} img/s at batch {s['best_batch']})")
    return lines


# -- plot ----------------------------------------------------------------------------------------------------
def plot(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """images/s and p99 latency vs batch size, one line per artifact (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("mode") in ("single", "batched"):
            series.setdefault(label(r), []).append(r)
    if not series:
        raise EdgesegError("nothing to plot: no single/batched rows (streaming rows have no batch sweep)")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, rs in series.items():
        rs = sorted(rs, key=lambda r: r["batch_size"])
        xs = [r["batch_size"] for r in rs]
        ax1.plot(xs, [r["images_per_s"] for r in rs], marker="o", label=name)
        ax2.plot(xs, [r["latency_ms_p99"] for r in rs], marker="o", label=name)
    sizes = sorted({r["batch_size"] for rs in series.values() for r in rs})
    for ax, ylabel in ((ax1, "images/s"), (ax2, "p99 latency per batch (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        # Log scales: networks differ by orders of magnitude, and both curves must stay readable.
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7)
    fig.suptitle("edgeseg bench: throughput and tail latency vs batch size")
    fig.tight_layout()
    return write_figure(path, fig)
