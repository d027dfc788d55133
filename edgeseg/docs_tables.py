"""Render the docs' result tables from the JSON that ``edgeseg eval/compare/detectability/bench`` wrote.

A document marks what it wants rendered; everything outside the markers is left byte for byte::

    <!-- table:compare -->
    (replaced by the table, and a line naming the JSON and the command recorded in it)
    <!-- /table:compare -->

    INT8 costs <!-- value:int8 -->(replaced by a short phrase)<!-- /value:int8 --> of Dice.

``table:NAME`` blocks become a markdown table; ``value:NAME`` blocks a phrase inside a sentence or a table
cell. A block whose JSON is missing is left as it is and reported, never blanked, so a document keeps its
last rendered numbers until the run that produces them is repeated. Rendering is a pure function of the
JSON: running it twice changes nothing the second time.

    python -m edgeseg.docs_tables --run runs/demo README.md docs/*.md        # = make docs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

# -- formatting ---------------------------------------------------------------------------------------------
MINUS = "−"


def _num(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v == 0:
        return "0"
    return f"{v:.{digits}f}".replace("-", MINUS)


def _signed(v: float | None, digits: int = 4) -> str:
    """+0.0026, −0.0004, and ±0.0000 for anything that rounds to zero."""
    if v is None:
        return "–"
    if round(v, digits) == 0:
        return "±" + f"{0:.{digits}f}"
    return f"{v:+.{digits}f}".replace("-", MINUS)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _int(v: float) -> str:
    return f"{v:,.0f}"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _command(doc: dict[str, Any]) -> str:
    """The command recorded in a JSON, with the executable's folder dropped (``.venv/bin/edgeseg`` → ``edgeseg``)."""
    cmd = doc.get("command")
    if not cmd:
        return ""
    words = [str(w) for w in cmd] if isinstance(cmd, list) else str(cmd).split()
    words[0] = Path(words[0]).name
    if words[0].startswith("python") and len(words) > 2 and words[1] == "-m":
        words = words[2:]
    return " ".join(words)


def _name(path: str, run: str) -> str:
    """A model or set path as the docs show it: relative to the run folder (``seed-line/model.onnx``)."""
    p = Path(path)
    try:
        return p.relative_to(run).as_posix()
    except ValueError:
        return p.name if p.parent.name else str(p)


def _rule(threshold: float, rule: dict[str, Any] | None) -> str:
    rule = rule or {}
    parts = [f"{threshold:g}"]
    if rule.get("grow") is not None:
        parts.append(f"grown over {rule['grow']:g}")
    if rule.get("min_area"):
        parts.append(f"≥ {rule['min_area']} px")
    return ", ".join(parts)


# -- readers of the JSON ---------------------------------------------------------------------------------------
def _own(result: dict[str, Any]) -> dict[str, Any]:
    """An ``edgeseg eval`` result at the model's own operating point (``best``: the manifest's threshold)."""
    t = result["thresholds"]
    return t.get("best") or t[next(iter(t))]


def _is_network(result: dict[str, Any]) -> bool:
    return result["model"] != "classical"


def _recall(m: dict[str, Any]) -> str:
    return f"{_num(m['defect_recall'])} ({m['defects_found']} of {m['n_defects']})"


def _dice_recall_fp(m: dict[str, Any]) -> str:
    return f"{_num(m['dice'])} / {_num(m['defect_recall'])} / {_num(m['fp_blobs_per_image'])}"


def _eval_result(doc: dict[str, Any], set_name: str, network: bool) -> dict[str, Any] | None:
    for r in doc["results"]:
        if Path(r["data"]).name == set_name and _is_network(r) == network:
            return r
    return None


def _compare_row(doc: dict[str, Any], suffix: str, set_name: str) -> dict[str, Any]:
    for r in doc["rows"]:
        if r["model"].endswith(suffix) and Path(r["data"]).name == set_name:
            return r
    raise EdgesegError(f"no {suffix} row on the {set_name} set in the compare JSON")


