"""Training augmentation (NumPy, rng injected) and the contrast curriculum.

The generator already varies what a line varies (noise model and level, background level, illumination,
shapes); augmentation adds what it does not: orientation (flips, 90° turns), sensor gain and gamma, and
extra noise — all applied identically to image and mask where geometry changes, so they stay aligned.
The curriculum starts training on clearer defects and anneals the contrast down to the target, so the
network first learns *what* a defect is and then how faint it can be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeseg.errors import EdgesegError


@dataclass(frozen=True)
class AugmentConfig:
    flips: bool = True
    #: Gain g drawn in [lo, hi]: image → mean + g·(image − mean); defect contrast and noise scale together.
    gain: tuple[float, float] = (0.85, 1.15)
    #: Gamma drawn in [lo, hi] on the 0..255 range (a mild non-linear sensor response).
    gamma: tuple[float, float] = (0.9, 1.1)
    #: Extra Gaussian noise of std drawn in [0, this] gray levels (lowers the SNR a little).
    extra_noise: float = 2.0

    def to_dict(self) -> dict:
        return {"flips": self.flips, "gain": list(self.gain), "gamma": list(self.gamma),
                "extra_noise": self.extra_noise}


NONE = AugmentConfig(flips=False, gain=(1.0, 1.0), gamma=(1.0, 1.0), extra_noise=0.0)


def augment(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray,
            cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Augment one (H, W) image (any numeric dtype) and its mask; returns float32 image in 0..255 and the
    mask (same dtype as given) transformed by the same geometry."""
    img = image.astype(np.float32)
    if cfg.flips:
        k = int(rng.integers(4))
        img, mask = np.rot90(img, k), np.rot90(mask, k)
        if rng.random() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
    g = float(rng.uniform(*cfg.gain))
    if g != 1.0:
        m = float(img.mean())
        img = m + g * (img - m)
    gamma = float(rng.uniform(*cfg.gamma))
    if gamma != 1.0:
        img = 255.0 * np.power(np.clip(img, 0, 255) / 255.0, gamma)
    if cfg.extra_noise > 0:
        s = float(rng.uniform(0, cfg.extra_noise))
        img = img + rng.normal(0.0, s, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.float32)
    return np.ascontiguousarray(img), np.ascontiguousarray(mask)


@dataclass(frozen=True)
class Curriculum:
    """The low end of the training contrast goes linearly from ``start`` to ``end`` over ``epochs`` epochs
    (then stays at ``end``); the high end is the preset's, or the low end where that is higher."""

    start: float
    end: float
    epochs: int

    @classmethod
    def parse(cls, text: str) -> "Curriculum":
        parts = text.split(":")
        try:
            start, end, epochs = float(parts[0]), float(parts[1]), int(parts[2])
            if len(parts) != 3 or epochs < 1 or start <= 0 or end <= 0:
                raise ValueError
        except (ValueError, IndexError):
            raise EdgesegError(f"curriculum must be START:END:EPOCHS (e.g. 8:3:4), got {text!r}") from None
        return cls(start, end, epochs)

    def contrast(self, epoch: int, base: tuple[float, float]) -> tuple[float, float]:
        t = min(1.0, epoch / self.epochs)
        lo = self.start + (self.end - self.start) * t
        return (lo, max(base[1], lo))

    def __str__(self) -> str:
        return f"{self.start:g}:{self.end:g}:{self.epochs}"
