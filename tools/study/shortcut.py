"""The bounded-noise shortcut issue #2 warns about, measured: what a detector gets by using the seed's noise bounds.

    python tools/study/shortcut.py ROOT     # ROOT/{seed,good,gauss,goodg}, as in docs/study.md (large sets)

The seed's noise is uniform in 100..124 and a defect's pixels in 103..127, so a pixel above 124 is a defect pixel,
and an 8×8 window of noise has no pixel below 103 with probability (22/25)^64 ≈ 3e-4. The detector keeps the
regions where every 8×8 window has no pixel below 103, when they hold at least two pixels above 124. It is scored
like any model (defect recall, Dice, false blobs per image), on the seed's noise and on Gaussian noise.
"""
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.dataset import load_dataset
from edgeseg.metrics import GroundTruth, score

K = np.ones((8, 8), np.uint8)


def detect(x: np.ndarray) -> np.ndarray:
    region = cv2.dilate((cv2.erode(x, K) >= 103).astype(np.uint8), K) > 0
    n, lab = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    hot = np.bincount(lab[x > 124], minlength=n) >= 2
    hot[0] = False
    return hot[lab]


root = Path(sys.argv[1])
for defects, good in (("seed", "good"), ("gauss", "goodg")):
    ds, dg = load_dataset(root / defects), load_dataset(root / good)
    m = score(np.stack([detect(x) for x in ds.images]), GroundTruth.from_masks(ds.masks), 0.5)
    mg = score(np.stack([detect(x) for x in dg.images]), GroundTruth.from_masks(dg.masks), 0.5)
    print(f"{defects}: recall {m['defect_recall']:.4f} Dice {m['dice']:.3f} false blobs/img {m['fp_blobs_per_image']:.3f}"
          f" | {good}: false blobs/img {mg['fp_blobs_per_image']:.3f}, overkill {mg['overkill_rate']:.3f}")
