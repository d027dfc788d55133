"""Streaming inference as on a line: a camera at a fixed frame rate, a bounded queue, a batcher, a consumer.

    producer (thread) --frame ids--> bounded queue --> batcher (this thread: up to max_batch frames, waiting
    at most max_wait after a batch's first frame arrived; runs the model) --> consumer (thread: one mask per
    frame, checks ids)

A frame that finds the queue full is dropped and counted, as a camera driver drops frames nobody fetched in
time. Every frame not dropped must come out exactly once and in order; the consumer checks this with frame
ids and the result says ``integrity_ok`` (with counts of lost, duplicated and out-of-order frames) rather
than trusting it. A rate the machine cannot sustain is not an error: the producer stops on schedule, the
batcher drains what is queued, and the result reports the drops and a warning.

Latency is end to end: from the frame's arrival (its scheduled camera timestamp, so a producer delayed by
the interpreter still charges the delay to the pipeline) to the moment its mask is ready. Memory is fixed
up front (per-frame arrays sized by the frame count), and RSS is read at the start and end of the stream.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.bench.stats import percentiles_ms, rss_mb
from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress, silent
from edgeseg.runners.base import Runner

_SENTINEL = -1
# Per-frame states recorded by producer and consumer.
_PENDING, _DROPPED, _DONE = 0, 1, 2


@dataclass(frozen=True)
class StreamConfig:
    """A camera at ``rate`` frames/s for ``frames`` frames, batches of up to ``max_batch`` frames, a batch
    waiting at most ``max_wait_ms`` after its first frame arrived, and a queue of ``queue_size`` frames
    (default: 4 × max_batch)."""

    rate: float
    frames: int
    max_batch: int = 8
    max_wait_ms: float = 10.0
    queue_size: int | None = None
    #: Probability threshold the consumer applies (the mask is what a line would use).
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise EdgesegError(f"rate must be > 0 frames/s, got {self.rate}")
        if self.frames < 1:
            raise EdgesegError(f"frames must be >= 1, got {self.frames}")
        if self.max_batch < 1:
            raise EdgesegError(f"max batch must be >= 1, got {self.max_batch}")
        if not self.max_wait_ms >= 0:
            raise EdgesegError(f"max wait must be >= 0 ms, got {self.max_wait_ms}")
        if self.queue_size is not None and self.queue_size < 1:
            raise EdgesegError(f"queue size must be >= 1, got {self.queue_size}")

    @property
    def capacity(self) -> int:
        return self.queue_size or 4 * self.max_batch


def warm_up_stream(runner: Runner, images: np.ndarray, max_batch: int, warmup_s: float) -> None:
    """Run every batch size up to ``max_batch`` once, then the largest until ``warmup_s`` has passed: a
    batcher sends any size, and the first call of a size is slow and allocates (runtime arenas, output
    buffers), which would otherwise show up as latency spikes and RSS growth inside the stream."""
    start = time.perf_counter()
    for b in range(1, max_batch + 1):
        runner.infer(images[np.arange(b) % len(images)])
    while time.perf_counter() - start < warmup_s:
        runner.infer(images[np.arange(max_batch) % len(images)])


def _next_frame(frames_q: queue.Queue, producer: threading.Thread) -> int:
    """The next frame id, or the end marker; never hangs on a producer that died without sending it."""
    while True:
        try:
            return frames_q.get(timeout=0.5)
        except queue.Empty:
            if not producer.is_alive() and frames_q.empty():
                return _SENTINEL


@dataclass
class _Tally:
    """What producer, batcher and consumer count while the stream runs (each field has one writer)."""

    produced: int = 0
    dropped: int = 0
    out: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    defect_frames: int = 0


@dataclass(frozen=True)
class StreamResult:
    """One stream's outcome: counts, integrity, end-to-end latencies (seconds, per frame that came out),
    batch sizes sent and RSS. :meth:`as_row` is the benchmark's JSON row."""

    cfg: StreamConfig
    tally: _Tally
    lost: int
    latencies_s: np.ndarray
    batch_sizes: np.ndarray      # histogram: batch_sizes[b] = batches of b frames
    span_s: float                # first frame's scheduled arrival to the last mask
    duration_s: float
    rss_mb_start: float
    rss_mb_end: float
    rss_mb_peak: float
    rss_mb_trace: list[float]

    @property
    def integrity_ok(self) -> bool:
        t = self.tally
        return (self.lost == 0 and t.duplicated == 0 and t.out_of_order == 0
                and t.out + t.dropped == t.produced == self.cfg.frames)

    def warnings(self) -> list[str]:
        t, cfg = self.tally, self.cfg
        out = []
        if t.dropped:
            out.append(f"{t.dropped} of {t.produced} frames dropped: {cfg.rate:g} frames/s is more than this "
                       f"model sustains with batches of up to {cfg.max_batch}")
        if not self.integrity_ok:
            out.append(f"stream integrity violated: {self.lost} lost, {t.duplicated} duplicated, "
                       f"{t.out_of_order} out of order, {t.out} out + {t.dropped} dropped of {t.produced} "
                       f"produced ({cfg.frames} scheduled)")
        return out

    def as_row(self) -> dict[str, Any]:
        t, cfg, lat = self.tally, self.cfg, self.latencies_s
        sent = np.nonzero(self.batch_sizes)[0]
        n_batches = int(self.batch_sizes.sum())
        return {
            "mode": "stream",
            "batch_size": int(cfg.max_batch),
            "rate": float(cfg.rate),
            "max_wait_ms": float(cfg.max_wait_ms),
            "queue_size": cfg.capacity,
            "frames_in": t.produced,
            "frames_out": t.out,
            "dropped": t.dropped,
            "lost": self.lost,
            "duplicated": t.duplicated,
            "out_of_order": t.out_of_order,
            "integrity_ok": bool(self.integrity_ok),
            "sustained": t.dropped == 0,
            "images_per_s": t.out / self.span_s if t.out and self.span_s > 0 else 0.0,
            **{f"latency_ms_{k}": v for k, v in percentiles_ms(lat).items()},
            "latency_ms_max": float(np.max(lat) * 1e3) if lat.size else float("nan"),
            "batches": n_batches,
            "mean_batch": float(t.out / n_batches) if n_batches else 0.0,
            "batch_size_max_seen": int(sent[-1]) if sent.size else 0,
            "defect_frames": t.defect_frames,
            "duration_s": self.duration_s,
            "scheduled_s": cfg.frames / cfg.rate,
            "rss_mb_start": self.rss_mb_start,
            "rss_mb_end": self.rss_mb_end,
            "rss_mb_peak": max(self.rss_mb_peak, self.rss_mb_end),
            "rss_mb_growth": self.rss_mb_end - self.rss_mb_start,
            "rss_mb_trace": self.rss_mb_trace,
            "warnings": self.warnings(),
        }


