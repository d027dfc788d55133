"""``edgeseg bench``: single-image vs batched vs streaming inference speed, with accuracy beside it.

Thin: parse options, call :mod:`edgeseg.bench`, render. No backend logic here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from edgeseg.cli.common import (claim_outputs, console, err_console, force_option, parse_int_list, progress_bar,
                                report_output, user_errors)
from edgeseg.cli.format import num, sci, signed
from edgeseg.cli.tiling import overlap_option, tile_option
from edgeseg.errors import EdgesegError
from edgeseg.types import Backend
from edgeseg.validate import finite, fits_memory, whole
from edgeseg.validate import seed as check_seed


def bench(
    model: list[str] = typer.Option(..., "--model", "-m", help="Model artifact (.keras, .onnx, .engine); repeat for several."),
    backend: Optional[Backend] = typer.Option(None, "--backend", help="Backend for every model (default: from each file's suffix)."),
    batch_sizes: str = typer.Option("1,2,4,8,16,32", "--batch-sizes", help="Comma-separated batch sizes to sweep (each within the memory available)."),
    warmup_s: float = typer.Option(2.0, "--warmup-s", help="Warm-up seconds before each measured point (0..3600)."),
    duration_s: float = typer.Option(10.0, "--duration-s", help="Seconds measured per repeat, up to 3600 (streaming: stream length when --frames is not given)."),
    repeats: int = typer.Option(3, "--repeats", help="Repeats per point (1..1000); images/s is their median."),
    streams: int = typer.Option(2, "--streams", help="CUDA streams (one execution context each) for TensorRT engines (1..64)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="ONNX Runtime: threads a batch is split over, each running chunks of a few images on one core (1: the whole batch in one multi-threaded call; default: one per core)."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Stream frames at this rate (frames/s) in batches of up to the largest --batch-sizes, instead of sweeping."),
    max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", help="Streaming: longest a batch waits after its first frame."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Streaming: number of frames (default rate × duration)."),
    queue_size: Optional[int] = typer.Option(None, "--queue-size", help="Streaming: frames the queue holds before dropping (default 4 × max batch)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder of images to use, 8- or 16-bit, any size (default: generated with the seed's distribution at the model's size). A model that does not take them whole runs them in tiles."),
    tile: Optional[int] = tile_option(),
    tile_overlap: Optional[int] = overlap_option(),
    accuracy: Optional[Path] = typer.Option(None, "--accuracy", help="`edgeseg compare` JSON: Dice/recall/FP blobs shown beside speed."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write rows, machine, versions and command as JSON."),
    plot_out: Optional[Path] = typer.Option(None, "--plot", help="Write images/s and p99 latency vs batch size as PNG."),
    baseline: bool = typer.Option(False, "--baseline", help="Measure the harness's own cost against a bare session.run loop (ONNX)."),
    interleave: bool = typer.Option(False, "--interleave", help="Time the models round by round (each repeat goes round every model and batch size), so a busy host slows all alike: for ratios between models."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated images."),
    url: Optional[str] = typer.Option(None, "--url", help="Stream to a Triton server at this HTTP address (e.g. http://127.0.0.1:8000) instead; --model is then the served model's file or name."),
    cameras: int = typer.Option(8, "--cameras", help="--url: cameras, each a thread at --rate frames/s sending one request a frame (1..1024)."),
    in_flight: int = typer.Option(2, "--in-flight", help="--url: requests a camera keeps outstanding before it drops frames (1..64)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="--url: local model file to compare the served masks with (default: --model when it is a file)."),
    force: bool = force_option(),
) -> None:
    """Benchmark single vs batched (or streaming) inference; JSON, table and plot.

    Example:  edgeseg bench -m runs/demo/model.onnx -m runs/demo/model.int8.onnx --batch-sizes 1,8,32 --duration-s 3

    INT8 against FP32 as a ratio, round by round so a busy host slows both alike:  edgeseg bench
    -m runs/demo/model.onnx -m runs/demo/model.int8.cpu.onnx --batch-sizes 1,32 --interleave --repeats 7

    A line's full-size images, whole vs in 256² tiles:  edgeseg bench -m model.1024.onnx -m runs/demo/model.onnx
    --data line/images --batch-sizes 1,4  (images/s counts whole images)

    Against a Triton server (`edgeseg serve`):  edgeseg bench --url http://127.0.0.1:8000 -m runs/demo/model.onnx
    --cameras 8 --rate 25 --frames 2000  (--frames in all, --rate per camera; the served masks are compared with
    the same model run here on a sample of the frames)
    """
    from edgeseg.bench import harness, report, stream
    from edgeseg.runners.registry import backend_of, load_runner

    from edgeseg.tiling import check_tiling, fitted

    sizes = parse_int_list(batch_sizes, "--batch-sizes")
    _check_options(sizes, warmup_s, duration_s, repeats, streams, workers, rate, max_wait_ms, frames, queue_size, seed)
    check_tiling(tile, tile_overlap)
    if url is not None:
        if tile is not None:
            raise EdgesegError("--tile goes with local models, not with --url (the server runs whole images)")
        _bench_remote(url, model, rate, frames, duration_s, cameras, in_flight, reference, data, seed, json_out, force)
        return
    for option, value in (("--cameras", cameras != 8), ("--in-flight", in_flight != 2), ("--reference", reference)):
        if value:
            raise EdgesegError(f"{option} goes with --url")
    if interleave and (rate is not None or baseline):
        raise EdgesegError(f"--interleave times a sweep of batch sizes; it does not go with "
                           f"{'--rate' if rate is not None else '--baseline'}")
    timing = harness.Timing(warmup_s, duration_s, repeats)
    for m in model:
        if m != "classical" and not Path(m).exists():
            raise EdgesegError(f"model file not found: {m}")
    claim_outputs([report_output(json_out, artifact="bench"), report_output(plot_out, "--plot")],
                  {"--model": model, "--data": data, "--accuracy": accuracy}, force)
    entries = report.load_accuracy(accuracy) if accuracy else None
    images = harness.bench_images(data=data) if data is not None else None
    h, w = images.shape[1:3] if images is not None else (256, 256)
    # A batch is gathered as uint8, fed as float32 and answered as float32 probabilities: 9 bytes a pixel.
    fits_memory("--batch-sizes", max(sizes) * h * w * 9, f"the buffers of a batch of {max(sizes)} {w}x{h} images")

    # Each option goes to the backends that take it (the registry says which); the others never see it.
    options = {"streams": streams, "workers": workers}

    def loader(path, backend_, **_):
        runner = load_runner(path, backend_, **backend_of(path, backend_).accepts(options))
        if tile is None and images is None:
            return runner  # generated images of the model's own size
        # Tiled (or padded) only where the model does not take the images whole: otherwise the runner is timed
        # alone, with its own streams.
        return fitted(runner, images.shape[1:3] if images is not None else (256, 256), tile, tile_overlap)

    config = {"models": model, "backend": backend.value if backend else None, "batch_sizes": sizes,
              "warmup_s": warmup_s, "duration_s": duration_s, "repeats": repeats, "streams": streams, "workers": workers,
              "rate": rate, "max_wait_ms": max_wait_ms, "frames": frames, "queue_size": queue_size,
              "data": str(data) if data else None, "accuracy": str(accuracy) if accuracy else None, "seed": seed,
              "tile": tile, "tile_overlap": tile_overlap, "interleave": interleave}

    if baseline:
        rows = []
        with _lazy_progress("harness overhead") as progress:
            for m in model:
                rows += harness.overhead(m, sizes, timing, images, progress)
        _render_overhead(rows)
        if json_out:
            report.write_record(json_out, report.record(rows, config, mode="overhead"))
        return

    if rate is not None:
        n = frames or max(1, int(round(rate * duration_s)))
        cfg = stream.StreamConfig(rate=rate, frames=n, max_batch=max(sizes), max_wait_ms=max_wait_ms,
                                  queue_size=queue_size)
        rows = []
        with _lazy_progress("stream") as progress:
            for m in model:
                with loader(m, backend) as runner:
                    pool = images if images is not None else harness.bench_images(
                        harness.DEFAULT_POOL, runner.image_shape or 256, seed)
                    streamed = stream.run_stream(runner, pool, cfg, warmup_s, progress)
                    rows.append({**harness.describe_runner(m, runner), **streamed})
    else:
        with _lazy_progress("bench") as progress:
            rows = harness.sweep(model, sizes, timing, backend, images, seed, loader=loader, progress=progress,
                                 interleave=interleave)

    if entries is not None:
        for r in rows:
            r.update(report.accuracy_for(entries, r["model"]))
    _wide().print(report.table(rows))
    for line in report.saturation_lines(rows):
        _wide().print(line, highlight=False)
    for r in rows:
        for w in r.get("warnings", []):
            err_console.print(f"[yellow]warning:[/] {report.label(r)}: {w}", highlight=False)
    if json_out:
        report.write_record(json_out, report.record(rows, config))
        console.print(f"wrote {json_out}", highlight=False)
    if plot_out:
        if rate is not None:
            err_console.print("[yellow]warning:[/] --plot draws batch sweeps; a streaming run has none", highlight=False)
        else:
            report.plot(rows, plot_out)
            console.print(f"wrote {plot_out}", highlight=False)
    broken = [r for r in rows if r.get("integrity_ok") is False]
    if broken:
        raise EdgesegError(f"stream integrity violated for {', '.join(report.label(r) for r in broken)} "
                           "(frames lost, duplicated or reordered: a bug, please report it)")


def _bench_remote(url, models, rate, frames, duration_s, cameras, in_flight, reference, data, seed, json_out,
                  force) -> None:
    """``bench --url``: K cameras against a Triton server, then the served masks against the model run here."""
    from edgeseg.bench import harness, remote, report
    from edgeseg.runners.registry import load_runner
    from edgeseg.serving.client import image_shape, wait_ready

    whole("--cameras", cameras, 1, 1024)
    whole("--in-flight", in_flight, 1, 64)
    if rate is None:
        raise EdgesegError("--url needs --rate (frames/s per camera)")
    if len(models) != 1:
        raise EdgesegError("--url benchmarks one served model: give --model once")
    model = models[0]
    if reference is None and Path(model).is_file():
        reference = Path(model)
    if reference is not None and not reference.is_file():
        raise EdgesegError(f"--reference file not found: {reference}")
    if Path(model).suffix and not Path(model).is_file():
        raise EdgesegError(f"model file not found: {model} (give the served model's file, or its name on the server)")
    if Path(model).is_file():
        from edgeseg.serving.triton import model_name_for

        name = model_name_for(model)
    else:
        name = model
    claim_outputs([report_output(json_out, artifact="bench")], {"--model": [str(reference)] if reference else [],
                                                                "--data": data}, force)
    n = frames or max(1, int(round(rate * cameras * duration_s)))
    cfg = remote.RemoteConfig(url=url, model=name, rate=rate, frames=n, cameras=cameras, in_flight=in_flight)
    pool = harness.bench_images(data=data) if data is not None else None
    if pool is not None and pool.dtype != np.uint8:
        raise EdgesegError(f"--url: a served model takes 8-bit images, and the images in {data} are "
                           f"{pool.dtype.itemsize * 8}-bit; benchmark 16-bit images locally (without --url)")
    wait_ready(url, name, timeout_s=10.0)
    h, w = image_shape(url, name)
    pool = pool if pool is not None else harness.bench_images(harness.DEFAULT_POOL, (h, w), seed)
    runner, threshold = None, 0.5
    with contextlib.ExitStack() as stack:
        if reference is not None:
            from edgeseg.evaluate import model_threshold

            threshold, _ = model_threshold(reference)
            runner = stack.enter_context(load_runner(reference))
        with _lazy_progress(f"{cameras} cameras → {url}") as progress:
            row = {"model": name, "backend": "triton", "precision": runner.precision.value if runner else "-",
                   "reference": str(reference) if reference else None}
            row.update(remote.run_remote(cfg, pool, runner, threshold, progress=progress))
    _wide().print(report.table([row], title="edgeseg bench --url"))
    if "agreement_iou" in row:
        console.print(f"agreement with {reference} run here, {row['agreement_frames']} frames: mask IoU "
                      f"{num(row['agreement_iou'], 4)}, pixels differing {sci(row['agreement_pixels_differ'], 2)}, "
                      f"max |Δprob| {sci(row['agreement_max_abs_dprob'], 2)}", highlight=False)
    for warning in row["warnings"]:
        err_console.print(f"[yellow]warning:[/] {report.label(row)}: {warning}", highlight=False)
    if json_out:
        config = {"url": url, "model": name, "reference": str(reference) if reference else None, "rate": rate,
                  "frames": n, "cameras": cameras, "in_flight": in_flight, "seed": seed,
                  "data": str(data) if data else None}
        report.write_record(json_out, report.record([row], config, mode="remote"))
        console.print(f"wrote {json_out}", highlight=False)
    if not row["integrity_ok"]:
        raise EdgesegError(f"stream to {url} lost frames: {row['frames_in']} sent, {row['frames_out']} masks, "
                           f"{row['dropped']} dropped, {row['errors']} refused, {row['lost']} lost, "
                           f"{row['duplicated']} duplicated")


def _check_options(sizes, warmup_s, duration_s, repeats, streams, workers, rate, max_wait_ms, frames, queue_size,
                   seed) -> None:
    """Every number of the command within its range, in one line if not (before any model is loaded)."""
    for size in sizes:
        whole("--batch-sizes", size, 1)  # the largest is checked against the memory available
    finite("--warmup-s", warmup_s, 0, 3600, unit="seconds")
    finite("--duration-s", duration_s, 0, 3600, lo_open=True, unit="seconds")
    whole("--repeats", repeats, 1, 1000)
    whole("--streams", streams, 1, 64)
    if workers is not None:
        whole("--workers", workers, 1, 1024)
    if rate is not None:
        finite("--rate", rate, 0, 1e6, lo_open=True, unit="frames/s")
    finite("--max-wait-ms", max_wait_ms, 0, 60_000, unit="ms")
    if frames is not None:
        whole("--frames", frames, 1, 100_000_000)
    if queue_size is not None:
        whole("--queue-size", queue_size, 1, 1_000_000)
    check_seed("--seed", seed)


def _wide():
    """The console for tables: logs and pipes get the whole table (rich would squeeze it into 80 columns)."""
    from rich.console import Console

    return console if console.is_terminal else Console(width=200)


def _render_overhead(rows: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="harness overhead vs bare session.run")
    for head in ("model", "batch", "bare img/s", "harness img/s", "overhead %", "paired %", "CPU time %"):
        t.add_column(head, justify="left" if head == "model" else "right")
    for r in rows:
        t.add_row(r["model"], str(r["batch_size"]), num(r["bare_images_per_s"], 1), num(r["harness_images_per_s"], 1),
                  signed(r["overhead_pct"], 2), signed(r["overhead_pct_paired"], 2), signed(r["overhead_pct_cpu"], 2))
    _wide().print(t)


@contextlib.contextmanager
def _lazy_progress(description: str) -> Iterator:
    """A progress bar that appears with the first update, so an error found while loading a model is
    one line on its own, not a line under an empty bar."""
    stack = contextlib.ExitStack()
    bar = None

    def progress(done: int, total: int | None, message: str = "") -> None:
        nonlocal bar
        if bar is None:
            bar = stack.enter_context(progress_bar(description))
        bar(done, total, message)

    with stack:
        yield progress


def register(app: typer.Typer) -> None:
    app.command("bench")(user_errors(bench))
