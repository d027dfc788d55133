"""Where a command may write: one policy for every output, checked before any work starts.

A command lists what it writes (each path with its :class:`Kind`) and what it reads; :func:`claim` checks
every output before the command does any work (a training run fails in its first second, not its last)
and refuses, in one line naming the path, the reason and the fix:

- an input of the command: the same file or folder (resolved, or the same file under another name), the
  manifest ``<model>.json`` of an input model, what a command reads inside an input folder (images, labels,
  manifest), a folder holding an input.
  Never allowed, ``--force`` or not;
- what no rename can turn into the output: a device (``/dev/full``) or any other non-regular file, a folder
  where a file goes, a file where a folder goes, a folder of other files where a dataset or predictions go.
  Never allowed: another path is the fix;
- another artifact where the command writes something else: a model (``.keras``, ``.onnx``, ``.engine``,
  ``.plan``) or a manifest (``X.json`` beside a file ``X``, or JSON that is an edgeseg manifest, a dataset's
  ``manifest.json`` included) where a report or plot goes; a model not made from this command's inputs
  where a model goes; a dataset or an earlier run where a training run goes (``--resume`` continues one).
  Allowed with ``--force``: the user says they mean it.

Then it holds the lock of every output (:mod:`edgeseg.locks`) until the command ends, so a second command
writing the same output is refused at once, and what a killed writer left beside it is removed.

    with claim([Output(out, Kind.model)], {"--model": [model]}, force=force):
        export_onnx(model, out)
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from edgeseg.artifacts import check_writable, manifest_path, sha256_file
from edgeseg.errors import EdgesegError
from edgeseg.locks import lock

MODEL_SUFFIXES = (".keras", ".onnx", ".engine", ".plan")
_RUN_FILES = ("model.keras", "model.keras.json", "history.json")  # what edgeseg.train writes into a run


class Kind(str, Enum):
    """What a command writes at a path; it decides which existing things may be replaced there."""

    report = "report"  # a JSON report (--json)
    plot = "plot"  # a picture (--plot)
    model = "model"  # a model file; its manifest <model>.json is written beside it
    manifest = "manifest"  # the manifest of an input model, updated in place (operating-point)
    cache = "cache"  # a file the command reads back and rewrites (a TensorRT timing cache)
    dataset = "dataset"  # folders from here on: a generated set
    predictions = "predictions"  # predicted masks
    run = "run"  # a training run: model.keras (+ .json), history.json, checkpoint/
    resumed_run = "resumed run"  # a training run continued with --resume
    cache_folder = "cache folder"  # a folder of caches (calibration sets)

    @property
    def folder(self) -> bool:
        return self in (Kind.dataset, Kind.predictions, Kind.run, Kind.resumed_run, Kind.cache_folder)


@dataclass(frozen=True)
class Output:
    """One path a command writes. ``option`` names it in messages; ``artifact`` is the manifest ``kind`` a
    report itself carries (``bench``), so an earlier one may be replaced."""

    path: Path
    kind: Kind
    option: str = "--out"
    artifact: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


class _Refused(Exception):
    def __init__(self, reason: str, fix: str | None = None, overridable: bool = False):
        super().__init__(reason)
        self.reason, self.fix, self.overridable = reason, fix, overridable


@dataclass(frozen=True)
class _Input:
    path: Path
    option: str
    manifest: bool = False  # the manifest of an input model

    def describe(self) -> str:
        if self.manifest:
            return f"the manifest of {self.option} {self.path.with_name(self.path.name[:-5])}, which this command reads"
        return f"{self.option} {self.path}, which this command reads"


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _same(a: Path, b: Path) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    c, f = _real(child), _real(folder)
    return c != f and c.startswith(f.rstrip(os.sep) + os.sep)


def _inputs(inputs: Mapping[str, Any] | None) -> list[_Input]:
    """Every protected path: each input, and the manifest of each input that is not a folder."""
    found: list[_Input] = []
    for option, paths in (inputs or {}).items():
        if paths is None:
            continue
        for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
            if p is None or str(p) in ("classical", "-"):
                continue
            p = Path(p)
            found.append(_Input(p, option))
            if not p.is_dir():
                found.append(_Input(manifest_path(p), option, manifest=True))
    return found


def _expand(outputs: Iterable[Output]) -> list[Output]:
    """A model output brings its manifest along."""
    out: list[Output] = []
    for o in outputs:
        out.append(o)
        if o.kind is Kind.model:
            out.append(Output(o.path.with_name(o.path.name + ".json"), Kind.manifest, o.option))
    return out


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _json_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is not one (or too big to be a manifest)."""
    try:
        if not path.is_file() or path.stat().st_size > 256 << 20:
            return None
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _manifest_kind(path: Path) -> str | None:
    """The ``kind`` of an edgeseg manifest (or bench record) in ``path``, or None when it is not one."""
    record = _json_record(path)
    if record and isinstance(record.get("kind"), str) and ("created" in record or "environment" in record):
        return record["kind"]
    return None


