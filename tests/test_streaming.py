"""Bounded memory: eval, compare, detectability and operating-point read a set a chunk at a time, and score it
exactly as they would the whole set at once.

Exactness is checked against the metrics of the whole set in memory, for chunk sizes that divide the set, do
not, and exceed it. Memory is checked two ways: no read of the set asks for more than one chunk of images, and
the peak of traced allocations (numpy's arrays included) does not grow with the number of images.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from tiny_models import tiny_onnx

from edgeseg.artifacts import write_manifest
from edgeseg.compare import StreamingMean, compare, mask_iou
from edgeseg.data.dataset import ImageStack, load_dataset, write_dataset
from edgeseg.data.synth import PRESETS
from edgeseg.evaluate import evaluate, predict_probs
from edgeseg.metrics import GroundTruth, compute, f1_best_threshold, score
from edgeseg.postprocess import MaskRule
from edgeseg.runners import load_runner

SIZE = 96
#: Defects the tiny model finds, some faint enough to be missed, and a quarter of the images without any.
SET = PRESETS["test"].replace(image_size=SIZE, defect_size=(6, 30), contrast=(2, 8), good_fraction=0.25)
N = 150
RULE = MaskRule(grow=0.7, min_area=12)
THRESHOLD = 0.9  # the tiny model's own, in its manifest


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("streaming")
    model = tiny_onnx(root / "tiny.onnx", size=SIZE)
    write_manifest(model, "onnx", {"model": "tiny"}, threshold=THRESHOLD, mask_rule=RULE.to_dict())
    return {"data": write_dataset(root / "data", SET, count=N, seed=5),
            "third": write_dataset(root / "third", SET, count=N // 3, seed=5),  # the first third of "data"
            "good": write_dataset(root / "good", SET.replace(good_fraction=1.0), count=40, seed=6),
            "model": model}


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """The number of images each read of an :class:`ImageStack` asks for (slices and index lists)."""
    sizes: list[int] = []
    original = ImageStack._stack

    def spy(self, indices):
        sizes.append(len(indices))
        return original(self, indices)

    monkeypatch.setattr(ImageStack, "_stack", spy)
    return sizes


def traced_peak(fn) -> tuple[object, int]:
    """``fn()`` and the peak of the allocations traced while it ran, in bytes (numpy's arrays included)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def whole_set_metrics(model: Path, data: Path, thresholds: dict[str, float], rule: MaskRule):
    """The metrics of the set held whole, as eval computed them before it streamed."""
    ds = load_dataset(data)
    images, masks = np.asarray(ds.images), np.asarray(ds.masks)
    with load_runner(model) as runner:
        probs = predict_probs(runner, images)
    truth = GroundTruth.from_masks(masks, ds.defects)
    return probs, masks, {label: compute(probs, truth, t, rule=rule) for label, t in thresholds.items()}


# -- exactness --------------------------------------------------------------------------------------------
def test_eval_in_chunks_of_any_size_equals_the_whole_set(sets):
    thresholds = {"0.8": 0.8, "best": THRESHOLD}
    probs, masks, expected = whole_set_metrics(sets["model"], sets["data"], thresholds, RULE)
    m = expected["best"]
    # The set exercises every count: found and missed defects, false blobs, escapes, good images.
    assert 0 < m["defects_found"] < m["n_defects"] and m["n_good_images"] > 0 and m["fp_blobs"] > 0
    assert m["escapes"] > 0 and len(m["recall_by_contrast"]) > 1
    ds = load_dataset(sets["data"])
    with load_runner(sets["model"]) as runner:
        for chunk in (1, 7, 64, 150, 1000):
            report = evaluate(runner, ds, thresholds, rule=RULE, chunk_size=chunk)
            assert report["thresholds"] == expected, chunk
            assert report["oracle_threshold"] == f1_best_threshold(probs, masks)


def test_compare_in_chunks_equals_the_whole_set(sets):
    """Rows, |Δprob| mean included (a float32 mean, summed as numpy sums the whole array), to the last bit."""
    models = [sets["model"], "classical"]
    ds = load_dataset(sets["data"])
    masks = np.asarray(ds.masks)
    truth = GroundTruth.from_masks(masks, ds.defects)
    probs, preds = [], []
    for model, t, rule in ((sets["model"], THRESHOLD, RULE), ("classical", 0.5, MaskRule())):
        with load_runner(model) as runner:
            probs.append(predict_probs(runner, np.asarray(ds.images)))
        preds.append(rule.apply(probs[-1], t))
    diff = np.abs(probs[1] - probs[0])
    for chunk in (5, 64, 1000):
        rows = compare(models, [sets["data"]], chunk_size=chunk)["rows"]
        assert [r["metrics"] for r in rows] == [score(preds[0], truth, THRESHOLD), score(preds[1], truth, 0.5)]
        assert [r["f1_best_threshold"] for r in rows] == [f1_best_threshold(p, masks) for p in probs]
        assert rows[1]["mask_iou_vs_ref"] == mask_iou(preds[1], preds[0])
        assert rows[1]["max_abs_dprob"] == float(diff.max())
        assert rows[1]["mean_abs_dprob"] == float(diff.mean())


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 5, 7), (40, 32, 32), (9, 96, 96)])
def test_streaming_mean_is_numpys_mean_of_the_whole(shape):
    values = (np.random.default_rng(sum(shape)).random(shape, dtype=np.float32) ** 4) * 1e-3
    for chunk in (1, 2, 7, 1000):
        mean = StreamingMean(values.size)
        for s in range(0, len(values), chunk):
            mean.add(values[s : s + chunk])
        assert mean.value() == float(values.mean())
    with pytest.raises(ValueError, match="announced"):
        StreamingMean(values.size - 1).add(values)


