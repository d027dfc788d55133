"""The mask rule: hysteresis extends found defects, never starts blobs; specks under min_area are dropped."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg import metrics
from edgeseg.errors import EdgesegError
from edgeseg.postprocess import MaskRule


def _probs():
    p = np.zeros((1, 64, 64), np.float32)
    p[0, 10:30, 10:30] = 0.3  # a faint defect ...
    p[0, 18:22, 18:30] = 0.9  # ... whose core (48 px) passes the threshold
    p[0, 40:60, 40:60] = 0.3  # a faint blob with no core: must not appear
    p[0, 5:9, 50:55] = 0.95  # a 20-px speck over the threshold: noise
    return p


def test_plain_rule_is_the_threshold():
    p = _probs()
    np.testing.assert_array_equal(MaskRule().apply(p, 0.5), p >= 0.5)


def test_hysteresis_grows_found_blobs_only():
    mask = MaskRule(grow=0.2).apply(_probs(), 0.5)[0]
    assert mask[10:30, 10:30].all()  # grown to the faint defect's extent
    assert not mask[40:60, 40:60].any()  # no seed, no blob
    assert mask[5:9, 50:55].all()  # no minimum area: the speck stays


def test_min_area_counts_seed_pixels_so_growth_cannot_rescue_a_speck():
    p = _probs()
    p[0, 0:15, 45:64] = np.maximum(p[0, 0:15, 45:64], 0.3)  # a faint halo that would grow the speck to 285 px
    mask = MaskRule(grow=0.2, min_area=32).apply(p, 0.5)[0]
    assert not mask[0:15, 45:64].any()
    assert mask[10:30, 10:30].all()  # the 48-px core qualifies


def test_rule_changes_defect_metrics_as_expected():
    p = _probs()
    truth = np.zeros((1, 64, 64), np.uint8)
    truth[0, 10:30, 10:30] = 1
    plain = metrics.compute(p, truth, 0.5)
    ruled = metrics.compute(p, truth, 0.5, rule=MaskRule(grow=0.2, min_area=32))
    # Plain: the core covers 48/400 = 12 % < 30 % → missed, and the speck is a false blob.
    assert plain["defect_recall"] == 0.0 and plain["fp_blobs"] == 1
    assert ruled["defect_recall"] == 1.0 and ruled["fp_blobs"] == 0 and ruled["dice"] == pytest.approx(1.0)
    # Scoring masks the caller already made with the rule (as compare does) gives the same report.
    masks = MaskRule(grow=0.2, min_area=32).apply(p, 0.5)
    assert metrics.score(masks, metrics.GroundTruth.from_masks(truth), 0.5) == ruled


def test_bad_rules_are_user_errors():
    with pytest.raises(EdgesegError, match="grow"):
        MaskRule(grow=1.5)
    with pytest.raises(EdgesegError, match="min_area"):
        MaskRule(min_area=-1)
    with pytest.raises(EdgesegError, match="mask rule"):
        MaskRule.from_dict({"min_area": "many"})
    assert MaskRule.from_dict(MaskRule(0.2, 32).to_dict()) == MaskRule(0.2, 32)
