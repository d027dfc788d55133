"""``edgeseg equal-fa`` and :mod:`edgeseg.equal_fa`, on real sets with a real ONNX model and the classical
detector: every number is checked against the same masks scored whole by :func:`edgeseg.metrics.score`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import tiny_onnx
from typer.testing import CliRunner

from edgeseg.artifacts import write_manifest
from edgeseg.cli.app import app
from edgeseg.data.dataset import load_dataset, write_dataset
from edgeseg.data.synth import PRESETS
from edgeseg.equal_fa import CLASSICAL_LEVELS, NET_THRESHOLDS, EvalSet, best, measure
from edgeseg.evaluate import predict_probs
from edgeseg.metrics import GroundTruth, score
from edgeseg.postprocess import MaskRule
from edgeseg.runners import load_runner

cli = CliRunner()
SIZE = 48
EASY = PRESETS["test"].replace(image_size=SIZE, defect_size=(8, 16), contrast=(3, 5))
RULE = {"grow": None, "min_area": 16}


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("equal_fa")
    model = tiny_onnx(root / "mean.onnx", size=SIZE)  # 5×5 mean, then a logistic: noise passes low thresholds
    write_manifest(model, "onnx", {"model": "mean"}, threshold=0.88, mask_rule=RULE)
    return {"defects": write_dataset(root / "defects", EASY, count=12, seed=21),
            "good": write_dataset(root / "good", EASY.replace(good_fraction=1.0), count=12, seed=22),
            "model": model}


@pytest.fixture(scope="module")
def report(sets) -> dict:
    return measure([str(sets["model"]), "classical"], [EvalSet("defects", sets["defects"], sets["good"])],
                   budgets=(0.0, 0.25, 100.0))


def _whole(model: str, path: Path, threshold: float, rule: MaskRule, **options) -> dict:
    """``score`` of the set held whole: what each row must equal."""
    ds = load_dataset(path)
    with load_runner(model, **options) as runner:
        probs = predict_probs(runner, ds.images)
    return score(rule.apply(probs, threshold), GroundTruth.from_masks(ds.masks), threshold)


def test_every_setting_is_scored_as_the_whole_set_with_its_twin(sets, report):
    rows = report["curves"][str(sets["model"])]["defects"]
    assert [r["setting"] for r in rows] == list(NET_THRESHOLDS)
    rule = MaskRule.from_dict(RULE)
    for r in rows[::4]:
        d = _whole(str(sets["model"]), sets["defects"], r["setting"], rule)
        g = _whole(str(sets["model"]), sets["good"], r["setting"], rule)
        assert (r["recall"], r["dice"]) == (d["defect_recall"], d["dice"])
        assert r["fp_blobs"] == d["fp_blobs"] + g["fp_blobs"] and r["images"] == 24
        assert r["fa"] == pytest.approx((d["fp_blobs"] + g["fp_blobs"]) / 24)
        assert r["overkill"] == g["overkill_rate"]
    fa = [r["fa"] for r in rows]
    assert fa[0] > 0.25 and fa[-1] == 0  # the sweep spans the budgets: noise passes 0.02, nothing passes 0.999
    classical = report["curves"]["classical"]["defects"]
    assert [r["setting"] for r in classical] == list(CLASSICAL_LEVELS)
    d = _whole("classical", sets["defects"], 0.5, MaskRule(), t_high=5.0)
    assert classical[CLASSICAL_LEVELS.index(5.0)]["recall"] == d["defect_recall"]
    assert len({r["recall"] for r in classical}) > 2  # each level is its own detector


def test_each_budget_takes_the_best_recall_within_it_and_counts_the_difference(sets, report):
    model = str(sets["model"])
    rows = report["curves"][model]["defects"]
    defects = rows[0]["defects"]
    for cell in (c for c in report["best"] if c["model"] == model):
        within = [r for r in rows if r["fa"] <= cell["budget"]]
        assert cell["recall"] == max(r["recall"] for r in within) and cell["fa"] <= cell["budget"]
        ref = best(report["curves"]["classical"]["defects"], cell["budget"])
        # Paired counts are the recall difference, defect by defect.
        assert cell["only_model"] - cell["only_classical"] == round((cell["recall"] - ref["recall"]) * defects)
    assert any(c.get("only_model") for c in report["best"]) and any(c.get("only_classical") for c in report["best"])
    loose = next(c for c in report["best"] if c["model"] == model and c["budget"] == 100.0)
    assert loose["recall"] == max(r["recall"] for r in rows)
    assert best(rows, -1.0) is None


def test_each_network_is_scored_at_its_own_point_beside_classical(sets, report):
    (own,) = report["own_point"]
    assert own["model"] == str(sets["model"]) and own["setting"] == 0.88
    d = _whole(str(sets["model"]), sets["defects"], 0.88, MaskRule.from_dict(RULE))
    assert own["recall"] == d["defect_recall"] and own["dice"] == d["dice"]
    assert own["classical"]["fa"] <= own["fa"] + 1e-12
    assert 0.88 not in [r["setting"] for r in report["curves"][own["model"]]["defects"]]  # beside the curve


def test_a_set_without_a_twin_counts_its_own_images(sets):
    r = measure([str(sets["model"])], [EvalSet("defects", sets["defects"])], budgets=(0.5,), raw=True)
    rows = r["curves"][str(sets["model"])]["defects"]
    d = _whole(str(sets["model"]), sets["defects"], 0.5, MaskRule())
    row = next(x for x in rows if x["setting"] == 0.5)
    assert row["images"] == 12 and row["fp_blobs"] == d["fp_blobs"] and row["recall"] == d["defect_recall"]
    assert r["own_point"] == [] and r["raw"] is True
    assert "only_model" not in r["best"][0]  # no classical among the models: nothing to pair with


def test_cli_writes_tables_and_a_json_report(sets, tmp_path):
    out = tmp_path / "efa.json"
    r = cli.invoke(app, ["equal-fa", "--model", str(sets["model"]), "--model", "classical", "--data",
                         f"{sets['defects']},{sets['good']}", "--budget", "0.25,100", "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "defects + good" in r.stdout and "mean.onnx" in r.stdout and "own point" in r.stdout
    report = json.loads(out.read_text())
    assert {"best", "own_point", "curves", "command", "environment"} <= set(report)
    assert report["budgets"] == [0.25, 100.0] and len(report["best"]) == 4


@pytest.mark.parametrize("args, message", [
    (["--data", "a,b,c"], "a set and its defect-free twin"),
    (["--budget", "x"], "--budget"),
    (["--budget", "-1"], "--budget"),
])
def test_cli_refuses_bad_options_in_one_line(sets, args, message):
    base = ["equal-fa", "--model", "classical", "--data", str(sets["defects"])]
    r = cli.invoke(app, base + args)
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_cli_refuses_a_network_without_its_point_and_a_twin_with_defects(sets, tmp_path):
    bare = tiny_onnx(tmp_path / "bare.onnx", size=SIZE)
    r = cli.invoke(app, ["equal-fa", "--model", str(bare), "--data", str(sets["defects"])])
    assert r.exit_code == 1 and "operating-point" in r.output
    r = cli.invoke(app, ["equal-fa", "--model", "classical", "--data", f"{sets['defects']},{sets['defects']}"])
    assert r.exit_code == 1 and "has labelled defects" in r.output
