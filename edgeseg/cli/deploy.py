"""``edgeseg export``, ``quantize``, ``build-engine`` and ``compare``: from a Keras model to ONNX FP32/FP16/INT8
and TensorRT engines, and what each precision costs. Thin commands over :mod:`edgeseg.export`,
:mod:`edgeseg.trt` and :mod:`edgeseg.compare`; no heavy import at module level."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import (MAX_BATCH, check_inference, claim_outputs, console, emit_report, force_option,
                                parse_int_list, progress_bar, report_output, user_errors)
from edgeseg.cli.format import num, sci, sig, signed
from edgeseg.cli.tiling import overlap_option, tile_option
from edgeseg.data.synth import MAX_SIZE, MIN_SIZE
from edgeseg.errors import EdgesegError
from edgeseg.types import Precision
from edgeseg.validate import seed as check_seed
from edgeseg.validate import whole


class Lower(str, Enum):
    """The precisions a file can be converted to (``--precision``; ``--fp16``/``--int8`` are shorthands)."""

    fp16 = "fp16"
    int8 = "int8"


def _precision(precision: Lower | None, fp16: bool, int8: bool, required: bool) -> Precision | None:
    """One precision from ``--precision`` and its shorthands; one line when they disagree or none is given."""
    asked = {p for p, flag in ((Lower.fp16, fp16), (Lower.int8, int8)) if flag} | ({precision} if precision else set())
    if len(asked) > 1:
        raise EdgesegError("choose one precision: --precision fp16|int8 (or its shorthand --fp16 / --int8)")
    if not asked and required:
        raise EdgesegError("choose a precision: --precision fp16|int8 (or --fp16 / --int8)")
    return Precision(asked.pop().value) if asked else None

_EXPORT_EPILOG = """\
Examples:

  edgeseg export --model runs/demo/model.keras --out runs/demo/model.onnx

  For a line's full frames:  edgeseg export --model runs/demo/model.keras --shape 768x1280 --out line/model.onnx

The ONNX file takes image (N, 256, 256, 1) — or (N, H, W, 1) with --shape HxW — float32 gray levels on the
8-bit scale (16-bit pixels / 257; dynamic N), and is checked against Keras on generated images of that shape;
above max |Δprob| 1e-4 nothing is written and the command fails. eval, predict and bench run images of any
other size through it in overlapping tiles.
"""

_QUANTIZE_EPILOG = """\
Examples:

  edgeseg quantize --model runs/demo/model.onnx --fp16          # → runs/demo/model.fp16.onnx

  edgeseg quantize --model runs/demo/model.onnx --int8 --calib-count 512 --calib-method max --calib-mix mixed

  On your line's own images (any size, 8- or 16-bit; random crops of the model's input):
    edgeseg quantize --model line/model.onnx --int8 --calib-data line/passed

INT8 for TensorRT (the default --target) is symmetric Q/DQ with float biases, FP16 wherever it is not INT8
and FP32 in the raw-pixel stem, calibrated on generated images (or --calib-data) cached under calib/<hash>/; it is checked
against TensorRT's importer rules (`edgeseg check --target tensorrt`) before it is written. --target cpu
writes uint8 activations for ONNX Runtime on a CPU (TensorRT refuses those).
"""

_ENGINE_EPILOG = """\
Examples (on a GPU host or a Jetson with TensorRT and pycuda):

  edgeseg build-engine --model runs/demo/model.int8.onnx --batch 1,8,32

  edgeseg build-engine --int8 --model runs/demo/model.onnx      # quantizes first, then builds

  edgeseg build-engine --model line/model.int8.onnx --shape 768x1280   # the shape the ONNX file was exported for

The image shape is the ONNX file's (edgeseg export --shape HxW); --shape may repeat it, and sets it only for a
file with dynamic H and W: HxW, or a range MINHxMINW:OPTHxOPTW:MAXHxMAXW that the engine runs at OPT.

The ONNX file is checked against TensorRT's importer rules before TensorRT parses it. A standard engine
runs only on the TensorRT version and GPU model that built it (--version-compatible: also on newer TensorRT,
10 → 11 included); the manifest beside each engine is checked before it is loaded and lists the precision
each layer runs in, read back from the built engine.
"""

_COMPARE_EPILOG = """\
Example:

  edgeseg compare --data data/seed --data data/gauss --json runs/demo/compare.json \\
      runs/demo/model.keras runs/demo/model.onnx runs/demo/model.fp16.onnx runs/demo/model.int8.onnx

