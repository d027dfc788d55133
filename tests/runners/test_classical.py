"""The classical baseline: exact on easy defects, silent on clean images, blind to level and lighting."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data.synth import PRESETS, generate_batch
from edgeseg.errors import EdgesegError
from edgeseg.runners import load_runner
from edgeseg.runners.classical import ClassicalParams, ClassicalRunner
from edgeseg.types import Backend

N = 128


def _noise(seed: int, n: int = N) -> np.ndarray:
    """The seed's background: uniform integers 100..124."""
    return np.random.default_rng(seed).integers(100, 125, size=(n, n)).astype(np.float32)


def _with_defect(seed: int, contrast: float, box=(30, 40, 24, 16)) -> tuple[np.ndarray, np.ndarray]:
    x, y, w, h = box
    img = _noise(seed)
    mask = np.zeros((N, N), dtype=np.uint8)
    mask[y : y + h, x : x + w] = 1
    return img + contrast * mask, mask


def _infer(image: np.ndarray, **options) -> np.ndarray:
    with ClassicalRunner(**options) as runner:
        return runner.infer(np.clip(np.rint(image), 0, 255).astype(np.uint8)[None])[0]


def test_high_contrast_defect_is_found_exactly():
    img, mask = _with_defect(0, 20)
    pred = _infer(img) > 0.5
    inter = np.count_nonzero(pred & (mask > 0))
    dice = 2 * inter / (np.count_nonzero(pred) + np.count_nonzero(mask))
    assert dice > 0.97, dice


def test_defect_free_image_scores_near_zero():
    probs = _infer(_noise(1))
    assert probs.max() < 0.5
    assert probs.mean() < 0.05


@pytest.mark.parametrize("seed", [2, 3])
def test_invariant_to_level_shift_and_lighting_ramp(seed):
    img, mask = _with_defect(seed, 6)
    base = _infer(img) > 0.5
    assert np.count_nonzero(base & (mask > 0)) > 0.8 * mask.sum()
    shifted = _infer(img + 50) > 0.5
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float32)
    ramp = 40.0 * (0.6 * xx + 0.4 * yy) / N  # 40 gray levels corner to corner, 13× the defect's contrast
    lit = _infer(img - 20 + ramp) > 0.5
    # Same masks up to a few boundary pixels (the residual is shift-invariant only up to rounding).
    assert np.count_nonzero(shifted ^ base) <= 4
    assert np.count_nonzero(lit ^ base) <= 0.05 * mask.sum()


def test_infer_contract_shapes_dtypes_and_range():
    images, _ = generate_batch(np.random.default_rng(4), PRESETS["seed"].replace(image_size=64, defect_size=(8, 20)), 3)
    with load_runner("classical") as runner:
        assert runner.backend is Backend.classical
        a = runner.infer(images)  # (N, H, W) uint8
        b = runner.infer(images[..., None].astype(np.float32))  # (N, H, W, 1) float
        c = runner.infer(images[0])  # one (H, W) image
    assert a.shape == (3, 64, 64) and a.dtype == np.float32
    assert c.shape == (1, 64, 64)
    assert np.array_equal(a, b) and np.array_equal(a[:1], c)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_seed_distribution_is_segmented():
    """Contrast 3 under noise 7.2: the tuned operating point finds the seed's defects with few misses."""
    images, masks = generate_batch(np.random.default_rng(7), PRESETS["seed"], 8)
    with load_runner("classical") as runner:
        pred = runner.infer(images) > 0.5
    dice = 2 * np.count_nonzero(pred & (masks > 0)) / (np.count_nonzero(pred) + np.count_nonzero(masks))
    assert dice > 0.8, dice


def test_options_config_and_errors():
    runner = load_runner("classical", t_high=6.0, scales=[5, 9])
    assert runner.config["t_high"] == 6.0 and runner.config["scales"] == [5, 9]
    assert runner.config["model"] == "classical"
    assert set(ClassicalParams().to_dict()) <= set(runner.config)
    with pytest.raises(EdgesegError, match="unknown classical option"):
        ClassicalRunner(threshold=0.3)
    with pytest.raises(EdgesegError, match="t_low"):
        ClassicalRunner(t_low=7.0, t_high=6.0)
    with pytest.raises(EdgesegError, match="background_degree"):
        ClassicalRunner(background_degree=5)
