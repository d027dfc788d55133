"""The bounded-noise shortcut (:mod:`edgeseg.shortcut`, ``edgeseg detectability --shortcut``): exact on a
hand-made image, perfect on the seed's bounded noise, blind on Gaussian noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app
from edgeseg.data.dataset import load_dataset, write_dataset
from edgeseg.data.synth import PRESETS
from edgeseg.errors import BadInput
from edgeseg.shortcut import score, shortcut_masks

SEED = PRESETS["seed"].replace(image_size=96, defect_size=(12, 24))


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def test_a_patch_above_the_low_bound_with_two_hot_pixels_is_the_mask():
    x = np.full((1, 32, 32), 100, np.uint8)  # below 103: no window of noise passes
    x[0, 10:22, 8:20] = 110
    x[0, 15, 15] = x[0, 16, 16] = 126
    m = shortcut_masks(x)[0]
    # The 12×12 patch, whole; an 8×8 window has no centre pixel, so it sits one pixel down and right.
    assert m.sum() == 144 and _box(m) == (11, 23, 9, 21)
    x[0, 16, 16] = 124  # one pixel above the bound is not enough
    assert not shortcut_masks(x).any()
    x[0, 16, 16] = 126
    x[0, 10:22, 8:12] = 102  # a 12×8 patch is still all 8×8 windows; a 12×7 one is not
    assert shortcut_masks(x)[0].sum() == 96
    x[0, 10:22, 12] = 102
    assert not shortcut_masks(x).any()


def test_it_reads_only_eight_bit_levels():
    with pytest.raises(BadInput, match="8-bit"):
        shortcut_masks(np.zeros((1, 16, 16), np.uint16))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("shortcut")
    return {"seed": write_dataset(root / "seed", SEED, count=6, seed=31),
            "good": write_dataset(root / "good", SEED.replace(good_fraction=1.0), count=6, seed=32),
            "gauss": write_dataset(root / "gauss", SEED.replace(noise="gaussian"), count=6, seed=33)}


def test_perfect_on_the_seeds_bounds_and_blind_on_gaussian_noise(sets):
    seed = score(load_dataset(sets["seed"]), load_dataset(sets["good"]))
    assert seed["defects"]["defect_recall"] == 1.0 and seed["defects"]["fp_blobs_per_image"] == 0
    assert seed["good"]["fp_blobs_per_image"] == 0 and seed["good"]["overkill_rate"] == 0
    gauss = score(load_dataset(sets["gauss"]), load_dataset(sets["good"]))
    assert gauss["defects"]["fp_blobs_per_image"] > 1  # unbounded noise passes 124 everywhere


def test_detectability_reports_it_with_data_and_good_only(sets, tmp_path):
    out = tmp_path / "d.json"
    r = CliRunner().invoke(app, ["detectability", "--data", str(sets["seed"]), "--good", str(sets["good"]),
                                 "--shortcut", "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "shortcut" in r.stdout and "recall 1.000" in r.stdout
    report = json.loads(out.read_text())
    assert report["shortcut"]["defects"]["defects_found"] == report["defects"]["n_defects"]
    r = CliRunner().invoke(app, ["detectability", "--backgrounds", str(sets["good"]), "--contrast", "3",
                                 "--shortcut"])
    assert r.exit_code == 1 and "--shortcut goes with --data" in r.output
