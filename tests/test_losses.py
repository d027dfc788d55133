"""Losses on hand-made inputs: known values, composition, spec parsing, schedule switching."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("keras")

from edgeseg import losses as L  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402


def _pair():
    y = np.zeros((2, 4, 4, 1), np.float32)
    y[0, :2, :2] = 1
    return y


def value(loss, y_true, y_pred) -> float:
    return float(np.asarray(loss(y_true, y_pred)))


def test_perfect_prediction_gives_zero_dice_and_tversky():
    y = _pair()
    assert value(L.Dice(), y, y) == pytest.approx(0.0, abs=1e-6)
    assert value(L.Tversky(alpha=0.3), y, y) == pytest.approx(0.0, abs=1e-6)


def test_bce_known_value():
    y = _pair()
    p = np.full_like(y, 0.25)
    # 4 positive pixels of 32: −(4·ln .25 + 28·ln .75) / 32
    expected = -(4 * math.log(0.25) + 28 * math.log(0.75)) / 32
    assert value(L.BCE(), y, p) == pytest.approx(expected, rel=1e-5)
    weighted = -(10 * 4 * math.log(0.25) + 28 * math.log(0.75)) / 32
    assert value(L.BCE(pos_weight=10), y, p) == pytest.approx(weighted, rel=1e-5)


def test_dice_known_value():
    y = np.zeros((1, 2, 2, 1), np.float32)
    y[0, 0, 0] = 1
    p = np.full_like(y, 0.5)
    # inter 0.5, sums 1 + 2, smooth 1: 1 − (1 + 1) / (3 + 1)
    assert value(L.Dice(), y, p) == pytest.approx(0.5, rel=1e-5)


def test_focal_with_gamma_zero_is_bce():
    y = _pair()
    p = np.random.default_rng(0).uniform(0.05, 0.95, y.shape).astype(np.float32)
    assert value(L.Focal(gamma=0, alpha=0.5), y, p) == pytest.approx(value(L.BCE(), y, p), rel=1e-5)
    assert value(L.Focal(gamma=2), y, p) < value(L.BCE(), y, p)


def test_composition_is_arithmetic():
    y = _pair()
    p = np.random.default_rng(1).uniform(0.05, 0.95, y.shape).astype(np.float32)
    combo = L.BCE() + 0.5 * L.Dice()
    assert value(combo, y, p) == pytest.approx(value(L.BCE(), y, p) + 0.5 * value(L.Dice(), y, p), rel=1e-5)
    assert combo.spec == "bce+0.5*dice"


def test_hardneg_charges_the_most_confident_background_pixels_only():
    y = np.zeros((2, 16, 16, 1), np.float32)
    y[0, 5:8, 5:8] = 1
    p = np.full_like(y, 0.01)
    p[0, 5:8, 5:8] = 0.99  # the defect: not background
    p[0, 8, 8] = 0.99  # its rim, within the margin: not charged either
    p[1, 0, 0] = 0.5  # a confident false pixel on a defect-free image
    # Top 4 background pixels: image 0 all at 0.01; image 1 one at 0.5 and three at 0.01.
    expected = -(7 * math.log(0.99) + math.log(0.5)) / 8
    assert value(L.HardNegatives(k=4, margin=1), y, p) == pytest.approx(expected, rel=1e-5)
    # Without a margin the rim pixel counts as a false one.
    assert value(L.HardNegatives(k=4, margin=0), y, p) > expected + 0.5
    # The same false mass spread thin costs far less than one confident blob: what BCE cannot tell apart.
    spread = np.full_like(y, 0.01 + 0.49 / 256)
    spread[0] = p[0]
    assert value(L.HardNegatives(k=4, margin=1), y, spread) < expected / 5
    assert L.parse("bce+dice+0.5*hardneg").spec == "bce+dice+0.5*hardneg"
    assert L.parse("hardneg:k=16").spec == "hardneg:k=16,margin=4"


def test_hardpos_charges_the_least_confident_defect_interior_pixels_only():
    y = np.zeros((2, 16, 16, 1), np.float32)
    y[0, 4:9, 4:9] = 1  # 5×5 defect: a 3×3 interior once eroded by 1 px
    p = np.full_like(y, 0.99)
    p[0, 4, 4] = 0.01  # a missed rim pixel: not charged
    p[0, 6, 6] = 0.2  # a half-seen interior pixel
    p[1] = 0.01  # a defect-free image: nothing inside to charge, zero cost
    # Top 2 interior misses: image 0 the 0.2 pixel and one at 0.99; image 1 none (two zero-cost slots).
    expected = -(math.log(0.2) + math.log(0.99)) / 4
    assert value(L.HardPositives(k=2, erode=1), y, p) == pytest.approx(expected, rel=1e-5)
    # Without the erosion the missed rim pixel is charged too.
    assert value(L.HardPositives(k=2, erode=0), y, p) > expected + 0.5
    assert L.parse("bce+dice+0.5*hardneg+0.25*hardpos").spec == "bce+dice+0.5*hardneg+0.25*hardpos"
    assert L.parse("hardpos:k=8").spec == "hardpos:k=8,erode=1"


def test_parse_specs():
    y = _pair()
    p = np.random.default_rng(2).uniform(0.05, 0.95, y.shape).astype(np.float32)
    assert value(L.parse("0.5*bce+dice"), y, p) == pytest.approx(
        0.5 * value(L.BCE(), y, p) + value(L.Dice(), y, p), rel=1e-5)
    focal = L.parse("focal:gamma=3")
    assert isinstance(focal, L.Focal) and focal.gamma == 3
    tv = L.parse("tversky:alpha=0.3,beta=0.7")
    assert (tv.alpha, tv.beta) == (0.3, 0.7)


@pytest.mark.parametrize("spec,message", [
    ("hinge", "unknown loss 'hinge': choose one of bce, wbce, dice, focal, tversky, hardneg, hardpos"),
    ("hardneg:k=0", "hardneg: k must be >= 1"),
    ("hardpos:erode=-1", "hardpos: k must be >= 1 and erode >= 0"),
    ("focal:colour=2", "loss 'focal' takes gamma, alpha"),
    ("bce@1,dice@5", "must start at epoch 0"),
    ("bce@0,dice", "has no @EPOCH"),
    ("", "empty loss spec"),
])
def test_bad_specs_are_user_errors(spec, message):
    with pytest.raises(EdgesegError, match=message):
        L.parse(spec)


def test_schedule_switches_by_epoch_without_recompiling():
    y = _pair()
    p = np.random.default_rng(3).uniform(0.05, 0.95, y.shape).astype(np.float32)
    sched = L.parse("bce@0,bce+dice@2,tversky:alpha=0.3@4")
    assert [e for e, _ in sched.stages] == [0, 2, 4]
    assert [sched.stage_at(e) for e in range(6)] == [0, 0, 1, 1, 2, 2]
    callback = L.schedule_callback(sched)
    callback.on_epoch_begin(0)
    assert value(sched, y, p) == pytest.approx(value(L.BCE(), y, p), rel=1e-5)
    callback.on_epoch_begin(3)
    assert value(sched, y, p) == pytest.approx(value(L.BCE() + L.Dice(), y, p), rel=1e-5)
    callback.on_epoch_begin(7)
    assert value(sched, y, p) == pytest.approx(value(L.Tversky(alpha=0.3), y, p), rel=1e-5)
    assert L.schedule_callback(L.BCE()) is None
