"""The benchmark harness, its statistics and its report, on real computations (no timing asserted).

A numpy box filter stands in for a network where a Runner is needed (a real computation, cheap), and a
tiny ONNX graph (average pool → sigmoid) run by ONNX Runtime covers the overhead check.
"""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from edgeseg.bench import harness, report, stats
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import Runner
from edgeseg.types import Backend
from tiny_models import tiny_onnx

FAST = harness.Timing(warmup_s=0.0, duration_s=0.05, repeats=2)


class BoxRunner(Runner):
    """5×5 box mean then a sigmoid around the seed's background level: a real, tiny defect detector."""

    backend = Backend.classical

    def __init__(self, image_shape=None):
        super().__init__(None)
        self._shape = image_shape
        self.calls = []

    def _activate(self):
        self.image_shape = self._shape

    def _infer(self, batch):
        self.calls.append(batch.shape[0])
        x = np.pad(batch[..., 0], ((0, 0), (2, 2), (2, 2)), mode="edge")
        c = np.pad(x.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
        h, w = batch.shape[1:3]
        s = c[:, 5:5 + h, 5:5 + w] - c[:, :h, 5:5 + w] - c[:, 5:5 + h, :w] + c[:, :h, :w]
        return 1.0 / (1.0 + np.exp(-(s / 25.0 - 112.0) / 2.0))


class PipelinedBox(BoxRunner):
    """A box runner with the TensorRT runner's submit/collect/drain_split interface (work done at collect)."""

    def __init__(self, streams=2):
        super().__init__()
        self.streams = self.in_flight = streams
        self.inflight = collections.deque()
        self.max_inflight = 0
        self.split = []

    def submit(self, images):
        batch = self.prepare(images)
        self.inflight.append(batch)
        self.max_inflight = max(self.max_inflight, len(self.inflight))
        return batch

    def collect(self, token):
        assert self.inflight.popleft() is token, "collected out of order"
        self.split.append(0.1)
        return self._infer(token)

    def drain_split(self):
        out, self.split = {"compute": self.split}, []
        return out


# -- stats ---------------------------------------------------------------------------------------------------
def test_percentiles_of_known_durations():
    p = stats.percentiles_ms(np.arange(1, 101) / 1000.0)  # 1..100 ms
    assert p["p50"] == pytest.approx(50.5)
    assert p["p90"] == pytest.approx(90.1)
    assert p["p99"] == pytest.approx(99.01)
    assert np.isnan(stats.percentiles_ms([])["p50"])


@pytest.mark.parametrize("sizes, ips, expected", [
    ([1, 2, 4, 8, 16], [100, 180, 200, 204, 205], 4),     # 4 → 8 adds 2 %: stops after 4
    ([1, 2, 4], [100, 200, 400], 4),                         # always grows: the largest
    ([8, 1, 4, 2], [205, 100, 200, 180], 4),                 # order of input does not matter
    ([1, 2], [100, 90], 1),                                  # batching hurts: stops at once
    ([1], [100], 1),
])
def test_saturation_batch(sizes, ips, expected):
    assert stats.saturation_batch(sizes, ips) == expected


def test_saturation_of_no_data_and_rss():
    assert stats.saturation_batch([], []) is None
    assert stats.rss_mb() > 1.0


# -- inputs and timing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(warmup_s=-1), dict(duration_s=0), dict(duration_s=-2), dict(repeats=0)])
def test_timing_rejects_bad_values(kw):
    with pytest.raises(EdgesegError):
        harness.Timing(**kw)


def test_bench_images_are_the_seeds_distribution():
    a = harness.bench_images(8, 64, seed=3)
    assert a.shape == (8, 64, 64) and a.dtype == np.uint8
    assert 100 <= a.min() and a.max() <= 124 + 4      # background 100..124 plus defects of +3
    assert 6.5 < a.std() < 8.5                        # the seed's noise, not zeros or random floats
    assert np.array_equal(a, harness.bench_images(8, 64, seed=3))
    assert not np.array_equal(a, harness.bench_images(8, 64, seed=4))


def test_make_batches_cycle_the_pool_and_repeat_a_small_one():
    imgs = harness.bench_images(5, 16)
    batches = harness.make_batches(imgs, 2)
    assert len(batches) == 3 and all(b.shape == (2, 16, 16, 1) and b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(batches[2][0, ..., 0], imgs[4])
    np.testing.assert_array_equal(batches[2][1, ..., 0], imgs[0])
    big = harness.make_batches(imgs, 12)
    assert len(big) == 1 and big[0].shape[0] == 12
    np.testing.assert_array_equal(big[0][5, ..., 0], imgs[0])


def test_measure_reports_a_consistent_row():
    imgs = harness.bench_images(8, 32)
    with BoxRunner() as runner:
        one = harness.measure(runner, imgs, 1, FAST)
        four = harness.measure(runner, imgs, 4, FAST)
    assert one["mode"] == "single" and four["mode"] == "batched"
    for row, b in ((one, 1), (four, 4)):
        assert row["batch_size"] == b and row["calls"] >= 2 and row["repeats"] == 2
        assert len(row["images_per_s_repeats"]) == 2 and row["images_per_s"] > 0
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p90"] <= row["latency_ms_p99"]
        assert row["latency_per_image_ms_p50"] == pytest.approx(row["latency_ms_p50"] / b)
        assert row["images_per_s_p50"] == pytest.approx(b / row["latency_ms_p50"] * 1e3)
    assert set(runner.calls) == {1, 4}


def test_measure_checks_image_size_against_the_model():
    with BoxRunner(image_shape=(64, 64)) as runner, pytest.raises(EdgesegError, match="64x64"):
        harness.measure(runner, harness.bench_images(4, 32), 2, FAST)


def test_pipelined_runner_is_kept_streams_deep_and_reports_its_split():
    imgs = harness.bench_images(8, 32)
    with PipelinedBox(streams=3) as runner:
        row = harness.measure(runner, imgs, 2, FAST)
        assert runner.max_inflight == 3 and not runner.inflight  # every submitted batch collected
    assert row["compute_ms_p50"] == pytest.approx(0.1)


def test_sweep_checks_every_batch_size_before_timing():
    calls = []

    class Profiled(BoxRunner):
        def check_batch_size(self, b):
            if b > 4:
                raise EdgesegError(f"batch size {b} is outside the engine's optimization profile (1..4)")

    def loader(model, backend=None, **opts):
        calls.append(model)
        return Profiled()

    with pytest.raises(EdgesegError, match="outside"):
        harness.sweep(["a"], [1, 2, 8], FAST, loader=loader)
    rows = harness.sweep(["a", "b"], [2, 1], FAST, loader=loader, images=harness.bench_images(4, 16))
    assert [(r["model"], r["batch_size"]) for r in rows] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert all(r["image_size"] == [16, 16] and r["backend"] == "classical" for r in rows)


def test_interleaved_sweep_goes_round_the_models_each_repeat():
    order = []

    class Logged(BoxRunner):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def _infer(self, batch):
            if not order or order[-1] != (self.name, batch.shape[0]):
                order.append((self.name, batch.shape[0]))
            return super()._infer(batch)

    timing = harness.Timing(warmup_s=0.0, duration_s=0.02, repeats=3)
    rows = harness.sweep(["a", "b"], [2, 1], timing, loader=lambda m, b=None, **o: Logged(m),
                         images=harness.bench_images(4, 16), interleave=True)
    assert [(r["model"], r["batch_size"]) for r in rows] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert order == [("a", 1), ("a", 2), ("b", 1), ("b", 2)] * 3  # one repeat of every point per round
    for r in rows:
        assert r["interleaved"] and r["repeats"] == 3 and len(r["images_per_s_repeats"]) == 3
        assert r["calls"] >= 3 and r["image_size"] == [16, 16] and r["images_per_s"] > 0


def test_interleaved_sweep_checks_every_batch_size_before_timing():
    class Small(BoxRunner):
        def check_batch_size(self, b):
            if b > 2:
                raise EdgesegError(f"batch size {b} is outside the engine's optimization profile (1..2)")

        def _infer(self, batch):
            raise AssertionError("timed before every point was checked")

    with pytest.raises(EdgesegError, match="outside"):
        harness.sweep(["a", "b"], [1, 4], FAST, loader=lambda m, b=None, **o: Small(), interleave=True)


# -- report --------------------------------------------------------------------------------------------------
def _rows():
    base = {"backend": "onnxruntime", "latency_ms_p50": 1.0, "latency_ms_p90": 2.0, "latency_ms_p99": 3.0}
    return [{**base, "model": "runs/demo/model.onnx", "precision": "fp32", "mode": "single" if b == 1 else "batched",
             "batch_size": b, "images_per_s": ips} for b, ips in ((1, 100.0), (2, 150.0), (4, 152.0))]


def test_accuracy_is_read_from_a_compare_json(tmp_path):
    # The shape `edgeseg compare --json` writes: one row per (model, dataset); recall is None on a set
    # without defects, and the deltas against the reference must not stand in for the metrics.
    def row(model, data, dice, recall, fp):
        return {"model": model, "data": data, "dice": dice, "defect_recall": recall, "fp_blobs_per_image": fp,
                "delta_dice": -0.5, "delta_recall": -0.5, "mask_iou_vs_ref": 1.0,
                "metrics": {"dice": 99.0, "defect_recall": 99.0}}

    doc = {"reference": "runs/demo/model.onnx", "models": ["runs/demo/model.onnx", "runs/demo/model.int8.onnx"],
           "rows": [row("runs/demo/model.onnx", "seed", 0.80, 0.9, 0.1),
                    row("runs/demo/model.onnx", "good", 0.70, None, 0.3),
                    row("runs/demo/model.int8.onnx", "seed", 0.75, 0.85, 0.2)]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    entries = report.load_accuracy(tmp_path / "c.json")
    acc = report.accuracy_for(entries, "runs/demo/model.onnx")
    assert acc == pytest.approx({"accuracy_dice": 0.75, "accuracy_recall": 0.9, "accuracy_fp_blobs_per_image": 0.2})
    assert report.accuracy_for(entries, "elsewhere/model.int8.onnx") == pytest.approx(
        {"accuracy_dice": 0.75, "accuracy_recall": 0.85, "accuracy_fp_blobs_per_image": 0.2})
    assert report.accuracy_for(entries, "other.onnx") == {}
    (tmp_path / "bad.json").write_text('{"x": 1}')
    with pytest.raises(EdgesegError, match="no per-model results"):
        report.load_accuracy(tmp_path / "bad.json")
    with pytest.raises(EdgesegError, match="not found"):
        report.load_accuracy(tmp_path / "missing.json")


def test_record_table_plot_and_saturation(tmp_path):
    rows = _rows()
    sat = report.saturation(rows)
    assert sat[0]["saturation_batch"] == 2 and sat[0]["best_batch"] == 4
    assert "stops growing after batch 2" in report.saturation_lines(rows)[0]
    doc = report.record(rows, {"x": 1})
    assert doc["rows"] == rows and doc["command"] and "packages" in doc["environment"]
    report.write_record(tmp_path / "b.json", doc)
    assert json.loads((tmp_path / "b.json").read_text())["saturation"][0]["saturation_batch"] == 2
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(report.table(rows))
    assert "model.onnx" in console.export_text()
    out = report.plot(rows, tmp_path / "b.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


# -- overhead vs a bare session.run loop --------------------------------------------------------------------
def test_overhead_compares_with_a_bare_session_loop(tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    rows = harness.overhead(model, (1, 4), harness.Timing(0.0, 0.05, 2), images=harness.bench_images(8, 32))
    assert [r["batch_size"] for r in rows] == [1, 4]
    for r in rows:
        assert r["bare_images_per_s"] > 0 and r["harness_images_per_s"] > 0
        assert r["overhead_pct"] == pytest.approx(
            100 * (r["bare_images_per_s"] - r["harness_images_per_s"]) / r["bare_images_per_s"])
        assert r["bare_cpu_ms_per_image"] > 0 and r["harness_cpu_ms_per_image"] > 0
        assert len(r["bare_repeats"]) == len(r["harness_repeats"]) == 2