# -- tables ----------------------------------------------------------------------------------------------------
def eval_table(doc: dict[str, Any], run: str) -> str:
    """``edgeseg eval`` JSON: every model on every set at its own operating point."""
    rows = []
    for r in doc["results"]:
        m = _own(r)
        defects = m["n_defects"] > 0
        rows.append([
            f"`{_name(r['model'], run)}`", f"`{Path(r['data']).name}`", _rule(m["threshold"], r.get("mask_rule")),
            _num(m["dice"]) if defects else "–", _recall(m) if defects else "–",
            _num(m["fp_blobs_per_image"]), _pct(m.get("escape_rate")) if defects else "–",
            _pct(m.get("overkill_rate")) if m.get("n_good_images") else "–",
        ])
    return _table(["model", "set", "operating point", "pixel Dice", "defect recall", "false blobs / image",
                   "escape", "overkill"], rows)


def sizes_table(doc: dict[str, Any], run: str) -> str:
    """``edgeseg eval`` JSON: defects found by size (√area, px) at each model's own point."""
    bins = ["0-8", "8-16", "16-32", "32-64", "64+"]
    used = [b for b in bins if any(b in _own(r)["recall_by_size"] for r in doc["results"])]
    rows = []
    for r in doc["results"]:
        by = _own(r)["recall_by_size"]
        if by:
            rows.append([f"`{_name(r['model'], run)}`", f"`{Path(r['data']).name}`"]
                        + [f"{by[b]['found']}/{by[b]['n']}" if b in by else "–" for b in used])
    return _table(["model", "set"] + [b.replace("-", "–") + " px" for b in used], rows)


def compare_table(doc: dict[str, Any], run: str) -> str:
    """``edgeseg compare`` JSON: each precision against the reference (the first model)."""
    rows = []
    for r in doc["rows"]:
        ref = r.get("reference")
        rows.append([
            f"`{_name(r['model'], run)}`", r["precision"].upper(), f"`{Path(r['data']).name}`",
            _num(r["dice"], 4), "–" if ref else _signed(r["delta_dice"]),
            _num(r["defect_recall"], 4), "–" if ref else _signed(r["delta_recall"]),
            _num(r["fp_blobs_per_image"]), "–" if ref else _num(r["mask_iou_vs_ref"], 4),
            "–" if ref else f"{r['max_abs_dprob']:.1e}",
        ])
    return _table(["model", "precision", "set", "pixel Dice", "ΔDice", "defect recall", "Δrecall",
                   "false blobs / image", "mask IoU vs reference", "max \\|Δprob\\|"], rows)


def detectability_table(doc: dict[str, Any], run: str) -> str:
    """``edgeseg detectability`` JSON: for each recall target, the footprint z it needs and how often noise
    alone reaches that z in a defect-free image."""
    rows = [[f"{t['recall']:g}", _num(t["z"], 2), _pct(t["good_image_share"])] for t in doc["targets"]]
    rows += [[f"{_num(b['defect_share'])} (a one-level scan)", _num(b["z"], 2), _pct(b["good_image_share"])]
             for b in doc["budgets"] if b.get("z") is not None and b["good_image_share"] == 0.01]
    return _table(["defect recall", "footprint z the least visible of those defects reach",
                   "defect-free images where noise alone reaches that z"], rows)


