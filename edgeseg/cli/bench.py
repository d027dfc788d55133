"""``edgeseg bench``: single-image vs batched vs streaming inference speed, with accuracy beside it.

Thin: parse options, call :mod:`edgeseg.bench`, render. No backend logic here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import (claim_outputs, console, err_console, force_option, parse_int_list, progress_bar,
                                report_output, user_errors)
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
    data: Optional[Path] = typer.Option(None, "--data", help="Folder of images to use (default: generated with the seed's distribution)."),
    accuracy: Optional[Path] = typer.Option(None, "--accuracy", help="`edgeseg compare` JSON: Dice/recall/FP blobs shown beside speed."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write rows, machine, versions and command as JSON."),
    plot_out: Optional[Path] = typer.Option(None, "--plot", help="Write images/s and p99 latency vs batch size as PNG."),
    baseline: bool = typer.Option(False, "--baseline", help="Measure the harness's own cost against a bare session.run loop (ONNX)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated images."),
    force: bool = force_option(),
) -> None:
    """Benchmark single vs batched (or streaming) inference; JSON, table and plot.

    Example:  edgeseg bench -m runs/demo/model.onnx -m runs/demo/model.int8.onnx --batch-sizes 1,8,32 --duration-s 3
    """
    from edgeseg.bench import harness, report, stream
    from edgeseg.runners.registry import backend_of, load_runner

    sizes = parse_int_list(batch_sizes, "--batch-sizes")
    _check_options(sizes, warmup_s, duration_s, repeats, streams, workers, rate, max_wait_ms, frames, queue_size, seed)
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
        return load_runner(path, backend_, **backend_of(path, backend_).accepts(options))

    config = {"models": model, "backend": backend.value if backend else None, "batch_sizes": sizes,
              "warmup_s": warmup_s, "duration_s": duration_s, "repeats": repeats, "streams": streams, "workers": workers,
              "rate": rate, "max_wait_ms": max_wait_ms, "frames": frames, "queue_size": queue_size,
              "data": str(data) if data else None, "accuracy": str(accuracy) if accuracy else None, "seed": seed}

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
                        harness.DEFAULT_POOL, (runner.image_shape or (256, 256))[0], seed)
                    row = harness.describe_runner(m, runner)
                    row.update(stream.run_stream(runner, pool, cfg, warmup_s, progress))
                    rows.append(row)
    else:
        with _lazy_progress("bench") as progress:
            rows = harness.sweep(model, sizes, timing, backend, images, seed, loader=loader, progress=progress)

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
        t.add_row(r["model"], str(r["batch_size"]), f"{r['bare_images_per_s']:.1f}",
                  f"{r['harness_images_per_s']:.1f}", f"{r['overhead_pct']:+.2f}", f"{r['overhead_pct_paired']:+.2f}",
                  f"{r['overhead_pct_cpu']:+.2f}")
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
