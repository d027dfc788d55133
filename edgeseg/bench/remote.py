"""Streaming against a Triton server: K cameras, each a thread at a fixed frame rate, one request a frame.

    camera c (thread: frames c, c+K, c+2K, … at ``rate`` frames/s) --request--> Triton (its dynamic batcher
    merges the cameras' requests) --probabilities--> the camera's own workers (at most ``in_flight`` requests
    outstanding per camera)

A frame that finds its camera's ``in_flight`` requests all outstanding is dropped and counted, as a camera
driver drops frames nobody fetched in time. The accounting is the local stream's (:mod:`edgeseg.bench.stream`):
every frame sent comes back as one mask or was dropped (``frames_in == frames_out + dropped``), checked by frame
id; a request the server refuses is an error, counted apart. Latency runs from the frame's scheduled arrival
to the moment its probabilities are back.

The masks are compared with local inference on the same frames: a sample of the returned probability maps (one
per distinct image) against :func:`edgeseg.runners.load_runner` on the same images — IoU of the thresholded
masks and the largest |Δprob|.

Requests go through :class:`edgeseg.serving.client.TritonHttp`, one connection per worker thread.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.bench.stats import percentiles_ms
from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress, silent
from edgeseg.runners.base import Runner
from edgeseg.serving.client import TritonHttp

_PENDING, _DROPPED, _DONE, _FAILED = 0, 1, 2, 3


@dataclass(frozen=True)
class RemoteConfig:
    """``cameras`` cameras at ``rate`` frames/s each, ``frames`` frames in all (split evenly), at most
    ``in_flight`` requests outstanding per camera; ``sample`` masks kept for the comparison."""

    url: str
    model: str
    rate: float
    frames: int
    cameras: int = 8
    in_flight: int = 2
    timeout_s: float = 30.0
    sample: int = 32

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise EdgesegError(f"rate must be > 0 frames/s, got {self.rate}")
        for name, v in (("frames", self.frames), ("cameras", self.cameras), ("in-flight", self.in_flight)):
            if v < 1:
                raise EdgesegError(f"{name} must be >= 1, got {v}")


class RemoteStream:
    """One run: ``RemoteStream(cfg, images).run()``; per-frame arrays sized up front."""

    def __init__(self, cfg: RemoteConfig, images: np.ndarray, progress: Progress = silent):
        self.cfg, self.pool, self.progress = cfg, np.ascontiguousarray(images, dtype=np.uint8), progress
        n = cfg.frames
        self.arrival = np.zeros(n)
        self.latency = np.full(n, np.nan)
        self.state = np.zeros(n, dtype=np.uint8)
        self.lock = threading.Lock()
        self.duplicated = 0
        self.errors: list[str] = []
        self.samples: dict[int, np.ndarray] = {}   # pool index → probabilities as served
        self.local = threading.local()
        self.clients: list[TritonHttp] = []
        self.last_ready = 0.0
        self.t0 = 0.0

    def _client(self) -> TritonHttp:
        c = getattr(self.local, "client", None)
        if c is None:
            c = self.local.client = TritonHttp(self.cfg.url, self.cfg.timeout_s)
            with self.lock:
                self.clients.append(c)
        return c

    def _send(self, fid: int, gate: threading.Semaphore) -> None:
        try:
            k = fid % len(self.pool)
            try:
                probs = self._client().infer(self.cfg.model, self.pool[k][None])
            except EdgesegError as e:
                with self.lock:
                    self.state[fid] = _FAILED
                    self.errors.append(str(e))
                return
            ready = time.perf_counter()
            with self.lock:
                if self.state[fid] == _DONE:
                    self.duplicated += 1
                    return
                self.state[fid] = _DONE
                self.latency[fid] = ready - self.arrival[fid]
                self.last_ready = max(self.last_ready, ready)
                if k not in self.samples and len(self.samples) < self.cfg.sample:
                    self.samples[k] = probs[0]
        finally:
            gate.release()

    def _camera(self, c: int) -> None:
        cfg, clock = self.cfg, time.perf_counter
        gate = threading.Semaphore(cfg.in_flight)
        with ThreadPoolExecutor(cfg.in_flight, thread_name_prefix=f"edgeseg-camera{c}") as pool:
            for j, fid in enumerate(range(c, cfg.frames, cfg.cameras)):
                t = self.t0 + j / cfg.rate
                delay = t - clock()
                if delay > 0:
                    time.sleep(delay)
                self.arrival[fid] = t
                if gate.acquire(blocking=False):
                    pool.submit(self._send, fid, gate)
                else:
                    self.state[fid] = _DROPPED
                if c == 0 and j % max(1, cfg.frames // (20 * cfg.cameras)) == 0:
                    done = int(np.count_nonzero(self.state == _DONE))
                    self.progress(done, cfg.frames, f"{done} masks, "
                                  f"{int(np.count_nonzero(self.state == _DROPPED))} dropped")

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.t0 = time.perf_counter() + 0.05
        cams = [threading.Thread(target=self._camera, args=(c,), name=f"edgeseg-camera{c}", daemon=True)
                for c in range(min(cfg.cameras, cfg.frames))]
        for t in cams:
            t.start()
        for t in cams:
            t.join()
        end = time.perf_counter()
        for c in self.clients:
            c.close()
        s = self.state
        out, dropped, failed = (int(np.count_nonzero(s == v)) for v in (_DONE, _DROPPED, _FAILED))
        lost = int(np.count_nonzero(s == _PENDING))
        lat = self.latency[s == _DONE]
        span = self.last_ready - self.t0
        ok = lost == 0 and self.duplicated == 0 and failed == 0 and out + dropped == cfg.frames
        warnings = []
        if dropped:
            warnings.append(f"{dropped} of {cfg.frames} frames dropped: {cfg.cameras} cameras at {cfg.rate:g} "
                            f"frames/s each is more than the server sustains with {cfg.in_flight} requests in "
                            "flight per camera")
        if failed:
            warnings.append(f"{failed} requests failed, first: {self.errors[0]}")
        return {
            "mode": "remote", "url": cfg.url, "cameras": cfg.cameras, "rate": float(cfg.rate),
            "rate_total": float(cfg.rate * cfg.cameras), "in_flight": cfg.in_flight, "batch_size": 1,
            "frames_in": cfg.frames, "frames_out": out, "dropped": dropped, "errors": failed, "lost": lost,
            "duplicated": self.duplicated, "integrity_ok": bool(ok), "sustained": dropped == 0,
            "images_per_s": out / span if out and span > 0 else 0.0,
            **{f"latency_ms_{k}": v for k, v in percentiles_ms(lat).items()},
            "latency_ms_max": float(np.max(lat) * 1e3) if lat.size else float("nan"),
            "duration_s": end - self.t0, "scheduled_s": cfg.frames / cfg.cameras / cfg.rate,
            "warnings": warnings,
        }


def agreement(samples: dict[int, np.ndarray], images: np.ndarray, runner: Runner, threshold: float) -> dict[str, Any]:
    """Served probabilities vs ``runner`` (activated) on the same images: IoU of the masks ``prob >= threshold``
    over all sampled pixels (1.0 when both are empty), the share of pixels whose mask differs, max |Δprob|."""
    if not samples:
        return {"agreement_frames": 0}
    keys = sorted(samples)
    served = np.stack([samples[k] for k in keys]).astype(np.float32)
    local = runner.infer(images[keys])
    a, b = served >= threshold, local >= threshold
    union = int(np.count_nonzero(a | b))
    return {"agreement_frames": len(keys), "agreement_threshold": float(threshold),
            "agreement_iou": float(np.count_nonzero(a & b) / union) if union else 1.0,
            "agreement_pixels_differ": float(np.count_nonzero(a != b) / a.size),
            "agreement_mask_fraction": float(np.count_nonzero(a) / a.size),
            "agreement_max_abs_dprob": float(np.max(np.abs(served - local)))}


def run_remote(cfg: RemoteConfig, images: np.ndarray, runner: Runner | None = None, threshold: float = 0.5,
               warmup: int = 16, progress: Progress = silent) -> dict[str, Any]:
    """Stream ``cfg.frames`` frames (cycling through ``images``, (N, H, W) uint8) to the server; compare the
    sampled masks with ``runner`` (activated) when given. One result row; never raises for drops."""
    client = TritonHttp(cfg.url, cfg.timeout_s)
    try:
        for i in range(warmup):  # the first requests load the model's sessions and allocate buffers
            client.infer(cfg.model, images[i % len(images)][None])
    finally:
        client.close()
    stream = RemoteStream(cfg, images, progress)
    row = stream.run()
    if runner is not None:
        row.update(agreement(stream.samples, stream.pool, runner, threshold))
    return row