class Stream:
    """One run of the pipeline in the module docstring: ``Stream(runner, images, cfg).run()``.

    The camera and the consumer are threads; the batcher runs on the calling thread, where the runner was
    activated (a CUDA context, for one, belongs to it). Per-frame arrays are sized up front.
    """

    def __init__(self, runner: Runner, images: np.ndarray, cfg: StreamConfig, progress: Progress = silent):
        self.runner, self.cfg, self.progress = runner, cfg, progress
        self.pool = np.ascontiguousarray(images)
        n = cfg.frames
        self.arrival = np.zeros(n, dtype=np.float64)
        self.latency = np.full(n, np.nan, dtype=np.float64)
        self.state = np.zeros(n, dtype=np.uint8)
        self.batch_sizes = np.zeros(cfg.max_batch + 1, dtype=np.int64)
        self.frames_q: queue.Queue[int] = queue.Queue(maxsize=cfg.capacity)
        # The consumer is cheap; a small bound applies back-pressure instead of letting masks pile up.
        self.masks_q: queue.Queue = queue.Queue(maxsize=4)
        self.stop = threading.Event()
        self.tally = _Tally()
        self.period = 1.0 / cfg.rate
        # RSS every ~5 % of the frames: growth shows as a trend, one-off allocations as a step at the start.
        self.trace_every = max(1, n // 20)
        self.rss_trace: list[float] = []
        self.rss_peak = 0.0
        self.t0 = 0.0

    def run(self) -> StreamResult:
        self.rss_peak = rss_start = rss_mb()
        self.t0 = time.perf_counter() + 0.01   # a little slack so the first frame is not already late
        threads = [threading.Thread(target=self._camera, name="edgeseg-camera", daemon=True),
                   threading.Thread(target=self._consumer, name="edgeseg-consumer", daemon=True)]
        for t in threads:
            t.start()
        last_ready = None
        try:
            last_ready = self._batcher(threads[0])
        except BaseException:
            self.stop.set()
            raise
        finally:
            self.masks_q.put(None)
            for t in threads:
                t.join(timeout=10)
        end = time.perf_counter()
        produced = self.tally.produced
        done = self.state == _DONE
        return StreamResult(
            cfg=self.cfg, tally=self.tally, lost=int(np.count_nonzero(self.state[:produced] == _PENDING)),
            latencies_s=self.latency[done], batch_sizes=self.batch_sizes,
            span_s=(last_ready - self.t0) if last_ready is not None else float("nan"), duration_s=end - self.t0,
            rss_mb_start=rss_start, rss_mb_end=rss_mb(), rss_mb_peak=self.rss_peak, rss_mb_trace=self.rss_trace)

    def _camera(self) -> None:
        """Frame ids at the camera's schedule; a frame that finds the queue full is dropped."""
        clock = time.perf_counter
        for i in range(self.cfg.frames):
            if self.stop.is_set():
                break
            t = self.t0 + i * self.period
            delay = t - clock()
            if delay > 0:
                time.sleep(delay)
            self.arrival[i] = t
            self.tally.produced += 1
            try:
                self.frames_q.put_nowait(i)
            except queue.Full:
                self.state[i] = _DROPPED
                self.tally.dropped += 1
        # The end marker must get through (the batcher keeps draining), unless we are aborting.
        while True:
            try:
                self.frames_q.put(_SENTINEL, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    return

    def _batcher(self, camera: threading.Thread) -> float | None:
        """Up to ``max_batch`` frames, waiting at most ``max_wait`` after the first one's arrival; runs the
        model and hands the masks on. Returns the time the last mask was ready (None if none was)."""
        cfg, clock = self.cfg, time.perf_counter
        max_wait = cfg.max_wait_ms / 1e3
        last_ready = None
        done = False
        while not done:
            first = _next_frame(self.frames_q, camera)
            if first == _SENTINEL:
                break
            ids = [first]
            deadline = self.arrival[first] + max_wait
            while len(ids) < cfg.max_batch:
                remaining = deadline - clock()
                try:
                    item = self.frames_q.get(timeout=remaining) if remaining > 0 else self.frames_q.get_nowait()
                except queue.Empty:
                    break
                if item == _SENTINEL:
                    done = True
                    break
                ids.append(item)
            probs = self.runner.infer(self.pool[np.asarray(ids) % len(self.pool)])
            last_ready = clock()
            self.batch_sizes[len(ids)] += 1
            self.masks_q.put((ids, last_ready, probs))
        return last_ready

    def _consumer(self) -> None:
        """One mask per frame, in order, exactly once: checked by frame id, not trusted."""
        tally, last = self.tally, -1
        while True:
            item = self.masks_q.get()
            if item is None:
                return
            ids, ready, probs = item
            for k, fid in enumerate(ids):
                if self.state[fid] == _DONE:
                    tally.duplicated += 1
                    continue
                if fid <= last:
                    tally.out_of_order += 1
                last = max(last, fid)
                self.state[fid] = _DONE
                self.latency[fid] = ready - self.arrival[fid]
                tally.out += 1
                # What the line does with a mask: decide good/defective.
                if np.count_nonzero(probs[k] > self.cfg.threshold):
                    tally.defect_frames += 1
            if tally.out % self.trace_every < len(ids):
                rss = rss_mb()
                self.rss_peak = max(self.rss_peak, rss)
                if len(self.rss_trace) < 64:
                    self.rss_trace.append(round(rss, 2))
                self.progress(tally.out, self.cfg.frames, f"{tally.out} masks, {tally.dropped} dropped")


def run_stream(runner: Runner, images: np.ndarray, cfg: StreamConfig, warmup_s: float = 1.0,
               progress: Progress = silent) -> dict[str, Any]:
    """Stream ``cfg.frames`` frames (cycling through ``images``, (N, H, W) uint8) through ``runner``
    (activated). Returns one result row (see the module docstring); never raises for drops."""
    warm_up_stream(runner, np.ascontiguousarray(images), cfg.max_batch, warmup_s)
    return Stream(runner, images, cfg, progress).run().as_row()