The first model is the reference: mask IoU and |Δprob| are measured against it.
"""


@user_errors
def export(
    model: Path = typer.Option(..., "--model", help="The trained Keras model (.keras)."),
    out: Optional[Path] = typer.Option(None, "--out", help="The ONNX file to write (default: beside the model, .onnx)."),
    opset: int = typer.Option(17, help="ONNX opset (17 or 18: the ones tf2onnx writes)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help=f"Image side the deployed model takes "
                                             f"({MIN_SIZE}..{MAX_SIZE} pixels); default 256."),
    shape: Optional[str] = typer.Option(None, "--shape", help="HEIGHTxWIDTH the deployed model takes (e.g. "
                                        "768x1280: a line's full frame); sides multiples of what the network needs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Export a Keras model to ONNX (dynamic batch) and check it matches Keras."""
    from edgeseg.export.onnx import check_export, export_onnx
    from edgeseg.outputs import Kind, Output
    from edgeseg.shapes import parse_shape

    if image_size is not None and shape is not None:
        raise EdgesegError("give --shape HxW or --image-size N (its square shorthand), not both")
    hw = parse_shape(shape) if shape is not None else None
    image_size = 256 if image_size is None else image_size
    check_export(opset, image_size, hw)
    out = out or model.with_suffix(".onnx")
    claim_outputs([Output(out, Kind.model)], {"--model": model}, force)
    with progress_bar("export", enabled=not quiet) as progress:
        result = export_onnx(model, out, image_size=image_size, opset=opset, progress=progress, shape=hw)
    console.print(f"wrote {result.path} (max |Δprob| vs Keras {sci(result.max_abs_diff)} on "
                  f"{result.parity_images} generated images)", highlight=False, soft_wrap=True)


