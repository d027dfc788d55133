"""Training and validation data for ``edgeseg train``: fresh batches on the fly, a fixed validation set.

Training never sees the same image twice — every batch is drawn with an rng seeded by (seed, epoch, batch
index), so runs are reproducible, a resumed run draws exactly what the uninterrupted run would have, and the
network cannot overfit a fixed set. :class:`SynthBatches` draws from the synthetic generator; its validation
set is drawn once, from the *evaluation-like* distribution (the seed's contrast 3, with Gaussian noise and
elliptical defects mixed in) and its own seed, so checkpoints are chosen on the task we are judged on, not on
the training recipe. :class:`SourceBatches` draws from a line's own images (:mod:`edgeseg.data.sources`,
planned by :func:`line_plan`); its validation set and operating-point fit come from their held-out part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.augment import NONE, AugmentConfig, Curriculum, augment
from edgeseg.data.synth import SynthConfig, generate_batch, validation_config


def _py_dataset_base():
    import keras

    return keras.utils.PyDataset


class SynthBatches(_py_dataset_base()):
    """A Keras PyDataset of ``steps`` batches of (images (B, S, S, 1) float32, masks (B, S, S, 1) float32).

    Images are drawn directly at the crop size ``cfg.image_size`` (the networks are fully convolutional;
    drawing small images is cheaper than cropping big ones). Call :meth:`set_epoch` at each epoch start.
    """

    def __init__(self, cfg: SynthConfig, batch_size: int, steps: int, seed: int,
                 augmentation: AugmentConfig = NONE, curriculum: Curriculum | None = None, workers: int = 1):
        # Threads, not processes: the generator is numpy, which releases the GIL in its heavy loops.
        super().__init__(workers=workers, use_multiprocessing=False)
        self.base, self.batch_size, self.steps, self.seed = cfg, batch_size, steps, seed
        self.augmentation, self.curriculum = augmentation, curriculum
        self.epoch = 0
        self.cfg = cfg

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.curriculum is not None:
            self.cfg = self.base.replace(contrast=self.curriculum.contrast(epoch, self.base.contrast),
                                         contrast_continuous=True)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        images, masks = generate_batch(rng, self.cfg, self.batch_size)
        x = np.empty(images.shape + (1,), np.float32)
        y = np.empty(masks.shape + (1,), np.float32)
        for i in range(len(images)):
            x[i, ..., 0], y[i, ..., 0] = augment(rng, images[i], masks[i], self.augmentation)
        return x, y


def validation_set(seed: int, count: int, image_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, S, S, 1) float32, masks (N, S, S) uint8), drawn once from :func:`validation_config`."""
    images, masks = generate_batch(np.random.default_rng(seed), validation_config(image_size), count)
    return images[..., None].astype(np.float32), masks


class SourceBatches(_py_dataset_base()):
    """A Keras PyDataset of ``steps`` batches drawn from a :mod:`edgeseg.data.sources` source (a line's
    backgrounds and labelled images, optionally mixed with synthetic noise), seeded like :class:`SynthBatches`.
    ``make_source(epoch)`` gives the epoch's source (a curriculum changes its contrast)."""

    def __init__(self, make_source, batch_size: int, steps: int, seed: int, augmentation: AugmentConfig = NONE,
                 workers: int = 1):
        super().__init__(workers=workers, use_multiprocessing=False)
        self.make_source, self.batch_size, self.steps, self.seed = make_source, batch_size, steps, seed
        self.augmentation = augmentation
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.source, self.contrast = self.make_source(epoch)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        pairs = [self.source.sample(rng) for _ in range(self.batch_size)]
        h, w = pairs[0][0].shape
        x = np.empty((self.batch_size, h, w, 1), np.float32)
        y = np.empty((self.batch_size, h, w, 1), np.float32)
        for i, (image, mask) in enumerate(pairs):
            x[i, ..., 0], y[i, ..., 0] = augment(rng, image, mask, self.augmentation)
        return x, y


def held_out_set(held, count: int, seed, good_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, S, S, 1) float32, masks (N, S, S) uint8): ``count`` draws from held-out line images
    (:class:`~edgeseg.data.sources.HeldOut`), ``good_fraction`` of them defect-free, seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    n_good = int(round(count * good_fraction))
    pairs = [held.good(rng) if k < n_good else held.defect(rng) for k in range(count)]
    return np.stack([p[0] for p in pairs])[..., None].astype(np.float32), np.stack([p[1] for p in pairs])


class DrawnStack:
    """``count`` held-out draws, made when indexed (``stack[a:b]``) from rng ``[seed, k]`` for draw k, so a
    fitting set of thousands of crops costs the memory of one slice. ``part`` is 0 (images) or 1 (masks); the
    last slice is kept, so reading images and then masks of the same slice draws once."""

    def __init__(self, draw, count: int, seed, part: int, size: int, shared: dict | None = None):
        self.draw, self.count, self.seed, self.part = draw, count, seed, part
        self.shape = (count, size, size)
        self.shared = {} if shared is None else shared

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: slice) -> np.ndarray:
        key = index.indices(self.count)
        if self.shared.get("key") != key:
            pairs = [self.draw(np.random.default_rng([*np.atleast_1d(self.seed), k])) for k in range(*key)]
            self.shared.update(key=key, pairs=pairs)
        return np.stack([p[self.part] for p in self.shared["pairs"]])