def bench_table(doc: dict[str, Any], run: str) -> str:
    """``edgeseg bench`` JSON: images/s (median of repeats) per batch size, p99 latency per call at the
    smallest and largest batch, and the accuracy read beside speed when the bench had ``--accuracy``."""
    series: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in doc["rows"]:
        if r.get("mode") in ("single", "batched"):
            series.setdefault((r["model"], r["backend"], r["precision"]), {})[r["batch_size"]] = r
    sizes = sorted({b for s in series.values() for b in s})
    accuracy = any("accuracy_dice" in r for s in series.values() for r in s.values())
    rows = []
    for (model, backend, precision), by in series.items():
        cells = [f"`{_name(model, run)}`", f"{backend} {precision.upper()}"]
        for b in sizes:
            r = by.get(b)
            cell = _int(r["images_per_s"]) if r else "–"
            if r and b in (sizes[0], sizes[-1]):
                cell += f" ({_num(r['latency_ms_p99'], 1)})"
            cells.append(cell)
        if accuracy:
            first = next(iter(by.values()))
            cells.append(" / ".join(_num(first.get(f"accuracy_{k}")) for k in ("dice", "recall", "fp_blobs_per_image")))
        rows.append(cells)
    head = ["model", "backend"] + [f"b={b}" + (" (p99 ms)" if b in (sizes[0], sizes[-1]) else "") for b in sizes]
    return _table(head + (["Dice / recall / false blobs"] if accuracy else []), rows)


# -- values (a phrase in a sentence or a table cell) --------------------------------------------------------------
def _eval_value(set_name: str) -> Callable[[dict[str, Any], str], str]:
    def render(doc: dict[str, Any], run: str) -> str:
        net, cls = _eval_result(doc, set_name, True), _eval_result(doc, set_name, False)
        if net is None:
            raise EdgesegError(f"no network result on the {set_name} set in the eval JSON")
        text = _dice_recall_fp(_own(net))
        return text + (f" (classical {_dice_recall_fp(_own(cls))})" if cls else "")
    return render


def _line_value(doc: dict[str, Any], run: str) -> str:
    r = next((r for r in doc["results"] if _is_network(r) and _own(r)["n_defects"]), None)
    if r is None:
        raise EdgesegError("no network result on a set with defects in the eval JSON")
    m = _own(r)
    return (f"Dice {_num(m['dice'])}, recall {_recall(m)}, {_num(m['fp_blobs_per_image'])} false blobs / image "
            f"at {_rule(m['threshold'], r.get('mask_rule'))}")


def _precision_value(suffix: str) -> Callable[[dict[str, Any], str], str]:
    def render(doc: dict[str, Any], run: str) -> str:
        rows = [_compare_row(doc, suffix, s) for s in ("seed", "gauss")]
        return (f"ΔDice {' / '.join(_signed(r['delta_dice']) for r in rows)}, "
                f"Δrecall {' / '.join(_signed(r['delta_recall']) for r in rows)}")
    return render


def _detectability_value(doc: dict[str, Any], run: str) -> str:
    t = next((t for t in doc["targets"] if t["recall"] == 0.99), None)
    if t is None:
        raise EdgesegError("the detectability JSON has no recall-0.99 target")
    return (f"the 1 % least visible defects have footprint z ≤ {_num(t['z'], 2)}, which noise alone reaches in "
            f"{_pct(t['good_image_share'])} of defect-free images")


def _bench_value(doc: dict[str, Any], run: str) -> str:
    best: dict[str, dict[str, Any]] = {}
    for r in doc["rows"]:
        if r.get("mode") in ("single", "batched") and r["backend"] == "onnxruntime":
            key = "single" if r["batch_size"] == 1 else "batched"
            if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
                best[key] = r
    s, b = best["single"], best["batched"]
    return (f"batch 1 {_int(s['images_per_s'])} images/s (`{_name(s['model'], run)}`, p99 "
            f"{_num(s['latency_ms_p99'], 1)} ms); batched {_int(b['images_per_s'])} at batch {b['batch_size']} "
            f"(`{_name(b['model'], run)}`)")


def _study_recall(group_prefix: str, sets: Sequence[str]) -> Callable[[dict[str, Any], str], str]:
    """An ``edgeseg study`` report: the lowest and highest defect recall of any single trained network (any
    seed) of the FP32 arm groups starting with ``group_prefix``, over ``sets`` (``90–94 %``)."""
    def render(doc: dict[str, Any], run: str) -> str:
        stats = [r["defect_recall"] for r in doc["rows"] if r["group"].startswith(group_prefix)
                 and r["set"] in sets and r["precision"] == "fp32" and r["defect_recall"]["n"]]
        if not stats:
            raise EdgesegError(f"no arm group {group_prefix!r} scored on {', '.join(sets)} in the study report")
        return f"{100 * min(s['min'] for s in stats):.0f}–{100 * max(s['max'] for s in stats):.0f} %"
    return render


