"""Fitting the operating point: the threshold and mask rule with the best recall + Dice within a false-alarm
budget, on hand-made probability maps whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.metrics import GroundTruth
from edgeseg.operating import CANDIDATE_RULES, THRESHOLDS, choose, sweep
from edgeseg.postprocess import MaskRule


def _maps():
    """4 defect images, each with a clear defect (p 0.82) and a faint one (p 0.52); 4 defect-free images,
    two of which hold a noise blob at p 0.62. So: t ≤ 0.5 finds everything with 2 false blobs in 8 images,
    0.55–0.6 finds the clear defects with the same false blobs, 0.65–0.8 finds them with none."""
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[:, 8:24, 8:24] = 1
    masks[:, 40:56, 40:56] = 1
    defect = np.full((4, 64, 64), 0.02, np.float32)
    defect[:, 8:24, 8:24] = 0.82
    defect[:, 40:56, 40:56] = 0.52
    good = np.full((4, 64, 64), 0.02, np.float32)
    good[:2, 20:30, 20:30] = 0.62
    return defect, GroundTruth.from_masks(masks), good


def test_a_strict_budget_gives_up_the_faint_defects_and_a_loose_one_buys_them():
    defect, truth, good = _maps()
    points = sweep(defect, truth, good)
    assert len(points) == len(CANDIDATE_RULES) * len(THRESHOLDS)

    strict, within = choose(points, budget=0.0)
    assert within and strict.threshold == 0.8 and strict.fp_blobs_per_image == 0
    assert strict.defect_recall == 0.5

    loose, within = choose(points, budget=0.25)
    assert within and loose.threshold == 0.5 and loose.defect_recall == 1.0 and loose.dice == 1.0
    assert loose.fp_blobs_per_image == pytest.approx(2 / 8)  # counted over defect and defect-free images


def test_hysteresis_is_chosen_where_it_finds_more_for_the_same_false_alarms():
    defect, truth, good = _maps()
    defect[:, 40:56, 40:56] = 0.3  # the faint defect's rim...
    defect[:, 46:50, 46:50] = 0.9  # ...around a core of 16 px: found only by growing from the core
    good[:2, 20:30, 20:30] = 0.35  # noise that a threshold low enough for the rim would report
    best, within = choose(sweep(defect, truth, good, rules=(MaskRule(None, 8), MaskRule(0.2, 8))), budget=0.0)
    assert within and best.rule == MaskRule(0.2, 8) and best.defect_recall == 1.0


def test_without_any_point_in_budget_the_fewest_false_blobs_win_and_it_says_so():
    defect, truth, good = _maps()
    good[:, 40:60, 0:20] = 0.99  # a blob no threshold removes
    best, within = choose(sweep(defect, truth, good), budget=0.01)
    assert not within
    assert best.fp_blobs_per_image == min(p.fp_blobs_per_image for p in sweep(defect, truth, good))


def test_bad_fitting_sets_are_one_line_errors():
    defect, truth, good = _maps()
    with pytest.raises(EdgesegError, match="needs images with defects"):
        sweep(good, GroundTruth.from_masks(np.zeros(good.shape, np.uint8)), good)
    with pytest.raises(EdgesegError, match="defect-free images"):
        sweep(defect, truth, good[:0])
    with pytest.raises(EdgesegError, match="budget must be >= 0"):
        choose(sweep(defect, truth, good), budget=-1)
