"""The workspace, the :class:`Case` record and the helpers of the hostile-input table (tests/test_hostile.py).

The workspace (:func:`make_workspace`) holds what the cases read and what they must not destroy: datasets,
models with and without (valid) manifests, models whose output is not a probability, an earlier run, a
user's notes. Argument helpers (:func:`eval_`, :func:`op`…) keep the table to one line a case.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SMALL = ["--image-size", "32", "--defect-size", "4:10", "-q"]
RULE = {"grow": 0.3, "min_area": 4}


# -- the workspace every case starts from ---------------------------------------------------------------
def _model(path: Path, size: int, threshold: float) -> Path:
    from edgeseg.artifacts import write_manifest
    from tiny_models import tiny_onnx

    tiny_onnx(path, size)
    write_manifest(path, "onnx", {"model": "tiny"}, threshold=threshold, mask_rule=RULE)
    return path


def _graph(path: Path, nodes, inputs: tuple[str, ...] = ("image",), out_side: int = 32, inits=()) -> Path:
    """A 32×32 ONNX model that breaks edgeseg's contract (two inputs, another output size, NaN or raw values
    out), with a complete manifest: only its output can tell."""
    from onnx import TensorProto, helper, save

    from edgeseg.artifacts import write_manifest

    image = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 32, 32, 1]) for n in inputs]
    prob = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", out_side, out_side, 1])
    graph = helper.make_graph(nodes, path.stem, image, [prob], list(inits))
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    write_manifest(path, "onnx", {"model": path.stem}, threshold=0.4, mask_rule=RULE)
    return path


def _broken_models(w: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    _graph(w / "twoin.onnx", [node("Add", ["image", "other"], ["s"]), node("Sigmoid", ["s"], ["prob"])],
           ("image", "other"))
    _graph(w / "half.onnx", [node("Transpose", ["image"], ["x"], perm=[0, 3, 1, 2]),
                             node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
                             node("Transpose", ["y"], ["z"], perm=[0, 2, 3, 1]), node("Sigmoid", ["z"], ["prob"])],
           out_side=16)
    _graph(w / "nan.onnx", [node("Mul", ["image", "zero"], ["z"]), node("Div", ["z", "zero"], ["prob"])], inits=[zero])
    _graph(w / "raw.onnx", [node("Identity", ["image"], ["prob"])])


def make_workspace(w: Path) -> Path:
    """``data/``, ``data2/`` (datasets), ``good/`` (defect-free), ``good64/`` (defect-free, 64×64), ``m.onnx``
    + manifest (the model the commands read), ``other.onnx`` + manifest (another model), ``bare.onnx`` (24×24,
    no manifest), ``nomanifest.onnx`` (32×32, no manifest), ``empty.onnx`` (manifest ``{}``), ``nosha.onnx``
    (a manifest without sha256 that says int8), ``stale.onnx`` (m.onnx's manifest beside another file),
    ``nothreshold.onnx`` (a manifest without threshold), ``dirmanifest.onnx`` (a folder for a manifest),
    ``twoin/half/nan/raw.onnx`` (outputs edgeseg refuses), ``model.keras`` + manifest (never loaded: every
    Keras case is refused first; its manifest has no mask rule), ``text.keras`` + manifest (a text file),
    ``x.pt``, ``report.json`` (an earlier report), ``bench.json`` (an earlier bench record), ``run/`` (a
    training run), ``notes/notes.txt`` (a user's file)."""
    from edgeseg.artifacts import write_json, write_manifest
    from edgeseg.data.dataset import write_dataset
    from edgeseg.data.synth import PRESETS
    from tiny_models import tiny_onnx

    w.mkdir()
    easy = PRESETS["test"].replace(image_size=32, defect_size=(6, 12), contrast=(12, 12))
    write_dataset(w / "data", easy, count=4, seed=1)
    write_dataset(w / "data2", easy, count=3, seed=2)
    write_dataset(w / "good", easy.replace(good_fraction=1.0), count=3, seed=3)
    write_dataset(w / "good64", easy.replace(good_fraction=1.0, image_size=64), count=2, seed=4)
    _model(w / "m.onnx", 32, 0.4)
    _model(w / "other.onnx", 16, 0.6)
    tiny_onnx(w / "bare.onnx", 24)
    tiny_onnx(w / "nomanifest.onnx", 32)
    tiny_onnx(w / "empty.onnx", 32)
    (w / "empty.onnx.json").write_text("{}\n")
    tiny_onnx(w / "nosha.onnx", 32)
    write_json(w / "nosha.onnx.json", {"kind": "onnx", "precision": "int8", "threshold": 0.4, "mask_rule": RULE})
    _model(w / "stale.onnx", 32, 0.4)
    tiny_onnx(w / "stale.onnx", 16)  # replaced after its manifest was written
    tiny_onnx(w / "nothreshold.onnx", 32)
    write_manifest(w / "nothreshold.onnx", "onnx", {"model": "tiny"}, mask_rule=RULE)
    tiny_onnx(w / "dirmanifest.onnx", 32)
    (w / "dirmanifest.onnx.json").mkdir()
    _broken_models(w)
    (w / "model.keras").write_bytes(b"PK\x03\x04 a trained model")
    write_manifest(w / "model.keras", "model", {"model": "inline"}, threshold=0.5)
    (w / "text.keras").write_text("not a model\n")
    write_manifest(w / "text.keras", "model", {"model": "inline"}, threshold=0.5, mask_rule=RULE)
    (w / "x.pt").write_bytes(b"a torch model")
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


def mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    """Fill a file system to the last byte."""
    fd = os.open(folder / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)



# -- the table's record and helpers ------------------------------------------------------------------
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
    absent: tuple[str, ...] = ()  # words the output must not contain

    @property
    def needs_mounts(self) -> bool:
        return any("{full}" in a or "{ro}" in a for a in self.argv)


def eval_(*extra: str) -> list[str]:
    return ["eval", "--model", "{w}/m.onnx", "--data", "{w}/data", "-q", *extra]


def op(*extra: str) -> list[str]:
    return ["operating-point", "--model", "{w}/m.onnx", "--data", "{w}/data", "--good", "{w}/good", "-q", *extra]


def fp16(*extra: str) -> list[str]:
    return ["quantize", "--model", "{w}/m.onnx", "--fp16", "-q", *extra]


def int8(*extra: str) -> list[str]:
    return ["quantize", "--model", "{w}/m.onnx", "--int8", "--calib-count", "4", "--calib-dir", "{w}/calib", "-q",
            *extra]


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


def dataset_manifest(text: str, folder: str = "data"):
    """A dataset whose manifest.json holds ``text`` (JSON of the wrong shape)."""
    def setup(w: Path):
        (w / folder / "manifest.json").write_text(text)
    return setup


def image(name: str, shape: tuple[int, int] = (32, 32), dtype: str = "uint16"):
    """Write (or replace) an image ``name`` of ``shape`` and ``dtype`` (mid-gray)."""
    def setup(w: Path):
        import cv2
        import numpy as np

        (w / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(w / name), np.full(shape, 100 if dtype == "uint8" else 30000, dtype))
    return setup


def keras_inline(name: str = "inline.keras"):
    """A real (untrained) ``inline`` network: it folds 4×4 cells, so its image sides must be multiples of 4."""
    def setup(w: Path):
        import edgeseg.models as models

        models.build("inline").save(w / name)
    return setup


def dangling(name: str):
    """A symbolic link ``name`` to a file that is not there."""
    def setup(w: Path):
        (w / name).symlink_to(w / "gone" / Path(name).name)
    return setup


def memory(gib: float):
    """The machine has ``gib`` GiB of memory available (whatever it really has)."""
    def setup(w: Path):
        import edgeseg.validate as validate

        real = validate.available_memory
        validate.available_memory = lambda: int(gib * 2**30)

        def restore():
            validate.available_memory = real
        return restore
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


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (links and special files are named, not read)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            mode = os.lstat(p).st_mode
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(mode) else f"mode {mode:o}"
    return out


def is_hidden(rel: str) -> bool:
    return any(part.startswith(".") and "." in part[1:] for part in Path(rel).parts)


def hidden_entries(root: Path) -> list[str]:
    """Hidden entries with a second dot (``.<name>.<tmp>``, ``.<name>.lock``, ``.<name>.old``) under root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [str(Path(dirpath) / n) for n in dirnames + filenames if n.startswith(".") and "." in n[1:]]
    return found




# -- a line's own images (generate / detectability --backgrounds) ---------------------------------------
def line(*extra: str, bg: str = "good") -> list[str]:
    """generate on a folder of the workspace as backgrounds (``good/``: defect-free 32×32 images, empty labels)."""
    return ["generate", "--count", "3", "--defect-size", "4:10", "-q", "--backgrounds", f"{{w}}/{bg}", *extra]


def detect_line(*extra: str, bg: str = "good") -> list[str]:
    return ["detectability", "--count", "4", "--defect-size", "4:10", "-q", "--backgrounds", f"{{w}}/{bg}", *extra]


def backgrounds_folder(name: str, bits: tuple[int, ...] = ()):
    """A folder ``name`` of 32×32 noise images, one per entry of ``bits`` (8 or 16); none: an empty folder."""
    def setup(w: Path):
        import cv2
        import numpy as np

        (w / name).mkdir()
        rng = np.random.default_rng(0)
        for i, b in enumerate(bits):
            img = rng.integers(100, 125, (32, 32))
            cv2.imwrite(str(w / name / f"{i}.png"), (img * 257).astype(np.uint16) if b == 16 else img.astype(np.uint8))
    return setup
