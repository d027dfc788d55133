"""``edgeseg eval`` (score models on labelled sets) and ``edgeseg predict`` (masks and pictures)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import (MAX_BATCH, check_inference, claim_outputs, console, emit_report, force_option,
                                progress_bar, report_output, user_errors)
from edgeseg.cli.format import num, pct, sig
from edgeseg.cli.tiling import overlap_option, tile_option
from edgeseg.errors import BadInput
from edgeseg.validate import whole

_EVAL_EPILOG = """\
Examples:

  edgeseg eval --model runs/demo/model.keras --model classical --data data/seed --data data/good

  edgeseg eval --model runs/demo/model.int8.onnx --data data/seed --json runs/demo/int8.json

Each model is scored at threshold 0.5 and at its own threshold from its manifest (the operating point 'edgeseg train' fitted under its false-alarm budget; classical: 0.5); the table shows one row for each. A model without a manifest (or whose manifest names no threshold and mask rule) is refused: fit its point with 'edgeseg operating-point', or give --threshold.
Masks follow the model's mask rule from its manifest (hysteresis down to 'grow', blobs with at least 'min_area' pixels over the threshold); --raw scores the threshold alone.
Images may be any size (one per folder) and 8- or 16-bit; a model exported for another size runs them in overlapping tiles of its size (--tile-overlap).
"""

_PREDICT_EPILOG = """\
Example:

  edgeseg predict --model runs/demo/model.keras --input data/seed --out runs/demo/pred --triptych --limit 16
"""


def _by_contrast(m: dict) -> str:
    bc = m.get("recall_by_contrast") or {}
    unit = "σ" if m.get("contrast_unit") == "local noise sigma" else ""
    return " ".join(f"{k}{unit}:{num(v['recall'], 2)}" for k, v in bc.items()) or "-"


def _table(results: list[dict]):
    """Two rows per (model, data): at threshold 0.5 and at the model's own threshold. Recall per contrast gets a
    column only where some set has defects of more than one contrast."""
    from rich import box
    from rich.table import Table

    per_contrast = any(len(m.get("recall_by_contrast") or {}) > 1 for r in results for m in r["thresholds"].values())
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False,
                  caption="thr*: the model's own threshold (manifest or --threshold); recall: defects found "
                          "(>= 30 % of pixels), of how many; FP/img: false blobs >= 16 px per image; "
                          "escape/overkill: % of defective/good images" + ("; contrast: recall per defect "
                          "contrast" if per_contrast else "") + "; 95 % intervals and all metrics in --json")
    names = ["classical" if r["backend"] == "classical" else Path(r["model"]).name for r in results]
    # IoU, pixel precision/recall and the size breakdown are in the JSON; the table keeps what decides.
    columns = ("model", "data", "n", "thr", "Dice", "recall", "found", "FP/img", "escape", "overkill")
    for col in columns + (("contrast",) if per_contrast else ()):
        left = col in ("model", "data", "contrast")
        # A model's file name stays on one line (up to 24 characters); the contrast column folds first.
        width = min(max(map(len, names)), 24) if col == "model" else None
        table.add_column(col, justify="left" if left else "right", no_wrap=not left, min_width=width,
                         overflow="fold" if left else "ellipsis")
    for r, name in zip(results, names):
        labels = list(r["thresholds"])
        for label, m in r["thresholds"].items():
            first = label == labels[0]
            cells = [
                name if first else "", Path(r["data"]).name if first else "", str(r["n_images"]) if first else "",
                sig(m["threshold"]) + ("" if label == "0.5" else "*"),
                # Dice of a set without defect pixels is 0 at the first false pixel: not informative here.
                num(m["dice"] if m["n_defective_images"] else None), num(m["defect_recall"]),
                # 0.990 can be 382 of 386 (0.9896): the count says which side of a target a set is on.
                f"{m['defects_found']}/{m['n_defects']}" if m["n_defects"] else "-", num(m["fp_blobs_per_image"]),
                pct(m["escape_rate"]), pct(m["overkill_rate"]),
            ]
            table.add_row(*cells, *([_by_contrast(m)] if per_contrast else []), end_section=label == labels[-1])
    return table


@user_errors
def eval_(
    model: list[str] = typer.Option(..., "--model", help="A model file (.keras, .onnx, .engine) or 'classical'; repeatable."),
    data: list[Path] = typer.Option(..., "--data", help="A labelled dataset folder; repeatable."),
    threshold: Optional[float] = typer.Option(
        None, help="Use this threshold (0..1) instead of the manifest's own one ('best' column); a model without "
        "a manifest needs it."),
    batch_size: int = typer.Option(16, help=f"Images per inference call (1..{MAX_BATCH})."),
    mask_rule: bool = typer.Option(
        True, "--mask-rule/--raw",
        help="Make masks with the model's mask rule (hysteresis, minimum blob; from its manifest) or the threshold alone."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON to this file ('-' = stdout)."),
    tile: Optional[int] = tile_option(),
    tile_overlap: Optional[int] = overlap_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Score models on labelled datasets: pixel Dice/IoU, defect recall, false blobs, escapes, overkill."""
    from edgeseg.artifacts import environment
    from edgeseg.evaluate import evaluate_models
    from edgeseg.tiling import check_tiling

    check_inference(threshold, batch_size)
    check_tiling(tile, tile_overlap)
    claim_outputs([report_output(json_out)], {"--model": model, "--data": data}, force)
    report = evaluate_models(model, data, threshold, batch_size, mask_rule,
                             lambda label: progress_bar(label, enabled=not quiet), tile, tile_overlap)
    report.update(command=sys.argv, environment=environment())
    emit_report(report, [_table(report["results"])], json_out)


