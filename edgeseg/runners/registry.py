"""Which runner reads which artifact: one entry per backend, and the only place that knows them all.

A backend is one file (a :class:`~edgeseg.runners.base.Runner` subclass) plus one :class:`BackendInfo`
here: the files it reads, the options the CLI may route to it, what it can do, and the extra that installs
it. Runner modules are imported by name on first use, so asking which backend reads a file imports no
runtime, and ``runners/base.py`` imports none of its subclasses.

    load_runner("runs/demo/model.int8.onnx")             # → OnnxRuntimeRunner (by suffix)
    register(BackendInfo("mine", "mypkg.runner:MyRunner", (".mine",)))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.runners.base import Runner

#: The name given instead of a file for runners that read none (the classical detector).
CLASSICAL = "classical"


@dataclass(frozen=True)
class BackendInfo:
    """One backend: ``runner`` is ``"module:Class"``; ``suffixes`` the artifact files it reads (none: it
    needs no file and is named by ``name``); ``options`` the runner options a command may pass it, with their
    types; ``capabilities`` what the harness may use — ``streams`` (batches in flight on several streams,
    ``submit``/``collect``), ``device_split`` (H2D/compute/D2H timings), ``batch_profile`` (a fixed batch
    range); ``extra`` the pip extra that installs what it needs."""

    name: str
    runner: str
    suffixes: tuple[str, ...] = ()
    options: dict[str, type] = field(default_factory=dict)
    capabilities: frozenset[str] = frozenset()
    extra: str = "dev"

    def runner_class(self) -> type["Runner"]:
        module, _, cls = self.runner.partition(":")
        return getattr(importlib.import_module(module), cls)

    def accepts(self, options: dict[str, Any]) -> dict[str, Any]:
        """The subset of ``options`` this backend takes (a command's options are routed, never forced)."""
        return {k: v for k, v in options.items() if k in self.options and v is not None}


BACKENDS: dict[str, BackendInfo] = {}


def register(info: BackendInfo) -> BackendInfo:
    """Add (or replace) a backend; a suffix another backend already reads is refused."""
    for other in BACKENDS.values():
        clash = set(other.suffixes) & set(info.suffixes)
        if other.name != info.name and clash:
            raise ValueError(f"{info.name}: suffix {', '.join(sorted(clash))} is already read by {other.name}")
    BACKENDS[info.name] = info
    return info


register(BackendInfo("keras", "edgeseg.runners.keras:KerasRunner", (".keras",)))
register(BackendInfo("onnxruntime", "edgeseg.runners.onnxrt:OnnxRuntimeRunner", (".onnx",),
                     {"intra_op_num_threads": int, "providers": list, "io_binding": bool, "workers": int,
                      "chunk": int}, frozenset({"threads"}), extra="deploy"))
register(BackendInfo("tensorrt", "edgeseg.runners.trt:TrtRunner", (".engine", ".plan"),
                     {"streams": int, "device": int}, frozenset({"streams", "device_split", "batch_profile"}),
                     extra="trt"))
register(BackendInfo(CLASSICAL, "edgeseg.runners.classical:ClassicalRunner"))


def names() -> list[str]:
    return list(BACKENDS)


def info(name: str) -> BackendInfo:
    try:
        return BACKENDS[str(getattr(name, "value", name))]
    except KeyError:
        raise EdgesegError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}") from None


def _fileless(model: str | Path, backend: str | None) -> BackendInfo | None:
    """The file-less backend meant, if any: given as ``backend``, or named by ``model`` (``classical``)."""
    if backend and not info(backend).suffixes:
        return info(backend)
    named = BACKENDS.get(str(model))
    return named if named is not None and not named.suffixes else None


def backend_of(model: str | Path, backend: str | None = None) -> BackendInfo:
    """The backend that runs ``model``: ``backend`` when given (checked against the file's suffix), a
    file-less backend named by ``model``, else the one that reads the file's suffix."""
    chosen = info(backend) if backend else None
    fileless = _fileless(model, backend)
    if fileless is not None:
        return fileless
    suffix = Path(model).suffix.lower()
    by_suffix = next((b for b in BACKENDS.values() if suffix in b.suffixes), None)
    if chosen is None:
        if by_suffix is None:
            known = [s for b in BACKENDS.values() for s in b.suffixes]
            fileless = [f"'{b.name}'" for b in BACKENDS.values() if not b.suffixes]
            raise EdgesegError(f"cannot tell the backend of {model} from its suffix: edgeseg reads "
                               f"{', '.join(known[:-1])} and {known[-1]} files"
                               + (f" (or {' or '.join(fileless)} in place of a file)" if fileless else ""))
        return by_suffix
    if by_suffix is not None and by_suffix is not chosen:
        raise EdgesegError(f"{model} is a {by_suffix.name} artifact, not one for the {chosen.name} backend")
    return chosen


def load_runner(model: str | Path, backend: str | None = None, **options: Any) -> "Runner":
    """The runner for ``model`` (a file, or a file-less backend's name such as ``classical``), not yet
    activated. Raises :class:`EdgesegError` for a missing file or a backend that cannot read it."""
    fileless = _fileless(model, backend)
    if fileless is not None:
        return fileless.runner_class()(**options)
    if not Path(model).exists():
        raise EdgesegError(f"model file not found: {model}")
    return backend_of(model, backend).runner_class()(Path(model), **options)
