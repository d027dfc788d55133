"""Single-image vs batched inference speed of any :class:`~edgeseg.runners.base.Runner`.

The harness owns the clock (runners never time themselves): a time-based warm-up first, like trtexec's,
then for each repeat it calls the runner back to back for a fixed duration, timing every call with
``time.perf_counter()``. A row reports the median images/s over repeats and the latency percentiles of all
timed calls, per batch and per image. Inputs are always real images (the seed's distribution from
``edgeseg.data.synth``, or a folder), converted once to the float32 (N, H, W, 1) the models take, so the
clock sees inference, not the conversion.

    with load_runner("runs/demo/model.onnx") as runner:
        row = measure(runner, bench_images(64, 256), batch_size=16, timing=Timing(1, 3, 3))

Runners that can pipeline batches over several CUDA streams (``submit``/``collect``, the TensorRT runner)
are kept ``depth`` batches ahead, and report their own device-side split (``drain_split``) measured with
CUDA events, which the harness summarises beside its own wall-clock numbers.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.bench.stats import median, percentiles_ms
from edgeseg.data.depth import to_levels
from edgeseg.errors import BadInput, EdgesegError
from edgeseg.progress import Progress, silent
from edgeseg.runners.base import Runner

#: Images generated when no folder is given: enough distinct images that the largest batch never repeats
#: an image inside itself (caches see fresh data) without costing memory.
DEFAULT_POOL = 64


@dataclass(frozen=True)
class Timing:
    """How long to warm up and measure one point, and how many times to repeat it."""

    warmup_s: float = 2.0
    duration_s: float = 10.0
    repeats: int = 3

    def __post_init__(self) -> None:
        if not self.warmup_s >= 0:
            raise EdgesegError(f"warm-up must be >= 0 seconds, got {self.warmup_s}")
        if not self.duration_s > 0:
            raise EdgesegError(f"duration must be > 0 seconds, got {self.duration_s}")
        if self.repeats < 1:
            raise EdgesegError(f"repeats must be >= 1, got {self.repeats}")


def bench_images(count: int = DEFAULT_POOL, image_size: int | tuple[int, int] = 256, seed: int = 0,
                 data: str | Path | None = None) -> np.ndarray:
    """(N, H, W) real images: ``count`` uint8 images drawn from the seed's distribution at ``image_size`` (a side,
    or (H, W)), or those in ``data`` as stored (uint8 or uint16).

    A folder is read with :func:`edgeseg.data.dataset.load_images` (any folder of images, labelled or not).
    """
    if data is not None:
        from edgeseg.data.dataset import load_images

        images, _names = load_images(data)
        if images.ndim != 3 or len(images) == 0:
            raise BadInput(f"{data}: no images to benchmark with")
        return images
    from edgeseg.data.synth import generate_batch, preset

    h, w = (int(image_size), int(image_size)) if np.ndim(image_size) == 0 else (int(v) for v in image_size)
    cfg = preset("seed")
    size = max(h, w)  # drawn square at the longer side, then cropped
    if size != cfg.image_size:
        # The seed's defects (8..63 px in 256 px) scaled to the image, so small test images stay valid.
        lo, hi = cfg.defect_size
        scale = size / cfg.image_size
        cfg = cfg.replace(image_size=size, defect_size=(max(1, min(size - 1, round(lo * scale))),
                                                        max(1, min(size - 1, round(hi * scale)))))
    images, _ = generate_batch(np.random.default_rng(seed), cfg, int(count))
    return images if (h, w) == (size, size) else np.ascontiguousarray(images[:, :h, :w])


def make_batches(images: np.ndarray, batch_size: int, runner: Runner | None = None) -> list[np.ndarray]:
    """Float32 (B, H, W, 1) batches cycling through ``images`` (at least one batch; a pool smaller than
    the batch is repeated). ``runner.prepare`` checks the image size against the model."""
    n = len(images)
    count = max(1, -(-n // batch_size))
    batches = []
    for k in range(count):
        idx = (np.arange(batch_size) + k * batch_size) % n
        chunk = images[idx]
        batches.append(runner.prepare(chunk) if runner is not None else
                       np.ascontiguousarray(to_levels(chunk))[..., None])
    return batches


def _pipelined(runner: Runner) -> int:
    """How many batches to keep in flight: the runner's own count (1 for a synchronous runner)."""
    return max(1, int(runner.in_flight))