def equal_fa_table(budgets: Sequence[float]) -> Callable[[dict[str, Any], str], str]:
    """``edgeseg equal-fa`` JSON: each model's best recall / Dice within each of ``budgets`` (false blobs per
    image) on each large set. A model saved as a run's ``model.onnx`` is named by its run folder (a study arm)."""
    def render(doc: dict[str, Any], run: str) -> str:
        missing = [b for b in budgets if b not in doc["budgets"]]
        if missing:
            raise EdgesegError(f"the equal-fa JSON has no budget {missing[0]:g} (it has {doc['budgets']})")
        sets = [s["name"] for s in doc["sets"]]
        best = {(b["model"], b["set"], b["budget"]): b for b in doc["best"]}
        rows = []
        for model in dict.fromkeys(b["model"] for b in doc["best"]):
            p = Path(model)
            label = "classical" if model == "classical" else p.parent.name if p.stem == "model" else _name(model, run)
            for budget in budgets:
                cells = [best.get((model, s, budget)) for s in sets]
                rows.append([f"`{label}`", f"≤ {budget:g}",
                             *["–" if c is None else f"{_num(c['recall'])} / {_num(c['dice'])}" for c in cells]])
        return _table(["model", "false blobs/img", *[f"`{s}` recall / Dice" for s in sets]], rows)
    return render


def curve_table(doc: dict[str, Any], run: str) -> str:
    """``edgeseg contrast-curve`` JSON: each detector's recall per contrast at the same false-alarm rate on the
    test images (its lowest threshold within the budget there), or, where no threshold gets there, at its
    fitted point with the false blobs that costs."""
    unit = "σ" if doc["contrast_unit"] == "local noise sigma" else "levels"
    contrasts = [c["contrast"] for c in doc["models"][0]["curve"]]
    head = ["detector", "threshold", "false blobs / image", *[f"{c:g} {unit}" for c in contrasts], "Dice (highest)"]
    rows = []
    for m in doc["models"]:
        matched = m.get("matched")
        options = (matched or {}).get("options") or m["options"]
        label = _name(m["model"], run) if m["model"] != "classical" else f"classical (t_high {options['t_high']:g})"
        curve = matched["curve"] if matched else m["curve"]
        t = matched["threshold"] if matched else m["threshold"]
        fp = (_num(matched["fp_blobs_per_image"]) if matched
              else _num(m["test_good"]["fp_blobs_per_image"]) + " (no threshold within budget)")
        rows.append([label, f"{t:g}", fp, *[_num(c["defect_recall"], 2) for c in curve], _num(curve[-1]["dice"])])
    return _table(head, rows)


def _curve_value(contrast: float) -> Callable[[dict[str, Any], str], str]:
    """``edgeseg contrast-curve`` JSON: each detector's recall at ``contrast`` at the test's false-alarm budget,
    in a phrase (``trained on it 94 %, demo network –, classical 32 %``; – where no threshold is within it)."""
    def render(doc: dict[str, Any], run: str) -> str:
        parts = []
        for m in doc["models"]:
            name = ("classical" if m["model"] == "classical"
                    else "its own network" if "/line/" in f"/{_name(m['model'], run)}" else "the demo network")
            point = next((c for c in (m["matched"] or {}).get("curve", []) if c["contrast"] == contrast), None)
            recall = "–" if point is None else f"{100 * point['defect_recall']:.0f} %"
            parts.append(f"{name} {recall}")
        return ", ".join(parts)

    return render


def _spread_cell(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.3f} ± {stat['sd']:.3f}" if stat.get("n", 1) > 1 else _num(stat["mean"])


