"""Training and validation data for ``edgeseg train``: fresh synthetic batches on the fly, a fixed
validation set.

Training never sees the same image twice — every batch is drawn from the generator with an rng seeded by
(seed, epoch, batch index), so runs are reproducible, a resumed run draws exactly what the uninterrupted
run would have, and the network cannot overfit a fixed set. The validation set is drawn once, from the
*evaluation-like* distribution (the seed's contrast 3, with Gaussian noise and elliptical defects mixed in)
and its own seed, so checkpoints are chosen on the task we are judged on, not on the training recipe.
"""

from __future__ import annotations

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