def run_for(runner: Runner, batches: Sequence[np.ndarray], duration_s: float) -> tuple[list[float], int, float]:
    """Call the runner back to back for ``duration_s``: (per-call latencies s, images done, elapsed s).

    At least one call is made. With a pipelining runner a call's latency runs from submit to collect.
    """
    clock = time.perf_counter
    lat: list[float] = []
    images = 0
    nb = len(batches)
    depth = _pipelined(runner)
    start = clock()
    if depth == 1:
        infer = runner.infer
        i = 0
        while True:
            b = batches[i % nb]
            t0 = clock()
            infer(b)
            t1 = clock()
            lat.append(t1 - t0)
            images += b.shape[0]
            i += 1
            if t1 - start >= duration_s:
                return lat, images, t1 - start
    inflight: collections.deque = collections.deque()
    i = 0
    t1 = start
    while True:
        while len(inflight) < depth and t1 - start < duration_s:
            b = batches[i % nb]
            i += 1
            inflight.append((clock(), b.shape[0], runner.submit(b)))
        if not inflight:
            return lat, images, t1 - start
        t0, n, token = inflight.popleft()
        runner.collect(token)
        t1 = clock()
        lat.append(t1 - t0)
        images += n


def warm_up(runner: Runner, batches: Sequence[np.ndarray], warmup_s: float) -> None:
    """Cycle through the batches until ``warmup_s`` has passed (at least one call): lazy allocations,
    kernel selection and caches settle before the clock starts."""
    start = time.perf_counter()
    i = 0
    while True:
        runner.infer(batches[i % len(batches)])
        i += 1
        if time.perf_counter() - start >= warmup_s:
            return


class _Point:
    """One (runner, batch size) being measured: its batches, and the latencies, rates and device-side split of
    the repeats timed so far."""

    def __init__(self, runner: Runner, images: np.ndarray, batch_size: int):
        runner.check_batch_size(batch_size)
        self.runner, self.batch_size = runner, int(batch_size)
        self.batches = make_batches(images, batch_size, runner)
        self.lat: list[float] = []
        self.rates: list[float] = []
        self.split: dict[str, list[float]] = {}

    def warm_up(self, warmup_s: float) -> None:
        warm_up(self.runner, self.batches, warmup_s)
        self.runner.drain_split()  # forget the warm-up's events

    def repeat(self, duration_s: float) -> None:
        lat, done, elapsed = run_for(self.runner, self.batches, duration_s)
        self.lat.extend(lat)
        self.rates.append(done / elapsed)
        for key, values in self.runner.drain_split().items():
            self.split.setdefault(key, []).extend(values)

    def row(self, timing: Timing) -> dict[str, Any]:
        b = self.batch_size
        per_batch = percentiles_ms(self.lat)
        per_image = percentiles_ms(np.asarray(self.lat) / b)
        row: dict[str, Any] = {
            "mode": "single" if b == 1 else "batched",
            "batch_size": b,
            "images_per_s": median(self.rates),
            "images_per_s_repeats": self.rates,
            # Throughput implied by the median call: on a shared machine, other processes stealing the CPU
            # inflate the mean (and so images_per_s) far more than the median.
            "images_per_s_p50": b / (per_batch["p50"] / 1e3),
            **{f"latency_ms_{k}": v for k, v in per_batch.items()},
            **{f"latency_per_image_ms_{k}": v for k, v in per_image.items()},
            "calls": len(self.lat),
            "repeats": timing.repeats,
            "warmup_s": timing.warmup_s,
            "duration_s": timing.duration_s,
        }
        for key, values in self.split.items():
            if values:
                row[f"{key}_ms_p50"] = median(values)
        return row


