"""Images of any size through any runner: whole when the runner takes them, else in overlapping tiles.

A line's camera gives 1024×1024 or 768×1280 images; an ONNX file exported for 256², or a TensorRT engine,
takes one size only, and a network that pools needs sides that are multiples of its stride. :func:`any_size`
wraps a runner so that every command (eval, predict, compare, operating-point, bench) hands it whole images of
any size and gets whole probability maps back:

* the runner takes the image (any size, or exactly its size, sides a multiple of ``size_multiple``) and no
  ``tile`` was asked for: the image goes through unchanged — bit for bit what the runner gives alone;
* the runner takes any size but the sides are not multiples of its ``size_multiple``: the image is padded by
  reflection at its bottom and right to the next multiple, run whole, and cropped back;
* the runner has a fixed ``image_shape`` (an ONNX file exported for one size, an engine) or ``tile`` is
  given: the image is cut into overlapping tiles of that shape, each run, and stitched. Each tile keeps only
  its centre — the cut between two neighbours lies in the middle of their overlap, so every output pixel
  comes from a tile in which it had at least ``overlap // 2`` pixels of context on every side (at the image's
  border, up to the edge, as in whole-image inference). Tiles start at multiples of ``size_multiple``, so a
  network that folds 4×4 cells sees the same cell grid in every tile as in the whole image, and an image
  smaller than a tile is padded by reflection to one tile.

Why the default overlap is 128 (a margin of 64 px a side): ``inline``'s receptive field is about 250 px
(±125 px: dilations 1..16 at 1/4 resolution), but most of a pixel's answer comes from its inner ±64 px —
the outer taps of the dilated stack see the smooth background, which every tile also sees. A 64 px margin
leaves a 256² tile a 128² centre, so a 1024² image takes 49 tiles (3× the pixels of 16 disjoint tiles); a
wider margin costs many more tiles for little. Measured with the demo model on sixteen 16-bit 1024² images
(``edgeseg compare`` of the model exported at 1024² against the 256² file tiled, ``--tile-overlap`` 0 / 64 /
128 / 192): mask IoU with whole-image inference 0.935 / 0.987 / 0.995 / 0.998, Dice 0.934 / 0.954 / 0.954 /
0.954 (whole: 0.954), recall lost at the seams only without overlap; 192 takes 225 tiles an image instead of
49. Networks that measure the noise per image (``inline`` does) measure it per tile here, on 65,536 pixels.

    with any_size(load_runner("runs/demo/model.onnx")) as runner:      # exported at 256²
        probs = runner.infer(images_1024)                              # 49 tiles an image, stitched
"""

from __future__ import annotations

import numpy as np

from edgeseg.errors import BadInput
from edgeseg.runners.base import Runner

#: Pixels two neighbouring tiles share: each keeps half of it, so every output pixel has 64 px of context
#: (tiles shorter than 256 px share half their side: :func:`default_overlap`).
DEFAULT_OVERLAP = 128
#: Tiles per call to the wrapped runner (its batch profile permitting).
TILE_BATCH = 16
#: The largest tile side (the generator's and the export's largest image side).
MAX_TILE = 4096


def check_tiling(tile: int | None, overlap: int | None) -> None:
    """``--tile`` and ``--tile-overlap`` in one line if wrong (before any model is loaded)."""
    from edgeseg.validate import whole

    if tile is not None:
        whole("--tile", tile, 16, MAX_TILE, unit="pixels")
    if overlap is not None:
        whole("--tile-overlap", overlap, 0, MAX_TILE - 1, unit="pixels")


