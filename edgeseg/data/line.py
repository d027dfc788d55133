"""Sets made from a line's own defect-free images: a dataset on disk (``edgeseg generate --backgrounds``) and
drawn-on-demand sets in memory (``edgeseg detectability --backgrounds``).

Both place the generator's defects on the backgrounds with :func:`edgeseg.data.backgrounds.draw`; contrast is
in gray levels on the 8-bit scale or, ``relative``, in multiples of the local noise σ. A dataset is in the
layout every command reads (images/<n>.png at the backgrounds' depth, labels/<n>.png 0/255, manifest.json),
and its manifest records, per image, the defects and where the image was cut from.

    bg = load_backgrounds("line/good", min_size=256)
    write_line_dataset("data/line", bg, preset("test"), count=200, seed=0, crop=256)
    defects = defect_set(bg, preset("test"), crop=256, count=200, seed=0)   # lazy, CHUNK images at a time
    good = good_set(bg, crop=256, count=200, seed=0)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.backgrounds import Backgrounds, draw, random_crop
from edgeseg.data.dataset import CHUNK, Dataset, ImageStack, write_set
from edgeseg.data.synth import GENERATOR_VERSION, Sample, SynthConfig
from edgeseg.errors import BadInput
from edgeseg.progress import Progress, silent

#: The knobs of a :class:`SynthConfig` that apply on backgrounds (they bring their own noise, level and lighting).
DEFECT_KNOBS = ("contrast", "contrast_continuous", "defects", "defect_size", "size_dist", "good_fraction", "shape")
#: What ``contrast`` means, for manifests and reports.
UNITS = {False: "gray levels", True: "local noise sigma"}
#: How gray levels are counted at either depth (:mod:`edgeseg.data.depth`).
LEVELS = "8-bit scale (a 16-bit image's levels / 257)"


def defect_config(cfg: SynthConfig) -> dict[str, Any]:
    """The defect knobs of ``cfg``, as a manifest records them."""
    d = cfg.to_dict()
    return {k: d[k] for k in DEFECT_KNOBS}


def image_shape(backgrounds: Backgrounds, crop: int | None) -> tuple[int, int]:
    """The (H, W) of every image drawn: ``crop`` squared, or the backgrounds' one size (a dataset folder holds
    one size); one-line BadInput when they differ and no crop is given."""
    if crop is not None:
        return crop, crop
    first = backgrounds.shapes[0]
    for name, shape in zip(backgrounds.names, backgrounds.shapes):
        if shape != first:
            raise BadInput(f"the backgrounds differ in size ({name} is {shape[1]}x{shape[0]}, "
                           f"{backgrounds.names[0]} is {first[1]}x{first[0]}) and a dataset holds one size; "
                           "pass --crop N to cut N x N crops")
    return first


def check_fits(cfg: SynthConfig, shape: tuple[int, int]) -> None:
    """BadInput unless the largest defect fits inside an image of ``shape`` (as :func:`inject` needs)."""
    h, w = shape
    if cfg.defect_size[1] >= min(h, w):
        raise BadInput(f"defects up to {cfg.defect_size[1]} px do not fit in {w}x{h} images; give a "
                       f"--defect-size below {min(h, w)} (or a larger --crop)")


def write_line_dataset(out: str | Path, backgrounds: Backgrounds, cfg: SynthConfig, count: int, seed: int,
                       relative: bool = False, crop: int | None = None, progress: Progress = silent) -> Path:
    """``count`` images of ``cfg``'s defects on ``backgrounds`` (random ``crop``² crops, or whole images of one
    size) from ``seed`` into ``out``, replaced atomically when complete.

    Writes images/<n>.png at the backgrounds' depth, labels/<n>.png (0/255) and manifest.json: the defect
    knobs, the contrast unit, the backgrounds (folder, names, sizes, depth), the crop and the seed; per image
    its defects (gray-level ``contrast`` on the 8-bit scale; with ``relative`` also ``contrast_sigma`` and the
    ``noise_sigma`` it multiplied) and its source (background name, crop y, x). The same backgrounds, options
    and seed give the same files.
    """
    check_fits(cfg, image_shape(backgrounds, crop))

    def one(rng: np.random.Generator) -> tuple:
        s, source = draw(rng, backgrounds, crop, cfg, relative)
        return s.image, s.mask, {"defects": s.defects, "source": source}

    config = {"generator": defect_config(cfg), "generator_version": GENERATOR_VERSION,
              "contrast_unit": UNITS[relative], "gray_levels": LEVELS, "backgrounds": backgrounds.describe(),
              "crop": crop, "seed": seed, "count": count}
    return write_set(out, count, seed, one, config, progress)


# -- sets drawn on demand ------------------------------------------------------------------------------
class _Drawn:
    """Image k of a drawn set comes from its own rng ``[seed, stream, k]``: any image can be drawn alone, in
    any order, and the same k gives the same crop and defect places whatever the contrast (a contrast sweep
    moves only the contrast). The last ``CHUNK`` draws are kept, so a set's images and then its masks of
    the same chunk are drawn once."""

    def __init__(self, make: Callable[[np.random.Generator], Sample], seed: int, stream: int):
        self.make, self.seed, self.stream = make, seed, stream
        self._kept: OrderedDict[int, Sample] = OrderedDict()

    def __call__(self, k: int) -> Sample:
        if k not in self._kept:
            self._kept[k] = self.make(np.random.default_rng([self.seed, self.stream, k]))
            if len(self._kept) > CHUNK:
                self._kept.popitem(last=False)
        return self._kept[k]


def _stack(read: Callable[[int], np.ndarray], count: int, size: int, dtype: np.dtype) -> ImageStack:
    stack = ImageStack(read, count, (size, size))
    stack.dtype = np.dtype(dtype)  # the stack assembles slices at this depth
    return stack


def defect_set(backgrounds: Backgrounds, cfg: SynthConfig, crop: int, count: int, seed: int,
               relative: bool = False) -> Dataset:
    """``count`` random ``crop``² crops of ``backgrounds`` with ``cfg``'s defects, drawn when read (memory: one
    chunk), as a :class:`Dataset` whose config names the defect sides (what a noise scan needs)."""
    check_fits(cfg, (crop, crop))
    drawn = _Drawn(lambda rng: draw(rng, backgrounds, crop, cfg, relative)[0], seed, 0)
    return Dataset(_stack(lambda k: drawn(k).image, count, crop, backgrounds.dtype),
                   _stack(lambda k: drawn(k).mask, count, crop, np.uint8), [str(k) for k in range(count)],
                   None, defect_config(cfg), backgrounds.path)


def good_set(backgrounds: Backgrounds, crop: int, count: int, seed: int) -> Dataset:
    """``count`` random ``crop``² crops of ``backgrounds`` without defects, drawn when read."""

    def make(rng: np.random.Generator) -> Sample:
        i = int(rng.choice(len(backgrounds), p=backgrounds.weights(crop)))
        image, _ = random_crop(rng, backgrounds.images[i], crop)
        return Sample(image, np.zeros((crop, crop), np.uint8))

    drawn = _Drawn(make, seed, 1)
    empty = np.zeros((crop, crop), np.uint8)
    return Dataset(_stack(lambda k: drawn(k).image, count, crop, backgrounds.dtype),
                   _stack(lambda k: empty, count, crop, np.uint8), [str(k) for k in range(count)], None, None,
                   backgrounds.path)