def measure(runner: Runner, images: np.ndarray, batch_size: int, timing: Timing = Timing(),
            progress: Progress = silent) -> dict[str, Any]:
    """One row: throughput and latency of ``runner`` (activated) at ``batch_size``.

    Keys: mode (``single`` for batch 1, else ``batched``), batch_size, images_per_s (median of repeats),
    images_per_s_p50 (batch size / median call latency),
    latency_ms_p50/p90/p99 (per batch call), latency_per_image_ms_p50/p90/p99 (per call / batch size:
    the amortised cost of one image), calls, repeats; plus h2d/compute/d2h/enqueue medians for runners
    that report a device-side split.
    """
    point = _Point(runner, images, batch_size)
    point.warm_up(timing.warmup_s)
    for r in range(timing.repeats):
        progress(r, timing.repeats, f"batch {batch_size}: repeat {r + 1}/{timing.repeats}")
        point.repeat(timing.duration_s)
    progress(timing.repeats, timing.repeats, f"batch {batch_size}: done")
    return point.row(timing)


def describe_runner(model: str | Path, runner: Runner) -> dict[str, Any]:
    """The identifying columns of a row: model path, backend, precision (and the runner's settings, if it has any)."""
    row = {"model": str(model), "backend": runner.backend_name, "precision": runner.precision.value}
    if runner.config:
        row["runner_config"] = runner.config
    return row


def sweep(models: Sequence[str | Path], batch_sizes: Sequence[int], timing: Timing = Timing(),
          backend: str | None = None, images: np.ndarray | None = None, seed: int = 0,
          runner_options: dict[str, Any] | None = None,
          loader: Callable[..., Runner] | None = None, progress: Progress = silent,
          interleave: bool = False) -> list[dict[str, Any]]:
    """Rows for every model × batch size. Every runner is activated once and checked against every batch
    size before any timing starts, so a bad model or batch size fails in seconds, not after a sweep.

    ``interleave``: time the points round by round instead of one after the other — each repeat goes round
    every model and batch size, each point warmed up again before its turn — so a host that slows down for a
    while slows every model alike, and the ratio of two models holds where their absolute speeds drift."""
    from edgeseg.runners import load_runner

    loader = loader or load_runner
    sizes = sorted(set(int(b) for b in batch_sizes))
    if not sizes or sizes[0] < 1:
        raise EdgesegError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if interleave:
        return _interleaved(models, sizes, timing, backend, images, seed, runner_options, loader, progress)
    rows: list[dict[str, Any]] = []
    total = len(models) * len(sizes)
    for m, model in enumerate(models):
        runner = loader(model, backend, **(runner_options or {}))
        with runner:
            for b in sizes:
                runner.check_batch_size(b)
            pool = images if images is not None else bench_images(DEFAULT_POOL, runner.image_shape or 256, seed)
            for k, b in enumerate(sizes):
                done = m * len(sizes) + k

                def sub(d: int, t: int | None, message: str = "", _done=done) -> None:
                    progress(_done, total, f"{Path(str(model)).name} {message}")

                measured = measure(runner, pool, b, timing, sub)  # first: a tiled runner's config says so after
                row = {**describe_runner(model, runner), **measured, "image_size": list(pool.shape[1:3])}
                rows.append(row)
    progress(total, total, "done")
    return rows


def _interleaved(models: Sequence[str | Path], sizes: list[int], timing: Timing, backend: str | None,
                 images: np.ndarray | None, seed: int, runner_options: dict[str, Any] | None,
                 loader: Callable[..., Runner], progress: Progress) -> list[dict[str, Any]]:
    """:func:`sweep` round by round: every runner active at once, each repeat of every point in turn."""
    import contextlib

    with contextlib.ExitStack() as stack:
        points = []
        for model in models:
            runner = stack.enter_context(loader(model, backend, **(runner_options or {})))
            for b in sizes:
                runner.check_batch_size(b)
            pool = images if images is not None else bench_images(DEFAULT_POOL, runner.image_shape or 256, seed)
            points += [(model, pool, _Point(runner, pool, b)) for b in sizes]
        total = timing.repeats * len(points)
        for r in range(timing.repeats):
            for k, (model, _, point) in enumerate(points):
                progress(r * len(points) + k, total, f"round {r + 1}/{timing.repeats}: {Path(str(model)).name} "
                         f"batch {point.batch_size}")
                point.warm_up(timing.warmup_s)  # another model ran in between: its caches and threads are cold
                point.repeat(timing.duration_s)
        progress(total, total, "done")
        return [{**describe_runner(model, point.runner), **point.row(timing), "interleaved": True,
                 "image_size": list(pool.shape[1:3])} for model, pool, point in points]


