"""Augmentation keeps image and mask aligned; the curriculum anneals the contrast."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.augment import NONE, AugmentConfig, Curriculum, augment
from edgeseg.errors import EdgesegError


def test_geometry_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    image = np.full((32, 32), 100, np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    image[3:9, 20:30] = 200  # an asymmetric bright rectangle marks where the mask is
    mask[3:9, 20:30] = 1
    cfg = AugmentConfig(gain=(1, 1), gamma=(1, 1), extra_noise=0.0)
    seen = set()
    for _ in range(20):
        img, m = augment(rng, image, mask, cfg)
        assert img.dtype == np.float32 and img.shape == (32, 32)
        np.testing.assert_array_equal(img > 150, m > 0)
        seen.add(m.tobytes())
    assert len(seen) == 8  # 4 rotations × 2 flips all reached


def test_photometric_changes_stay_in_range_and_keep_the_mask():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (16, 16)).astype(np.uint8)
    mask = (rng.random((16, 16)) < 0.2).astype(np.uint8)
    img, m = augment(rng, image, mask, AugmentConfig(flips=False, gain=(1.5, 1.5), gamma=(0.5, 0.5),
                                                     extra_noise=5.0))
    assert img.min() >= 0 and img.max() <= 255
    np.testing.assert_array_equal(m, mask)
    same, _ = augment(rng, image, mask, NONE)
    np.testing.assert_array_equal(same, image.astype(np.float32))


def test_curriculum_anneals_then_holds():
    c = Curriculum.parse("8:3:4")
    base = (2.5, 6.0)
    assert c.contrast(0, base) == (8.0, 8.0)
    assert c.contrast(2, base) == (5.5, 6.0)
    assert c.contrast(4, base) == (3.0, 6.0)
    assert c.contrast(10, base) == (3.0, 6.0)


@pytest.mark.parametrize("text", ["8:3", "a:3:4", "8:3:0"])
def test_bad_curriculum_is_a_user_error(text):
    with pytest.raises(EdgesegError, match="START:END:EPOCHS"):
        Curriculum.parse(text)
