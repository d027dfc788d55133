"""Data-parallel training with ``tf.distribute``: several devices on one host.

``mirrored`` keeps one replica of the network per device (``tf.distribute.MirroredStrategy``): every GPU of
the host, or — on a CPU-only host — the CPU split into logical devices, which is how the tests run it. Each
global batch (``--batch-size``) is split over the replicas and their gradients are summed, so the same
``--batch-size`` trains the same network on any replica count, and a checkpoint resumes on another count.
``multiworker`` (several hosts, ``tf.distribute.MultiWorkerMirroredStrategy``) is refused with the reason:
Keras 3's ``model.fit`` fails under that strategy (PerReplica values reach a tensor conversion; upstream
keras-team/keras#20585 and tensorflow/tensorflow#72388; reproduced with TF 2.21 / Keras 3.15, two workers
over loopback), and edgeseg trains through ``model.fit``.

The network, its optimizer and its loss are built inside :meth:`Distribution.scope` (Keras places their
variables on every replica there). Splitting the CPU must happen before TensorFlow starts its runtime, so
``edgeseg train`` resolves the distribution before it touches anything else.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edgeseg.deps import require
from edgeseg.errors import EdgesegError


class Strategy(str, Enum):
    auto = "auto"              # mirrored when --devices > 1, else none
    none = "none"
    mirrored = "mirrored"
    multiworker = "multiworker"  # refused: see MULTIWORKER_REFUSED


#: Why several hosts are refused (see the module docstring).
MULTIWORKER_REFUSED = ("--strategy multiworker is not supported: Keras 3's model.fit fails under "
                       "MultiWorkerMirroredStrategy (keras-team/keras#20585); train on one host with "
                       "--strategy mirrored --devices N (its GPUs)")


@dataclass
class Distribution:
    """The strategy a run trains under (None: the default single-device placement)."""

    kind: Strategy
    strategy: Any = None
    devices: list[str] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.kind.value, "replicas": self.replicas, "devices": self.devices}


def prepare(kind: Strategy | str = Strategy.auto, devices: int = 1) -> tuple[Strategy, list[str]]:
    """Check ``--strategy``/``--devices`` and make the devices exist (split the CPU if it must be split):
    called before anything starts TensorFlow's runtime. Returns the strategy and this host's device names."""
    try:
        kind = Strategy(kind)
    except ValueError:
        raise EdgesegError(f"--strategy must be one of {', '.join(s.value for s in Strategy)}, got {kind!r}") from None
    if devices < 1:
        raise EdgesegError(f"--devices must be at least 1, got {devices}")
    if kind is Strategy.multiworker:
        raise EdgesegError(MULTIWORKER_REFUSED)
    if kind is Strategy.auto:
        kind = Strategy.mirrored if devices > 1 else Strategy.none
    if kind is Strategy.none:
        if devices > 1:
            raise EdgesegError(f"--devices {devices} needs --strategy mirrored")
        return kind, []
    return kind, _local_devices(require("tensorflow"), devices)


@functools.cache
def resolve(kind: Strategy | str = Strategy.auto, devices: int = 1) -> Distribution:
    """The distribution for ``--strategy kind --devices N``; see the module docstring. Cached: one strategy
    per process and setting."""
    kind, names = prepare(kind, devices)
    if kind is Strategy.none:
        return Distribution(kind)
    return Distribution(kind, require("tensorflow").distribute.MirroredStrategy(names), names)


def _local_devices(tf, devices: int) -> list[str]:
    """``devices`` device names on this host: its GPUs, or the CPU split into logical devices."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if devices > len(gpus):
            raise EdgesegError(f"--devices {devices}: this host has {len(gpus)} GPU(s)")
        return [f"/gpu:{i}" for i in range(devices)]
    cpus = tf.config.list_physical_devices("CPU")
    try:
        if devices > 1:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:  # already started: fine if it was split into at least as many devices
        if len(tf.config.list_logical_devices("CPU")) < devices:
            raise EdgesegError("the CPU can be split into devices only before TensorFlow starts: pass --devices "
                               "to a fresh edgeseg train process") from None
    return [d.name for d in tf.config.list_logical_devices("CPU")][:devices]
