"""Predicted masks written to a folder, a chunk at a time: the library behind ``edgeseg predict``.

    ds = load_dataset("data/seed")                      # or open_images(folder) for unlabelled images
    with load_runner("runs/demo/model.onnx") as runner:
        write_predictions(runner, ds.images, ["0.png", ...], Path("out"), threshold=0.42,
                          rule=model_mask_rule("runs/demo/model.onnx"), truths=ds.masks, triptych=True)

Images are read, predicted, turned into masks and written ``chunk_size`` at a time (fewer for large images:
:func:`~edgeseg.data.dataset.chunk_for`), so a folder of any size is written in the memory of one chunk of
images and probabilities. 16-bit images are shown in the pictures by their own percentiles, as 8-bit ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.dataset import ImageStack, chunk_for
from edgeseg.errors import BadInput
from edgeseg.postprocess import MaskRule
from edgeseg.progress import Progress, silent
from edgeseg.runners.base import Runner


def write_predictions(runner: Runner, images: np.ndarray | ImageStack, pngs: Sequence[str], folder: Path,
                      threshold: float, rule: MaskRule | None = None,
                      truths: np.ndarray | ImageStack | None = None, triptych: bool = False, batch_size: int = 16,
                      chunk_size: int | None = None, progress: Progress = silent, shown: Path | None = None) -> None:
    """Write ``folder/<png>`` (0/255) for each image and, with ``triptych``, ``folder/triptych/<png>``: image |
    truth (when ``truths`` are given) | prediction. Masks follow ``rule`` from ``threshold`` (a plain threshold
    without one). ``folder`` must exist; ``shown`` is the folder named in errors (the final one, when ``folder``
    is a temporary one replaced at the end). The runner must be active; progress is in images done."""
    from edgeseg.evaluate import predict_probs
    from edgeseg.visualize import triptych as make_triptych

    if len(pngs) != len(images):
        raise ValueError(f"{len(pngs)} file names for {len(images)} images")
    chunk_size = chunk_size or chunk_for(images.shape[1:])
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    rule = rule or MaskRule()
    if triptych:
        (folder / "triptych").mkdir(exist_ok=True)
    for start in range(0, len(images), chunk_size):
        part = slice(start, start + chunk_size)
        chunk = np.asarray(images[part])
        probs = predict_probs(runner, chunk, batch_size,
                              lambda d, n, m="", base=start: progress(base + d, len(images), m))
        masks = rule.apply(probs, threshold)
        gts = None if truths is None else np.asarray(truths[part])
        for i, png in enumerate(pngs[part]):
            mask = masks[i].astype(np.uint8) * 255
            ok = cv2.imwrite(str(folder / png), mask)
            if ok and triptych:
                ok = cv2.imwrite(str(folder / "triptych" / png),
                                 make_triptych(chunk[i], mask, None if gts is None else gts[i]))
            if not ok:
                raise BadInput(f"could not write {(shown or folder) / png} (disk full or not writable?)")
