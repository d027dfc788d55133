"""How a probability map becomes a defect mask: hysteresis and a minimum blob size.

A network's probabilities at one threshold make two kinds of mistakes an inspection line cares about: a faint
defect that is *found* but only partly covered (its core passes the threshold, its rim does not), and a
speck of noise that passes the threshold by itself. The rule that fixes both is the classical detector's:

* **hysteresis** — a blob is seeded by pixels ≥ ``threshold`` and grows over connected pixels ≥ ``grow``,
  so a found defect is segmented to its extent while nothing below ``threshold`` starts a blob of its own;
* **minimum area** — blobs with fewer than ``min_area`` pixels ≥ ``threshold`` are dropped (the seed's
  smallest defect is 8×8 = 64 px; a speck under half of that is noise, not a defect we can localise).

``edgeseg train`` fits the rule and its threshold under a false-alarm budget (:mod:`edgeseg.operating`). The
rule travels with the model (its manifest's ``mask_rule``, copied through export and quantization), so
``eval``, ``predict`` and ``compare`` (whose report feeds ``bench``'s accuracy columns) turn probabilities
into masks the same way. The streaming benchmark's consumer still thresholds only: it counts masks, it does not
score them.

    rule = MaskRule(grow=0.2, min_area=32)
    masks = rule.apply(probs, threshold=0.5)     # (N, H, W) bool
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from edgeseg.errors import EdgesegError


@dataclass(frozen=True)
class MaskRule:
    """``grow``: hysteresis low level (None: plain threshold); ``min_area``: smallest blob kept, in pixels."""

    grow: float | None = None
    min_area: int = 0

    def __post_init__(self) -> None:
        if self.grow is not None and not 0.0 < self.grow < 1.0:
            raise EdgesegError(f"mask rule: grow must be in (0, 1), got {self.grow}")
        if self.min_area < 0:
            raise EdgesegError(f"mask rule: min_area must be >= 0, got {self.min_area}")

    @property
    def plain(self) -> bool:
        return self.grow is None and self.min_area <= 1

    def level(self, threshold: float) -> float:
        """The level a blob's pixels reach: ``grow`` when it is below ``threshold``, else ``threshold``."""
        return min(threshold, self.grow) if self.grow is not None else threshold

    def keeps(self, seed_area: np.ndarray) -> np.ndarray:
        """Which blobs stay, given each blob's count of seed pixels (those ≥ the threshold)."""
        return seed_area >= max(self.min_area, 1)

    def apply(self, probs: np.ndarray, threshold: float) -> np.ndarray:
        """(N, H, W) probabilities → (N, H, W) bool masks."""
        seeds = probs >= threshold
        if self.plain:
            return seeds
        low = probs >= self.level(threshold)
        out = np.zeros_like(seeds)
        for i in range(len(probs)):
            if not low[i].any():
                continue
            n, lab, stats, _ = cv2.connectedComponentsWithStats(low[i].astype(np.uint8), connectivity=8)
            # A blob is kept when its seed pixels (≥ threshold) alone reach min_area: growth extends found
            # defects, it does not promote specks of noise.
            keep = self.keeps(np.bincount(lab[seeds[i]], minlength=n))
            keep[0] = False
            out[i] = keep[lab]
        return out

    def describe(self) -> str:
        """For people: ``grown over 0.6, blobs >= 32 px`` or ``no growing, blobs >= 32 px``."""
        return (f"grown over {self.grow:g}" if self.grow is not None else "no growing") + f", blobs >= {self.min_area} px"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "MaskRule":
        d = d or {}
        try:
            return cls(grow=d.get("grow"), min_area=int(d.get("min_area", 0)))
        except (TypeError, ValueError):
            raise EdgesegError(f"mask rule: expected {{'grow': float|null, 'min_area': int}}, got {d!r}") from None