def study_table(doc: dict[str, Any], run: str) -> str:
    """An ``edgeseg study`` report: one row per arm group (× precision), Dice and recall per held-out set as
    mean ± sd over training seeds, false blobs per image per set, training seconds; the classical detector's
    row last when the study scored it."""
    sets = [s["name"] for s in doc["sets"]]
    several = len(doc["precisions"]) > 1
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in doc["rows"]:
        rows.setdefault((row["group"], row["precision"]), {})[row["set"]] = row
    # A defect-free set (no arm has a Dice on it) says only how often each model fires: false blobs alone.
    scored = [s for s in sets if any((per[s].get("dice") or {}).get("mean") is not None for per in rows.values())]
    # A study with [deploy] bench = true timed each arm's FP32 ONNX model: the network's cost, shown once per
    # arm group (on its fp32 row), beside its FLOPs.
    timed = any(r.get("images_per_s") for r in doc["rows"])
    head = ["arm", *(["precision"] if several else []), "seeds",
            *[f"`{s}` {m}" for s in scored for m in ("Dice", "recall")],
            "false blobs/img" + (f" ({' / '.join(f'`{s}`' for s in sets)})" if len(sets) > 1 else ""), "training s",
            *(["GFLOP", "FP32 images/s (b1 / b32)"] if timed else [])]
    body = []
    for (group, precision), per in rows.items():
        first = per[sets[0]]
        wall = (first.get("train_wall_s") or {}).get("mean")
        speed = first.get("images_per_s") if precision == "fp32" else None
        flops = first.get("flops_per_image")
        body.append([f"`{group}`" if group else "–", *([precision] if several else []), str(first["seeds"]),
                     *[_spread_cell(per[s].get(m)) for s in scored for m in ("dice", "defect_recall")],
                     " / ".join(_num((per[s].get("fp_blobs_per_image") or {}).get("mean")) for s in sets),
                     "–" if wall is None else f"{wall:.0f}",
                     *([_num(flops / 1e9) if flops and speed else "–",
                        " / ".join(_int(speed[k]) for k in ("batch_1", "batch_32")) if speed else "–"]
                       if timed else [])])
    classical = doc.get("classical") or {}
    if all(s in classical for s in sets):
        body.append(["classical", *(["–"] if several else []), "–",
                     *[_num(classical[s].get(m)) for s in scored for m in ("dice", "defect_recall")],
                     " / ".join(_num(classical[s].get("fp_blobs_per_image")) for s in sets), "–",
                     *(["–", "–"] if timed else [])])
    return _table(head, body)


@dataclass(frozen=True)
class Block:
    """What a marker name renders: its JSON (relative to the run folder) and the function that renders it."""
    source: str
    render: Callable[[dict[str, Any], str], str]


TABLES: dict[str, Block] = {
    "eval": Block("metrics.json", eval_table),
    "sizes": Block("metrics.json", sizes_table),
    "seed-line": Block("seed-line/metrics.json", eval_table),
    "gauss-line": Block("gauss-line/metrics.json", eval_table),
    "compare": Block("compare.json", compare_table),
    "detectability": Block("detectability.json", detectability_table),
    "bench": Block("bench.json", bench_table),
    **{f"line.{s}": Block(f"line/{s}/curve.json", curve_table) for s in ("brick", "moon", "grass", "gravel")},
    "line.calib": Block("line/brick/calib-compare.json", compare_table),
    # Studies write beside the demo's run folder (edgeseg study's default --out is runs/study/<name>).
    **{f"study.{s}": Block(f"../study/{s}/report.json", study_table)
       for s in ("devices", "workers", "data", "losses", "networks", "unet")},
    "study.losses.equal-fa": Block("../study/losses/equal-fa.json", equal_fa_table((0.001, 0.005))),
}
VALUES: dict[str, Block] = {
    **{f"eval.{s}": Block("metrics.json", _eval_value(s)) for s in ("seed", "gauss", "vary")},
    "seed-line": Block("seed-line/metrics.json", _line_value),
    "gauss-line": Block("gauss-line/metrics.json", _line_value),
    "fp16": Block("compare.json", _precision_value(".fp16.onnx")),
    "int8": Block("compare.json", _precision_value(".int8.onnx")),
    "int8.cpu": Block("compare.json", _precision_value(".int8.cpu.onnx")),
    "detectability": Block("detectability.json", _detectability_value),
    "bench": Block("bench.json", _bench_value),
    **{f"line.{s}": Block(f"line/{s}/curve.json", _curve_value(1.0)) for s in ("brick", "moon", "grass", "gravel")},
    **{f"study.data.{p}": Block("../study/data/report.json", _study_recall(f"preset={p}", ("gauss", "vary")))
       for p in ("seed", "train")},
}
_KINDS = {"table": TABLES, "value": VALUES}
_MARKER = re.compile(r"(<!-- (table|value):([\w.-]+) -->)(.*?)(<!-- /\2:\3 -->)", re.DOTALL)