@user_errors
def quantize(
    model: Path = typer.Option(..., "--model", help="The FP32 ONNX model."),
    precision: Optional[Lower] = typer.Option(None, "--precision", help="fp16 (MODEL.fp16.onnx) or int8 "
                                              "(MODEL.int8.onnx, Q/DQ calibrated on generated images)."),
    fp16: bool = typer.Option(False, "--fp16", help="Shorthand for --precision fp16."),
    int8: bool = typer.Option(False, "--int8", help="Shorthand for --precision int8."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file (default: MODEL.fp16.onnx / MODEL.int8.onnx)."),
    calib_count: int = typer.Option(512, "--calib-count", help="Generated calibration images (1..512)."),
    calib_method: str = typer.Option("max", "--calib-method", help="max | entropy | percentile."),
    calib_mix: str = typer.Option("mixed", "--calib-mix", help="defect | background | mixed (half each)."),
    calib_seed: int = typer.Option(7, "--calib-seed", help="Seed of the calibration images."),
    calib_dir: Path = typer.Option(Path("calib"), "--calib-dir", help="Where calibration sets are cached."),
    calib_data: Optional[Path] = typer.Option(
        None, "--calib-data", help="Calibrate on your line's images instead of generated ones: a folder (labels "
        "ignored), 8- or 16-bit, at least the model's input size; --calib-count random crops, --calib-seed."),
    quantizer: str = typer.Option("ort", "--quantizer", help="ort (ONNX Runtime) | modelopt (NVIDIA ModelOpt)."),
    target: str = typer.Option("tensorrt", "--target",
                               help="tensorrt (symmetric; runs everywhere) | cpu (uint8 activations, ONNX Runtime only)."),
    high_precision: Optional[str] = typer.Option(
        None, "--high-precision",
        help="INT8: what unquantized layers run in, fp16 | fp32 (default fp16 for --target tensorrt, where strong "
             "typing has no fallback; fp32 for --target cpu). The raw-pixel stem stays FP32 either way."),
    keep_head_fp32: bool = typer.Option(False, "--keep-head-fp32", help="Leave the final conv and sigmoid in FP32."),
    min_conv_depth: int = typer.Option(
        128, "--min-conv-depth",
        help="INT8: convs with in-channels×kernel area below this stay FP32 (int8 does not pay there; 0 = all). "
             "FP16: everything before the first conv this deep stays FP32."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """FP16 or INT8 version of an FP32 ONNX model, for ONNX Runtime and TensorRT alike."""
    from edgeseg.export.precision import (CalibMethod, HighPrecision, Quantizer, Target, derived_path, to_fp16,
                                          to_int8)
    from edgeseg.outputs import Kind, Output

    fp16 = _precision(precision, fp16, int8, required=True) is Precision.fp16
    whole("--min-conv-depth", min_conv_depth, 0)
    check_seed("--calib-seed", calib_seed)
    if fp16 and calib_data is not None:
        raise EdgesegError("--calib-data goes with --int8 (FP16 needs no calibration)")
    out = out or derived_path(model, Precision.fp16 if fp16 else Precision.int8)
    claim_outputs([Output(out, Kind.model), None if fp16 else Output(calib_dir, Kind.cache_folder, "--calib-dir")],
                  {"--model": model, "--calib-data": calib_data}, force)
    if fp16:
        with progress_bar("fp16", enabled=not quiet) as progress:
            result = to_fp16(model, out, min_conv_depth=min_conv_depth, progress=progress)
    else:
        method = _choice(calib_method, CalibMethod, "--calib-method")
        q = _choice(quantizer, Quantizer, "--quantizer")
        tgt = _choice(target, Target, "--target")
        high = _choice(high_precision, HighPrecision, "--high-precision") if high_precision else None
        with progress_bar("int8", enabled=not quiet) as progress:
            result = to_int8(model, out, calib_count=calib_count, calib_mix=calib_mix, calib_method=method,
                             calib_seed=calib_seed, calib_root=calib_dir, quantizer=q,
                             keep_head_fp32=keep_head_fp32, min_conv_depth=min_conv_depth, target=tgt,
                             high_precision=high, calib_data=calib_data, progress=progress)
    extra = f", calibration {calib_dir / result.calib_hash}" if result.calib_hash else ""
    extra += f" from {calib_data}" if calib_data is not None else ""
    console.print(f"wrote {result.path} (max |Δprob| vs FP32 {sci(result.max_abs_diff)}{extra})", highlight=False, soft_wrap=True)


@user_errors
def build_engine(
    model: Path = typer.Option(..., "--model", help="ONNX model: FP32, .fp16.onnx or .int8.onnx."),
    precision: Optional[Lower] = typer.Option(None, "--precision", help="Convert an FP32 model first: fp16, or "
                                              "int8 (default calibration). Default: the file's own precision."),
    fp16: bool = typer.Option(False, "--fp16", help="Shorthand for --precision fp16."),
    int8: bool = typer.Option(False, "--int8", help="Shorthand for --precision int8."),
    batch: str = typer.Option("1,8,32", "--batch", help=f"Optimisation profile MIN,OPT,MAX batch (each 1..{MAX_BATCH})."),
    shape: Optional[str] = typer.Option(
        None, "--shape", help="Image shape HxW: the ONNX file's own (a fixed-size file takes no other: re-export it "
        "with edgeseg export --shape), or for dynamic H, W: HxW or MINHxMINW:OPTHxOPTW:MAXHxMAXW."),
    workspace: int = typer.Option(1024, "--workspace", help="Builder workspace in MB (1..1048576)."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Load/save the builder's timing cache here."),
    version_compatible: bool = typer.Option(False, "--version-compatible", help="Engine also runs on newer TensorRT."),
    out: Path = typer.Option(Path("engines"), "--out", help="Output folder (or a .engine file)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Build a TensorRT engine (strongly typed; precision comes from the ONNX graph)."""
    from edgeseg.deps import require
    from edgeseg.export.precision import derived_path, to_fp16, to_int8
    from edgeseg.outputs import Kind, Output
    from edgeseg.export.graph import onnx_precision
    from edgeseg.trt.build import build_engine as build
    from edgeseg.shapes import parse_profile
    from edgeseg.trt.build import check_engine_shape, check_profile, engine_path_for

    asked = _precision(precision, fp16, int8, required=False)
    values = parse_int_list(batch, "--batch")
    if len(values) != 3:
        raise EdgesegError(f"--batch must be MIN,OPT,MAX (three numbers), got {batch!r}")
    for value in values:
        whole("--batch", value, 1, MAX_BATCH)
    whole("--workspace", workspace, 1, 1 << 20, unit="MB")
    profile = check_profile(tuple(values))
    if shape is not None:
        parse_profile(shape)  # a malformed --shape is refused before any file is read
    if not model.is_file():
        raise EdgesegError(f"ONNX file not found: {model}")
    check_engine_shape(model, profile, shape)  # a --shape the file cannot take, before TensorRT is needed
    have = onnx_precision(model).value
    want = asked.value if asked else have
    converted = derived_path(model, want) if want != have else None
    claim_outputs([Output(engine_path_for(converted or model, out), Kind.model),
                   converted and Output(converted, Kind.model, f"--{want}"),
                   timing_cache and Output(timing_cache, Kind.cache, "--timing-cache")], {"--model": model}, force)
    require("tensorrt")  # before any conversion work: without TensorRT nothing below can finish
    if want != have:
        if have != "fp32":
            raise EdgesegError(f"{model} is {have}; --{want} needs the FP32 ONNX model")
        with progress_bar(want, enabled=not quiet) as progress:
            model = (to_fp16 if want == "fp16" else to_int8)(model, progress=progress).path
    with progress_bar("build-engine", enabled=not quiet) as progress:
        result = build(model, out, batch=profile, workspace_mb=workspace, timing_cache=timing_cache,
                       version_compatible=version_compatible, shape=shape, progress=progress)
    shapes = " .. ".join(dict.fromkeys(f"{h}x{w}" for h, w in (result.shape or ())))
    console.print(f"wrote {result.path} ({result.precision}, batch {profile[0]}..{profile[2]}, opt {profile[1]}"
                  + (f", {shapes} images" if shapes else "") + ")", highlight=False, soft_wrap=True)


@user_errors
def compare(
    models: list[str] = typer.Argument(..., help="Model files; the first is the reference (e.g. the Keras model)."),
    data: list[Path] = typer.Option(..., "--data", help="A labelled dataset folder; repeatable."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON here ('-' = stdout)."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Score every model at this threshold (0..1) instead of its manifest's own one; "
        "a model without a manifest needs it."),
    batch_size: int = typer.Option(16, help=f"Images per inference call (1..{MAX_BATCH})."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads, 1..1024 (default: all cores)."),
    tile: Optional[int] = tile_option(),
    tile_overlap: Optional[int] = overlap_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """One table across precisions: Dice, defect recall, FP blobs, escape/overkill, agreement with the reference."""
    from edgeseg.artifacts import environment
    from edgeseg.compare import compare as run_compare
    from edgeseg.tiling import check_tiling

    check_inference(threshold, batch_size)
    check_tiling(tile, tile_overlap)
    if threads is not None:
        whole("--threads", threads, 1, 1024)
    claim_outputs([report_output(json_out)], {"model": models, "--data": data}, force)
    options = {"intra_op_num_threads": threads} if threads else {}
    with progress_bar("compare", enabled=not quiet) as progress:
        report = run_compare(models, data, batch_size, options, progress, threshold=threshold, tile=tile,
                             overlap=tile_overlap)
    report.update(command=sys.argv, environment=environment())
    emit_report(report, _tables(report["rows"]), json_out)


def _choice(value: str, enum, option: str):
    try:
        return enum(value)
    except ValueError:
        raise EdgesegError(f"{option} must be one of {', '.join(e.value for e in enum)}, got {value!r}") from None


def _tables(rows: list[dict]):
    """Two tables that each fit a terminal: the metrics, then the agreement with the reference."""
    from rich import box
    from rich.table import Table

    def table(cols):
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for col in cols:
            # Numbers never shrink; a long model name folds onto a second line instead.
            if col == "model":
                t.add_column(col, overflow="fold", ratio=1)
            else:
                t.add_column(col, justify="left" if col in ("data", "prec") else "right", no_wrap=True,
                             min_width=len(col))
        return t

    metrics = table(("model", "prec", "data", "thr", "Dice", "recall", "FP/img", "escape", "overkill"))
    agreement = table(("model", "data", "ΔDice", "Δrecall", "IoU vs ref", "max|Δp|", "F1-best thr"))
    for i, r in enumerate(rows):
        section = i < len(rows) - 1 and rows[i + 1]["data"] != r["data"]
        name, data = Path(r["model"]).name, Path(r["data"]).name
        metrics.add_row(name, r["precision"], data, sig(r["threshold"]), num(r["dice"]), num(r["defect_recall"]),
                        num(r["fp_blobs_per_image"], 2), num(r["escape_rate"]), num(r["overkill_rate"]),
                        end_section=section)
        agreement.add_row(name, data, signed(r["delta_dice"], 4), signed(r["delta_recall"], 4),
                          num(r["mask_iou_vs_ref"], 4), sci(r["max_abs_dprob"]), sig(r["f1_best_threshold"]),
                          end_section=section)
    return metrics, agreement


def register(app: typer.Typer) -> None:
    app.command("export", epilog=_EXPORT_EPILOG)(export)
    app.command("quantize", epilog=_QUANTIZE_EPILOG)(quantize)
    app.command("build-engine", epilog=_ENGINE_EPILOG)(build_engine)
    app.command("compare", epilog=_COMPARE_EPILOG)(compare)
