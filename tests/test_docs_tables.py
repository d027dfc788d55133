"""The docs' result tables: hand-made JSON in, exact markdown out, only between the markers."""

from __future__ import annotations

import json

import pytest

from edgeseg import docs_tables
from edgeseg.docs_tables import render_files, render_text
from edgeseg.errors import EdgesegError


def _metrics(found, n, dice, fp, *, good=0, overkill=None, escape=0.0, threshold=0.75, sizes=None):
    return {"threshold": threshold, "n_images": 10, "n_good_images": good, "dice": dice,
            "defect_recall": found / n if n else None, "defects_found": found, "n_defects": n,
            "fp_blobs_per_image": fp, "escape_rate": escape if n else None, "overkill_rate": overkill,
            "recall_by_size": sizes or {}}


def _result(model, data, own, rule):
    return {"model": model, "data": data, "mask_rule": rule,
            "thresholds": {"0.5": _metrics(0, 1, 0.1, 9.0, threshold=0.5), "best": own}}


@pytest.fixture
def run(tmp_path):
    """A run folder with a small eval and compare JSON, each with the command that wrote it."""
    r = tmp_path / "runs" / "demo"
    r.mkdir(parents=True)
    net = {"grow": 0.6, "min_area": 64}
    (r / "metrics.json").write_text(json.dumps({
        "command": [".venv/bin/edgeseg", "eval", "--model", "runs/demo/model.keras", "--json", "runs/demo/metrics.json"],
        "results": [
            _result("runs/demo/model.keras", "runs/demo/data/seed",
                    _metrics(380, 386, 0.9491, 0.0, sizes={"8-16": {"n": 27, "found": 21, "recall": 0.78}}), net),
            _result("runs/demo/model.keras", "runs/demo/data/good",
                    _metrics(0, 0, 1.0, 0.005, good=200, overkill=0.005), net),
            _result("classical", "runs/demo/data/seed", _metrics(364, 386, 0.9012, 0.0, threshold=0.5),
                    {"grow": None, "min_area": 0}),
        ]}))
    row = {"backend": "onnxruntime", "data": "runs/demo/data/seed", "fp_blobs_per_image": 0.0}
    (r / "compare.json").write_text(json.dumps({
        "command": ["edgeseg", "compare", "--data", "runs/demo/data/seed", "runs/demo/model.onnx",
                    "runs/demo/model.int8.onnx"],
        "rows": [
            {**row, "model": "runs/demo/model.onnx", "precision": "fp32", "dice": 0.94906, "defect_recall": 0.98446,
             "reference": True, "mask_iou_vs_ref": 1.0, "max_abs_dprob": 0.0, "delta_dice": 0.0, "delta_recall": 0.0},
            {**row, "model": "runs/demo/model.int8.onnx", "precision": "int8", "dice": 0.94867, "defect_recall": 0.987047,
             "mask_iou_vs_ref": 0.99202, "max_abs_dprob": 0.3186, "delta_dice": -0.00039, "delta_recall": 0.00259},
            {**row, "model": "runs/demo/model.int8.onnx", "precision": "int8", "data": "runs/demo/data/gauss",
             "dice": 0.9155, "defect_recall": 0.916, "mask_iou_vs_ref": 0.99, "max_abs_dprob": 0.3,
             "delta_dice": -0.00006, "delta_recall": 0.00262},
        ]}))
    return r


EVAL = """<!-- table:eval -->
| model | set | operating point | pixel Dice | defect recall | false blobs / image | escape | overkill |
|---|---|---|---|---|---|---|---|
| `model.keras` | `seed` | 0.75, grown over 0.6, ≥ 64 px | 0.949 | 0.984 (380 of 386) | 0 | 0.0 % | – |
| `model.keras` | `good` | 0.75, grown over 0.6, ≥ 64 px | – | – | 0.005 | – | 0.5 % |
| `classical` | `seed` | 0.5 | 0.901 | 0.943 (364 of 386) | 0 | 0.0 % | – |

<sub>From `{run}/metrics.json`, written by `edgeseg eval --model runs/demo/model.keras --json runs/demo/metrics.json`. Rendered by `make docs`.</sub>
<!-- /table:eval -->"""


def test_eval_table_exact(run):
    out, report = render_text("<!-- table:eval -->\nstale\n<!-- /table:eval -->", run)
    assert out == EVAL.format(run=run.as_posix())
    assert report.rendered == ["table:eval"] and report.missing == []


