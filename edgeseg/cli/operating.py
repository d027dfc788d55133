"""``edgeseg operating-point``: refit a saved model's threshold and mask rule for a false-alarm budget
(thin layer over edgeseg.operating)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from edgeseg.cli.common import (claim_outputs, console, emit_report, err_console, force_option, progress_bar,
                                report_output, user_errors)
from edgeseg.cli.format import num
from edgeseg.cli.tiling import overlap_option, tile_option
from edgeseg.errors import EdgesegError
from edgeseg.train import TrainConfig

_D = TrainConfig()  # training fits with the same budget, set size and seed by default

_EPILOG = """\
Examples:

  A line that affords one false alarm in 1,000 images:
    edgeseg operating-point --model runs/demo/model.keras --fa-budget 0.001

  The INT8 model's own point (its probabilities are not exactly the FP32 ones), shown but not written:
    edgeseg operating-point --model runs/demo/model.int8.onnx --dry-run

  On a line's own images (labelled defects, and parts that passed), into a copy of the model for that line:
    edgeseg operating-point --model runs/demo/model.onnx --data line/defects --good line/passed \\
        --fa-budget 0.0025 --out runs/line/model.onnx

  A line that ranks escapes first but must still size its defects (the last step of make demo):
    edgeseg operating-point --model runs/demo/model.onnx --data line/defects --good line/passed \\
        --prefer recall --min-dice 0.93 --out runs/line/model.onnx