@user_errors
def predict(
    model: str = typer.Option(..., "--model", help="A model file (.keras, .onnx, .engine) or 'classical'."),
    input: Path = typer.Option(..., "--input", help="Folder of images (ours or the seed's layout; labels optional)."),
    out: Path = typer.Option(..., "--out", help="Output folder: one 0/255 mask PNG per image; replaced atomically."),
    threshold: Optional[float] = typer.Option(
        None, help="Mask threshold, 0..1 (default: the model's own threshold from its manifest; a model without "
        "a manifest needs it)."),
    triptych: bool = typer.Option(False, "--triptych", help="Also write OUT/triptych/<name>.png: image | truth | prediction."),
    limit: Optional[int] = typer.Option(None, help="Only the first N images (natural order; N >= 1)."),
    batch_size: int = typer.Option(16, help=f"Images per inference call (1..{MAX_BATCH})."),
    tile: Optional[int] = tile_option(),
    tile_overlap: Optional[int] = overlap_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Write predicted masks (and optional pictures a person can read) for a folder of images."""
    from edgeseg.artifacts import atomic_dir, manifest, write_json
    from edgeseg.data.dataset import label_dir, load_dataset, open_images
    from edgeseg.evaluate import model_point
    from edgeseg.outputs import Kind, Output
    from edgeseg.predictions import write_predictions
    from edgeseg.runners import load_runner
    from edgeseg.tiling import any_size, check_tiling

    check_inference(threshold, batch_size)
    check_tiling(tile, tile_overlap)
    if limit is not None:
        whole("--limit", limit, 1)
    claim_outputs([Output(out, Kind.predictions)], {"--model": model, "--input": input}, force)
    t, source, rule = model_point(model, threshold)
    if label_dir(input) is not None:
        ds = load_dataset(input, limit)
        images, names, gts = ds.images, ds.names, ds.masks
    else:
        images, names = open_images(input, limit)
        gts = None
    pngs = [Path(n).with_suffix(".png").name for n in names]
    if len(set(pngs)) < len(pngs):
        dup = next(p for p in pngs if pngs.count(p) > 1)
        raise BadInput(f"two images in {input} would both write {dup} (same name, different suffix); rename one")
    # Read, predict and write a chunk at a time: memory does not grow with the folder.
    with atomic_dir(out) as tmp, any_size(load_runner(model), tile, tile_overlap) as runner, \
            progress_bar("predict", enabled=not quiet) as progress:
        write_predictions(runner, images, pngs, tmp, t, rule, gts, triptych, batch_size, progress=progress, shown=out)
        config = {"model": str(model), "input": str(input), "threshold": t, "threshold_source": source,
                  "mask_rule": rule.to_dict(),
                  "limit": limit, "tile": tile, "tile_overlap": tile_overlap}
        write_json(tmp / "manifest.json", manifest("predictions", config, names=names))
    console.print(f"wrote {len(names)} masks to {out} (threshold {sig(t)}, {source})"
                  + (f", pictures in {out / 'triptych'}" if triptych else ""), highlight=False, soft_wrap=True)


_DETECT_EPILOG = """\
Examples:

  edgeseg detectability --data data/seed --good data/good --json runs/seed.detectability.json

  With unlabelled images of parts that passed:  edgeseg detectability --data data/seed --good line/passed/

  Before any training, on your line's defect-free images (defects drawn onto random crops of them):
    edgeseg detectability --backgrounds line/good --contrast-sigma 1:2 --defect-size 8:32

  Recall per contrast, before buying a camera:
    edgeseg detectability --backgrounds line/good --contrast 1,2,3,4 --plot recall.png

  What a detector reading the seed's noise bounds gets instead (the shortcut training must not learn):
    edgeseg detectability --data big/seed --good big/good --shortcut

Per defect, its footprint z (contrast x sqrt(pixels) / noise sigma, on a fitted background); per good image, the largest box z that noise alone reaches at the defects' sizes.
A recall target needs a detector that fires down to the z below which its missing share of defects lies; the table shows how many good images noise alone takes over that z.
With --backgrounds, --count crops with defects and --count crops without are drawn (a false-alarm budget of 1/N needs N crops); --contrast is in gray levels on the 8-bit scale (16-bit / 257), --contrast-sigma in multiples of the local noise sigma.
"""


def _detect_table(report: dict):
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"{report['defects']['n_defects']} defects in "
                  f"{Path(report['defects']['path']).name}, noise of {report['good']['n_images']} images in "
                  f"{Path(report['good']['path']).name}", caption="defects >= z: the best recall of a detector "
                  "firing at z; good images >= z: defect-free images where a chance box reaches z")
    for col in ("", "z", "defects >= z", "good images >= z"):
        table.add_column(col, justify="left" if not col else "right")
    rows = [(f"recall {t['recall']:g}", t["z"], t["recall"], t["good_image_share"]) for t in report["targets"]]
    # A budget finer than one image of the good set is not resolved: no level, no share.
    rows += [(f"{b['good_image_share']:g} false alarms", b["z"], b["defect_share"],
              None if b["z"] is None else b["good_image_share"]) for b in report["budgets"]]
    rows += [("level", lv["z"], lv["defect_share"], lv["good_image_share"]) for lv in report["levels"]]
    for i, (label, z, d, g) in enumerate(rows):
        ends = i in (len(report["targets"]) - 1, len(report["targets"]) + len(report["budgets"]) - 1)
        table.add_row(label, num(z, 2), pct(d), pct(g), end_section=ends)
    return table


@user_errors
def detectability(
    data: Optional[Path] = typer.Option(None, "--data", help="A labelled set of defective images."),
    good: Optional[Path] = typer.Option(None, "--good", help="Defect-free images of the same kind (their noise is scanned): a labelled set, or a folder of unlabelled images."),
    backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", help="Instead of --data and --good: defect-free images of your line (8- or 16-bit); defects are drawn onto random crops of them."),
    contrast: Optional[str] = typer.Option(None, "--contrast", help="With --backgrounds: defect contrast in gray levels (8-bit scale), LO:HI, or a list (1,2,3,4) for the recall per contrast."),
    contrast_sigma: Optional[str] = typer.Option(None, "--contrast-sigma", help="With --backgrounds: contrast in multiples of the local noise sigma, LO:HI or a list (0.5,1,2); instead of --contrast."),
    defect_size: Optional[str] = typer.Option(None, "--defect-size", help="With --backgrounds: defect sides LO:HI in pixels, below the crop (default 8:63)."),
    count: Optional[int] = typer.Option(None, "--count", help="With --backgrounds: crops drawn with defects, and as many without (default 200)."),
    crop: Optional[int] = typer.Option(None, "--crop", help="With --backgrounds: crop side in pixels, 16..4096 (default 256, or the smallest image's side)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="With --backgrounds: random seed (default 0); the same seed and options give the same report."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With a list of contrasts: recall vs contrast per false-alarm budget, as PNG."),
    shortcut: bool = typer.Option(False, "--shortcut", help="With --data and --good: also score a detector that reads only the seed's noise bounds (8-bit; 100..124), the shortcut a network can learn from the seed's images."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON to this file ('-' = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """How visible the defects are to any mean-shift detector: the recall each false-alarm rate allows."""
    from edgeseg.artifacts import environment
    from edgeseg.data.dataset import load_dataset, load_good
    from edgeseg.detectability import assess

    line = {"--contrast": contrast, "--contrast-sigma": contrast_sigma, "--defect-size": defect_size,
            "--count": count, "--crop": crop, "--seed": seed, "--plot": plot}
    if backgrounds is not None:
        if shortcut:
            raise BadInput("--shortcut goes with --data and --good: it reads the seed's noise bounds in labelled sets")
        if data is not None or good is not None:
            raise BadInput("--backgrounds replaces --data and --good (its defects are drawn, not labelled): give one "
                           "or the other")
        report, tables = _line_detectability(backgrounds, contrast, contrast_sigma, defect_size, count, crop, seed,
                                             plot, json_out, quiet, force)
        report.update(command=sys.argv, environment=environment())
        emit_report(report, tables, json_out)
        return
    if data is None or good is None:
        raise BadInput("give --data and --good (labelled defects and defect-free images of the same kind), or "
                       "--backgrounds (defect-free images to draw defects on)")
    given = next((name for name, value in line.items() if value is not None), None)
    if given:
        raise BadInput(f"{given} goes with --backgrounds; with --data the defects are the labelled ones")
    claim_outputs([report_output(json_out)], {"--data": data, "--good": good}, force)
    defects, clean = load_dataset(data), load_good(good)
    (h, w), (gh, gw) = defects.images.shape[1:], clean.images.shape[1:]
    if (gh, gw) != (h, w):  # chance boxes in a larger image reach higher z: the noise must be scanned at size
        raise BadInput(f"the --good images are {gw}x{gh} but the --data images are {w}x{h}; give defect-free "
                       "images of the same size (the largest z noise reaches grows with the image)")
    with progress_bar("detectability", enabled=not quiet) as progress:
        report = assess(defects, clean, progress=progress)
    tables = [_detect_table(report)]
    if shortcut:
        from edgeseg.shortcut import score

        with progress_bar("shortcut", enabled=not quiet) as progress:
            report["shortcut"] = score(defects, clean, progress)
        tables.append(_shortcut_line(report["shortcut"]))
    report.update(command=sys.argv, environment=environment())
    emit_report(report, tables, json_out)


def _shortcut_line(r: dict):
    from rich.text import Text

    d, g = r["defects"], r["good"]
    return Text(f"shortcut ({r['rule']}): recall {num(d['defect_recall'])} ({d['defects_found']} of "
                f"{d['n_defects']}), Dice {num(d['dice'])}, {num(d['fp_blobs_per_image'])} false blobs per image; "
                f"on the good images {num(g['fp_blobs_per_image'])} false blobs per image, overkill "
                f"{pct(g['overkill_rate'])}")


#: --count with --backgrounds: 200 crops resolve a false-alarm budget down to 0.5 %.
_LINE_COUNT = 200
#: Most contrasts one per-contrast report takes, and the largest contrast in local noise sigma.
_MAX_CONTRASTS, _MAX_SIGMA = 50, 100


def _contrasts(text: str, name: str, hi: float, unit: str) -> tuple[tuple[float, float] | None, list[float] | None]:
    """``LO:HI`` (a range drawn from) or ``a,b,c`` (one report row each); contrasts are bright, in (0, hi]."""
    from edgeseg.cli.common import parse_range
    from edgeseg.validate import finite, finite_range

    if "," in text:
        values = [finite(name, v.strip() or "nan", 0, hi, lo_open=True, unit=unit) for v in text.split(",")]
        if len(values) > _MAX_CONTRASTS:
            raise BadInput(f"{name} lists {len(values)} contrasts; give at most {_MAX_CONTRASTS}")
        return None, sorted(set(values))
    lo, top = finite_range(name, parse_range(text, float, name), 0, hi, unit=unit)
    if lo <= 0:
        raise BadInput(f"{name} must be above 0 {unit}, got {text}: the scan looks for bright defects (a dark "
                       "one of the same size and contrast is as visible)")
    return (lo, top), None


def _line_detectability(folder: Path, contrast: str | None, contrast_sigma: str | None, defect_size: str | None,
                        count: int | None, crop: int | None, seed: int | None, plot: Path | None,
                        json_out: str | None, quiet: bool, force: bool):
    """``detectability --backgrounds``: the options checked, the report and its tables."""
    from rich.text import Text

    from edgeseg.cli.common import parse_range
    from edgeseg.data.backgrounds import load_backgrounds
    from edgeseg.data.dataset import MAX_COUNT
    from edgeseg.data.synth import MAX_SIZE, MIN_SIZE, PRESETS
    from edgeseg.detectability import BUDGETS, assess_line, plot_contrasts
    from edgeseg.validate import seed as check_seed

    if (contrast is None) == (contrast_sigma is None):
        raise BadInput("--backgrounds needs one contrast: --contrast in gray levels (e.g. 2:4, or 1,2,3,4 for a row "
                       "per contrast) or --contrast-sigma in local noise sigma (e.g. 1:2, or 0.5,1,2)")
    relative = contrast_sigma is not None
    span, listed = (_contrasts(contrast_sigma, "--contrast-sigma", _MAX_SIGMA, "(times the local noise sigma)")
                    if relative else _contrasts(contrast, "--contrast", 255, "gray levels"))
    if plot is not None and listed is None:
        raise BadInput("--plot draws recall vs contrast: give a list of contrasts (e.g. --contrast 1,2,3,4)")
    count = whole("--count", _LINE_COUNT if count is None else count, 1, MAX_COUNT)
    if plot is not None and count * max(BUDGETS) < 1:
        raise BadInput(f"--plot needs --count of at least {round(1 / max(BUDGETS))}: fewer defect-free crops "
                       f"resolve no false-alarm budget ({', '.join(pct(b) for b in BUDGETS)} of them)")
    seed = check_seed("--seed", 0 if seed is None else seed)
    if crop is not None:
        whole("--crop", crop, MIN_SIZE, MAX_SIZE, unit="pixels")
    sides = parse_range(defect_size, int, "--defect-size") if defect_size is not None else None
    claim_outputs([report_output(json_out), report_output(plot, "--plot")], {"--backgrounds": folder}, force)
    bg = load_backgrounds(folder, crop or 1)
    crop = crop or min(256, *(min(shape) for shape in bg.shapes))
    cfg = PRESETS["seed"].replace(image_size=max(crop, MIN_SIZE), contrast=span or (listed[0], listed[0]),
                                  contrast_continuous=True, **({"defect_size": sides} if sides else {}))
    with progress_bar("detectability", enabled=not quiet) as progress:
        report = assess_line(bg, cfg, crop, count, seed, relative, listed, progress)
    unit = report["contrast_unit"]
    lo, hi = cfg.defect_size
    what = Text(f"defects {lo}-{hi} px on {count} {crop}x{crop} crops of {len(bg)} images in {folder}, noise of "
                f"{count} other crops; contrast in {unit}" + ("" if listed else f" {span[0]:g}-{span[1]:g}"))
    if listed is None:
        return report, [what, _detect_table(report)]
    if plot is not None:
        plot_contrasts(report, plot, unit)
        console.print(f"wrote {plot}", highlight=False, soft_wrap=True)
    return report, [what, _contrast_table(report, unit)]


def _contrast_table(report: dict, unit: str):
    """Per contrast, the recall each false-alarm budget allows."""
    from rich import box
    from rich.table import Table

    budgets = report["contrasts"][0]["budgets"]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption="recall at B: the defects above the level noise "
                  "reaches in at most B of the defect-free crops, the best a mean-shift detector flagging B of "
                  "good parts finds; - : B is finer than one crop of --count")
    table.add_column(f"contrast ({unit})", justify="right")
    table.add_column("defects", justify="right")
    table.add_column("median z", justify="right")
    for b in budgets:
        table.add_column(f"recall at {pct(b['good_image_share'])}", justify="right")
    for row in report["contrasts"]:
        table.add_row(f"{row['contrast']:g}", str(row["n_defects"]), num(row["z_median"], 1),
                      *(pct(b["defect_share"]) for b in row["budgets"]))
    return table


def register(app: typer.Typer) -> None:
    app.command("eval", epilog=_EVAL_EPILOG)(eval_)
    app.command("predict", epilog=_PREDICT_EPILOG)(predict)
    app.command("detectability", epilog=_DETECT_EPILOG)(detectability)
