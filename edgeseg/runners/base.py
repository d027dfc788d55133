"""The one interface every inference backend implements.

A runner takes raw pixels and returns defect probabilities:

    with load_runner("runs/demo/model.onnx") as runner:
        probs = runner.infer(images)          # (N, H, W) uint8/float → (N, H, W) float32 in [0, 1]

Expensive work (loading a model, building a session, deserialising an engine, allocating buffers) happens
in :meth:`Runner.activate`, never in ``__init__``, so constructing a runner is cheap and timing in the
benchmark harness measures inference only. Runners never time themselves.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeseg.errors import BadInput, EdgesegError
from edgeseg.types import Backend, Precision


class Runner(abc.ABC):
    """Base class: subclasses set ``backend`` and implement ``_activate``, ``_infer``, ``_deactivate``."""

    backend: ClassVar[Backend]

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.active = False
        #: (H, W) the model accepts, or None for any size; known after activate().
        self.image_shape: tuple[int, int] | None = None
        #: Image sides must be multiples of this (pooling and folding networks); 1 for any size.
        self.size_multiple: int = 1
        #: Numeric precision of the artifact (fp32/fp16/int8); set by subclasses that can tell.
        self.precision: Precision = Precision.fp32

    # -- lifecycle ---------------------------------------------------------------------------------
    def activate(self) -> "Runner":
        if not self.active:
            self._activate()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- inference ---------------------------------------------------------------------------------
    def infer(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of raw images.

        ``images``: (N, H, W) or (N, H, W, 1), uint8 or float, raw gray levels (0..255); models normalise
        internally so deployed artifacts take camera pixels as they come.
        Returns (N, H, W) float32 probabilities.
        """
        if not self.active:
            raise RuntimeError(f"{type(self).__name__}.infer() called before activate()")
        batch = self.prepare(images)
        out = self._infer(batch)
        return np.asarray(out, dtype=np.float32).reshape(batch.shape[:3])

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Validate and convert to the (N, H, W, 1) float32 array the models take."""
        a = np.asarray(images)
        if a.ndim == 4 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise BadInput(f"expected images shaped (N, H, W) or (N, H, W, 1), got {a.shape}")
        if self.image_shape is not None and tuple(a.shape[1:]) != tuple(self.image_shape):
            raise BadInput(
                f"{self.describe()} takes {self.image_shape[0]}x{self.image_shape[1]} images, "
                f"got {a.shape[1]}x{a.shape[2]}"
            )
        m = self.size_multiple
        if m > 1 and (a.shape[1] % m or a.shape[2] % m):
            raise BadInput(f"{self.describe()} takes images whose sides are multiples of {m}, "
                           f"got {a.shape[1]}x{a.shape[2]}; crop or pad them")
        return np.ascontiguousarray(a, dtype=np.float32)[..., None]

    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) float32 raw pixels → (N, H, W[, 1]) probabilities."""

    def _deactivate(self) -> None:
        pass

    def describe(self) -> str:
        name = self.path.name if self.path else self.backend.value
        return f"{name} [{self.backend.value} {self.precision.value}]"


_SUFFIXES = {".keras": Backend.keras, ".onnx": Backend.onnxruntime, ".engine": Backend.tensorrt,
             ".plan": Backend.tensorrt}


def backend_of(model: str | Path, backend: Backend | str | None = None) -> Backend:
    """The backend that runs ``model``: ``classical``, ``backend`` when given (checked against the file's
    suffix), else the one the suffix names. Raises :class:`EdgesegError` when neither tells."""
    backend = Backend(backend) if backend else None
    if str(model) == "classical" or backend is Backend.classical:
        return Backend.classical
    path = Path(model)
    expected = _SUFFIXES.get(path.suffix.lower())
    if backend is None:
        if expected is None:
            raise EdgesegError(
                f"cannot tell the backend of {path} from its suffix: expected .keras, .onnx or .engine "
                "(or pass --backend)"
            )
        return expected
    if expected is not None and expected is not backend:
        raise EdgesegError(f"{path} is a {expected.value} artifact, not one for the {backend.value} backend")
    return backend


def load_runner(model: str | Path, backend: Backend | str | None = None, **options) -> Runner:
    """The runner for ``model``: a file path (backend from its suffix unless given, :func:`backend_of`) or
    ``classical``.

    Raises :class:`EdgesegError` for a missing file or a backend that cannot read it.
    """
    if str(model) == "classical" or (backend and Backend(backend) is Backend.classical):
        from edgeseg.runners.classical import ClassicalRunner

        return ClassicalRunner(**options)
    path = Path(model)
    if not path.exists():
        raise EdgesegError(f"model file not found: {path}")
    backend = backend_of(path, backend)
    if backend is Backend.keras:
        from edgeseg.runners.keras import KerasRunner

        return KerasRunner(path, **options)
    if backend is Backend.onnxruntime:
        from edgeseg.runners.onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, **options)
    from edgeseg.runners.trt import TrtRunner

    return TrtRunner(path, **options)