Without --data/--good the fitting set is drawn fresh (--fit-count images with defects and as many without,
contrast 3, shapes mixed, half of the images with uniform and half with Gaussian noise). The chosen point
has the best defect recall + Dice (with --prefer recall: the best recall, Dice between equal recalls) among
those within --fa-budget false blobs per image on each noise kind (on a line's own images: over all of them)
and, when any of those reaches it, with at least --min-dice pixel Dice.
It is written into the model's manifest (threshold, mask_rule, operating_point), which eval, predict, compare
and bench read.
"""


def _table(point: dict[str, Any]):
    """One row per rule (:func:`edgeseg.operating.best_per_rule`), the chosen row marked."""
    from rich import box
    from rich.table import Table

    from edgeseg.operating import best_per_rule

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=f"per rule, its best threshold within {point['budget']:g} false blobs per image (in the "
                          f"worst noise kind) on the fitting set; * chosen, dim: no threshold within the budget")
    for col in ("rule", "threshold", "recall", "Dice", "FP/img", ""):
        table.add_column(col, justify="left" if col == "rule" else "right", no_wrap=True)
    for row in best_per_rule(point):
        p = row.point
        cells = [row.rule, num(p["threshold"], 2), num(p["defect_recall"]), num(p["dice"]),
                 num(p["fp_blobs_per_image"], 4), ""]
        if row.chosen:
            cells = [f"[bold]{c}[/]" for c in cells[:-1]] + ["[bold]*[/]"]
        elif not row.within:
            cells = [f"[dim]{c}[/]" for c in cells]
        table.add_row(*cells)
    return table


@user_errors
def operating_point(
    model: Path = typer.Option(..., "--model", help="A model file: .keras, .onnx (FP32, FP16, INT8) or a TensorRT engine."),
    fa_budget: float = typer.Option(_D.fa_budget, "--fa-budget", help="False blobs per image the line affords."),
    fit_count: int = typer.Option(_D.fit_count, "--fit-count", help="Fitting images with defects (and as many without)."),
    seed: int = typer.Option(_D.val_seed, help="Seed of the fitting set (training draws it from its validation seed)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Fit on this labelled set of defect images instead (with --good)."),
    good: Optional[Path] = typer.Option(None, "--good", help="Defect-free images for --data: a labelled set or a folder of unlabelled images."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write a copy of the model with the refitted point here (e.g. one per line); the model itself is left alone."),
    prefer: str = typer.Option("balanced", "--prefer", help="Among the points within the budget: balanced (recall + Dice) or recall (recall first, Dice between equals)."),
    min_dice: float = typer.Option(0.0, "--min-dice", help="The pixel Dice the line needs to size its defects: points below it are passed over while any point within the budget reaches it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the sweep and the choice; leave the manifest alone."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the sweep and choice as JSON to this file ('-' = stdout)."),
    tile: Optional[int] = tile_option(),
    tile_overlap: Optional[int] = overlap_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Fit the model's threshold and mask rule for a false-alarm budget, and record them in its manifest."""
    from edgeseg import operating
    from edgeseg.evaluate import predict_probs
    from edgeseg.runners import load_runner
    from edgeseg.tiling import any_size, check_tiling
    from edgeseg.validate import finite, whole
    from edgeseg.validate import seed as check_seed

    whole("--fit-count", fit_count, 2, 1_000_000, why="one image per noise kind at least")
    check_seed("--seed", seed)
    finite("--fa-budget", fa_budget, 0, unit="false blobs per image")
    if prefer not in operating.PREFERENCES:
        raise EdgesegError(f"--prefer must be one of {', '.join(operating.PREFERENCES)}, got {prefer!r}")
    finite("--min-dice", min_dice, 0, 1, hi_open=True)
    check_tiling(tile, tile_overlap)
    if str(model) == "classical":
        raise EdgesegError("classical has no fitted operating point: its threshold is its z-score (see edgeseg eval --help)")
    if out is not None and (out.is_dir() or out.suffix != model.suffix):
        raise EdgesegError(f"--out must be a file path ending in {model.suffix or 'the model file ending'} "
                           f"(a copy of {model.name}), got {out}")
    from edgeseg.artifacts import manifest_path, read_manifest
    from edgeseg.outputs import Kind, Output

    read_manifest(model)  # a manifest written for another file is refused before the fit, not after it
    if (data is None) != (good is None):
        raise EdgesegError("--data and --good go together: images with defects, and defect-free ones of the same kind")
    outputs = [report_output(json_out)]
    if not dry_run:
        outputs.append(Output(out, Kind.model) if out is not None
                       else Output(manifest_path(model), Kind.manifest, "--model"))
    claim_outputs(outputs, {"--model": model, "--data": data, "--good": good}, force)
    sets = None
    if data is not None:
        from edgeseg.data.dataset import load_dataset, load_good

        defects, clean = load_dataset(data), load_good(good)
        if clean.masks.any():
            raise EdgesegError(f"{good}: the --good set has labelled defects; give defect-free images")
        sets = (defects, clean)
    with any_size(load_runner(model), tile, tile_overlap) as runner, \
            progress_bar("fit", enabled=not quiet) as progress:
        def predict(images):
            return predict_probs(runner, images)

        if sets is None:
            point = operating.fit(predict, fa_budget, fit_count, seed, progress=progress, prefer=prefer,
                                  min_dice=min_dice)
        else:
            point = operating.fit_line(predict, *sets, fa_budget, progress=progress, prefer=prefer,
                                       min_dice=min_dice)
    report = {"model": str(model), **point, "written": not dry_run, "command": sys.argv}
    emit_report(report, [_table(point)], json_out)
    from edgeseg.postprocess import MaskRule

    c = point["chosen"]
    summary = (f"threshold {num(c['threshold'], 2)}, {MaskRule.from_dict(c['mask_rule']).describe()}: "
               f"recall {num(c['defect_recall'])}, Dice {num(c['dice'])}, {num(c['fp_blobs_per_image'], 4)} false "
               "blobs per image")
    if not point["within_budget"]:
        summary += f" (no point is within {fa_budget:g}: this is the one with the fewest false blobs)"
    elif c["dice"] < min_dice:
        summary += f" (no point within the budget reaches Dice {min_dice:g}: the floor was dropped)"
    summary += " (dry run: nothing written)" if dry_run else f"; written to {operating.record(model, point, out)}"
    (err_console if json_out == "-" else console).print(summary, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("operating-point", epilog=_EPILOG)(operating_point)
