"""Where training images come from: synthetic noise, a line's defect-free backgrounds, its labelled images —
alone or mixed — and the held-out part of each that validation and the operating point are fitted on.

Every source draws one (crop × crop) image and its mask from an rng: ``source.sample(rng) -> (levels, mask)``,
``levels`` float32 gray levels on the 8-bit scale (:func:`edgeseg.data.depth.to_levels`), ``mask`` uint8 {0, 1}.

* :class:`SynthSource` — the generator's preset (the project's own recipe);
* :class:`BackgroundSource` — a random crop of a defect-free line image with the generator's defects placed
  on it (:mod:`edgeseg.data.backgrounds`), never the same twice; ``defect_ratio`` of the crops get defects;
* :class:`LabelledSource` — a crop of a labelled line image; ``defect_ratio`` of the crops are placed over a
  defect pixel (labelled defects are rare: a uniform crop would mostly miss them), the rest anywhere.

:func:`parse_mix` turns ``backgrounds:3,data:1`` into weights; :func:`hold_out` splits a folder's images into a
training part and a held-out part (never the same image in both), so validation and the operating-point fit
see the line's surfaces but never a training crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeseg.data.backgrounds import Backgrounds, inject, random_crop
from edgeseg.data.depth import to_levels
from edgeseg.data.synth import SynthConfig, generate
from edgeseg.errors import BadInput, EdgesegError

SOURCES = ("synthetic", "backgrounds", "data")
#: Every HOLD_OUT-th image of a folder (the last one too, when there are fewer) is held out for validation.
HOLD_OUT = 5


class Source(Protocol):
    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class SynthSource:
    cfg: SynthConfig

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = generate(rng, self.cfg)
        return s.image.astype(np.float32), s.mask


@dataclass
class BackgroundSource:
    """Crops of ``backgrounds`` with ``cfg``'s defects on ``defect_ratio`` of them. Contrast is in 8-bit gray
    levels (a 16-bit background is turned into levels first) or, with ``relative``, in local noise σ."""

    backgrounds: Backgrounds
    cfg: SynthConfig
    crop: int
    defect_ratio: float
    relative: bool = False

    def __post_init__(self) -> None:
        # Exactly defect_ratio of the crops have defects: at least one each, up to the recipe's most.
        self.cfg = self.cfg.replace(good_fraction=1.0 - self.defect_ratio,
                                    defects=(1, max(1, self.cfg.defects[1])), image_size=self.crop)
        self._weights = self.backgrounds.weights(self.crop)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = int(rng.choice(len(self.backgrounds), p=self._weights))
        crop, _ = random_crop(rng, self.backgrounds.images[i], self.crop)
        # An 8-bit crop gets its defects as a camera would record them (rounded); a 16-bit one on the levels.
        base = crop if crop.dtype == np.uint8 else to_levels(crop)
        s = inject(rng, base, self.cfg, self.relative)
        return to_levels(s.image), s.mask

    def with_contrast(self, contrast: tuple[float, float]) -> "BackgroundSource":
        return BackgroundSource(self.backgrounds, self.cfg.replace(contrast=contrast, contrast_continuous=True),
                                self.crop, self.defect_ratio, self.relative)


@dataclass
class LabelledSource:
    """Crops of labelled line images; ``defect_ratio`` of them over a defect pixel, uniformly offset."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    crop: int
    defect_ratio: float

    def __post_init__(self) -> None:
        self._defect_pixels = [np.flatnonzero(m) for m in self.masks]
        self._with_defects = [i for i, p in enumerate(self._defect_pixels) if len(p)]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self._with_defects and rng.random() < self.defect_ratio:
            i = self._with_defects[int(rng.integers(len(self._with_defects)))]
            h, w = self.masks[i].shape
            py, px = divmod(int(rng.choice(self._defect_pixels[i])), w)
            y = int(rng.integers(max(0, py - self.crop + 1), min(py, h - self.crop) + 1))
            x = int(rng.integers(max(0, px - self.crop + 1), min(px, w - self.crop) + 1))
        else:
            i = int(rng.integers(len(self.images)))
            h, w = self.masks[i].shape
            y, x = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        box = (slice(y, y + self.crop), slice(x, x + self.crop))
        return to_levels(self.images[i][box]), self.masks[i][box]

    def good(self, rng: np.random.Generator, tries: int = 50) -> np.ndarray | None:
        """A crop without a defect pixel, or None when ``tries`` random places all touch one."""
        for _ in range(tries):
            i = int(rng.integers(len(self.images)))
            h, w = self.masks[i].shape
            y, x = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
            box = (slice(y, y + self.crop), slice(x, x + self.crop))
            if not self.masks[i][box].any():
                return to_levels(self.images[i][box])
        return None


