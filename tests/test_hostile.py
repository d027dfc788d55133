"""Hostile command lines: outputs that would destroy a user's files, and what every command must do instead.

One table, :data:`CASES`: each :class:`Case` is a command line run through the real CLI in a fresh copy of a
small workspace (a dataset, a model with its manifest, another model, a training run, a folder of notes…).
Every case asserts its exit code and message, that no traceback was printed, that every file that was there
before is unchanged byte for byte (but those the case lists as written), and that no hidden temporary or
lock file (``.<name>.<something>``) is left anywhere it could have written. To add a case, append a ``Case``.

Outside the table, with real subprocesses: SIGTERM and SIGKILL during ``generate``, and three concurrent
``generate`` runs on one ``--out``; and the umask.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app

cli = CliRunner()
EDGESEG = Path(sys.executable).with_name("edgeseg")
SMALL = ["--image-size", "32", "--defect-size", "4:10", "-q"]


# -- the workspace every case starts from ---------------------------------------------------------------
def _model(path: Path, size: int, threshold: float) -> Path:
    from edgeseg.artifacts import write_manifest
    from tiny_models import tiny_onnx

    tiny_onnx(path, size)
    write_manifest(path, "onnx", {"model": "tiny"}, threshold=threshold, mask_rule={"grow": 0.3, "min_area": 4})
    return path


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    """``data/``, ``data2/`` (datasets), ``good/`` (defect-free), ``m.onnx`` + manifest (the model the
    commands read), ``other.onnx`` + manifest (another model), ``bare.onnx`` (no manifest), ``model.keras``
    + manifest (never loaded: every Keras case is refused first), ``report.json`` (an earlier report),
    ``bench.json`` (an earlier bench record), ``run/`` (a training run), ``notes/notes.txt`` (a user's file)."""
    from edgeseg.artifacts import write_json, write_manifest
    from edgeseg.data.dataset import write_dataset
    from edgeseg.data.synth import PRESETS
    from tiny_models import tiny_onnx

    w = tmp_path_factory.mktemp("hostile") / "w"
    w.mkdir()
    easy = PRESETS["test"].replace(image_size=32, defect_size=(6, 12), contrast=(12, 12))
    write_dataset(w / "data", easy, count=4, seed=1)
    write_dataset(w / "data2", easy, count=3, seed=2)
    write_dataset(w / "good", easy.replace(good_fraction=1.0), count=3, seed=3)
    _model(w / "m.onnx", 32, 0.4)
    _model(w / "other.onnx", 16, 0.6)
    tiny_onnx(w / "bare.onnx", 24)
    (w / "model.keras").write_bytes(b"PK\x03\x04 a trained model")
    write_manifest(w / "model.keras", "model", {"model": "inline"}, threshold=0.5)
    write_json(w / "report.json", {"results": [], "command": ["edgeseg", "eval"]})
    write_json(w / "bench.json", {"kind": "bench", "created": "then", "config": {}, "rows": []})
    (w / "run" / "checkpoint").mkdir(parents=True)
    (w / "run" / "model.keras").write_bytes(b"PK\x03\x04 last week's model")
    (w / "run" / "model.keras.json").write_text('{"kind": "model"}\n')
    (w / "run" / "history.json").write_text("[]\n")
    (w / "run" / "checkpoint" / "state.json").write_text('{"epoch": 3}\n')
    (w / "notes").mkdir()
    (w / "notes" / "notes.txt").write_text("keep me\n")
    return w


def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(folder: Path) -> None:
    """Fill a file system to the last byte."""
    fd = os.open(folder / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.fixture(scope="session")
def mounts(tmp_path_factory):
    """``full``: a 64 KiB tmpfs filled to the last byte, holding ``keep.json``; ``ro``: a read-only tmpfs.
    None where mounting is not permitted (not root): the cases that need them skip."""
    root = tmp_path_factory.mktemp("mounts")
    full, ro = root / "full", root / "ro"
    try:
        if not (_mount(full, "size=64k") and _mount(ro, "ro,size=64k")):
            yield None
            return
        (full / "keep.json").write_text('{"results": []}\n')
        _fill(full)
        yield {"full": full, "ro": ro}
    finally:
        _umount(full)
        _umount(ro)


# -- the table --------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One hostile command line. ``argv`` may name ``{w}`` (the workspace copy), ``{full}`` (a full file
    system) and ``{ro}`` (a read-only one). ``setup(w)`` runs first and may return a clean-up callable.
    ``written``: workspace paths (globs) the command may change; everything else must stay byte for byte."""

    id: str
    argv: list[str]
    code: int = 1
    message: str = ""
    setup: Callable[[Path], Callable[[], None] | None] | None = None
    written: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = None  # more assertions after the command

    @property
    def needs_mounts(self) -> bool:
        return any("{full}" in a or "{ro}" in a for a in self.argv)


def eval_(*extra: str) -> list[str]:
    return ["eval", "--model", "{w}/m.onnx", "--data", "{w}/data", "-q", *extra]


def op(*extra: str) -> list[str]:
    return ["operating-point", "--model", "{w}/m.onnx", "--data", "{w}/data", "--good", "{w}/good", "-q", *extra]


def fp16(*extra: str) -> list[str]:
    return ["quantize", "--model", "{w}/m.onnx", "--fp16", "-q", *extra]


def export(*extra: str) -> list[str]:
    return ["export", "--model", "{w}/model.keras", "-q", *extra]


def train(*extra: str) -> list[str]:
    return ["train", "-q", "--epochs", "1", *extra]


def predict(*extra: str) -> list[str]:
    return ["predict", "--model", "{w}/m.onnx", "-q", *extra]


def detect(*extra: str) -> list[str]:
    return ["detectability", "--data", "{w}/data", "--good", "{w}/good", "-q", *extra]


def generate(*extra: str) -> list[str]:
    return ["generate", "--count", "3", *SMALL, *extra]


def bench(*extra: str) -> list[str]:
    return ["bench", "-m", "{w}/m.onnx", "--batch-sizes", "1", "--warmup-s", "0", "--duration-s", "0.05",
            "--repeats", "1", *extra]


def symlink(name: str, target: str):
    def setup(w: Path):
        (w / name).symlink_to(w / target)
    return setup


def hardlink(name: str, target: str):
    def setup(w: Path):
        os.link(w / target, w / name)
    return setup


def fifo(name: str):
    def setup(w: Path):
        os.mkfifo(w / name)
    return setup


def stale(*names: str, folder: bool = False):
    """Leftovers of a writer killed mid-write: temporary files (or folders) and a lock file."""
    def setup(w: Path):
        for name in names:
            p = w / name
            if folder:
                (p / "images").mkdir(parents=True)
                (p / "images" / "0.png").write_bytes(b"half an image")
            else:
                p.write_bytes(b"half a file")
    return setup


def held_lock(name: str):
    """Another process writing ``name``: its lock file held (here by another open file of this process)."""
    def setup(w: Path):
        fd = os.open(w / name, os.O_RDWR | os.O_CREAT)
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

        def release():
            os.unlink(w / name)
            os.close(fd)
        return release
    return setup


def still_device(path: str):
    def check(w: Path):
        assert stat.S_ISCHR(os.stat(path).st_mode), f"{path} is no longer a device"
    return check


def still_fifo(name: str):
    def check(w: Path):
        assert stat.S_ISFIFO(os.stat(w / name).st_mode)
    return check


def no_file(*names: str):
    def check(w: Path):
        for name in names:
            assert not (w / name).exists(), f"{name} was written"
    return check


IS_INPUT = "which this command reads; choose another path"
FORCE_FIX = "choose another path, or add --force to replace it"

CASES: list[Case] = [
    # An output that is one of the command's inputs: refused, --force or not.
    Case("eval-json-onto-its-model", eval_("--json", "{w}/m.onnx"), message=f"it is --model {{w}}/m.onnx, {IS_INPUT}"),
    Case("eval-json-onto-its-model-force", eval_("--json", "{w}/m.onnx", "--force"), message=IS_INPUT),
    Case("eval-json-onto-its-models-manifest", eval_("--json", "{w}/m.onnx.json"),
         message=f"it is the manifest of --model {{w}}/m.onnx, {IS_INPUT}"),
    Case("eval-json-onto-its-models-manifest-force", eval_("--json", "{w}/m.onnx.json", "--force"), message=IS_INPUT),
    Case("eval-json-would-be-a-bare-models-manifest",
         ["eval", "--model", "{w}/bare.onnx", "--data", "{w}/data", "-q", "--json", "{w}/bare.onnx.json", "--force"],
         message="it is the manifest of --model", check=no_file("bare.onnx.json")),
    Case("eval-json-symlink-to-its-model", eval_("--json", "{w}/link.json"), setup=symlink("link.json", "m.onnx"),
         message=IS_INPUT),
    Case("eval-json-hard-link-of-its-model", eval_("--json", "{w}/hard.json", "--force"),
         setup=hardlink("hard.json", "m.onnx"), message=IS_INPUT),
    Case("eval-json-onto-its-data-folder", eval_("--json", "{w}/data"), message="it is --data"),
    Case("eval-json-among-its-images", eval_("--json", "{w}/data/images/9.png", "--force"),
         message="it is part of --data", check=no_file("data/images/9.png")),
    Case("eval-json-among-seed-layout-images", ["eval", "--model", "{w}/m.onnx", "--data", "{w}/seed", "-q",
                                                "--json", "{w}/seed/0.png", "--force"],
         setup=lambda w: shutil.copytree(w / "data" / "images", w / "seed") and shutil.copytree(
             w / "data" / "labels", w / "seed" / "label"), message="it is part of --data"),
    Case("detectability-json-onto-its-datasets-manifest", detect("--json", "{w}/data/manifest.json", "--force"),
         message="it is part of --data"),
    Case("export-out-onto-its-keras-model", export("--out", "{w}/model.keras"), message="it is --model"),
    Case("export-out-onto-its-keras-model-force", export("--out", "{w}/model.keras", "--force"), message=IS_INPUT),
    Case("quantize-out-onto-its-fp32-model", fp16("--out", "{w}/m.onnx"), message=f"it is --model {{w}}/m.onnx, {IS_INPUT}"),
    Case("quantize-out-onto-its-fp32-model-force", fp16("--out", "{w}/m.onnx", "--force"), message=IS_INPUT),
    Case("quantize-out-onto-its-models-manifest", fp16("--out", "{w}/m.onnx.json"), message="it is the manifest of --model"),
    Case("operating-point-out-onto-its-model", op("--out", "{w}/m.onnx", "--force"), message=IS_INPUT),
    Case("operating-point-json-onto-the-manifest-it-writes", op("--json", "{w}/m.onnx.json"),
         message="--json and --model both write"),
    Case("predict-out-onto-its-input", predict("--input", "{w}/data", "--out", "{w}/data", "--force"),
         message="it is --input"),
    Case("predict-out-holds-its-input", predict("--input", "{w}/data/images", "--out", "{w}/data"), message="it holds --input"),
    Case("predict-out-holds-its-model", predict("--input", "{w}/data", "--out", "{w}"), message="it holds --model"),
    Case("compare-json-onto-a-model-it-compares", ["compare", "{w}/m.onnx", "--data", "{w}/data", "-q", "--json", "{w}/m.onnx"],
         message="it is model"),
    Case("check-json-onto-the-model-it-checks", ["check", "--json", "{w}/m.onnx", "{w}/m.onnx"], message="it is model"),
    Case("bench-json-onto-its-model", bench("--json", "{w}/m.onnx"), message="it is --model"),
    Case("bench-accuracy-is-an-input", bench("--accuracy", "{w}/report.json", "--plot", "{w}/report.json"),
         message="it is --accuracy"),
    Case("build-engine-timing-cache-onto-its-model", ["build-engine", "--model", "{w}/m.onnx", "--timing-cache", "{w}/m.onnx"],
         message="it is --model"),

    # What no rename can make an output: devices, FIFOs, folders for files and files for folders.
    Case("eval-json-dev-full", eval_("--json", "/dev/full", "--force"), message="it is a character device, not a regular file",
         check=still_device("/dev/full")),
    Case("eval-json-dev-null", eval_("--json", "/dev/null"), message="(--json - prints to stdout)",
         check=still_device("/dev/null")),
    Case("generate-out-dev-full", generate("--out", "/dev/full"), message="it is a character device",
         check=still_device("/dev/full")),
    Case("eval-json-fifo", eval_("--json", "{w}/pipe"), setup=fifo("pipe"), message="it is a FIFO",
         check=still_fifo("pipe")),
    Case("eval-json-existing-folder", eval_("--json", "{w}/notes", "--force"), message="it is a folder, and a file goes here"),
    Case("quantize-out-existing-folder", fp16("--out", "{w}/notes"), message="it is a folder, and a file goes here"),
    Case("bench-plot-existing-folder", bench("--plot", "{w}/notes"), message="it is a folder"),
    Case("generate-out-a-file", generate("--out", "{w}/notes/notes.txt", "--force"), message="it is a file, and a dataset folder goes here"),
    Case("train-out-a-file", train("--out", "{w}/notes/notes.txt"), message="it is a file, and a run folder goes here"),
    Case("generate-out-other-files", generate("--out", "{w}/notes", "--force"),
         message="it exists and is not an edgeseg dataset folder"),
    Case("predict-out-other-files", predict("--input", "{w}/data", "--out", "{w}/notes"),
         message="not an edgeseg predictions folder"),
    Case("eval-json-under-a-file", eval_("--json", "{w}/notes/notes.txt/r.json"), message="is a file, not a folder"),
    Case("two-options-one-file", bench("--json", "{w}/x.json", "--plot", "{w}/x.json"), message="--json and --plot both write"),

    # Another artifact where a command writes something else: refused unless --force.
    Case("eval-json-onto-another-model", eval_("--json", "{w}/other.onnx"), message=f"it is a model (.onnx); {FORCE_FIX}"),
    Case("eval-json-onto-another-model-force", eval_("--json", "{w}/other.onnx", "--force"), code=0, written=("other.onnx",)),
    Case("eval-json-onto-another-models-manifest", eval_("--json", "{w}/other.onnx.json"),
         message=f"it is the manifest of {{w}}/other.onnx; {FORCE_FIX}"),
    Case("eval-json-onto-a-keras-model", eval_("--json", "{w}/run/model.keras"), message="it is a model (.keras)"),
    Case("eval-json-onto-a-datasets-manifest", eval_("--json", "{w}/data2/manifest.json"),
         message="it is an edgeseg dataset manifest"),
    Case("detectability-json-onto-a-bench-record", detect("--json", "{w}/bench.json"), message="it is an edgeseg bench manifest"),
    Case("operating-point-out-onto-another-model", op("--out", "{w}/other.onnx"), message="it is another model"),
    Case("operating-point-out-onto-another-model-force", op("--out", "{w}/other.onnx", "--force"), code=0,
         written=("other.onnx", "other.onnx.json")),
    Case("quantize-out-onto-another-model", fp16("--out", "{w}/other.onnx"), message="it is another model"),
    Case("quantize-out-onto-a-model-without-manifest", fp16("--out", "{w}/bare.onnx"), message="it has no manifest"),
    Case("export-out-onto-another-model", export("--out", "{w}/m.onnx"), message="its manifest names none of this command's inputs"),
    Case("train-out-a-dataset", train("--out", "{w}/data"),
         message="it is a dataset; choose another --out, or add --force to write the run into it"),
    Case("train-out-an-earlier-run", train("--out", "{w}/run"),
         message="it holds a training run; --resume continues it, --force trains over it"),
    Case("train-out-predictions", train("--out", "{w}/pred"), setup=lambda w: (w / "pred").mkdir() or
         (w / "pred" / "manifest.json").write_text('{"kind": "predictions", "created": "then"}'),
         message="it is an edgeseg predictions folder"),

    # What may be replaced: an earlier artifact of the same kind, and leftovers of killed writers.
    Case("eval-json-beside-its-data", eval_("--json", "{w}/data/report.json"), code=0, written=("data/report.json",)),
    Case("eval-json-replaces-an-earlier-report", eval_("--json", "{w}/report.json"), code=0, written=("report.json",)),
    Case("generate-replaces-an-earlier-dataset", generate("--out", "{w}/data2"), code=0, written=("data2/**",)),
    Case("operating-point-out-replaces-its-earlier-copy", op("--out", "{w}/line.onnx"), code=0,
         setup=lambda w: [shutil.copy(w / "m.onnx", w / "line.onnx"), shutil.copy(w / "m.onnx.json", w / "line.onnx.json")],
         written=("line.onnx.json",)),
    Case("generate-removes-a-killed-writers-temps", generate("--out", "{w}/data2"), code=0, written=("data2/**",),
         setup=stale(".data2.k1ll3d_0", folder=True)),
    Case("generate-removes-a-killed-swaps-leftovers", generate("--out", "{w}/data2"), code=0, written=("data2/**",),
         setup=stale(".data2.old", ".data2.0a1b2c3d", folder=True)),
    Case("quantize-removes-a-killed-writers-temp", fp16(), code=0, written=("m.fp16.onnx", "m.fp16.onnx.json"),
         setup=stale(".m.fp16.onnx.zz9k_q2x.onnx", ".m.fp16.onnx.lock")),
    Case("predict-removes-a-killed-writers-temps", predict("--input", "{w}/data", "--out", "{w}/pred"), code=0,
         written=("pred/**",), setup=stale(".pred.0a1b2c3d", folder=True)),
    Case("eval-json-while-another-writes-it", eval_("--json", "{w}/report.json"), setup=held_lock(".report.json.lock"),
         message="is being written by another edgeseg command (pid 4242)"),

    # Full and read-only file systems: one line, nothing half-written.
    Case("eval-json-disk-full", eval_("--json", "{full}/r.json"), message="No space left on device"),
    Case("eval-json-disk-full-over-a-report", eval_("--json", "{full}/keep.json"), message="No space left on device"),
    Case("quantize-onnx-disk-full", fp16("--out", "{full}/m.fp16.onnx"), message="No space left on device"),
    Case("generate-disk-full", generate("--out", "{full}/d"), message="cannot write {full}/d: No space left on device"),
    Case("train-out-read-only", train("--out", "{ro}/run"), message="is on a read-only file system"),
    Case("eval-json-read-only", eval_("--json", "{ro}/r.json"), message="is on a read-only file system"),
]


def _files(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (links and special files are named, not read)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            mode = os.lstat(p).st_mode
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(mode) else f"mode {mode:o}"
    return out


def _is_hidden(rel: str) -> bool:
    return any(part.startswith(".") and "." in part[1:] for part in Path(rel).parts)


def _hidden(root: Path) -> list[str]:
    """Hidden entries with a second dot (``.<name>.<tmp>``, ``.<name>.lock``, ``.<name>.old``) under root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [str(Path(dirpath) / n) for n in dirnames + filenames if n.startswith(".") and "." in n[1:]]
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile(case: Case, template: Path, mounts, tmp_path: Path):
    from fnmatch import fnmatch

    if case.needs_mounts and mounts is None:
        pytest.skip("needs tmpfs mounts (a full and a read-only file system): mount is not permitted here")
    w = tmp_path / "w"
    shutil.copytree(template, w, symlinks=True)
    cleanup = case.setup(w) if case.setup else None
    cleanup = cleanup if callable(cleanup) else None
    places = {"w": str(w), **({k: str(v) for k, v in mounts.items()} if mounts else {})}
    watched = [w] + [Path(places[k]) for k in ("full", "ro") if any(f"{{{k}}}" in a for a in case.argv)]
    before = {str(root): _files(root) for root in watched}
    try:
        result = cli.invoke(app, [a.format(**places) for a in case.argv])
    finally:
        if cleanup:
            cleanup()
    output = result.output
    assert result.exit_code == case.code, output
    assert case.message.format(**places) in output, output
    assert "Traceback" not in output and (result.exception is None or isinstance(result.exception, SystemExit)), output
    if case.code:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for root in watched:
        after = _files(root)
        for rel, digest in before[str(root)].items():
            if root == w and any(fnmatch(rel, g) for g in case.written) or _is_hidden(rel):
                continue  # written by the case, or a leftover it had to remove (checked below)
            assert after.get(rel) == digest, f"{root / rel} changed"
        assert not _hidden(root), _hidden(root)
    if case.check:
        case.check(w)


def test_every_writing_command_has_force():
    for command in ("generate", "train", "eval", "predict", "detectability", "operating-point", "export", "quantize",
                    "build-engine", "compare", "bench", "check"):
        r = cli.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0 and "--force" in r.output, command


def test_a_model_whose_manifest_cannot_be_written_is_removed(template, tmp_path):
    """Room for the model but not for its manifest: the model goes too (it would run at the default
    threshold), and the message says so."""
    folder = tmp_path / "one-page"
    if not _mount(folder, "size=64k"):
        pytest.skip("needs a tmpfs mount: mount is not permitted here")
    try:
        # Room for three pages: the locks of the model and its manifest (each holds its writer's pid), the
        # model, and not its manifest.
        fs = os.statvfs(folder)
        (folder / "fill").write_bytes(b"\0" * (fs.f_blocks * fs.f_frsize - 3 * 4096))
        r = cli.invoke(app, ["quantize", "--model", str(template / "m.onnx"), "--fp16", "-q",
                             "--out", str(folder / "m.fp16.onnx")])
        assert r.exit_code == 1 and "No space left on device" in r.output, r.output
        assert "removed" in r.output and "Traceback" not in r.output
        assert sorted(p.name for p in folder.iterdir()) == ["fill"]
    finally:
        _umount(folder)


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(template, tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        for args in (["eval", "--model", str(template / "m.onnx"), "--data", str(template / "data"), "-q",
                      "--json", str(tmp_path / "r.json")],
                     ["quantize", "--model", str(template / "m.onnx"), "--fp16", "-q", "--out", str(tmp_path / "m.onnx")],
                     ["generate", "--count", "2", *SMALL, "--out", str(tmp_path / "d")]):
            r = cli.invoke(app, args)
            assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    for name in ("r.json", "m.onnx", "m.onnx.json", "d/manifest.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == file_mode, name
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == dir_mode


# -- real processes: signals and concurrent writers ------------------------------------------------------
def _start(out: Path, count: int) -> subprocess.Popen:
    return subprocess.Popen([str(EDGESEG), "generate", "--count", str(count), "--quiet", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_temp(proc: subprocess.Popen, out: Path, timeout: float = 60) -> None:
    """Until the writer has started writing: its temporary folder is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.is_dir() and p.name.startswith(f".{out.name}.") for p in out.parent.iterdir()):
            time.sleep(0.2)  # a few images in
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    pytest.fail("generate never started writing")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_terminated_generate_leaves_no_temp_and_the_old_set(tmp_path, sig):
    out = tmp_path / "d"
    assert cli.invoke(app, ["generate", "--count", "2", *SMALL, "--out", str(out)]).exit_code == 0
    before = _files(out)
    proc = _start(out, 3000)
    _wait_for_temp(proc, out)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr  # 128 + SIGINT, whatever the signal
    assert _files(out) == before
    assert not _hidden(tmp_path), _hidden(tmp_path)


def test_a_killed_generates_temp_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "d"
    proc = _start(out, 3000)
    _wait_for_temp(proc, out)
    proc.kill()
    proc.wait(timeout=60)
    assert _hidden(tmp_path)  # SIGKILL cannot clean up: a temporary folder and the lock file stay
    r = cli.invoke(app, ["generate", "--count", "2", *SMALL, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert not _hidden(tmp_path), _hidden(tmp_path)
    assert len(list((out / "images").iterdir())) == 2


def test_three_concurrent_generates_one_writes_the_others_are_refused(tmp_path):
    out = tmp_path / "d"
    procs = [_start(out, 2000) for _ in range(3)]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    results = [(code, stdout, stderr) for stdout, stderr, code in results]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1, 1], results
    for code, stdout, stderr in results:
        assert "Traceback" not in stderr
        if code:
            assert "is being written by another edgeseg command (pid" in stderr and "wrote" not in stdout
        else:
            assert "wrote 2000 images" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["images"]) == 2000 == len(list((out / "images").iterdir()))
    assert not _hidden(tmp_path), _hidden(tmp_path)


def test_a_dataset_swapped_out_by_a_killed_writer_is_put_back(tmp_path):
    """Killed between its two renames, a writer leaves the previous folder as ``.<name>.old`` and nothing at
    ``<name>``: the next writer puts it back instead of removing it."""
    from edgeseg.locks import lock

    (tmp_path / ".d.old" / "images").mkdir(parents=True)
    (tmp_path / ".d.old" / "manifest.json").write_text("{}")
    (tmp_path / ".d.k1ll3d00").mkdir()
    with lock(tmp_path / "d"):
        assert (tmp_path / "d" / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