def _dataset_folder(folder: Path) -> bool:
    return _manifest_kind(folder / "manifest.json") == "dataset" or any(
        (folder / name).is_dir() for name in ("images", "labels", "label"))


def _made_from(path: Path, sources: list[Path]) -> bool:
    """Whether the model at ``path`` was made from one of ``sources``: its manifest names one of them (by
    path or sha256) as an input, or it is a copy of one (the same sha256)."""
    record = _json_record(manifest_path(path))
    if record is None:
        return False
    recorded = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    hashes = {v for v in recorded.values() if isinstance(v, str)} | {record.get("sha256")}
    for source in sources:
        if any(_real(Path(name)) == _real(source) for name in recorded):
            return True
        with contextlib.suppress(OSError):
            if source.is_file() and sha256_file(source) in hashes:
                return True
    return False


def _check_types(o: Output) -> None:
    """What no rename turns into ``o``: a device or other special file, a folder for a file, a file for a
    folder."""
    try:
        mode = os.stat(o.path).st_mode
    except OSError:
        return  # nothing there (or a dangling link, which the rename replaces)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        fix = ("choose another path" if o.kind.folder else "choose a regular file path"
               + (" (--json - prints to stdout)" if o.option == "--json" else ""))
        raise _Refused(f"it is {_file_type(mode)}, not a regular file", fix)
    if stat.S_ISDIR(mode) and not o.kind.folder:
        raise _Refused("it is a folder, and a file goes here", "give a file path (inside it, or elsewhere)")
    if stat.S_ISREG(mode) and o.kind.folder:
        raise _Refused(f"it is a file, and a {o.kind.value} folder goes here", "choose a folder path")


def _check_kind(o: Output, sources: list[Path]) -> None:
    """Another artifact where this output goes (overridable), or a folder of other files (not)."""
    p = o.path
    exists = p.exists()
    if o.kind in (Kind.report, Kind.plot):
        if exists and p.suffix in MODEL_SUFFIXES:
            raise _Refused(f"it is a model ({p.suffix})", overridable=True)
        if p.suffix == ".json" and p.with_suffix("").is_file():
            raise _Refused(f"it is the manifest of {p.with_suffix('')}", overridable=True)
        kind = _manifest_kind(p) if exists else None
        if kind is not None and kind != o.artifact:
            raise _Refused(f"it is an edgeseg {kind} manifest", overridable=True)
        if exists and p.name == "manifest.json" and _dataset_folder(p.parent):
            raise _Refused(f"it is the manifest of the dataset {p.parent}", overridable=True)
    elif o.kind is Kind.model and exists and not _made_from(p, sources):
        why = ("its manifest names none of this command's inputs" if manifest_path(p).is_file()
               else "it has no manifest")
        raise _Refused(f"it is another model ({why})", overridable=True)
    elif o.kind in (Kind.dataset, Kind.predictions) and p.is_dir() and any(p.iterdir()):
        if _manifest_kind(p / "manifest.json") != o.kind.value:
            raise _Refused(f"it exists and is not an edgeseg {o.kind.value} folder",
                           "choose another --out (or empty it first)")
    elif o.kind in (Kind.run, Kind.resumed_run) and p.is_dir():
        for name in (*_RUN_FILES, "checkpoint"):
            if (p / name).exists() and (p / name).is_dir() != (name == "checkpoint"):
                what = "file" if name == "checkpoint" else "folder"
                raise _Refused(f"its {name} is a {what}", "choose another --out")
        anyway = "choose another --out, or add --force to write the run into it"
        if _dataset_folder(p):
            raise _Refused("it is a dataset", anyway, overridable=True)
        kind = _manifest_kind(p / "manifest.json")
        if kind is not None:
            raise _Refused(f"it is an edgeseg {kind} folder", anyway, overridable=True)
        if o.kind is Kind.run and ((p / "model.keras").exists() or (p / "checkpoint" / "state.json").exists()):
            raise _Refused("it holds a training run", "--resume continues it, --force trains over it, or choose "
                           "another --out", overridable=True)


