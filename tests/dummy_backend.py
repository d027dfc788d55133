"""A backend that exists only for the tests: the whole diff a new backend needs is this file plus one
``register(BackendInfo(...))`` call (see tests/runners/test_registry.py).

It reads a ``.boxnet`` file — JSON ``{"size": 5, "level": 112, "scale": 2}`` — and scores each pixel as
sigmoid((local mean − level) / scale): a real computation, in numpy.
"""

from __future__ import annotations

import json

import numpy as np

from edgeseg.runners.base import Runner
from edgeseg.runners.registry import BackendInfo

INFO = BackendInfo("boxnet", "dummy_backend:BoxNetRunner", (".boxnet",), {"size": int})


class BoxNetRunner(Runner):
    backend = "boxnet"

    def __init__(self, path, size: int | None = None):
        super().__init__(path)
        self.size_override = size
        self.params: dict = {}

    def _activate(self) -> None:
        self.params = json.loads(self.path.read_text())
        if self.size_override:
            self.params["size"] = self.size_override
        self.config = dict(self.params)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        k = int(self.params["size"])
        x = batch[..., 0]
        pad = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)), mode="edge")
        c = pad.cumsum(1).cumsum(2)
        c = np.pad(c, ((0, 0), (1, 0), (1, 0)))
        h, w = x.shape[1:]
        mean = (c[:, k:k + h, k:k + w] - c[:, :h, k:k + w] - c[:, k:k + h, :w] + c[:, :h, :w]) / (k * k)
        return 1 / (1 + np.exp(-(mean - self.params["level"]) / self.params["scale"]))