def test_compare_table_exact(run):
    out, _ = render_text("<!-- table:compare --><!-- /table:compare -->", run)
    assert out == f"""<!-- table:compare -->
| model | precision | set | pixel Dice | ΔDice | defect recall | Δrecall | false blobs / image | mask IoU vs reference | max \\|Δprob\\| |
|---|---|---|---|---|---|---|---|---|---|
| `model.onnx` | FP32 | `seed` | 0.9491 | – | 0.9845 | – | 0 | – | – |
| `model.int8.onnx` | INT8 | `seed` | 0.9487 | −0.0004 | 0.9870 | +0.0026 | 0 | 0.9920 | 3.2e-01 |
| `model.int8.onnx` | INT8 | `gauss` | 0.9155 | −0.0001 | 0.9160 | +0.0026 | 0 | 0.9900 | 3.0e-01 |

<sub>From `{run.as_posix()}/compare.json`, written by `edgeseg compare --data runs/demo/data/seed runs/demo/model.onnx runs/demo/model.int8.onnx`. Rendered by `make docs`.</sub>
<!-- /table:compare -->"""


def test_sizes_table_only_lists_the_bins_present(run):
    out, _ = render_text("<!-- table:sizes --><!-- /table:sizes -->", run)
    assert "| model | set | 8–16 px |\n|---|---|---|\n| `model.keras` | `seed` | 21/27 |\n" in out
    assert "classical" not in out.split("<sub>")[0]  # no size breakdown recorded for it


def test_values_are_phrases_inside_a_line(run):
    text = ("INT8: <!-- value:int8 -->old<!-- /value:int8 -->; seed: "
            "<!-- value:eval.seed --><!-- /value:eval.seed -->.")
    out, _ = render_text(text, run)
    assert out == ("INT8: <!-- value:int8 -->ΔDice −0.0004 / −0.0001, Δrecall +0.0026 / +0.0026<!-- /value:int8 -->; "
                   "seed: <!-- value:eval.seed -->0.949 / 0.984 / 0 (classical 0.901 / 0.943 / 0)<!-- /value:eval.seed -->.")


def test_only_the_text_between_markers_changes(run):
    before = "# Title\n\nKeep *this* <!-- a comment --> and | this | table |\n\n"
    after = "\n\nAnd <!-- table:compare --> mentioned in prose stays.\n"
    text = before + "<!-- table:eval -->\nstale\n<!-- /table:eval -->" + after
    out, _ = render_text(text, run)
    assert out.startswith(before) and out.endswith(after)
    assert out[len(before):len(out) - len(after)] == EVAL.format(run=run.as_posix())


