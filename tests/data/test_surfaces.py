"""``edgeseg surfaces``: scikit-image photographs cut into regions that never overlap."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app

pytest.importorskip("skimage")


def test_regions_tile_the_photograph_without_overlap(tmp_path):
    import skimage.data

    r = CliRunner().invoke(app, ["surfaces", "--out", str(tmp_path / "s"), "--name", "brick"])
    assert r.exit_code == 0, r.output
    parts = {region: cv2.imread(str(tmp_path / "s" / "brick" / region / "brick.png"), cv2.IMREAD_UNCHANGED)
             for region in ("train", "val", "test")}
    assert parts["train"].shape == (256, 512) and parts["val"].shape == parts["test"].shape == (256, 256)
    whole = np.vstack([parts["train"], np.hstack([parts["val"], parts["test"]])])
    np.testing.assert_array_equal(whole, skimage.data.brick())
    # An earlier set of surfaces may be replaced; an unknown name is one line.
    assert CliRunner().invoke(app, ["surfaces", "--out", str(tmp_path / "s"), "--name", "moon"]).exit_code == 0
    r = CliRunner().invoke(app, ["surfaces", "--out", str(tmp_path / "t"), "--name", "marble"])
    assert r.exit_code == 1 and "unknown surface 'marble'" in r.output and not (tmp_path / "t").exists()