def fitting_stacks(held, count: int, seed, size: int) -> tuple[DrawnStack, DrawnStack, DrawnStack]:
    """(defect images, their masks, defect-free images), ``count`` crops of ``size``² each, drawn lazily from
    held-out line images for the operating-point fit (rng ``[seed, 1, k]`` and ``[seed, 2, k]``: apart from
    validation)."""
    shared: dict = {}
    return (DrawnStack(held.defect, count, [*np.atleast_1d(seed), 1], 0, size, shared),
            DrawnStack(held.defect, count, [*np.atleast_1d(seed), 1], 1, size, shared),
            DrawnStack(held.good, count, [*np.atleast_1d(seed), 2], 0, size))


@dataclass
class LinePlan:
    """A run on a line's own images: ``make_source(epoch)`` → (source, contrast range) for training, ``held``
    the held-out draws (:class:`~edgeseg.data.sources.HeldOut`), ``described`` what the manifest records."""

    make_source: Callable[[int], tuple[Any, list[float]]]
    held: Any
    described: dict[str, Any]


def line_plan(cfg, synth: SynthConfig, curriculum: Curriculum | None) -> LinePlan:
    """The :class:`LinePlan` of ``cfg`` (a :class:`~edgeseg.train.TrainConfig` with ``backgrounds`` and/or
    ``data``)."""
    from edgeseg.data import sources as S
    from edgeseg.data.backgrounds import load_backgrounds

    weights = S.parse_mix(cfg.mix, {"backgrounds": bool(cfg.backgrounds), "data": bool(cfg.data)})
    relative = cfg.contrast_sigma is not None
    base = synth.replace(contrast=tuple(cfg.contrast_sigma), contrast_continuous=True) if relative else synth
    described: dict = {"mix": weights, "defect_ratio": cfg.defect_ratio,
                       "contrast_unit": "local noise sigma" if relative else "8-bit gray levels"}
    train_parts: dict = {}
    held_defects: dict = {}
    held_goods: dict = {}
    if cfg.backgrounds:
        bg = load_backgrounds(cfg.backgrounds, cfg.crop)
        if cfg.val_backgrounds:
            train_bg, val_bg = bg, load_backgrounds(cfg.val_backgrounds, cfg.crop)
        else:
            keep, held = S.hold_out(len(bg))
            train_bg, val_bg = bg.subset(keep), bg.subset(held)
        train_parts["backgrounds"] = S.BackgroundSource(train_bg, base, cfg.crop, cfg.defect_ratio, relative)
        held_defects["backgrounds"] = S.BackgroundSource(val_bg, base, cfg.crop, 1.0, relative)
        clean = S.BackgroundSource(val_bg, base, cfg.crop, 0.0, relative)
        held_goods["backgrounds"] = lambda rng, src=clean: src.sample(rng)[0]
        described.update(backgrounds=train_bg.describe(), val_backgrounds=val_bg.describe())
    if cfg.data:
        images, masks, names = S.load_labelled(cfg.data, cfg.crop)
        if cfg.val_data:
            v_images, v_masks, v_names = S.load_labelled(cfg.val_data, cfg.crop)
            keep, held = list(range(len(images))), []
        else:
            keep, held = S.hold_out(len(images))
            v_images, v_masks, v_names = ([images[i] for i in held], [masks[i] for i in held],
                                          [names[i] for i in held])
        train_parts["data"] = S.LabelledSource([images[i] for i in keep], [masks[i] for i in keep], cfg.crop,
                                               cfg.defect_ratio)
        labelled = S.LabelledSource(v_images, v_masks, cfg.crop, 1.0)
        held_defects["data"] = labelled
        held_goods["data"] = labelled.good
        described.update(data={"path": str(cfg.data), "images": [names[i] for i in keep]},
                         val_data={"path": str(cfg.val_data or cfg.data), "images": v_names})
    held_weights = {n: weights.get(n, 0.0) or 1.0 for n in held_defects}
    held = S.HeldOut(held_defects, held_goods, held_weights)

    def make_source(epoch: int):
        contrast = curriculum.contrast(epoch, base.contrast) if curriculum else base.contrast
        parts = {}
        for name in weights:
            if name == "synthetic":
                sc = curriculum.contrast(epoch, synth.contrast) if curriculum else synth.contrast
                parts[name] = S.SynthSource(synth.replace(contrast=sc, contrast_continuous=True)
                                            if curriculum else synth)
            else:
                part = train_parts[name]
                parts[name] = part.with_contrast(contrast) if curriculum and name == "backgrounds" else part
        return S.Mixed(parts, weights), list(contrast)

    return LinePlan(make_source, held, described)
