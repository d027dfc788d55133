"""The one interface every inference backend implements.

A runner takes raw pixels and returns defect probabilities:

    with load_runner("runs/demo/model.onnx") as runner:
        probs = runner.infer(images)          # (N, H, W) uint8/uint16/float → (N, H, W) float32 in [0, 1]

Expensive work (loading a model, building a session, deserialising an engine, allocating buffers) happens
in :meth:`Runner.activate`, never in ``__init__``, so constructing a runner is cheap and timing in the
benchmark harness measures inference only. Runners never time themselves.

A runner takes the image sizes its artifact takes (``image_shape``, ``size_multiple``); any other size goes
through :func:`edgeseg.tiling.any_size`, which tiles or pads around the runner.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeseg.data.depth import to_levels
from edgeseg.errors import BadInput
from edgeseg.types import Backend, Precision


class Runner(abc.ABC):
    """Base class: subclasses set ``backend`` and implement ``_activate``, ``_infer``, ``_deactivate``; a
    new backend is one such subclass plus one entry in :mod:`edgeseg.runners.registry`."""

    backend: ClassVar[Backend | str]

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
            self._output_checked = False
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

        ``images``: (N, H, W) or (N, H, W, 1): uint8 or uint16 camera pixels, or float gray levels on the 8-bit
        scale (0..255); uint16 becomes levels by /257 (:func:`edgeseg.data.depth.to_levels`). Models normalise
        internally, so deployed artifacts take the camera's levels as they come.
        Returns (N, H, W) float32 probabilities; an output of another shape, or (on the first batch) not
        within [0, 1], is refused in one line (:meth:`check_output`).
        """
        if not self.active:
            raise RuntimeError(f"{type(self).__name__}.infer() called before activate()")
        batch = self.prepare(images)
        return self.check_output(self._infer(batch), batch)

    def check_output(self, out, batch: np.ndarray) -> np.ndarray:
        """``out`` as (N, H, W) float32 probabilities, or a one-line :class:`BadInput` naming the model and
        what it gave. The shape is checked on every batch; the values (finite, within [0, 1]) on the first
        batch after :meth:`activate` — one min and one max, so a benchmark does not time the check."""
        out = np.asarray(out)
        n, h, w = batch.shape[:3]
        if out.shape not in ((n, h, w), (n, h, w, 1)):
            raise BadInput(f"{self.describe()} gave an output shaped {out.shape} for {n} images of {h}x{w}; "
                           f"edgeseg models give one probability per pixel, ({n}, {h}, {w}[, 1])")
        out = np.asarray(out, dtype=np.float32).reshape(n, h, w)
        if not self._output_checked and out.size:
            lo, hi = float(out.min()), float(out.max())
            if not (lo >= 0.0 and hi <= 1.0):  # NaN fails both
                seen = "NaN" if np.isnan(lo) or np.isnan(hi) else f"values from {lo:.4g} to {hi:.4g}"
                raise BadInput(f"{self.describe()} gave {seen}; edgeseg models give probabilities in [0, 1] "
                               "(does its graph end in a sigmoid?)")
            self._output_checked = True
        return out

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Validate and convert to the (N, H, W, 1) float32 gray levels the models take (8- and 16-bit pixels by
        :func:`edgeseg.data.depth.to_levels`; float taken as levels already)."""
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
        return np.ascontiguousarray(to_levels(a))[..., None]

    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) float32 raw pixels → (N, H, W[, 1]) probabilities."""

    def _deactivate(self) -> None:
        pass

    def describe(self) -> str:
        name = self.path.name if self.path else self.backend_name
        return f"{name} [{self.backend_name} {self.precision.value}]"

    @property
    def backend_name(self) -> str:
        """The registry name of this runner's backend (a :class:`Backend` value for the built-in ones)."""
        return str(getattr(self.backend, "value", self.backend))

    # -- what the harness may ask of any runner (defaults: a plain synchronous runner) ---------------------
    #: Batches the runner can keep in flight with :meth:`submit`/:meth:`collect` (1: call :meth:`infer`).
    in_flight: int = 1
    #: How the runner was set up (threads, workers, …), recorded beside its timings; None when nothing to say.
    config: dict | None = None
    #: Whether an output of this activation has been checked for values (:meth:`check_output`).
    _output_checked: bool = False

    def check_batch_size(self, batch: int) -> None:
        """Refuse, in one line, a batch size the runner cannot take (an engine's profile); any by default."""

    def drain_split(self) -> dict[str, list[float]]:
        """Device-side timings (H2D/compute/D2H, ms) since the last call; none for a host-only runner."""
        return {}
