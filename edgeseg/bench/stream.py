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


def run_stream(runner: Runner, images: np.ndarray, cfg: StreamConfig, warmup_s: float = 1.0,
               progress: Progress = silent) -> dict[str, Any]:
    """Stream ``cfg.frames`` frames (cycling through ``images``, (N, H, W) uint8) through ``runner``
    (activated). Returns one result row (see the module docstring); never raises for drops."""
    n_frames = cfg.frames
    pool = np.ascontiguousarray(images)
    warm_up_stream(runner, pool, cfg.max_batch, warmup_s)

    arrival = np.zeros(n_frames, dtype=np.float64)
    latency = np.full(n_frames, np.nan, dtype=np.float64)
    state = np.zeros(n_frames, dtype=np.uint8)
    batch_sizes = np.zeros(cfg.max_batch + 1, dtype=np.int64)   # histogram of sizes sent
    frames_q: queue.Queue[int] = queue.Queue(maxsize=cfg.capacity)
    # The consumer is cheap; a small bound applies back-pressure instead of letting masks pile up.
    masks_q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    counts = {"dropped": 0, "produced": 0, "out": 0, "duplicated": 0, "out_of_order": 0, "late_start_s": 0.0,
              "defect_frames": 0}
    errors: list[BaseException] = []
    period = 1.0 / cfg.rate
    rss_start = rss_mb()
    rss_peak = [rss_start]
    # RSS every ~5 % of the frames: growth shows as a trend, one-off allocations as a step at the start.
    trace_every = max(1, n_frames // 20)
    rss_trace: list[float] = []
    t0 = time.perf_counter() + 0.01   # a little slack so the first frame is not already late

    def producer() -> None:
        clock = time.perf_counter
        for i in range(n_frames):
            if stop.is_set():
                break
            t = t0 + i * period
            delay = t - clock()
            if delay > 0:
                time.sleep(delay)
            arrival[i] = t
            counts["produced"] += 1
            try:
                frames_q.put_nowait(i)
            except queue.Full:
                state[i] = _DROPPED
                counts["dropped"] += 1
        # The end marker must get through (the batcher keeps draining), unless we are aborting.
        while True:
            try:
                frames_q.put(_SENTINEL, timeout=0.1)
                return
            except queue.Full:
                if stop.is_set():
                    return

    def consumer() -> None:
        last = -1
        while True:
            item = masks_q.get()
            if item is None:
                return
            ids, ready, probs = item
            for k, fid in enumerate(ids):
                if state[fid] == _DONE:
                    counts["duplicated"] += 1
                    continue
                if fid <= last:
                    counts["out_of_order"] += 1
                last = max(last, fid)
                state[fid] = _DONE
                latency[fid] = ready - arrival[fid]
                counts["out"] += 1
                # What the line does with a mask: decide good/defective.
                if np.count_nonzero(probs[k] > cfg.threshold):
                    counts["defect_frames"] += 1
            if counts["out"] % trace_every < len(ids):
                rss = rss_mb()
                rss_peak[0] = max(rss_peak[0], rss)
                if len(rss_trace) < 64:
                    rss_trace.append(round(rss, 2))
                progress(counts["out"], n_frames, f"{counts['out']} masks, {counts['dropped']} dropped")

    threads = [threading.Thread(target=producer, name="edgeseg-camera", daemon=True),
               threading.Thread(target=consumer, name="edgeseg-consumer", daemon=True)]
    for t in threads:
        t.start()
    max_wait = cfg.max_wait_ms / 1e3
    clock = time.perf_counter
    first_ready = last_ready = None
    try:
        done = False
        while not done:
            first = _next_frame(frames_q, threads[0])
            if first == _SENTINEL:
                break
            ids = [first]
            deadline = arrival[first] + max_wait
            while len(ids) < cfg.max_batch:
                remaining = deadline - clock()
                try:
                    item = frames_q.get(timeout=remaining) if remaining > 0 else frames_q.get_nowait()
                except queue.Empty:
                    break
                if item == _SENTINEL:
                    done = True
                    break
                ids.append(item)
            batch = pool[np.asarray(ids) % len(pool)]
            probs = runner.infer(batch)
            ready = clock()
            first_ready = ready if first_ready is None else first_ready
            last_ready = ready
            batch_sizes[len(ids)] += 1
            masks_q.put((ids, ready, probs))
    except BaseException as e:
        errors.append(e)
        stop.set()
    finally:
        masks_q.put(None)
        for t in threads:
            t.join(timeout=10)
    if errors:
        raise errors[0]
    end = clock()
    rss_end = rss_mb()

    produced = counts["produced"]
    dropped = counts["dropped"]
    out = counts["out"]
    lost = int(np.count_nonzero(state[:produced] == _PENDING))
    done_lat = latency[state == _DONE]
    pct = percentiles_ms(done_lat)
    sent = np.nonzero(batch_sizes)[0]
    n_batches = int(batch_sizes.sum())
    span = (last_ready - t0) if last_ready is not None else float("nan")
    integrity_ok = (lost == 0 and counts["duplicated"] == 0 and counts["out_of_order"] == 0
                    and out + dropped == produced == n_frames)
    warnings = []
    if dropped:
        warnings.append(f"{dropped} of {produced} frames dropped: {cfg.rate:g} frames/s is more than this "
                        f"model sustains with batches of up to {cfg.max_batch}")
    if not integrity_ok:
        warnings.append(f"stream integrity violated: {lost} lost, {counts['duplicated']} duplicated, "
                        f"{counts['out_of_order']} out of order, {out} out + {dropped} dropped of {produced} "
                        f"produced ({n_frames} scheduled)")
    return {
        "mode": "stream",
        "batch_size": int(cfg.max_batch),
        "rate": float(cfg.rate),
        "max_wait_ms": float(cfg.max_wait_ms),
        "queue_size": cfg.capacity,
        "frames_in": produced,
        "frames_out": out,
        "dropped": dropped,
        "lost": lost,
        "duplicated": counts["duplicated"],
        "out_of_order": counts["out_of_order"],
        "integrity_ok": bool(integrity_ok),
        "sustained": dropped == 0,
        "images_per_s": out / span if out and span > 0 else 0.0,
        **{f"latency_ms_{k}": v for k, v in pct.items()},
        "latency_ms_max": float(np.max(done_lat) * 1e3) if done_lat.size else float("nan"),
        "batches": n_batches,
        "mean_batch": float(out / n_batches) if n_batches else 0.0,
        "batch_size_max_seen": int(sent[-1]) if sent.size else 0,
        "defect_frames": counts["defect_frames"],
        "duration_s": end - t0,
        "scheduled_s": n_frames * period,
        "rss_mb_start": rss_start,
        "rss_mb_end": rss_end,
        "rss_mb_peak": max(rss_peak[0], rss_end),
        "rss_mb_growth": rss_end - rss_start,
        "rss_mb_trace": rss_trace,
        "warnings": warnings,
    }