def pick(rng: np.random.Generator, names: list[str], weights: dict[str, float]) -> str:
    """One of ``names``, drawn with their ``weights`` (no draw when there is one)."""
    if len(names) == 1:
        return names[0]
    w = np.array([weights[n] for n in names], float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


@dataclass
class Mixed:
    """Several sources, each image drawn from one of them with the given weights."""

    sources: dict[str, Any]
    weights: dict[str, float]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.sources[pick(rng, list(self.sources), self.weights)].sample(rng)


def parse_mix(text: str | None, given: dict[str, bool]) -> dict[str, float]:
    """``"backgrounds:3,data:1"`` → {"backgrounds": 0.75, "data": 0.25}. Without a spec, the given line sources
    weigh the same (synthetic noise alone when none is given). Every named source must be given."""
    if not text:
        names = [n for n in ("backgrounds", "data") if given.get(n)] or ["synthetic"]
        return {n: 1.0 / len(names) for n in names}
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        try:
            w = float(value) if sep else 1.0
        except ValueError:
            w = float("nan")
        if name not in SOURCES or not np.isfinite(w) or w < 0 or name in weights:
            raise EdgesegError(f"--mix must be SOURCE:WEIGHT,... with sources {', '.join(SOURCES)} (each once) and "
                               f"weights >= 0, e.g. backgrounds:3,synthetic:1; got {text!r}")
        weights[name] = w
    for name in weights:
        if name != "synthetic" and not given.get(name):
            raise EdgesegError(f"--mix names {name} but no --{name} folder was given")
    total = sum(weights.values())
    if total <= 0:
        raise EdgesegError(f"--mix weights must not all be 0, got {text!r}")
    return {n: w / total for n, w in weights.items() if w > 0}


def hold_out(count: int) -> tuple[list[int], list[int]]:
    """(training, held-out) indices of a folder of ``count`` images: every HOLD_OUT-th image, or the last one when
    there are fewer, is held out. A single image cannot be split: BadInput."""
    if count < 2:
        raise BadInput("one image cannot be split into training and validation; give at least 2 images, or "
                       "the held-out ones as --val-backgrounds / --val-data")
    held = [i for i in range(count) if i % HOLD_OUT == HOLD_OUT - 1] or [count - 1]
    return [i for i in range(count) if i not in held], held



def load_labelled(path: str | Path, crop: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """A labelled folder (the dataset layout edgeseg reads) in memory: images, {0, 1} masks, names; every image
    at least ``crop`` on both sides."""
    from edgeseg.data.dataset import load_dataset

    ds = load_dataset(path)
    h, w = ds.images.shape[1:]
    if min(h, w) < crop:
        raise BadInput(f"the images of {path} are {w}x{h}, smaller than the {crop}x{crop} crop; lower --crop")
    return list(np.asarray(ds.images)), list(np.asarray(ds.masks)), list(ds.names)


@dataclass
class HeldOut:
    """Draws from the held-out line images: ``defect(rng)`` a crop with defects, ``good(rng)`` one without,
    each from a source chosen with the training mix's weights (synthetic noise is never held out: the line's
    images are what validation and the operating point are about)."""

    defects: dict[str, Any]  # name → a source whose every sample has defects
    goods: dict[str, Any]  # name → callable(rng) → levels of a defect-free crop, or None
    weights: dict[str, float]

    def defect(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.defects[pick(rng, list(self.defects), self.weights)].sample(rng)

    def good(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        names = list(self.goods)
        for _ in range(4 * len(names)):
            image = self.goods[pick(rng, names, self.weights)](rng)
            if image is not None:
                return image, np.zeros(image.shape, np.uint8)
        raise BadInput("no defect-free crop found in the held-out labelled images; give defect-free images "
                       "with --backgrounds")
