"""Data-parallel training with ``tf.distribute``: several devices on one host, or several hosts.

``mirrored`` keeps one replica of the network per device (``tf.distribute.MirroredStrategy``): every GPU of
the host, or — on a CPU-only host — the CPU split into logical devices, which is how the tests run it.
``multiworker`` joins hosts (``tf.distribute.MultiWorkerMirroredStrategy``): every worker runs the same
``edgeseg train`` command with its own ``TF_CONFIG`` (the cluster's addresses and its index), trains on its
GPUs (or its CPU) and all-reduces gradients with the others; worker 0 (or the task named ``chief``) writes
the run, the others write nothing. Keras 3's ``model.fit`` fails under that strategy (PerReplica values reach
a tensor conversion: keras-team/keras#20585, tensorflow/tensorflow#72388), so it trains through
:mod:`edgeseg.train_loop`, a training loop of edgeseg's own that drives the same epoch callback.

Each global batch (``--batch-size``) is split over all replicas and their gradients are summed, so the same
``--batch-size`` trains the same network on any replica count, and a checkpoint resumes on another count.
The network, its optimizer and its loss are built inside :meth:`Distribution.scope` (Keras places their
variables on every replica there). Splitting the CPU, or choosing a worker's GPUs, must happen before
TensorFlow starts its runtime, so ``edgeseg train`` resolves the distribution before it touches anything else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edgeseg.deps import require
from edgeseg.errors import EdgesegError


class Strategy(str, Enum):
    auto = "auto"              # mirrored when --devices > 1, else none
    none = "none"
    mirrored = "mirrored"
    multiworker = "multiworker"  # several hosts, each with TF_CONFIG


#: How a worker learns the cluster (shown when TF_CONFIG is missing or wrong).
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


@dataclass(frozen=True)
class Cluster:
    """This worker's place in a multi-worker cluster, read from ``TF_CONFIG``."""

    workers: int
    task_type: str
    index: int
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """Whether this worker writes the run: the ``chief`` task, or worker 0 when there is none."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0 and not self.has_chief)

    def describe(self) -> dict[str, Any]:
        return {"workers": self.workers, "task": f"{self.task_type}:{self.index}", "chief": self.is_chief}


def cluster(env: dict[str, str] | None = None) -> Cluster:
    """This worker's :class:`Cluster` from ``TF_CONFIG``; one clear line for anything missing or malformed."""
    text = (os.environ if env is None else env).get("TF_CONFIG", "").strip()
    if not text:
        raise EdgesegError(f"--strategy multiworker reads the cluster from TF_CONFIG, which is not set: e.g. {TF_CONFIG_EXAMPLE}")
    try:
        config = json.loads(text)
        spec, task = config["cluster"], config["task"]
        task_type, index = str(task["type"]), int(task["index"])
        sizes = {name: len(addresses) for name, addresses in spec.items() if name in ("chief", "worker")}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise EdgesegError(f"TF_CONFIG must be JSON with a cluster and this task, e.g. {TF_CONFIG_EXAMPLE}") from None
    if task_type not in sizes or not 0 <= index < sizes[task_type]:
        raise EdgesegError(f"TF_CONFIG's task {task_type}:{index} is not in its cluster ({sizes})")
    if sizes.get("chief", 0) > 1:
        raise EdgesegError("TF_CONFIG's cluster may name one chief at most")
    return Cluster(workers=sum(sizes.values()), task_type=task_type, index=index, has_chief="chief" in sizes)


@dataclass
class Distribution:
    """The strategy a run trains under (None: the default single-device placement)."""

    kind: Strategy
    strategy: Any = None
    devices: list[str] = field(default_factory=list)
    cluster: Cluster | None = None

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run's files (every process but a multi-worker cluster's others)."""
        return self.cluster is None or self.cluster.is_chief

    @property
    def custom_loop(self) -> bool:
        """Whether the run trains through :mod:`edgeseg.train_loop` instead of ``model.fit`` (see the module
        docstring)."""
        return self.kind is Strategy.multiworker

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> dict[str, Any]:
        described = {"strategy": self.kind.value, "replicas": self.replicas, "devices": self.devices}
        return {**described, **self.cluster.describe()} if self.cluster is not None else described


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
        cluster()  # TF_CONFIG checked before TensorFlow starts
        return kind, _worker_devices(require("tensorflow"), devices)
    if kind is Strategy.auto:
        kind = Strategy.mirrored if devices > 1 else Strategy.none
    if kind is Strategy.none:
        if devices > 1:
            raise EdgesegError(f"--devices {devices} needs --strategy mirrored")
        return kind, []
    return kind, _local_devices(require("tensorflow"), devices)


def replicas(kind: Strategy | str = Strategy.auto, devices: int = 1) -> int:
    """How many replicas ``--strategy kind --devices N`` trains on, from the options and ``TF_CONFIG`` alone
    (before any strategy exists or any worker is contacted)."""
    multiworker = getattr(kind, "value", kind) == Strategy.multiworker.value
    return devices * (cluster().workers if multiworker else 1)


@functools.cache
def resolve(kind: Strategy | str = Strategy.auto, devices: int = 1) -> Distribution:
    """The distribution for ``--strategy kind --devices N``; see the module docstring. Cached: one strategy
    per process and setting."""
    kind, names = prepare(kind, devices)
    if kind is Strategy.none:
        return Distribution(kind)
    tf = require("tensorflow")
    if kind is Strategy.multiworker:
        return Distribution(kind, tf.distribute.MultiWorkerMirroredStrategy(), names, cluster())
    return Distribution(kind, tf.distribute.MirroredStrategy(names), names)


def _worker_devices(tf, devices: int) -> list[str]:
    """A multi-worker task's devices: its first ``devices`` GPUs (the others hidden from TensorFlow), or its
    CPU, which is one device here (a CPU split into logical devices is not a multi-worker replica)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        if devices > 1:
            raise EdgesegError(f"--devices {devices} with --strategy multiworker: this worker has no GPU, and its "
                               "CPU is one device (start more workers instead)")
        return ["/cpu:0"]
    if devices > len(gpus):
        raise EdgesegError(f"--devices {devices}: this host has {len(gpus)} GPU(s)")
    try:
        tf.config.set_visible_devices(gpus[:devices], "GPU")
    except RuntimeError:  # already started: fine if it shows no more GPUs than asked for
        if len(tf.config.get_visible_devices("GPU")) != devices:
            raise EdgesegError("a worker's GPUs can be chosen only before TensorFlow starts: pass --devices to a "
                               "fresh edgeseg train process") from None
    return [f"/gpu:{i}" for i in range(devices)]


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