def overhead(model: str | Path, batch_sizes: Sequence[int] = (1, 16), timing: Timing = Timing(1.0, 3.0, 3),
             images: np.ndarray | None = None, progress: Progress = silent) -> list[dict[str, Any]]:
    """What the harness costs: its images/s against a bare ``session.run`` loop on the same batches.

    ONNX Runtime only (the session is the runner's own, so both loops run the same threads and graph; the
    runner runs without worker threads here, so the comparison is of the harness, not of throughput mode).
    The two loops alternate ``repeats`` times so drifts in machine load hit both; each reports its median.
    ``overhead_pct`` = 100 × (bare − harness) / bare of the medians, ``overhead_pct_paired`` the median of
    that over back-to-back pairs, ``overhead_pct_cpu`` the same in process CPU time per image; negative
    when the harness's runner beats a plain ``session.run``.
    """
    from edgeseg.runners import load_runner

    rows = []
    with load_runner(model, "onnxruntime", workers=1) as runner:
        session = runner.session
        name = session.get_inputs()[0].name
        pool = images if images is not None else bench_images(DEFAULT_POOL, runner.image_shape or 256)
        for b in batch_sizes:
            batches = make_batches(pool, int(b), runner)
            warm_up(runner, batches, timing.warmup_s)
            bare, harness, bare_cpu, harness_cpu = [], [], [], []
            for r in range(timing.repeats):
                progress(r, timing.repeats, f"batch {b}: repeat {r + 1}")
                # Alternate which loop goes first, so a load change mid-pair does not favour one side.
                for which in ((0, 1) if r % 2 == 0 else (1, 0)):
                    c0 = time.process_time()
                    if which == 0:
                        done, elapsed = _bare_loop(session, name, batches, timing.duration_s)
                        bare.append(done / elapsed)
                        bare_cpu.append((time.process_time() - c0) / done * 1e3)
                    else:
                        _, done, elapsed = run_for(runner, batches, timing.duration_s)
                        harness.append(done / elapsed)
                        harness_cpu.append((time.process_time() - c0) / done * 1e3)
            bare_ips, harness_ips = median(bare), median(harness)
            rows.append({
                "model": str(model), "backend": "onnxruntime", "precision": runner.precision.value,
                "batch_size": int(b), "bare_images_per_s": bare_ips, "harness_images_per_s": harness_ips,
                "bare_repeats": bare, "harness_repeats": harness,
                "overhead_pct": 100.0 * (bare_ips - harness_ips) / bare_ips,
                # Each pair ran back to back: the median of per-pair differences resists slow load drift.
                "overhead_pct_paired": median([100.0 * (x - y) / x for x, y in zip(bare, harness)]),
                # CPU time of this process per image (all its threads): other processes preempting ours
                # stretch wall time but barely change it, so on a shared machine it shows the harness's
                # own cost more clearly (ONNX Runtime's spin-waiting threads still add some noise).
                "bare_cpu_ms_per_image": median(bare_cpu), "harness_cpu_ms_per_image": median(harness_cpu),
                "overhead_pct_cpu": median([100.0 * (y - x) / x for x, y in zip(bare_cpu, harness_cpu)]),
            })
    return rows


def _bare_loop(session, input_name: str, batches: Sequence[np.ndarray], duration_s: float) -> tuple[int, float]:
    """(images, seconds) of the plainest possible loop over ``session.run`` (the reference for :func:`overhead`)."""
    clock = time.perf_counter
    nb = len(batches)
    images = i = 0
    start = clock()
    while True:
        b = batches[i % nb]
        session.run(None, {input_name: b})
        images += b.shape[0]
        i += 1
        now = clock()
        if now - start >= duration_s:
            return images, now - start
