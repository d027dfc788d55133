"""``edgeseg contrast-curve``: recall against contrast on a line's own surface, detectors side by side at one
false-alarm budget (thin layer over edgeseg.contrast_curve)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import (claim_outputs, emit_report, force_option, parse_range, progress_bar,
                                report_output, user_errors)
from edgeseg.errors import EdgesegError

_EPILOG = """\
Examples:

  Your network, the synthetic-noise one and the classical detector on your surface:
    edgeseg contrast-curve --model runs/line/model.keras --model runs/demo/model.keras --model classical
      --test line/test --val line/val --contrast-sigma 0.25,0.5,1,2 --plot curve.png --json curve.json

  Contrast in gray levels instead (a flat surface, a known camera):
    edgeseg contrast-curve --model runs/demo/model.keras --model classical --test line/test --val line/val
      --contrast 2,3,4,6

Each detector's threshold and mask rule (and the classical detector's seed level) are fitted on --val images
with defects placed on them, to the --fa-budget, then every number is measured on --test images: recall per
contrast and the false blobs per defect-free test image. --test and --val are folders of defect-free images
that never share an image (another region or other parts than the ones a network was trained on).
"""

_SURFACES_EPILOG = """\
Example:

  edgeseg surfaces --out runs/line/surfaces --name brick --name moon
  edgeseg train --backgrounds runs/line/surfaces/brick/train --val-backgrounds runs/line/surfaces/brick/val
    --contrast-sigma 0.25:3 --crop 192 --out runs/line/brick
"""


def _levels(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v < 1e4 for v in values):  # NaN fails too
        raise EdgesegError(f"{option} must be a comma-separated list of contrasts above 0 (bright defects), e.g. "
                           f"0.5,1,2; got {text!r}")
    return sorted(set(values))


@user_errors
def contrast_curve(
    model: list[str] = typer.Option(..., "--model", help="A model file, or classical; repeatable."),
    test: Path = typer.Option(..., "--test", help="Defect-free images the curve is measured on (any size >= --crop)."),
    val: Path = typer.Option(..., "--val", help="Other defect-free images each detector's operating point is fitted on."),
    contrast_sigma: Optional[str] = typer.Option(None, "--contrast-sigma", help="Contrasts in local noise sigma, e.g. 0.25,0.5,1,2."),
    contrast: Optional[str] = typer.Option(None, "--contrast", help="Contrasts in gray levels of the images, e.g. 2,3,4,6."),
    count: int = typer.Option(200, "--count", help="Test crops per contrast (and defect-free test crops)."),
    fit_count: int = typer.Option(200, "--fit-count", help="Fitting crops with defects (and as many without)."),
    crop: int = typer.Option(192, "--crop", help="Crop side in pixels."),
    defect_size: str = typer.Option("8:63", "--defect-size", help="Defect side LO:HI in pixels (below --crop)."),
    fa_budget: float = typer.Option(0.01, "--fa-budget", help="False blobs per image each detector may cost on --val."),
    seed: int = typer.Option(0, "--seed", help="Seed of the crops and defects."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON to this file ('-' = stdout)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write recall vs contrast as a PNG here."),
    title: str = typer.Option("", "--title", help="Title of the plot."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Recall vs defect contrast on your surface, each detector fitted to the same false-alarm budget."""
    from edgeseg.artifacts import environment
    from edgeseg.validate import seed as check_seed
    from edgeseg.validate import whole

    if (contrast is None) == (contrast_sigma is None):
        raise EdgesegError("give one of --contrast (gray levels) or --contrast-sigma (local noise sigma)")
    levels = _levels(contrast_sigma or contrast, "--contrast-sigma" if contrast_sigma else "--contrast")
    whole("--count", count, 1, 100_000)
    whole("--fit-count", fit_count, 2, 100_000)
    whole("--crop", crop, 16, 4096)
    check_seed("--seed", seed)
    if test.resolve() == val.resolve():
        raise EdgesegError("--test and --val are the same folder: the fit would see the test images; give another "
                           "region or other parts as --val")
    lo, hi = parse_range(defect_size, int, "--defect-size")
    whole("--defect-size", lo, 1, crop - 1, why=f"for --crop {crop}")
    whole("--defect-size", hi, lo, crop - 1, why=f"for --crop {crop}")
    models = [m for m in model if m != "classical"]
    inputs = {"--model": [Path(m) for m in models], "--test": test, "--val": val}
    claim_outputs([report_output(json_out), report_output(plot, "--plot")], inputs, force)
    from edgeseg import contrast_curve as cc
    from edgeseg.data.backgrounds import load_backgrounds

    test_bg, val_bg = load_backgrounds(test, crop), load_backgrounds(val, crop)
    with progress_bar("contrast-curve", enabled=not quiet) as progress:
        report = cc.measure(model, test_bg, val_bg, levels, relative=contrast_sigma is not None, count=count,
                            fit_count=fit_count, crop=crop, budget=fa_budget, seed=seed, progress=progress,
                            defects=cc.DEFECTS.replace(defect_size=(lo, hi)))
    report.update(command=sys.argv, environment=environment())
    if plot:
        cc.plot(report, plot, title)
    emit_report(report, _tables(report), json_out)


