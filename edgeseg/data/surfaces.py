"""Real surfaces to try the line workflow on without a line: scikit-image's grayscale photographs, each cut
into three regions that never overlap — ``train`` (the top half), ``val`` (bottom left) and ``test`` (bottom
right) — written as defect-free background folders (``edgeseg surfaces``).

``brick`` is patterned (mortar lines, a regular texture), ``moon`` smooth with natural pits (craters), ``grass``
and ``gravel`` random textures. None was made here: their structure is what a line's false alarms are made of.

    write_surfaces("runs/line/surfaces", ["brick", "moon"])  # → brick/{train,val,test}/brick.png, manifest.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edgeseg.errors import EdgesegError

#: The photographs and what kind of surface each is.
SURFACES = {"brick": "patterned", "moon": "smooth with pits", "grass": "random texture", "gravel": "random texture"}
#: Region → (rows, columns) of a 512 × 512 photograph.
REGIONS = {"train": (slice(0, 256), slice(0, 512)), "val": (slice(256, 512), slice(0, 256)),
           "test": (slice(256, 512), slice(256, 512))}


def photograph(name: str) -> np.ndarray:
    """The (512, 512) uint8 photograph ``name`` from scikit-image's bundled data."""
    if name not in SURFACES:
        raise EdgesegError(f"unknown surface {name!r}: choose from {', '.join(SURFACES)}")
    from edgeseg.deps import require

    data = require("skimage.data")
    image = np.asarray(getattr(data, name)())
    if image.shape != (512, 512) or image.dtype != np.uint8:
        raise EdgesegError(f"scikit-image's {name} is {image.shape} {image.dtype}, expected (512, 512) uint8")
    return image


def write_surfaces(out: str | Path, names: Sequence[str]) -> Path:
    """``out/<name>/<region>/<name>.png`` for each surface and region, and ``out/manifest.json`` (replaced
    atomically when complete)."""
    import cv2
    import skimage

    from edgeseg.artifacts import atomic_dir, manifest, write_json

    out = Path(out)
    regions = {r: [s.start, s.stop, c.start, c.stop] for r, (s, c) in REGIONS.items()}
    with atomic_dir(out) as tmp:
        for name in names:
            image = photograph(name)
            for region, box in REGIONS.items():
                folder = tmp / name / region
                folder.mkdir(parents=True)
                if not cv2.imwrite(str(folder / f"{name}.png"), image[box]):
                    raise EdgesegError(f"could not write {out / name / region} (disk full or not writable?)")
        write_json(tmp / "manifest.json", manifest("dataset", {
            "source": f"scikit-image {skimage.__version__} skimage.data", "surfaces": {n: SURFACES[n] for n in names},
            "regions": {"rows_cols": regions, "note": "train: top half, val: bottom left, test: bottom right"}}))
    return out