def test_a_set_scored_in_parts_counts_what_the_whole_counts(sets):
    """metrics.Counts over uneven parts, directly: the report of score() on the whole stack."""
    from edgeseg.metrics import Counts

    ds = load_dataset(sets["data"])
    masks = np.asarray(ds.masks)
    rng = np.random.default_rng(0)
    pred = np.random.default_rng(1).random(masks.shape) > 0.97  # specks and a few blobs everywhere
    pred |= masks.astype(bool) & (rng.random(masks.shape) > 0.4)
    whole = score(pred, GroundTruth.from_masks(masks, ds.defects), 0.5)
    counts = Counts()
    for a, b in ((0, 1), (1, 40), (40, 41), (41, N)):
        counts.add(pred[a:b], GroundTruth.from_masks(masks[a:b], ds.defects[a:b]))
    assert counts.report(0.5) == whole


# -- bounded memory, per command ----------------------------------------------------------------------------
THIRD = N // 3


def peak_growth(run) -> tuple[object, float]:
    """``run("data")`` and how much the traced peak of ``run(set_name)`` grows from the first third of the set
    ("third") to all of it ("data"): about 1 for a command that holds one chunk at a time, about 3 for one that
    holds the set. A first untraced run leaves out what is allocated once (imports, caches, filter banks)."""
    run("third")
    result, whole = traced_peak(lambda: run("data"))
    return result, whole / traced_peak(lambda: run("third"))[1]


def test_eval_holds_one_chunk(sets, reads):
    with load_runner(sets["model"]) as runner:
        def run(name):
            return evaluate(runner, load_dataset(sets[name]), {"best": THRESHOLD}, rule=RULE, chunk_size=16)

        report, growth = peak_growth(run)
    assert report["n_images"] == N and growth < 1.2
    assert max(reads) <= 16 and sum(reads) == 2 * (N + 2 * THIRD)  # each run reads images and labels once, 16 at a time


def test_eval_cli_streams_its_sets(sets, reads, tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli.app import app
    from edgeseg.data.dataset import CHUNK

    out = tmp_path / "eval.json"
    r = CliRunner().invoke(app, ["eval", "--model", str(sets["model"]), "--data", str(sets["data"]),
                                 "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert max(reads) <= CHUNK and sum(reads) == 2 * N
    assert json.loads(out.read_text())["results"][0]["n_images"] == N


def test_compare_holds_one_chunk(sets, reads):
    def run(name):
        return compare([sets["model"], "classical"], [sets[name]], chunk_size=16)

    report, growth = peak_growth(run)
    assert [r["n_images"] for r in report["rows"]] == [N, N] and growth < 1.2
    assert max(reads) <= 16 and sum(reads) == 2 * (N + 2 * THIRD)  # each run reads the set once for both models


def test_detectability_holds_one_chunk(sets, reads):
    from edgeseg.data.dataset import load_good
    from edgeseg.detectability import assess

    def run(name):
        return assess(load_dataset(sets[name]), load_good(sets["good"]), chunk_size=16)

    report, growth = peak_growth(run)
    assert report["defects"]["n_images"] == N and len(report["scan_max"]) == 40 and growth < 1.2
    assert max(reads) <= 16 and sum(reads) == 2 * (N + 2 * THIRD)  # the good set is read one image at a time


def test_operating_point_holds_one_chunk(sets, reads):
    from edgeseg.data.dataset import load_good
    from edgeseg.operating import fit_on

    with load_runner(sets["model"]) as runner:
        def run(name):
            defects = load_dataset(sets[name])
            return fit_on(lambda x: predict_probs(runner, x), defects.images, defects.masks,
                          load_good(sets["good"]).images, budget=0.05, chunk=16)

        point, growth = peak_growth(run)
    assert point["chosen"]["threshold"] > 0 and growth < 1.2
    assert max(reads) <= 16 and sum(reads) == 2 * (N + 2 * THIRD) + 3 * 40


def test_predictions_are_written_chunk_by_chunk(sets, reads, tmp_path):
    import cv2

    from edgeseg.predictions import write_predictions

    with load_runner(sets["model"]) as runner:
        def run(name):
            ds = load_dataset(sets[name])
            out = tmp_path / name
            out.mkdir(exist_ok=True)
            write_predictions(runner, ds.images, list(ds.names), out, THRESHOLD, RULE, truths=ds.masks,
                              triptych=True, chunk_size=16)
            return ds

        ds, growth = peak_growth(run)
        assert growth < 1.2
        assert max(reads) <= 16 and sum(reads) == 2 * (N + 2 * THIRD)
        expected = RULE.apply(predict_probs(runner, np.asarray(ds.images)), THRESHOLD)
    for i in (0, 17, N - 1):
        mask = cv2.imread(str(tmp_path / "data" / ds.names[i]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask, expected[i] * np.uint8(255))
        assert cv2.imread(str(tmp_path / "data" / "triptych" / ds.names[i])).shape[1] > 4 * SIZE
