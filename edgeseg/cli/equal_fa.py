"""``edgeseg equal-fa``: models compared at an equal false-alarm rate, with paired counts against the classical
detector (:mod:`edgeseg.equal_fa`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import (MAX_BATCH, claim_outputs, emit_report, force_option, progress_bar,
                                report_output, user_errors)
from edgeseg.cli.format import num, sig
from edgeseg.errors import BadInput

_EPILOG = """\
Examples:

  The large sets of docs/study.md, each with its defect-free twin (vary has none):
    edgeseg equal-fa --model classical --model runs/demo/model.keras \\
        --data big/seed,big/good --data big/gauss,big/goodg --data big/vary --json runs/demo/equal-fa.json

  The threshold alone, without the network's mask rule, at one budget:
    edgeseg equal-fa --model runs/demo/model.onnx --data runs/demo/data/seed,runs/demo/data/good --budget 0.005 --raw

Each network sweeps 20 thresholds (0.02 ... 0.999) with its own mask rule; classical sweeps its seed level t_high (4.5 ... 7.0) at 0.5.
A setting's false-alarm rate is false blobs per image over the set and its defect-free twin together (--data SET,TWIN).
Per budget, each cell is the best recall within it: recall / Dice (setting), and against classical at its own best setting for that budget [+defects only the model finds / -only classical finds].
A second table scores each network at its own point (its manifest's threshold and mask rule), beside classical's best recall at an equal or lower rate.
Every setting is chosen on the very data it is scored on, the same for every model: a comparison, not an operating point (edgeseg operating-point fits that).
"""


def _sets(data: list[str]):
    from edgeseg.equal_fa import EvalSet

    sets = []
    for spec in data:
        parts = [p.strip() for p in spec.split(",")]
        if len(parts) > 2 or not all(parts):
            raise BadInput(f"--data takes a set, or a set and its defect-free twin joined by a comma "
                           f"(big/seed,big/good), got {spec!r}")
        sets.append(EvalSet(Path(parts[0]).name, Path(parts[0]), Path(parts[1]) if len(parts) == 2 else None))
    return sets


def _budgets(text: str) -> list[float]:
    from edgeseg.validate import finite

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise BadInput(f"--budget must be comma-separated false blobs per image (e.g. 0.001,0.005), got {text!r}")
    return [finite("--budget", v, 0, unit="false blobs per image") for v in values]


def _name(model: str) -> str:
    return model if model == "classical" else Path(model).name


def _cell(c: dict) -> str:
    if c["setting"] is None:
        return "-"
    text = f"{num(c['recall'])} / {num(c['dice'])} ({sig(c['setting'])})"
    if "only_model" in c:
        text += f" [+{c['only_model']}/-{c['only_classical']}]"
    return text


def _tables(report: dict) -> list:
    from rich import box
    from rich.table import Table

    tables = []
    budgets = report["budgets"]
    for s in report["sets"]:
        twin = f" + {Path(s['good']).name}" if s["good"] else ""
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"{s['name']}{twin}: best recall / Dice (setting) "
                      "within each budget", caption="budget: false blobs per image over the set and its twin; "
                      "[+only the model finds / -only classical finds]")
        table.add_column("model")
        for b in budgets:
            table.add_column(f"<= {b:g}", justify="right")
        cells = [c for c in report["best"] if c["set"] == s["name"]]
        for model in dict.fromkeys(c["model"] for c in cells):
            table.add_row(_name(model), *(_cell(c) for c in cells if c["model"] == model))
        tables.append(table)
    if report["own_point"]:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="each network at its own point; classical: its "
                      "best recall at an equal or lower rate", caption="recall / Dice / false blobs per image")
        for col in ("model", "set", "threshold", "model", "classical"):
            table.add_column(col, justify="left" if col in ("model", "set") else "right")
        for c in report["own_point"]:
            ref = c.get("classical")
            other = (f"{num(ref['recall'])} / {num(ref['dice'])} ({sig(ref['setting'])}) "
                     f"[+{ref['only_model']}/-{ref['only_classical']}]" if ref else "-")
            table.add_row(_name(c["model"]), c["set"], sig(c["setting"]),
                          f"{num(c['recall'])} / {num(c['dice'])} / {num(c['fa'], 4)}", other)
        tables.append(table)
    return tables


@user_errors
def equal_fa(
    model: list[str] = typer.Option(..., "--model", help="A model file (.keras, .onnx, .engine) or 'classical'; repeatable."),
    data: list[str] = typer.Option(..., "--data", help="A labelled set, or SET,TWIN: the set and its defect-free twin of the same noise; repeatable."),
    budget: str = typer.Option("0.001,0.0025,0.005,0.01", "--budget", help="False-alarm budgets (false blobs per image), comma-separated."),
    raw: bool = typer.Option(False, "--raw", help="Networks sweep the threshold alone, without their mask rule (no own point then)."),
    batch_size: int = typer.Option(16, help=f"Images per inference call (1..{MAX_BATCH})."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the report (every curve too) as JSON to this file ('-' = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Models compared at an equal false-alarm rate: best recall within each budget, paired against classical."""
    from edgeseg.artifacts import environment
    from edgeseg.equal_fa import measure
    from edgeseg.validate import whole

    whole("--batch-size", batch_size, 1, MAX_BATCH)
    budgets, sets = _budgets(budget), _sets(data)
    inputs = {"--model": [m for m in model if m != "classical"],
              "--data": [p for s in sets for p in (s.data, s.good) if p is not None]}
    claim_outputs([report_output(json_out)], inputs, force)
    with progress_bar("equal-fa", enabled=not quiet) as progress:
        report = measure(model, sets, budgets, raw, batch_size, progress)
    report.update(command=sys.argv, environment=environment())
    emit_report(report, _tables(report), json_out)


def register(app: typer.Typer) -> None:
    app.command("equal-fa", epilog=_EPILOG)(equal_fa)
