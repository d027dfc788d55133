"""The generator is faithful to the seed's make_image.py and its variations do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data.synth import PRESETS, SEED_STD, SynthConfig, generate, generate_batch, preset
from edgeseg.errors import EdgesegError


def samples(cfg: SynthConfig, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [generate(rng, cfg) for _ in range(n)]


def test_seed_preset_matches_the_seed_script():
    for s in samples(PRESETS["seed"], 20):
        assert s.image.shape == (256, 256) and s.image.dtype == np.uint8
        assert s.mask.dtype == np.uint8 and set(np.unique(s.mask)) <= {0, 1}
        assert len(s.defects) == 2  # range(1, 3): always two
        inside = s.mask.astype(bool)
        # background uniform integers 100..124; defect pixels 103..127 (contrast 3, randint(3, 4) excludes 4)
        assert s.image[~inside].min() >= 100 and s.image[~inside].max() <= 124
        assert s.image[inside].min() >= 103 and s.image[inside].max() <= 127
        for d in s.defects:
            assert 8 <= d.w <= 63 and 8 <= d.h <= 63
            assert d.x >= 0 and d.y >= 0 and d.x + d.w <= 255 and d.y + d.h <= 255  # fully inside
            assert d.shape == "rect" and d.contrast == 3
            assert s.mask[d.y : d.y + d.h, d.x : d.x + d.w].all()


def test_seed_preset_statistics():
    imgs, masks = generate_batch(np.random.default_rng(1), PRESETS["seed"], 8)
    bg, fg = imgs[masks == 0].astype(float), imgs[masks == 1].astype(float)
    assert bg.mean() == pytest.approx(112, abs=0.1)
    assert bg.std() == pytest.approx(SEED_STD, abs=0.1)
    assert fg.mean() - bg.mean() == pytest.approx(3, abs=0.2)
    assert len(np.unique(bg)) == 25  # integers, every value of 100..124


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = samples(PRESETS["test"], 3, 5), samples(PRESETS["test"], 3, 5), samples(PRESETS["test"], 3, 6)
    assert all(np.array_equal(x.image, y.image) and x.defects == y.defects for x, y in zip(a, b))
    assert not np.array_equal(a[0].image, c[0].image)


def test_test_preset_contrasts_and_counts():
    ss = samples(PRESETS["test"], 60)
    assert {len(s.defects) for s in ss} == {1, 2}
    assert {d.contrast for s in ss for d in s.defects} == {3, 4}


def test_good_fraction_one_gives_defect_free_images():
    for s in samples(PRESETS["seed"].replace(good_fraction=1.0), 5):
        assert not s.mask.any() and s.defects == []


def test_ellipses_stay_inside_their_box_and_gaussian_noise_has_the_seed_std():
    cfg = PRESETS["seed"].replace(shape="ellipse", noise="gaussian", image_size=128, defect_size=(10, 40))
    ss = samples(cfg, 20)
    for s in ss:
        for d in s.defects:
            assert d.shape == "ellipse"
        boxes = np.zeros_like(s.mask)
        for d in s.defects:
            boxes[d.y : d.y + d.h, d.x : d.x + d.w] = 1
        assert not (s.mask & (1 - boxes)).any()
        assert s.mask.sum() < boxes.sum()  # an ellipse fills less than its box
    bg = np.concatenate([s.image[s.mask == 0] for s in ss]).astype(float)
    assert bg.std() == pytest.approx(SEED_STD, rel=0.05)
    assert len(np.unique(bg)) > 25


def test_train_preset_varies_level_and_noise_per_image():
    ss = samples(PRESETS["train"], 30)
    levels = {s.info["level"] for s in ss}
    assert len(levels) == 30 and min(levels) < 100 and max(levels) > 124
    assert {s.info["noise"] for s in ss} == {"uniform", "gaussian"}
    assert any(not s.defects for s in ss)


def test_config_round_trip_and_validation():
    cfg = PRESETS["train"]
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(EdgesegError, match="contrast"):
        SynthConfig(contrast=(4, 3))
    with pytest.raises(EdgesegError, match="defect_size"):
        SynthConfig(image_size=32)  # default sides up to 63 do not fit
    with pytest.raises(EdgesegError, match="seed, test, train"):
        preset("nope")
    with pytest.raises(EdgesegError, match="rect, ellipse, mixed"):
        SynthConfig(shape="triangle")
    with pytest.raises(EdgesegError, match="uniform, log"):
        SynthConfig(size_dist="gamma")


def test_log_size_distribution_draws_more_small_sides_within_bounds():
    def sides(dist):
        cfg = PRESETS["seed"].replace(size_dist=dist)
        return np.array([(d.w, d.h) for s in samples(cfg, 300) for d in s.defects]).ravel()

    uniform, log = sides("uniform"), sides("log")
    assert log.min() >= 8 and log.max() <= 63
    # P(side < 16): 8/56 ≈ 0.14 for the seed's uniform draw, ln 2 / ln 8 ≈ 0.33 for the log-uniform one.
    assert np.mean(uniform < 16) == pytest.approx(0.14, abs=0.04)
    assert np.mean(log < 16) == pytest.approx(0.33, abs=0.05)