def _tables(report):
    from rich.table import Table

    from edgeseg.cli.format import num, pct, sig

    unit = "σ" if report["contrast_unit"] == "local noise sigma" else "levels"
    contrasts = [c["contrast"] for c in report["models"][0]["curve"]]
    budget = report["budget"]

    def table(title):
        t = Table(title=title)
        for name in ("model", "threshold", "FP/img", *[f"{c:g}" for c in contrasts], "Dice"):
            t.add_column(name, justify="left" if name == "model" else "right")
        return t

    fitted = table(f"defect recall by contrast ({unit}) at the point fitted on --val to <= {budget:g} false "
                   "blobs/image; FP/img measured on the defect-free test crops")
    matched = table(f"defect recall by contrast ({unit}) at the lowest threshold with <= {budget:g} false "
                    "blobs/image on the defect-free test crops (the same false-alarm rate for every detector)")
    for m in report["models"]:
        c = m["curve"]
        fitted.add_row(m["label"], sig(m["threshold"]), num(m["test_good"]["fp_blobs_per_image"], 3),
                       *[pct(p["defect_recall"], 0) for p in c], num(c[-1]["dice"]))
        if m["matched"]:
            mc = m["matched"]
            matched.add_row(m["label"], sig(mc["threshold"]), num(mc["fp_blobs_per_image"], 3),
                            *[pct(p["defect_recall"], 0) for p in mc["curve"]], num(mc["curve"][-1]["dice"]))
        else:
            matched.add_row(m["label"], "-", "over", *["-" for _ in contrasts], "-")
    return [fitted, matched]


@user_errors
def surfaces(
    out: Path = typer.Option(..., "--out", help="Output folder: <surface>/{train,val,test}/ and manifest.json."),
    name: Optional[list[str]] = typer.Option(None, "--name", help="brick | moon | grass | gravel (repeatable; default brick and moon)."),
    force: bool = force_option(),
) -> None:
    """Real surfaces to try the line workflow on: scikit-image photographs cut into train/val/test regions."""
    from edgeseg.cli.common import console
    from edgeseg.data.surfaces import write_surfaces
    from edgeseg.outputs import Kind, Output

    names = list(dict.fromkeys(name or ["brick", "moon"]))
    claim_outputs([Output(out, Kind.dataset)], force=force)
    write_surfaces(out, names)
    console.print(f"wrote {', '.join(names)} to {out} (train: top half, val: bottom left, test: bottom right)",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command("contrast-curve", epilog=_EPILOG)(contrast_curve)
    app.command("surfaces", epilog=_SURFACES_EPILOG)(surfaces)