# -- rendering ---------------------------------------------------------------------------------------------------
@dataclass
class Report:
    """What one rendering did: blocks rendered, blocks left as they were (and why), files changed."""
    rendered: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def merge(self, other: Report) -> None:
        self.rendered += other.rendered
        self.missing += other.missing
        self.changed += other.changed


def block_text(kind: str, name: str, doc: dict[str, Any], run: str | Path, source: str | Path) -> str:
    """The text between the markers of one block."""
    run = Path(run).as_posix()
    body = _KINDS[kind][name].render(doc, run)
    if kind == "value":
        return body
    command = _command(doc)
    origin = f"From `{Path(os.path.normpath(source)).as_posix()}`" + (f", written by `{command}`" if command else "")
    return f"\n{body}\n\n<sub>{origin}. Rendered by `make docs`.</sub>\n"


def render_text(text: str, run: str | Path) -> tuple[str, Report]:
    """``text`` with every marked block rendered from the JSON under ``run``; blocks whose JSON is missing
    stay as they are. Raises :class:`EdgesegError` on a marker name it does not know."""
    run = Path(run)
    report = Report()
    cache: dict[Path, dict[str, Any] | None] = {}

    def load(path: Path) -> dict[str, Any] | None:
        if path not in cache:
            try:
                cache[path] = json.loads(path.read_text()) if path.is_file() else None
            except ValueError as e:
                raise EdgesegError(f"{path} is not JSON: {e}") from None
        return cache[path]

    def replace(m: re.Match) -> str:
        kind, name = m.group(2), m.group(3)
        blocks = _KINDS[kind]
        if name not in blocks:
            raise EdgesegError(f"unknown {kind} marker '{name}': choose one of {', '.join(sorted(blocks))}")
        source = run / blocks[name].source
        doc = load(source)
        if doc is None:
            report.missing.append(f"{kind}:{name} ({source} not found)")
            return m.group(0)
        report.rendered.append(f"{kind}:{name}")
        return m.group(1) + block_text(kind, name, doc, run, source) + m.group(5)

    return _MARKER.sub(replace, text), report


def render_files(paths: Iterable[str | Path], run: str | Path) -> Report:
    """Render every marked block of each file in place; a file is rewritten only when its text changes."""
    report = Report()
    for path in map(Path, paths):
        old = path.read_text()
        new, r = render_text(old, run)
        r.missing = [f"{path}: {w}" for w in r.missing]
        if new != old:
            path.write_text(new)
            r.changed.append(str(path))
        report.merge(r)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeseg.docs_tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/demo", help="the run folder whose JSON the tables come from")
    parser.add_argument("files", nargs="+", help="markdown files to render in place")
    args = parser.parse_args(argv)
    try:
        report = render_files(args.files, args.run)
    except (EdgesegError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in report.missing:
        print(f"warning: left as it is: {line}", file=sys.stderr)
    print(f"docs_tables: {len(report.rendered)} blocks rendered from {args.run}, {len(report.missing)} left as "
          f"they were, {len(report.changed)} of {len(args.files)} files changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
