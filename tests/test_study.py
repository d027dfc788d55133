"""`edgeseg study`: specs are checked before anything trains, arms are the grid's product, the summary's
statistics are right, and the shipped quick spec runs end to end, resumes and skips what is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError

ROOT = Path(__file__).resolve().parents[1]
SET = '[[sets]]\nname = "s"\npreset = "seed"\ncount = 4\nseed = 9\n'


def spec_file(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[train]\nepochz = 3\n" + SET, r"\[train\] has unknown training setting\(s\) epochz"),
    ("[grid]\nloss = []\n" + SET, r"\[grid\] loss must be a non-empty list"),
    ("[grid]\nloss = \"bce\"\n" + SET, r"\[grid\] loss must be a non-empty list"),
    ("[grid]\nloss = [\"bce\", \"nope\"]\n" + SET, "nope"),
    ("[train]\nepochs = 2\n", "give at least one"),
    (SET + "[deploy]\nprecisions = [\"int4\"]\n", "precisions must be among fp32, fp16, int8"),
    (SET + "[deploy]\nfast = true\n", r"\[deploy\] has unknown key\(s\) fast"),
    (SET.replace("seed = 9", "seed = 9\nnoise = \"pink\""), "pink"),
    (SET.replace("seed = 9", "seed = 9\nwobble = 3"), r"unknown generator setting\(s\) wobble"),
    (SET + SET, "names must be unique"),
    ("[extra]\n" + SET, r"unknown section\(s\) extra"),
    ("name = \n", "not valid TOML"),
    ("[grid]\nloopback_workers = [3]\n" + SET, r"loopback_workers must be a whole number >= 1 that splits --batch-size 8"),
    ("[train]\nloopback_workers = \"two\"\n" + SET, "loopback_workers must be a whole number"),
])
def test_bad_specs_are_refused_in_one_line_before_training(tmp_path, text, message):
    from edgeseg.study import load_spec

    with pytest.raises(EdgesegError, match=message) as e:
        load_spec(spec_file(tmp_path, text))
    assert "\n" not in str(e.value)


def test_arms_are_the_grid_product_and_groups_drop_the_seed(tmp_path):
    from edgeseg.study import arms, load_spec

    spec = load_spec(spec_file(tmp_path, '[grid]\nloss = ["bce", "bce+dice"]\nseed = [0, 1, 2]\n' + SET))
    slugs = [a.slug for a in arms(spec)]
    assert slugs[:2] == ["loss=bce,seed=0", "loss=bce,seed=1"] and len(slugs) == 6 == len(set(slugs))
    assert {a.group for a in arms(spec)} == {"loss=bce", "loss=bce+dice"}


def test_summary_gives_mean_and_spread_over_seeds(tmp_path):
    from edgeseg.study import load_spec, markdown, summarize

    spec = load_spec(spec_file(tmp_path, '[grid]\nseed = [0, 1]\n' + SET))
    results = [{"group": "base", "model": {"flops_per_image": 10}, "training": {"wall_s": 30.0},
                "scores": {"fp32": {"s": {"dice": d, "defect_recall": r, "fp_blobs_per_image": 0.0}}}}
               for d, r in ((0.90, 1.0), (0.80, 0.5))]
    (row,) = summarize(spec, results)["rows"]
    assert row["seeds"] == 2 and row["dice"]["mean"] == pytest.approx(0.85)
    assert row["dice"]["sd"] == pytest.approx(0.0707107, abs=1e-6)
    assert (row["defect_recall"]["min"], row["defect_recall"]["max"]) == (0.5, 1.0)
    text = markdown(summarize(spec, results, {"s": {"dice": 0.7, "defect_recall": None, "fp_blobs_per_image": 0.1}}))
    assert "| base | fp32 | 2 | 0.850 ± 0.071 | 0.750 ± 0.354 | 0.000 ± 0.000 | 30 |" in text
    assert "| classical detector | – | – | 0.700 | – | 0.100 | – |" in text


@pytest.mark.slow
def test_the_quick_spec_runs_resumes_and_skips_what_is_done(tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli.app import app

    out = tmp_path / "quick"
    args = ["study", str(ROOT / "studies/quick.toml"), "--out", str(out), "-q"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads((out / "report.json").read_text())
    assert len(report["arms"]) == 4 and report["precisions"] == ["fp32", "int8"]
    assert {(r["group"], r["precision"], r["set"]) for r in report["rows"]} == {
        (g, p, s) for g in ("loss=bce", "loss=bce+dice") for p in ("fp32", "int8") for s in ("easy", "good")}
    assert all(r["seeds"] == 2 for r in report["rows"])
    assert report["classical"]["easy"]["defect_recall"] > 0.5
    assert (out / "report.png").stat().st_size > 0 and "## easy" in (out / "report.md").read_text()

    # Done arms are skipped; an interrupted one (checkpoint, no model yet) resumes and only it is redone.
    results = sorted(out.glob("arms/*/result.json"))
    stamps = {p: p.stat().st_mtime_ns for p in results}
    redo = out / "arms" / "loss=bce,seed=1"
    for name in ("result.json", "model.keras", "model.keras.json", "model.onnx", "model.onnx.json",
                 "model.int8.onnx", "model.int8.onnx.json"):
        (redo / name).unlink()
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert (redo / "result.json").is_file()
    assert [p for p in results if p.parent != redo and p.stat().st_mtime_ns != stamps[p]] == []
    dry = CliRunner().invoke(app, ["study", str(ROOT / "studies/quick.toml"), "--out", str(out), "--dry-run"])
    assert dry.exit_code == 0 and "4 arm(s), 4 done" in dry.output


def test_shipped_specs_are_valid():
    """In a fresh process, the several-device spec first: it splits the CPU, which a started TensorFlow cannot."""
    code = ("import json, pathlib, sys; from edgeseg.study import arms, load_spec; "
            "files = sorted(pathlib.Path(sys.argv[1]).glob('*.toml'), key=lambda p: p.stem != 'devices'); "
            "specs = {p.stem: load_spec(p) for p in files}; "
            "print(json.dumps({k: [len(arms(s)), list(s.precisions), [x.name for x in s.sets]] for k, s in specs.items()}))")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "studies")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    specs = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"quick", "losses", "networks", "unet", "data", "devices", "workers"} <= set(specs)
    assert specs["losses"][0] == 12 and "int8" in specs["networks"][1] and specs["devices"][0] == 4
    assert specs["networks"][0] == 4 and specs["unet"][0] == 2 and specs["unet"][1:] == specs["networks"][1:]
    assert specs["workers"][0] == 4
    assert specs["quick"][2] == ["easy", "good"]


@pytest.mark.slow
def test_a_loopback_arm_trains_as_two_workers(tmp_path):
    """The quick spec's recipe as two worker processes over loopback: worker 0 writes the arm, which is scored
    like any other; the manifest names the cluster."""
    from edgeseg.study import load_spec, run_study

    quick = (ROOT / "studies/quick.toml").read_text()
    text = quick.replace('loss = ["bce", "bce+dice"]\nseed = [0, 1]', "loopback_workers = [2]")
    text = text.replace('precisions = ["fp32", "int8"]\nclassical = true', 'precisions = ["fp32"]\nclassical = false')
    assert text != quick
    report = run_study(load_spec(spec_file(tmp_path, text)), tmp_path / "out")
    (arm,) = report["arms"]
    assert arm["arm"] == "loopback_workers=2"
    assert arm["training"]["distribution"]["strategy"] == "multiworker"
    assert arm["training"]["distribution"]["workers"] == 2 and arm["training"]["distribution"]["replicas"] == 2
    assert 0 <= arm["scores"]["fp32"]["easy"]["defect_recall"] <= 1
