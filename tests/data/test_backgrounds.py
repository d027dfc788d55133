"""edgeseg.data.backgrounds: defects placed on a line's own images, in gray levels or in local noise σ."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data.backgrounds import Backgrounds, draw, inject, local_noise, random_crop
from edgeseg.data.synth import PRESETS
from edgeseg.errors import BadInput

SIGMA, LEVEL = 7.0, 128.0
ONE = PRESETS["seed"].replace(defects=(1, 1), defect_size=(12, 20))  # one rectangle of 12..20 px a side


def _surface(seed: int = 0, size: int = 160, bits: int = 8) -> np.ndarray:
    """Gaussian noise of std 7 around 128 (8-bit levels), stored at ``bits``: a background of known noise."""
    x = np.random.default_rng(seed).normal(LEVEL, SIGMA, (size, size))
    if bits == 16:
        return np.clip(np.rint(x * 257), 0, 65535).astype(np.uint16)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def test_local_noise_measures_the_noise_sigma():
    for bits, unit in ((8, 1.0), (16, 257.0)):
        noise = local_noise(_surface(bits=bits))
        assert noise.dtype == np.float32 and noise.shape == (160, 160)
        assert np.median(noise) / unit == pytest.approx(SIGMA, rel=0.1)
    assert local_noise(np.full((64, 64), 90, np.uint8)).min() == 0.25  # a flat image: the floor, not 0


@pytest.mark.parametrize("bits", [8, 16])
def test_contrast_in_gray_levels_adds_that_many_8_bit_levels(bits):
    bg = _surface(1, bits=bits)
    s = inject(np.random.default_rng(2), bg, ONE.replace(contrast=(3, 3)))
    assert s.image.dtype == bg.dtype and s.image.shape == bg.shape and s.mask.dtype == np.uint8
    diff = s.image.astype(np.int64) - bg
    inside = s.mask.astype(bool)
    assert inside.sum() >= 12 * 12
    unit = 257 if bits == 16 else 1  # the 8-bit scale of edgeseg.data.depth: 3 levels are 771 16-bit steps
    assert np.all(diff[inside] == 3 * unit) and not diff[~inside].any()
    [d] = s.defects
    assert d["contrast"] == 3 and "contrast_sigma" not in d
    assert inside[d["y"]:d["y"] + d["h"], d["x"]:d["x"] + d["w"]].all()


@pytest.mark.parametrize("bits", [8, 16])
def test_relative_contrast_is_a_multiple_of_the_local_noise(bits):
    bg = _surface(3, bits=bits)
    s = inject(np.random.default_rng(4), bg, ONE.replace(contrast=(2, 2), contrast_continuous=True), relative=True)
    [d] = s.defects
    assert d["contrast_sigma"] == 2
    assert d["noise_sigma"] == pytest.approx(SIGMA, rel=0.1)  # 8-bit levels whatever the depth
    assert d["contrast"] == pytest.approx(2 * d["noise_sigma"], abs=1e-3)
    assert d["contrast"] == pytest.approx(2 * SIGMA, rel=0.1)  # ~14 levels
    unit = 257 if bits == 16 else 1
    shift = (s.image.astype(np.float64) - bg)[s.mask.astype(bool)] / unit
    assert shift.mean() == pytest.approx(d["contrast"], abs=0.5 / unit + 1e-6)


def test_a_defect_free_draw_is_the_background_and_a_defect_that_does_not_fit_is_refused():
    bg = _surface(5)
    s = inject(np.random.default_rng(0), bg, ONE.replace(good_fraction=1.0))
    assert s.defects == [] and not s.mask.any() and np.array_equal(s.image, bg)
    with pytest.raises(BadInput, match="defects up to 20 px do not fit in a 20x20 image"):
        inject(np.random.default_rng(0), bg[:20, :20], ONE)
    # Bright defects on a saturated surface clip instead of wrapping around.
    white = np.full((64, 64), 255, np.uint8)
    assert inject(np.random.default_rng(0), white, ONE.replace(contrast=(9, 9))).image.min() == 255


def _backgrounds() -> Backgrounds:
    return Backgrounds([_surface(6, 96), _surface(7, 160)], ["small.png", "large.png"], "line")


def test_draw_takes_crops_inside_a_background_and_records_where():
    bg = _backgrounds()
    seen = set()
    for seed in range(20):
        s, where = draw(np.random.default_rng(seed), bg, 48, ONE, relative=seed % 2 == 1)
        src = bg.images[bg.names.index(where["background"])]
        y, x = where["y"], where["x"]
        assert s.image.shape == (48, 48) and 0 <= y <= src.shape[0] - 48 and 0 <= x <= src.shape[1] - 48
        outside = s.mask == 0
        assert np.array_equal(s.image[outside], src[y:y + 48, x:x + 48][outside])
        seen.add(where["background"])
    assert seen == {"small.png", "large.png"}
    # Whole images (no crop): each background as it is, at origin 0, 0.
    s, where = draw(np.random.default_rng(0), bg, None, ONE)
    assert (where["y"], where["x"]) == (0, 0)
    assert s.image.shape == bg.images[bg.names.index(where["background"])].shape


def test_same_seed_same_draw():
    bg = _backgrounds()
    cfg = ONE.replace(contrast=(1, 3), contrast_continuous=True, shape="mixed", defects=(0, 3))
    a = [draw(np.random.default_rng(9), bg, 64, cfg, relative=True) for _ in range(2)]
    assert a[0][1] == a[1][1] and a[0][0].defects == a[1][0].defects
    assert np.array_equal(a[0][0].image, a[1][0].image) and np.array_equal(a[0][0].mask, a[1][0].mask)
    crop, origin = random_crop(np.random.default_rng(1), bg.images[1], 32, 40)
    assert crop.shape == (32, 40) and np.array_equal(crop, bg.images[1][origin[0]:origin[0] + 32,
                                                                        origin[1]:origin[1] + 40])
    with pytest.raises(BadInput, match="an image of 96x96 has no 128x128 crop"):
        random_crop(np.random.default_rng(1), bg.images[0], 128)


def test_a_folder_is_read_when_drawn_and_memory_is_bounded(tmp_path):
    import cv2

    from edgeseg.data import backgrounds as B

    folder = tmp_path / "bg"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(90, 130, (40, 48 + 8 * i)).astype(np.uint8))
    bg = B.load_backgrounds(folder, 32)
    assert isinstance(bg.images, B.OnDisk) and not bg.images._kept  # checked, not kept
    assert bg.shapes == [(40, 48 + 8 * i) for i in range(5)] and bg.dtype == np.uint8
    bg.images.keep = 2
    for i in (0, 1, 2, 3, 4, 0):
        assert bg.images[i].shape == (40, 48 + 8 * i)
    assert list(bg.images._kept) == [4, 0]  # the last two read
    part = bg.subset([1, 3])
    assert part.names == ["1.png", "3.png"] and part.shapes == [(40, 56), (40, 72)]
    # A file replaced after the check is refused in one line, not read as another image.
    cv2.imwrite(str(folder / "2.png"), np.zeros((40, 40), np.uint8))
    with pytest.raises(BadInput, match="changed since"):
        bg.images[2]
