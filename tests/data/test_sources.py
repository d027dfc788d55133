"""Training sources on a line's own images: the mix, the held-out split, defect ratios, 16-bit levels."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import sources as S
from edgeseg.data.backgrounds import Backgrounds
from edgeseg.data.synth import PRESETS
from edgeseg.errors import BadInput, EdgesegError


def _backgrounds(n=3, size=96, dtype=np.uint8, level=100):
    rng = np.random.default_rng(5)
    scale = 257 if dtype == np.uint16 else 1
    images = [(np.clip(rng.normal(level, 4, (size, size + 8 * i)), 0, 255) * scale).astype(dtype) for i in range(n)]
    return Backgrounds(images, [f"{i}.png" for i in range(n)], None)


@pytest.mark.parametrize("text, given, expected", [
    (None, {"backgrounds": True}, {"backgrounds": 1.0}),
    (None, {"backgrounds": True, "data": True}, {"backgrounds": 0.5, "data": 0.5}),
    ("backgrounds:3,synthetic:1", {"backgrounds": True}, {"backgrounds": 0.75, "synthetic": 0.25}),
    ("backgrounds:1,data:0", {"backgrounds": True, "data": True}, {"backgrounds": 1.0}),
])
def test_mix_weights(text, given, expected):
    assert S.parse_mix(text, given) == pytest.approx(expected)


@pytest.mark.parametrize("text, given, message", [
    ("data:1", {"backgrounds": True}, "no --data folder"),
    ("backgrounds:x", {"backgrounds": True}, "--mix must be"),
    ("backgrounds:1,backgrounds:2", {"backgrounds": True}, "--mix must be"),
    ("walls:1", {"backgrounds": True}, "--mix must be"),
    ("backgrounds:0", {"backgrounds": True}, "must not all be 0"),
])
def test_bad_mix_is_one_line(text, given, message):
    with pytest.raises(EdgesegError, match=message):
        S.parse_mix(text, given)


def test_hold_out_never_shares_an_image():
    for n in (2, 3, 5, 11):
        keep, held = S.hold_out(n)
        assert held and keep and not set(keep) & set(held) and sorted(keep + held) == list(range(n))
    assert S.hold_out(10)[1] == [4, 9]
    with pytest.raises(BadInput, match="at least 2 images"):
        S.hold_out(1)


def test_background_crops_carry_defects_at_the_stated_ratio():
    src = S.BackgroundSource(_backgrounds(), PRESETS["train"].replace(contrast=(30, 30)), crop=64, defect_ratio=0.3)
    rng = np.random.default_rng(0)
    draws = [src.sample(rng) for _ in range(400)]
    share = np.mean([m.any() for _, m in draws])
    assert 0.24 < share < 0.36
    image, mask = draws[int(np.argmax([m.sum() for _, m in draws]))]
    assert image.dtype == np.float32 and image.shape == mask.shape == (64, 64)
    assert image[mask == 1].mean() - image[mask == 0].mean() > 20  # the 30-level defect is there


def test_sixteen_bit_backgrounds_become_eight_bit_levels_with_the_same_contrast():
    cfg = PRESETS["train"].replace(contrast=(12, 12), contrast_continuous=True)
    eight = S.BackgroundSource(_backgrounds(), cfg, crop=64, defect_ratio=1.0).sample(np.random.default_rng(1))
    sixteen = S.BackgroundSource(_backgrounds(dtype=np.uint16), cfg, crop=64, defect_ratio=1.0
                                 ).sample(np.random.default_rng(1))
    np.testing.assert_array_equal(eight[1], sixteen[1])
    assert abs(float(sixteen[0].mean()) - float(eight[0].mean())) < 0.6  # same levels, up to 8-bit rounding
    shift = sixteen[0][sixteen[1] == 1].mean() - sixteen[0][sixteen[1] == 0].mean()
    assert 9 < shift < 15


def test_labelled_crops_are_placed_over_defects():
    images = [np.full((80, 120), 100, np.uint8) for _ in range(2)]
    masks = [np.zeros((80, 120), np.uint8) for _ in range(2)]
    masks[1][70:75, 110:115] = 1  # one small defect in a corner
    src = S.LabelledSource(images, masks, crop=32, defect_ratio=0.5)
    rng = np.random.default_rng(3)
    draws = [src.sample(rng) for _ in range(300)]
    assert 0.4 < np.mean([m.any() for _, m in draws]) < 0.65  # a uniform crop would hit it ~1 % of the time
    good = src.good(np.random.default_rng(0))
    assert good is not None and good.shape == (32, 32)


def test_held_out_draws_come_with_and_without_defects():
    bg = _backgrounds()
    cfg = PRESETS["train"].replace(contrast=(30, 30))
    clean = S.BackgroundSource(bg, cfg, 64, 0.0)
    held = S.HeldOut({"backgrounds": S.BackgroundSource(bg, cfg, 64, 1.0)},
                     {"backgrounds": lambda rng: clean.sample(rng)[0]}, {"backgrounds": 1.0})
    rng = np.random.default_rng(0)
    assert all(held.defect(rng)[1].any() for _ in range(20))
    assert not any(held.good(rng)[1].any() for _ in range(20))
