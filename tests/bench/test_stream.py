"""The camera-like stream: every frame not dropped yields one mask, in order; drops are counted, not errors.

Rates are chosen far from the machine's limits (a slow runner against a fast camera, a fast runner against
a slow camera) so the assertions hold on a loaded 2-core machine; no timing is asserted.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgeseg.bench import harness
from edgeseg.bench.stream import StreamConfig, run_stream
from edgeseg.errors import BadInput, EdgesegError
from edgeseg.runners.base import Runner
from edgeseg.types import Backend


class MeanRunner(Runner):
    """Sigmoid of each pixel's distance to the image mean (a real per-frame computation), optionally slow."""

    backend = Backend.classical

    def __init__(self, delay_s=0.0, fail_after=None):
        super().__init__(None)
        self.delay_s = delay_s
        self.fail_after = fail_after
        self.sizes = []
        self.seen = []

    def _activate(self):
        self.image_shape = (16, 16)

    def _infer(self, batch):
        if self.fail_after is not None and len(self.sizes) >= self.fail_after:
            raise RuntimeError("device lost")
        self.sizes.append(batch.shape[0])
        self.seen.append(batch[:, 0, 0, 0].copy())
        if self.delay_s:
            time.sleep(self.delay_s)
        m = batch.mean(axis=(1, 2, 3), keepdims=True)
        return 1.0 / (1.0 + np.exp(-(batch - m) / 7.0))


@pytest.fixture(scope="module")
def images():
    return harness.bench_images(8, 16)


def test_low_rate_loses_and_duplicates_nothing(images):
    cfg = StreamConfig(rate=400, frames=300, max_batch=4, max_wait_ms=2)
    with MeanRunner() as runner:
        warm = len(runner.sizes)
        r = run_stream(runner, images, cfg, warmup_s=0)
    assert r["mode"] == "stream" and r["integrity_ok"] and r["sustained"]
    assert r["frames_in"] == r["frames_out"] == 300 and r["dropped"] == r["lost"] == r["duplicated"] == 0
    assert r["out_of_order"] == 0 and r["warnings"] == []
    assert 1 <= r["batch_size_max_seen"] <= 4 and sum(runner.sizes[warm:]) >= 300
    # The frames the model saw are the camera's frames in order: frame i is image i mod 8.
    seen = np.concatenate(runner.seen)[-300:]
    np.testing.assert_array_equal(seen, images[np.arange(300) % 8][:, 0, 0])
    assert 0 < r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"] <= r["latency_ms_max"]
    assert r["rss_mb_start"] > 0 and r["rss_mb_end"] > 0


def test_impossible_rate_counts_drops_and_finishes(images):
    # The camera produces 2,000 frames in ~0.1 s; the runner needs 20 ms per batch of at most 2.
    cfg = StreamConfig(rate=20000, frames=2000, max_batch=2, max_wait_ms=0, queue_size=4)
    with MeanRunner(delay_s=0.02) as runner:
        r = run_stream(runner, images, cfg, warmup_s=0)
    assert r["integrity_ok"] and not r["sustained"]
    assert r["frames_in"] == 2000 and r["dropped"] > 1000
    assert r["frames_out"] + r["dropped"] == 2000 and r["lost"] == r["duplicated"] == 0
    assert "dropped" in r["warnings"][0]


def test_a_batch_never_exceeds_max_batch(images):
    with MeanRunner() as runner:
        r = run_stream(runner, images, StreamConfig(rate=2000, frames=60, max_batch=1, max_wait_ms=50), warmup_s=0)
    assert r["batches"] + r["dropped"] == 60 and r["batch_size_max_seen"] == 1 and r["integrity_ok"]
    assert len(r["rss_mb_trace"]) >= 1


def test_a_failing_runner_stops_the_stream_with_its_error(images):
    with MeanRunner(fail_after=6) as runner, pytest.raises(RuntimeError, match="device lost"):
        run_stream(runner, images, StreamConfig(rate=500, frames=400, max_batch=2), warmup_s=0)


def test_wrong_image_size_is_a_user_error(images):
    with MeanRunner() as runner, pytest.raises(BadInput, match="16x16"):
        run_stream(runner, harness.bench_images(4, 32), StreamConfig(rate=100, frames=4), warmup_s=0)


@pytest.mark.parametrize("kw", [dict(rate=0), dict(rate=-5), dict(frames=0), dict(max_batch=0),
                                dict(max_wait_ms=-1), dict(queue_size=0)])
def test_config_rejects_bad_values(kw):
    args = dict(rate=10, frames=10) | kw
    with pytest.raises(EdgesegError):
        StreamConfig(**args)