def _content(path: Path, folder: Path) -> bool:
    """Whether ``path`` inside an input ``folder`` is what a command reads there: its images, labels or
    manifest, in our layout or the seed's (other files beside a set, such as a report, are not)."""
    from edgeseg.data.dataset import IMAGE_SUFFIXES

    parts = Path(_real(path)).relative_to(_real(folder)).parts
    return parts[0] in ("images", "labels", "label", "manifest.json") or (
        len(parts) == 1 and Path(parts[0]).suffix.lower() in IMAGE_SUFFIXES)


def _check_inputs(o: Output, protected: list[_Input]) -> None:
    for i in protected:
        if _same(o.path, i.path):
            if o.kind is Kind.manifest and i.manifest:
                continue  # updating an input model's manifest is this output's job
            raise _Refused(f"it is {i.describe()}", "choose another path")
        if i.path.is_dir() and _inside(o.path, i.path) and _content(o.path, i.path):
            raise _Refused(f"it is part of {i.describe()}", "choose a path outside it")
        if _inside(i.path, o.path) and not i.manifest:
            raise _Refused(f"it holds {i.describe()}", "choose another path")


def check_outputs(outputs: Iterable[Output], inputs: Mapping[str, Any] | None = None, force: bool = False) -> None:
    """Refuse, with one :class:`EdgesegError` naming the path, the reason and the fix, the first output the
    policy above forbids. ``inputs`` maps an option to the paths it gave (one or a list; ``classical`` and
    ``-`` are skipped). Nothing is created."""
    outs = _expand(outputs)
    protected = _inputs(inputs)
    sources = [i.path for i in protected if not i.manifest]
    seen: dict[str, Output] = {}
    for o in outs:
        key = _real(o.path)
        if key in seen and seen[key] is not o:
            first = seen[key]
            raise EdgesegError(f"{first.option} and {o.option} both write {o.path}; choose different paths")
        seen[key] = o
    for o in outs:
        try:
            _check_inputs(o, protected)
            _check_types(o)
            try:
                check_writable(o.path)
                if o.kind in (Kind.run, Kind.resumed_run) and o.path.is_dir():
                    check_writable(o.path / "model.keras")  # a run is written inside its folder
            except EdgesegError as e:
                raise EdgesegError(f"{e}; choose another {o.option} path") from None
            _check_kind(o, sources)
        except _Refused as r:
            if r.overridable and force:
                continue
            verb = "overwrite" if os.path.lexists(o.path) else "write"
            fix = r.fix or "choose another path" + (", or add --force to replace it" if r.overridable else "")
            raise EdgesegError(f"refusing to {verb} {o.path} ({o.option}): {r.reason}; {fix}") from None


@contextlib.contextmanager
def claim(outputs: Iterable[Output], inputs: Mapping[str, Any] | None = None, force: bool = False) -> Iterator[None]:
    """:func:`check_outputs`, then hold the lock of every output whose folder exists until the block ends
    (the atomic writers lock the others when they create their folders)."""
    outputs = list(outputs)
    check_outputs(outputs, inputs, force)
    with contextlib.ExitStack() as stack:
        for o in _expand(outputs):
            if o.path.parent.is_dir():
                stack.enter_context(lock(o.path))
        yield