def default_overlap(tile: tuple[int, int]) -> int:
    """:data:`DEFAULT_OVERLAP`, or half the tile's shorter side where that is less (a tile then keeps its
    central half)."""
    return min(DEFAULT_OVERLAP, min(tile) // 2)


def round_up(n: int, multiple: int) -> int:
    return -(-int(n) // int(multiple)) * int(multiple)


def spans(length: int, tile: int, margin: int, multiple: int = 1) -> list[tuple[int, int, int]]:
    """How one axis of ``length`` pixels is cut into tiles of ``tile``: ``(start, keep_from, keep_to)`` per
    tile, the kept ranges covering ``0..length`` once, in order.

    Starts are multiples of ``multiple``, at most ``tile − 2·margin`` apart (rounded down to ``multiple``), the
    last one at ``length − tile``; the cut between two tiles is the middle of their overlap, so a kept pixel
    lies at least ``margin`` pixels inside its tile (but at the ends of the axis). ``length`` must be at
    least ``tile``, and ``length`` and ``tile`` multiples of ``multiple``.
    """
    if length < tile or length % multiple or tile % multiple:
        raise ValueError(f"cannot cut {length} px into {tile} px tiles on a grid of {multiple}")
    stride = (tile - 2 * margin) // multiple * multiple
    if stride < multiple:
        raise ValueError(f"a {tile} px tile with a {margin} px margin each side keeps nothing")
    if length == tile:
        return [(0, 0, length)]
    starts = list(range(0, length - tile, stride)) + [length - tile]
    cuts = [0] + [(a + b + tile) // 2 for a, b in zip(starts, starts[1:])] + [length]
    return [(s, cuts[k], cuts[k + 1]) for k, s in enumerate(starts)]


def pad_to(batch: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W, 1) padded by reflection at the bottom and right to (N, height, width, 1)."""
    n, h, w = batch.shape[:3]
    if (h, w) == (height, width):
        return batch
    return np.pad(batch, ((0, 0), (0, height - h), (0, width - w), (0, 0)), mode="reflect")


def fits(runner: Runner, shape: tuple[int, int]) -> bool:
    """Whether an active ``runner`` takes (H, W) images as they are."""
    h, w = (int(v) for v in shape)
    m = runner.size_multiple
    fixed = runner.image_shape
    return (fixed is None or tuple(fixed) == (h, w)) and h % m == 0 and w % m == 0


class TiledRunner(Runner):
    """A runner around another that takes images of any size (see the module docstring): whole, padded to the
    inner runner's ``size_multiple``, or in overlapping tiles of its ``image_shape`` (or of ``tile``²)."""

    def __init__(self, inner: Runner, tile: int | None = None, overlap: int | None = None,
                 tile_batch: int = TILE_BATCH):
        super().__init__(inner.path)
        self.inner = inner
        self.backend = inner.backend  # reports name the backend that runs, not the wrapper
        self.tile = None if tile is None else int(tile)
        #: Pixels neighbouring tiles share; None: :func:`default_overlap` of the tile.
        self.overlap = None if overlap is None else int(overlap)
        self.tile_batch = max(1, int(tile_batch))
        self._tiled = False  # whether a batch was tiled or padded (then the config says how)

    # -- lifecycle ---------------------------------------------------------------------------------
    def _activate(self) -> None:
        inner = self.inner.activate()
        self.precision = inner.precision
        shape = self.tile_shape()
        if shape is not None:
            m = inner.size_multiple
            if shape[0] % m or shape[1] % m:
                raise BadInput(f"--tile {self.tile}: {inner.describe()} takes images whose sides are multiples of "
                               f"{m}; give a tile that is one")
            if self.overlap is not None and min(shape) - 2 * (self.overlap // 2) < m:
                raise BadInput(f"--tile-overlap {self.overlap} leaves nothing of a {shape[0]}x{shape[1]} tile (each "
                               f"keeps its centre, the tile less the overlap): give less than {min(shape) - m + 1}")

    def _deactivate(self) -> None:
        self.inner.deactivate()

    def tile_shape(self) -> tuple[int, int] | None:
        """(H, W) of a tile once the inner runner is active: its fixed ``image_shape``, else ``tile``², else None
        (images run whole). A ``tile`` other than a fixed shape is refused."""
        fixed = self.inner.image_shape
        if fixed is not None:
            fixed = (int(fixed[0]), int(fixed[1]))
            if self.tile is not None and (self.tile, self.tile) != fixed:
                raise BadInput(f"--tile {self.tile}: {self.inner.describe()} takes {fixed[0]}x{fixed[1]} images only; "
                               f"drop --tile (it is tiled at {fixed[0]}x{fixed[1]}) or re-export it for another size")
            return fixed
        return None if self.tile is None else (self.tile, self.tile)

    def overlap_for(self, tile: tuple[int, int]) -> int:
        return default_overlap(tile) if self.overlap is None else self.overlap

    # -- what the harness and reports ask ----------------------------------------------------------
    @property
    def config(self) -> dict | None:  # type: ignore[override]
        """The inner runner's settings, plus how images were tiled once any was."""
        inner = self.inner.config
        if not self._tiled:
            return inner
        shape = self.tile_shape()
        tiling = {"tile": list(shape) if shape else None, "overlap": self.overlap_for(shape) if shape else None,
                  "size_multiple": self.inner.size_multiple}
        return {**(inner or {}), "tiling": tiling}

    def describe(self) -> str:
        return self.inner.describe()

    # -- inference ---------------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n, h, w = batch.shape[:3]
        m = self.inner.size_multiple
        shape = self.tile_shape()
        if shape is None:  # the inner runner takes any size: whole images, padded to its multiple
            ph, pw = round_up(h, m), round_up(w, m)
            if (ph, pw) == (h, w):
                return self._run(batch)
            self._tiled = True
            return self._run(pad_to(batch, ph, pw))[:, :h, :w]
        th, tw = shape
        if (h, w) == (th, tw):
            return self._run(batch)
        self._tiled = True
        padded = pad_to(batch, max(round_up(h, m), th), max(round_up(w, m), tw))
        margin = self.overlap_for(shape) // 2
        ys = spans(padded.shape[1], th, margin, m)
        xs = spans(padded.shape[2], tw, margin, m)
        out = np.empty(padded.shape[:3], np.float32)
        jobs = [(i, y, x) for i in range(n) for y in ys for x in xs]
        # Calls of equal size (49 tiles: 12, 12, 12, 13 rather than 16, 16, 16, 1), none above tile_batch.
        calls = -(-len(jobs) // self.tile_batch)
        for group in (jobs[k * len(jobs) // calls:(k + 1) * len(jobs) // calls] for k in range(calls)):
            tiles = np.stack([padded[i, y[0]:y[0] + th, x[0]:x[0] + tw] for i, y, x in group])
            probs = self._run(tiles)
            for (i, (y0, ya, yb), (x0, xa, xb)), p in zip(group, probs):
                out[i, ya:yb, xa:xb] = p[ya - y0:yb - y0, xa - x0:xb - x0]
        return out[:, :h, :w]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """The inner runner on ``batch``, in calls its batch profile takes (an engine's MIN..MAX; a call short
        of MIN is filled up with copies of its last image)."""
        lo, hi = getattr(self.inner, "batch_range", None) or (1, len(batch))
        if lo <= len(batch) <= hi:
            return self.inner.infer(batch)
        parts = []
        for s in range(0, len(batch), hi):
            part = batch[s:s + hi]
            short = max(0, lo - len(part))
            if short:
                part = np.concatenate([part, np.repeat(part[-1:], short, axis=0)])
            parts.append(self.inner.infer(part)[:len(part) - short])
        return np.concatenate(parts)


def any_size(runner: Runner, tile: int | None = None, overlap: int | None = None) -> Runner:
    """``runner`` wrapped to take images of any size (:class:`TiledRunner`); images it takes as they are go
    through unchanged. ``tile``: cut images into ``tile``² tiles even where the runner takes them whole."""
    if isinstance(runner, TiledRunner):
        return runner
    return TiledRunner(runner, tile, overlap)


def fitted(runner: Runner, shape: tuple[int, int], tile: int | None = None,
           overlap: int | None = None) -> Runner:
    """``runner`` itself when it takes (H, W) images as they are and no ``tile`` is asked for (a benchmark then
    times the runner alone, with its streams), else :func:`any_size`. Activates ``runner`` to know."""
    if tile is None and fits(runner.activate(), shape):
        return runner
    return any_size(runner, tile, overlap)


