"""``edgeseg detectability``: footprint z of planted defects, the noise scan, and the report through the CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app
from edgeseg.data.dataset import load_dataset, write_dataset
from edgeseg.data.synth import PRESETS
from edgeseg.detectability import assess, box_sizes, footprint_z, scan_max
from edgeseg.runners.classical import MatchedFilterBank

cli = CliRunner()
SIGMA, LEVEL = 7.0, 112.0


def _noise(seed: int, size: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).normal(LEVEL, SIGMA, (size, size)).astype(np.float32)


def test_footprint_z_is_contrast_times_root_area_over_sigma():
    image = _noise(0)
    labels = np.zeros(image.shape, np.int32)
    labels[20:60, 30:70] = 1  # 40×40 at +3: z = 3·40/7 ≈ 17.1 (± 1 from the noise in the patch)
    labels[90:110, 90:110] = 2  # no shift: z ~ N(0, 1)
    image[labels == 1] += 3.0
    z = footprint_z(image, labels)
    assert z.shape == (2,)
    assert abs(z[0] - 3 * 40 / SIGMA) < 3.5
    assert abs(z[1]) < 3.5
    # A lighting ramp moves neither: the background is fitted without the defects.
    ramp = np.linspace(-20, 20, image.shape[1], dtype=np.float32)[None, :]
    assert np.allclose(footprint_z(image + ramp, labels), z, atol=1.0)


def test_scan_max_of_noise_is_a_few_sigma_and_finds_a_planted_box():
    boxes = box_sizes(8, 32, steps=4)
    assert (8, 8) in boxes and (32, 32) in boxes and (8, 32) in boxes
    bank = MatchedFilterBank(boxes, (128, 128))
    maxima = [scan_max(_noise(s), bank) for s in range(6)]
    # Thousands of correlated box tests on pure noise: the max lies a few σ out, never far.
    assert all(2.5 < m < 6.5 for m in maxima), maxima
    image = _noise(7)
    image[40:70, 40:70] += 10.0  # z = 10·30/7 ≈ 43, less what the unmasked background fit absorbs
    assert scan_max(image, bank) > 20


def test_report_shares_follow_their_levels(tmp_path):
    cfg = PRESETS["seed"].replace(image_size=96, defect_size=(8, 24))
    defects = load_dataset(write_dataset(tmp_path / "d", cfg, 12, seed=1))
    good = load_dataset(write_dataset(tmp_path / "g", cfg.replace(good_fraction=1.0), 12, seed=2))
    r = assess(defects, good, levels=(2.0, 4.0, 6.0), budgets=(0.001, 0.1), targets=(0.5, 0.9))
    z, null = np.array(r["footprint_z"]), np.array(r["scan_max"])
    assert r["defects"]["n_defects"] == len(z) >= 12 and len(null) == 12
    for lv in r["levels"]:
        assert lv["defect_share"] == pytest.approx(np.mean(z >= lv["z"]))
        assert lv["good_image_share"] == pytest.approx(np.mean(null >= lv["z"]))
    # A target needs the level below which its missing share lies; the budget the level that noise stays under.
    for t in r["targets"]:
        assert np.mean(z >= t["z"]) >= t["recall"] - 1e-9
    assert r["budgets"][0]["z"] is None  # 1 in 1000 is not resolved by 12 good images
    assert np.mean(null > r["budgets"][1]["z"]) <= 0.1
    assert r["budgets"][1]["defect_share"] == pytest.approx(np.mean(z > r["budgets"][1]["z"]))
    assert r["good"]["boxes"][0] == [8, 8] and r["good"]["boxes"][-1] == [24, 24]  # the generator's sides
    # Without a manifest, the sides come from the labelled defects (overlapping ones merge, so up to 2×24).
    sides = {s for b in assess(replace(defects, config=None), good)["good"]["boxes"] for s in b}
    assert 8 <= min(sides) and max(sides) <= 48


def test_cli_table_json_and_bad_input(tmp_path):
    cfg = PRESETS["seed"].replace(image_size=96, defect_size=(8, 24))
    d = write_dataset(tmp_path / "d", cfg, 6, seed=1)
    g = write_dataset(tmp_path / "g", cfg.replace(good_fraction=1.0), 6, seed=2)
    out = tmp_path / "r.json"
    res = cli.invoke(app, ["detectability", "--data", str(d), "--good", str(g), "--json", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "recall 0.99" in res.output and "good images >= z" in res.output
    report = json.loads(out.read_text())
    assert report["defects"]["n_images"] == 6 and "environment" in report
    # Defect-free images straight off a line have no labels: the same images unlabelled give the same scan.
    shutil.rmtree(g / "labels")
    res = cli.invoke(app, ["detectability", "--data", str(d), "--good", str(g / "images"), "--json", "-", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["good"]["scan_max_quantiles"] == report["good"]["scan_max_quantiles"]
    # A "good" set that holds defects, and a defect set without any: one line each, exit 1, nothing written.
    for args in (["--data", str(d), "--good", str(d)], ["--data", str(g), "--good", str(g)]):
        res = cli.invoke(app, ["detectability", *args, "--json", str(tmp_path / "bad.json"), "-q"])
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "bad.json").exists()


def _line(size: int = 128, n: int = 2):
    from edgeseg.data.backgrounds import Backgrounds

    images = [np.clip(np.rint(_noise(s, size)), 0, 255).astype(np.uint8) for s in range(n)]
    return Backgrounds(images, [f"{s}.png" for s in range(n)], "line")


def test_sets_drawn_from_backgrounds_are_lazy_and_the_same_in_any_order():
    from edgeseg.data.line import defect_set, good_set

    bg, cfg = _line(), PRESETS["seed"].replace(image_size=64, defect_size=(6, 16), contrast=(5, 5))
    d = defect_set(bg, cfg, crop=64, count=150, seed=3)
    assert d.images.shape == (150, 64, 64) and tuple(d.config["defect_size"]) == (6, 16)
    late = d.images[140:150]  # drawn alone, before any earlier image
    assert np.array_equal(np.asarray(d.images)[140:150], late)
    again = defect_set(bg, cfg.replace(contrast=(9, 9)), crop=64, count=150, seed=3)
    assert np.array_equal(np.asarray(again.masks), np.asarray(d.masks))  # same places at another contrast
    assert not np.array_equal(again.images[0], d.images[0])
    g = good_set(bg, crop=64, count=5, seed=3)
    assert not np.asarray(g.masks).any() and g.images[0].dtype == np.uint8
    assert not any(np.array_equal(g.images[k], d.images[k]) for k in range(5))  # its own crops


def test_contrast_sweep_shares_one_noise_scan_and_z_grows_with_contrast():
    from edgeseg.data.line import defect_set, good_set
    from edgeseg.detectability import assess_contrasts

    bg, cfg = _line(), PRESETS["seed"].replace(image_size=64, defect_size=(6, 16))
    sets = [(c, defect_set(bg, cfg.replace(contrast=(c, c), contrast_continuous=True), 64, 100, 1)) for c in (2, 4, 8)]
    calls = []
    r = assess_contrasts(sets, good_set(bg, 64, 100, 1), budgets=(0.001, 0.02),
                         progress=lambda done, total, msg="": calls.append((done, total, msg)))
    assert calls[-1][:2] == (400, 400) and sum(msg == "noise scan" for *_, msg in calls) == 100
    z = [row["z_median"] for row in r["contrasts"]]
    # z = c·√n/σ: doubling the contrast doubles every defect's z (the same defects at each contrast).
    assert z[1] / z[0] == pytest.approx(2, rel=0.15) and z[2] / z[1] == pytest.approx(2, rel=0.15)
    recall = [row["budgets"][1]["defect_share"] for row in r["contrasts"]]
    level = r["contrasts"][0]["budgets"][1]["z"]
    assert all(row["budgets"][1]["z"] == level for row in r["contrasts"])  # one noise scan for all
    assert np.mean(np.array(r["scan_max"]) > level) <= 0.02
    assert recall == sorted(recall) and recall[0] < 0.9 and recall[2] == 1.0
    assert r["contrasts"][0]["budgets"][0] == {"good_image_share": 0.001, "z": None, "defect_share": None}
