"""`edgeseg bench` through the CLI: outputs on a tiny real ONNX model, and one clear line for bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.bench.stats import saturation_batch
from edgeseg.cli.app import app
from edgeseg.deps import available

FAST = ["--warmup-s", "0", "--duration-s", "0.1", "--repeats", "1"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tiny_models import tiny_onnx

    return tiny_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")


def invoke(*args):
    return CliRunner().invoke(app, ["bench", *map(str, args)])


def one_error_line(result, *words):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_sweep_writes_json_and_plot(model, tmp_path):
    compare = tmp_path / "compare.json"
    compare.write_text(json.dumps({"models": [{"model": str(model), "dice": 0.5, "recall": 0.75}]}))
    r = invoke("--model", model, "--batch-sizes", "1,2", *FAST, "--accuracy", compare,
               "--json", tmp_path / "b.json", "--plot", tmp_path / "b.png")
    assert r.exit_code == 0, r.output
    assert "tiny.onnx" in r.output and ("throughput" in r.output or "still grows" in r.output)
    doc = json.loads((tmp_path / "b.json").read_text())
    assert [row["batch_size"] for row in doc["rows"]] == [1, 2]
    for row in doc["rows"]:
        for key in ("model", "backend", "precision", "mode", "batch_size", "images_per_s",
                    "latency_ms_p50", "latency_ms_p90", "latency_ms_p99"):
            assert key in row
        assert row["backend"] == "onnxruntime" and row["precision"] == "fp32"
        assert row["accuracy_dice"] == 0.5 and row["accuracy_recall"] == 0.75
    assert doc["rows"][0]["mode"] == "single" and doc["rows"][1]["mode"] == "batched"
    assert doc["rows"][0]["runner_config"]["intra_op_num_threads"] >= 1  # how ONNX Runtime ran, beside its speed
    assert doc["command"] and doc["environment"]["packages"]["onnxruntime"]
    # The summary is computed from the rows it sits beside, not a value picked among those measured.
    rates = [row["images_per_s"] for row in doc["rows"]]
    assert doc["saturation"][0]["saturation_batch"] == saturation_batch([1, 2], rates)
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_stream_rows_count_frames(model, tmp_path):
    r = invoke("--model", model, "--rate", "100", "--frames", "30", "--batch-sizes", "4", "--warmup-s", "0",
               "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert row["mode"] == "stream" and row["batch_size"] == 4
    assert row["frames_in"] == 30 and row["frames_out"] + row["dropped"] == 30 and row["integrity_ok"]


def test_workers_option_reaches_the_onnxruntime_runner(model, tmp_path):
    r = invoke("--model", model, "--batch-sizes", "4", *FAST, "--workers", "2", "--json", tmp_path / "w.json")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc["config"]["workers"] == 2 and doc["rows"][0]["runner_config"]["workers"] == 2


def test_images_from_a_folder(model, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(100, 125, (32, 32), dtype=np.uint8))
    r = invoke("--model", model, "--data", tmp_path, "--batch-sizes", "2", *FAST, "--json", tmp_path / "d.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "d.json").read_text())["rows"][0]["image_size"] == [32, 32]


def test_interleave_times_models_round_by_round(model, tmp_path):
    r = invoke("--model", model, "--model", model, "--batch-sizes", "1,2", "--warmup-s", "0", "--duration-s", "0.05",
               "--repeats", "2", "--interleave", "--json", tmp_path / "i.json")
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "i.json").read_text())
    assert record["config"]["interleave"] is True
    assert len(record["rows"]) == 4 and all(row["interleaved"] and row["repeats"] == 2 for row in record["rows"])
    one_error_line(invoke("--model", model, "--interleave", "--rate", "10"), "--interleave", "--rate")
    one_error_line(invoke("--model", model, "--interleave", "--baseline"), "--interleave", "--baseline")


def test_baseline_mode(model, tmp_path):
    r = invoke("--model", model, "--baseline", "--batch-sizes", "1", *FAST, "--json", tmp_path / "o.json")
    assert r.exit_code == 0, r.output
    assert "overhead" in r.output
    assert "overhead_pct" in json.loads((tmp_path / "o.json").read_text())["rows"][0]


@pytest.mark.parametrize("args, words", [
    (["--rate", "0"], ["--rate", "in (0, 1e+06]"]),
    (["--rate", "-5"], ["--rate"]),
    (["--duration-s", "0"], ["duration"]),
    (["--duration-s", "-1"], ["duration"]),
    (["--repeats", "0"], ["repeats"]),
    (["--batch-sizes", "0,2"], ["--batch-sizes"]),
    (["--frames", "0", "--rate", "10"], ["--frames"]),
    (["--workers", "0"], ["--workers", "from 1 to"]),
])
def test_bad_numbers_are_one_line(model, args, words):
    one_error_line(invoke("--model", model, *args), *words)


def test_missing_model_is_one_line(tmp_path):
    one_error_line(invoke("--model", tmp_path / "nope.onnx"), "not found", "nope.onnx")


def test_model_that_does_not_match_the_backend(model, tmp_path):
    one_error_line(invoke("--model", model, "--backend", "keras"), "tiny.onnx", "keras")
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    one_error_line(invoke("--model", junk, "--batch-sizes", "1", *FAST), "junk.onnx")


def test_images_of_another_size_than_the_model_run_in_its_tiles(model, tmp_path):
    (tmp_path / "d").mkdir()
    cv2.imwrite(str(tmp_path / "d" / "0.png"), np.full((48, 80), 112 * 257, np.uint16))
    r = invoke("--model", model, "--data", tmp_path / "d", "--batch-sizes", "1", *FAST, "--json", tmp_path / "b.json")
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["image_size"] == [48, 80] and row["runner_config"]["tiling"]["tile"] == [32, 32]
    one_error_line(invoke("--model", model, "--data", tmp_path / "d", "--tile", "64", *FAST), "32x32")


@pytest.mark.skipif(available("tensorrt"), reason="TensorRT is installed: the engine would really load")
def test_engine_without_tensorrt_says_how_to_install(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    one_error_line(invoke("--model", engine, "--batch-sizes", "1", *FAST), "tensorrt", "pip install")