def test_rendering_twice_changes_nothing(run, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- table:eval --><!-- /table:eval -->\nb <!-- value:int8 --><!-- /value:int8 -->\n")
    first = render_files([doc], run)
    text = doc.read_text()
    second = render_files([doc], run)
    assert first.changed == [str(doc)] and second.changed == []
    assert doc.read_text() == text


def test_a_missing_json_leaves_its_block_as_it_is(run, tmp_path):
    text = "<!-- table:bench -->\n| kept | table |\n<!-- /table:bench -->\n<!-- value:detectability -->kept<!-- /value:detectability -->"
    out, report = render_text(text, run)
    assert out == text
    assert report.rendered == [] and len(report.missing) == 2
    assert "bench.json not found" in report.missing[0]


def test_an_unknown_marker_is_an_error_listing_the_names(run):
    with pytest.raises(EdgesegError, match="unknown table marker 'evl'.*compare"):
        render_text("<!-- table:evl --><!-- /table:evl -->", run)


def test_bench_table(tmp_path):
    rows = [{"model": "runs/demo/model.onnx", "backend": "onnxruntime", "precision": "fp32", "mode": m, "batch_size": b,
             "images_per_s": ips, "latency_ms_p99": p99, "accuracy_dice": 0.93, "accuracy_recall": 0.95,
             "accuracy_fp_blobs_per_image": 0.0}
            for m, b, ips, p99 in (("single", 1, 1012.4, 1.84), ("batched", 8, 1333.3, 9.0), ("batched", 32, 1250.0, 41.2))]
    rows.append({"model": "x", "backend": "onnxruntime", "precision": "fp32", "mode": "stream", "batch_size": 8,
                 "images_per_s": 1.0, "latency_ms_p99": 1.0})
    (tmp_path / "bench.json").write_text(json.dumps({"command": ["edgeseg", "bench"], "rows": rows}))
    out, _ = render_text("<!-- table:bench --><!-- /table:bench -->", tmp_path)
    assert ("| model | backend | b=1 (p99 ms) | b=8 | b=32 (p99 ms) | Dice / recall / false blobs |\n"
            "|---|---|---|---|---|---|\n"
            "| `model.onnx` | onnxruntime FP32 | 1,012 (1.8) | 1,333 | 1,250 (41.2) | 0.930 / 0.950 / 0 |\n") in out
    value, _ = render_text("<!-- value:bench --><!-- /value:bench -->", tmp_path)
    assert "batch 1 1,012 images/s" in value and "batched 1,333 at batch 8" in value


def test_main_prints_one_line_and_warns_on_stderr(run, tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- table:eval --><!-- /table:eval --><!-- table:bench -->x<!-- /table:bench -->")
    assert docs_tables.main(["--run", str(run), str(doc)]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and "1 blocks rendered" in out and "1 left as they were" in out
    assert "bench.json not found" in err


def test_curve_table_shows_the_matched_curve_or_says_over_budget(tmp_path):
    def model(name, matched):
        curve = [{"contrast": c, "defect_recall": r, "dice": 0.9} for c, r in ((0.5, 0.25), (1.0, 0.75))]
        return {"model": name, "options": {"t_high": 12.0} if name == "classical" else {}, "threshold": 0.95,
                "test_good": {"fp_blobs_per_image": 0.5}, "fit": {"within_budget": False}, "curve": curve,
                "matched": matched and {"threshold": 0.98, "fp_blobs_per_image": 0.005,
                                        "curve": [{**p, "defect_recall": p["defect_recall"] / 5} for p in curve]}}

    doc = {"contrast_unit": "local noise sigma", "command": ["edgeseg", "contrast-curve"],
           "models": [model(str(tmp_path / "line" / "brick" / "model.keras"), True), model("classical", False)]}
    (tmp_path / "line" / "brick").mkdir(parents=True)
    (tmp_path / "line" / "brick" / "curve.json").write_text(json.dumps(doc))
    text, report = render_text("<!-- table:line.brick --><!-- /table:line.brick -->", tmp_path)
    assert report.rendered == ["table:line.brick"]
    assert "| detector | threshold | false blobs / image | 0.5 σ | 1 σ | Dice (highest) |" in text
    assert "| line/brick/model.keras | 0.98 | 0.005 | 0.05 | 0.15 | 0.900 |" in text
    assert "| classical (t_high 12) | 0.95 | 0.500 (no threshold within budget) | 0.25 | 0.75 | 0.900 |" in text


def test_curve_value_names_each_detector_at_one_sigma(tmp_path):
    curve = [{"contrast": 1.0, "defect_recall": 0.94, "dice": 0.9}]
    doc = {"contrast_unit": "local noise sigma", "models": [
        {"model": str(tmp_path / "line" / "brick" / "model.keras"), "matched": {"curve": curve}},
        {"model": "/elsewhere/demo/model.keras", "matched": None},
        {"model": "classical", "matched": {"curve": [{**curve[0], "defect_recall": 0.32}]}}]}
    (tmp_path / "line" / "brick").mkdir(parents=True)
    (tmp_path / "line" / "brick" / "curve.json").write_text(json.dumps(doc))
    text, _ = render_text("<!-- value:line.brick --><!-- /value:line.brick -->", tmp_path)
    assert "its own network 94 %, the demo network –, classical 32 %" in text


def _render_beside_demo(tmp_path, source: str, doc: dict, text: str):
    """Render ``text`` as `make docs` does from runs/demo, with ``doc`` written at ``source`` (relative to the
    folder beside demo/, as a study writes runs/study/<name>/report.json)."""
    path = tmp_path / source
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    (tmp_path / "demo").mkdir(exist_ok=True)
    return render_text(text, tmp_path / "demo")


def test_study_table_from_a_real_report(tmp_path):
    """A report written by edgeseg.study's own summary (two seeds of one arm, one of another), rendered beside
    the run folder as `make docs` finds it: mean ± sd where there are seeds, false blobs per set."""
    from edgeseg.study import HeldOut, Spec, summarize

    spec = Spec("devices", {"epochs": 10}, {"devices": [2, 1], "seed": [0, 1]},
                (HeldOut("seed", "seed", 4, 1), HeldOut("gauss", "seed", 4, 3)), ("fp32",), False, False)

    def arm(group, seed, dice, recall, fp, wall):
        scores = {s: {"dice": dice, "defect_recall": recall, "fp_blobs_per_image": fp} for s in ("seed", "gauss")}
        scores["gauss"] = {**scores["gauss"], "fp_blobs_per_image": fp + 0.005}
        return {"arm": f"{group},seed={seed}", "group": group, "model": {}, "training": {"wall_s": wall},
                "scores": {"fp32": scores}}

    classical = {s: {"dice": 0.9, "defect_recall": 0.943, "fp_blobs_per_image": 0.0} for s in ("seed", "gauss")}
    report = summarize(spec, [arm("devices=2", 0, 0.93, 0.98, 0.0, 400.0), arm("devices=2", 1, 0.94, 0.99, 0.0, 420.0),
                              arm("devices=1", 0, 0.935, 0.97, 0.0, 195.0)], classical)
    report["command"] = [".venv/bin/edgeseg", "study", "studies/devices.toml"]
    out, rep = _render_beside_demo(tmp_path, "study/devices/report.json", report, "<!-- table:study.devices --><!-- /table:study.devices -->")
    assert rep.rendered == ["table:study.devices"]
    assert ("| arm | seeds | `seed` Dice | `seed` recall | `gauss` Dice | `gauss` recall | false blobs/img (`seed` / `gauss`) | training s |\n"
            "|---|---|---|---|---|---|---|---|\n"
            "| `devices=2` | 2 | 0.935 ± 0.007 | 0.985 ± 0.007 | 0.935 ± 0.007 | 0.985 ± 0.007 | 0 / 0.005 | 410 |\n"
            "| `devices=1` | 1 | 0.935 | 0.970 | 0.935 | 0.970 | 0 / 0.005 | 195 |\n"
            "| classical | – | 0.900 | 0.943 | 0.900 | 0.943 | 0 / 0 | – |\n") in out
    assert f"From `{(tmp_path / 'study' / 'devices' / 'report.json').as_posix()}`, written by `edgeseg study studies/devices.toml`" in out


def test_study_table_shows_a_defect_free_set_by_its_false_blobs_only(tmp_path):
    """A defect-free set has no Dice or recall: no empty columns for it, only its false blobs per image."""
    from edgeseg.study import HeldOut, Spec, summarize

    spec = Spec("data", {}, {"preset": ["train"], "seed": [0]},
                (HeldOut("seed", "seed", 4, 1), HeldOut("good", "seed", 4, 2, {"good_fraction": 1.0})),
                ("fp32",), False, False)
    scores = {"seed": {"dice": 0.95, "defect_recall": 0.99, "fp_blobs_per_image": 0.0},
              "good": {"dice": None, "defect_recall": None, "fp_blobs_per_image": 0.02}}
    report = summarize(spec, [{"arm": "preset=train,seed=0", "group": "preset=train", "model": {},
                               "training": {"wall_s": 600.0}, "scores": {"fp32": scores}}],
                       {"seed": scores["seed"], "good": {**scores["good"], "fp_blobs_per_image": 0.0}})
    out, rep = _render_beside_demo(tmp_path, "study/data/report.json", report, "<!-- table:study.data --><!-- /table:study.data -->")
    assert rep.rendered == ["table:study.data"]
    assert ("| arm | seeds | `seed` Dice | `seed` recall | false blobs/img (`seed` / `good`) | training s |\n"
            "|---|---|---|---|---|---|\n"
            "| `preset=train` | 1 | 0.950 | 0.990 | 0 / 0.020 | 600 |\n"
            "| classical | – | 0.950 | 0.990 | 0 / 0 | – |\n") in out


def test_study_recall_value_spans_every_trained_network(tmp_path):
    """The README's training-data phrase: the lowest and highest recall of any one network (any seed) of the
    named arms over `gauss` and `vary`; the `seed` set and the other arms do not enter it."""
    from edgeseg.study import HeldOut, Spec, summarize

    names = ("seed", "gauss", "vary")
    spec = Spec("data", {}, {"preset": ["seed", "train"], "seed": [0, 1]},
                tuple(HeldOut(n, "seed", 4, i) for i, n in enumerate(names)), ("fp32",), False, False)

    def arm(preset, seed, recalls):
        scores = {n: {"dice": 0.9, "defect_recall": r, "fp_blobs_per_image": 0.0} for n, r in zip(names, recalls)}
        return {"arm": f"preset={preset},seed={seed}", "group": f"preset={preset}", "model": {}, "training": {},
                "scores": {"fp32": scores}}

    report = summarize(spec, [arm("seed", 0, (0.99, 0.07, 0.60)), arm("seed", 1, (1.0, 0.57, 0.911)),
                              arm("train", 0, (0.98, 0.90, 0.93)), arm("train", 1, (0.99, 0.91, 0.926))])
    text = "<!-- value:study.data.seed -->?<!-- /value:study.data.seed --> <!-- value:study.data.train -->?<!-- /value:study.data.train -->"
    out, rep = _render_beside_demo(tmp_path, "study/data/report.json", report, text)
    assert rep.rendered == ["value:study.data.seed", "value:study.data.train"]
    assert "-->7–91 %<!--" in out and "-->90–93 %<!--" in out


def test_equal_fa_table_from_a_real_report(tmp_path):
    """An ``edgeseg.equal_fa`` report on real sets (a tiny ONNX model saved as a study arm's model.onnx, and the
    classical detector): rows per model (named by its arm folder) and budget, each cell that row of `best`."""
    from tiny_models import tiny_onnx

    from edgeseg.artifacts import write_manifest
    from edgeseg.data.dataset import write_dataset
    from edgeseg.data.synth import PRESETS
    from edgeseg.docs_tables import _num
    from edgeseg.equal_fa import EvalSet, measure

    easy = PRESETS["test"].replace(image_size=48, defect_size=(8, 16), contrast=(3, 5))
    arm = tmp_path / "study" / "losses" / "arms" / "seed=0,loss=bce"
    arm.mkdir(parents=True)
    model = tiny_onnx(arm / "model.onnx", size=48)
    write_manifest(model, "onnx", {"model": "mean"}, threshold=0.88, mask_rule={"grow": None, "min_area": 16})
    sets = [EvalSet("seed", write_dataset(tmp_path / "d", easy, count=8, seed=21),
                    write_dataset(tmp_path / "g", easy.replace(good_fraction=1.0), count=8, seed=22))]
    report = measure([str(model), "classical"], sets, budgets=(0.001, 0.005))
    out, rep = _render_beside_demo(tmp_path, "study/losses/equal-fa.json", report,
                                   "<!-- table:study.losses.equal-fa --><!-- /table:study.losses.equal-fa -->")
    assert rep.rendered == ["table:study.losses.equal-fa"]
    cell = {(b["model"], b["budget"]): f"{_num(b['recall'])} / {_num(b['dice'])}" for b in report["best"]}
    assert cell["classical", 0.005] != cell[str(model), 0.005]  # distinct cells: a swapped row fails
    assert ("| model | false blobs/img | `seed` recall / Dice |\n|---|---|---|\n"
            f"| `seed=0,loss=bce` | ≤ 0.001 | {cell[str(model), 0.001]} |\n"
            f"| `seed=0,loss=bce` | ≤ 0.005 | {cell[str(model), 0.005]} |\n"
            f"| `classical` | ≤ 0.001 | {cell['classical', 0.001]} |\n"
            f"| `classical` | ≤ 0.005 | {cell['classical', 0.005]} |\n") in out


def test_study_table_shows_a_timed_networks_cost_once_per_arm(tmp_path):
    """With [deploy] bench, each arm's FP32 ONNX images/s (mean over seeds) and GFLOP appear on its fp32 row
    only: the FP16 and INT8 rows are the same network's accuracy, not another speed."""
    from edgeseg.study import HeldOut, Spec, summarize

    spec = Spec("networks", {}, {"model": ["inline", "context"], "seed": [0, 1]}, (HeldOut("seed", "seed", 4, 1),),
                ("fp32", "int8"), False, True)

    def arm(model, seed, speed, flops):
        scores = {p: {"seed": {"dice": 0.9, "defect_recall": 0.95, "fp_blobs_per_image": 0.0}} for p in spec.precisions}
        return {"arm": f"model={model},seed={seed}", "group": f"model={model}", "scores": scores,
                "model": {"flops_per_image": flops}, "training": {"wall_s": 100.0},
                "speed": {"batch_1": speed, "batch_32": 2 * speed}}

    report = summarize(spec, [arm("inline", 0, 1000.0, 117440512), arm("inline", 1, 1200.0, 117440512),
                              arm("context", 0, 300.0, 4e8)])
    out, _ = _render_beside_demo(tmp_path, "study/networks/report.json", report, "<!-- table:study.networks --><!-- /table:study.networks -->")
    assert "| training s | GFLOP | FP32 images/s (b1 / b32) |" in out
    assert "| `model=inline` | fp32 | 2 | 0.900 ± 0.000 | 0.950 ± 0.000 | 0 | 100 | 0.117 | 1,100 / 2,200 |" in out
    assert "| `model=inline` | int8 | 2 | 0.900 ± 0.000 | 0.950 ± 0.000 | 0 | 100 | – | – |" in out
    assert "| `model=context` | fp32 | 1 | 0.900 | 0.950 | 0 | 100 | 0.400 | 300 / 600 |" in out
