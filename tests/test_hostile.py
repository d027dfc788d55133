"""Hostile command lines: outputs that would destroy a user's files, inputs that would give silently wrong
results, and numbers out of range — and what every command must do instead.

One table, :data:`CASES`: each :class:`Case` is a command line run through the real CLI in a fresh copy of a
small workspace (datasets, models with and without valid manifests, models whose output is no probability, a
training run, a folder of notes…; :func:`hostile_support.make_workspace`). Every case asserts its exit code and
message, that no traceback was printed, that an error is one line, that every file that was there before is
unchanged byte for byte (but those the case lists as written), and that no hidden temporary or lock file
(``.<name>.<something>``) is left anywhere it could have written. To add a case, append a ``Case``.

Outside the table, with real subprocesses: SIGTERM and SIGKILL during ``generate``, three concurrent
``generate`` runs on one ``--out``, TensorFlow's start-up lines; and the umask.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app
from hostile_support import (FORCE_FIX, IS_INPUT, SMALL, Case, bench, dangling, dataset_manifest, detect, eval_,
                             export, file_digests, fifo, fill, fp16, generate, hardlink, held_lock, hidden_entries,
                             image, int8, is_hidden, keras_inline, make_workspace, memory, mount, no_file, op, predict,
                             stale, still_device, still_fifo, symlink, train, umount)
from hostile_support import backgrounds_folder, detect_line, line

cli = CliRunner()
EDGESEG = Path(sys.executable).with_name("edgeseg")


# -- the workspace every case starts from ---------------------------------------------------------------
@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("hostile") / "w")


@pytest.fixture(scope="session")
def mounts(tmp_path_factory):
    """``full``: a 64 KiB tmpfs filled to the last byte, holding ``keep.json``; ``ro``: a read-only tmpfs.
    None where mounting is not permitted (not root): the cases that need them skip."""
    root = tmp_path_factory.mktemp("mounts")
    full, ro = root / "full", root / "ro"
    try:
        if not (mount(full, "size=64k") and mount(ro, "ro,size=64k")):
            yield None
            return
        (full / "keep.json").write_text('{"results": []}\n')
        fill(full)
        yield {"full": full, "ro": ro}
    finally:
        umount(full)
        umount(ro)


# -- the table --------------------------------------------------------------------------------------------
def eval_model(name: str, *extra: str, suffix: str = ".onnx") -> list[str]:
    return ["eval", "--model", f"{{w}}/{name}{suffix}", "--data", "{w}/data", "-q", *extra]


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
    # A model without its operating point: refused with the fix, never run at a default nobody chose.
    Case("eval-model-without-manifest", eval_model("nomanifest"),
         message="{w}/nomanifest.onnx has no manifest (nomanifest.onnx.json), so nothing says which threshold"),
    Case("eval-model-without-manifest-names-threshold", eval_model("nomanifest"), message="or pass --threshold T"),
    Case("eval-model-without-manifest-at-a-chosen-threshold", eval_model("nomanifest", "--threshold", "0.4"), code=0),
    Case("predict-model-without-manifest", ["predict", "--model", "{w}/nomanifest.onnx", "--input", "{w}/data",
                                            "--out", "{w}/pred", "-q"], message="has no manifest",
         check=no_file("pred")),
    Case("compare-model-without-manifest", ["compare", "{w}/m.onnx", "{w}/nomanifest.onnx", "--data", "{w}/data", "-q"],
         message="{w}/nomanifest.onnx has no manifest"),
    Case("compare-at-a-chosen-threshold", ["compare", "{w}/m.onnx", "{w}/nomanifest.onnx", "--data", "{w}/data", "-q",
                                           "--threshold", "0.4"], code=0),
    Case("eval-manifest-without-threshold", eval_model("nothreshold"), message="has no threshold in its manifest"),
    Case("eval-manifest-without-mask-rule", eval_model("model", suffix=".keras"),
         message="has no mask_rule in its manifest (model.keras.json)"),
    Case("eval-empty-manifest", eval_model("empty"), message="empty.onnx.json names no sha256 of empty.onnx"),
    Case("eval-folder-for-a-manifest", eval_model("dirmanifest"),
         message="dirmanifest.onnx.json is not a manifest (it is a folder)"),
    Case("eval-manifest-without-sha256", eval_model("nosha"), message="nosha.onnx.json names no sha256"),
    Case("eval-stale-manifest", eval_model("stale"), message="stale.onnx.json was written for another stale.onnx"),
    Case("predict-manifest-without-sha256-even-at-a-chosen-threshold",
         ["predict", "--model", "{w}/nosha.onnx", "--input", "{w}/data", "--out", "{w}/pred", "-q", "--threshold", "0.5"],
         message="names no sha256", check=no_file("pred")),
    Case("quantize-copies-nothing-from-a-stale-manifest", ["quantize", "--model", "{w}/stale.onnx", "--fp16", "-q"],
         message="was written for another stale.onnx", check=no_file("stale.fp16.onnx", "stale.fp16.onnx.json")),
    Case("quantize-copies-nothing-from-a-manifest-without-sha256", ["quantize", "--model", "{w}/nosha.onnx", "--fp16", "-q"],
         message="names no sha256", check=no_file("nosha.fp16.onnx")),
    Case("export-copies-nothing-from-a-manifest-without-sha256", export("--out", "{w}/k.onnx"),
         setup=lambda w: (w / "model.keras.json").write_text('{"kind": "model", "threshold": 0.5}'),
         message="model.keras.json names no sha256", check=no_file("k.onnx")),
    Case("operating-point-stale-manifest", ["operating-point", "--model", "{w}/stale.onnx", "--data", "{w}/data",
                                            "--good", "{w}/good", "-q"], message="was written for another"),
    Case("operating-point-fa-budget-nan", op("--fa-budget", "nan"), message="--fa-budget must be >= 0 false blobs per image, got nan"),
    Case("operating-point-fa-budget-inf", op("--fa-budget", "inf"), message="--fa-budget must be >= 0"),
    Case("operating-point-min-dice-nan", op("--min-dice", "nan"), message="--min-dice must be in [0, 1), got nan"),
    Case("detectability-good-of-another-size", ["detectability", "--data", "{w}/data", "--good", "{w}/good64", "-q"],
         message="the --good images are 64x64 but the --data images are 32x32"),
    Case("eval-dangling-symlink-image", eval_(), setup=dangling("data/images/9.png"),
         message="{w}/data/images/9.png is a link to {w}/gone/9.png, which does not exist"),

    # A model's output is checked: one probability per pixel, finite, within [0, 1].
    Case("eval-output-not-a-probability", eval_model("raw"), message="raw.onnx [onnxruntime fp32] gave values from"),
    Case("eval-output-nan", eval_model("nan"), message="nan.onnx [onnxruntime fp32] gave NaN"),
    Case("eval-output-of-another-shape", eval_model("half"), message="gave an output shaped (4, 16, 16, 1) for 4 images of 32x32"),
    Case("eval-two-input-onnx", eval_model("twoin"), message="has 2 input(s) (image, other)"),
    Case("predict-output-nan", ["predict", "--model", "{w}/nan.onnx", "--input", "{w}/data", "--out", "{w}/pred", "-q"],
         message="gave NaN", check=no_file("pred")),

    # What used to end in a traceback.
    Case("eval-dataset-manifest-a-list", eval_(), setup=dataset_manifest("[]"), message="is not a dataset manifest"),
    Case("eval-dataset-manifest-images-a-number", eval_(), setup=dataset_manifest('{"images": 5}'),
         message="{w}/data/manifest.json is not a dataset manifest"),
    Case("eval-text-file-named-keras", eval_model("text", suffix=".keras"),
         message="text.keras is not a Keras model: a .keras file is a zip archive"),
    Case("eval-unknown-suffix", eval_model("x", suffix=".pt"),
         message="edgeseg reads .keras, .onnx, .engine and .plan files (or 'classical' in place of a file)",
         absent=("--backend",)),
    Case("generate-seed-negative", generate("--out", "{w}/d", "--seed", "-1"), message="--seed must be an integer from 0"),
    Case("generate-contrast-nan", generate("--out", "{w}/d", "--contrast", "nan:nan"),
         message="contrast must be LO:HI with both ends in [-255, 255] gray levels, got nan:nan"),
    Case("generate-contrast-inf", generate("--out", "{w}/d", "--contrast", "3:inf"), message="got 3:inf"),
    Case("generate-contrast-absurd", generate("--out", "{w}/d", "--contrast", "1000:2000"), message="in [-255, 255]"),
    Case("generate-level-shift-absurd", generate("--out", "{w}/d", "--level-shift", "1e6:1e6"),
         message="level_shift must be LO:HI with both ends in [-112, 143]"),
    Case("generate-noise-scale-negative", generate("--out", "{w}/d", "--noise-scale", "-1:1"),
         message="noise_scale must be LO:HI with both ends in [0, 10]"),
    Case("generate-illumination-negative", generate("--out", "{w}/d", "--illumination", "-5"),
         message="illumination must be in [0, 255] gray levels, got -5"),
    Case("generate-image-size-negative", ["generate", "--count", "2", "--out", "{w}/d", "-q", "--image-size", "-8"],
         message="image_size must be an integer from 16 to 4,096 pixels, got -8"),
    Case("generate-good-fraction-nan", generate("--out", "{w}/d", "--good-fraction", "nan"), message="good_fraction"),
    Case("generate-count-zero", ["generate", "--count", "0", "--out", "{w}/d", "-q"], message="--count must be"),
    Case("bench-batch-beyond-memory", bench("--batch-sizes", "1,100000"), setup=memory(16),
         message="--batch-sizes needs about 54.9 GiB for the buffers of a batch of 100000 256x256 images, more than "
                 "the 16.0 GiB of memory available"),
    Case("bench-duration-inf", bench("--duration-s", "inf"), message="--duration-s must be in (0, 3600] seconds"),
    Case("bench-warmup-nan", bench("--warmup-s", "nan"), message="--warmup-s must be in [0, 3600]"),
    Case("bench-rate-nan", bench("--rate", "nan"), message="--rate must be in (0, 1e+06] frames/s"),
    Case("export-image-size-huge", export("--out", "{w}/k.onnx", "--image-size", "100000"),
         message="--image-size must be an integer from 16 to 4,096 pixels, got 100000"),
    Case("export-image-size-below-the-generators", export("--out", "{w}/k.onnx", "--image-size", "9"),
         message="--image-size must be an integer from 16 to 4,096"),

    # Numbers out of range: one line with the allowed range.
    Case("train-learning-rate-negative", train("--out", "{w}/newrun", "--learning-rate", "-1"),
         message="--learning-rate must be in (0, 1], got -1", check=no_file("newrun")),
    Case("train-fa-budget-nan", train("--out", "{w}/newrun", "--fa-budget", "nan"),
         message="--fa-budget must be in [0, 1) false blobs per image, got nan", check=no_file("newrun")),
    Case("train-seed-negative", train("--out", "{w}/newrun", "--seed", "-3"), message="--seed must be an integer"),
    Case("eval-threshold-nan", eval_("--threshold", "nan"), message="--threshold must be in [0, 1], got nan"),
    Case("eval-batch-size-zero", eval_("--batch-size", "0"), message="--batch-size must be an integer from 1 to 4,096"),
    Case("predict-limit-zero", predict("--input", "{w}/data", "--out", "{w}/pred", "--limit", "0"),
         message="--limit must be an integer >= 1"),
    Case("compare-threshold-inf", ["compare", "{w}/m.onnx", "--data", "{w}/data", "-q", "--threshold", "inf"],
         message="--threshold must be in [0, 1]"),
    Case("quantize-calib-seed-negative", fp16("--calib-seed", "-1"), message="--calib-seed must be an integer from 0"),
    Case("build-engine-workspace-zero", ["build-engine", "--model", "{w}/m.onnx", "--workspace", "0", "-q"],
         message="--workspace must be an integer from 1 to"),
    Case("export-triton-max-batch-absurd", ["export-triton", "--model", "{w}/m.onnx", "--repo", "{w}/repo",
                                            "--max-batch", "100000000"], message="--max-batch must be an integer from 1 to 4,096",
         check=no_file("repo")),
    Case("export-deepstream-batch-size-absurd", ["export-deepstream", "--model", "{w}/m.onnx", "--out", "{w}/ds",
                                                 "--batch-size", "100000000"], message="--batch-size must be",
         check=no_file("ds")),

    # A line's own images as backgrounds (generate / detectability --backgrounds): one line, nothing written.
    Case("generate-backgrounds-missing", line("--out", "{w}/d", bg="nothere"),
         message="{w}/nothere does not exist", check=no_file("d")),
    Case("generate-backgrounds-empty", line("--out", "{w}/d", bg="empty"),
         setup=backgrounds_folder("empty"), message="no images in {w}/empty", check=no_file("d")),
    Case("generate-backgrounds-smaller-than-the-crop", line("--out", "{w}/d", "--crop", "48"),
         message="{w}/good/images/0.png is 32x32, smaller than the 48x48 crop", check=no_file("d")),
    Case("generate-backgrounds-8-and-16-bit", line("--out", "{w}/d", bg="mixed"),
         setup=backgrounds_folder("mixed", (8, 16)),
         message="{w}/mixed/1.png is 16-bit but 0.png is 8-bit; one folder of backgrounds has one bit depth",
         check=no_file("d")),
    Case("generate-backgrounds-labelled-defect", line("--out", "{w}/d", bg="data"),
         message="marks a defect, but backgrounds must be defect-free", check=no_file("d")),
    Case("generate-contrast-and-contrast-sigma", line("--out", "{w}/d", "--contrast", "2:3", "--contrast-sigma", "1:2"),
         message="--contrast (gray levels) and --contrast-sigma (local noise sigma) are two units for one contrast",
         check=no_file("d")),
    Case("generate-noise-with-backgrounds", line("--out", "{w}/d", "--noise-scale", "1:2"),
         message="--noise-scale does not apply with --backgrounds", check=no_file("d")),
    Case("generate-defects-larger-than-the-crop", line("--out", "{w}/d", "--crop", "16", "--defect-size", "8:20"),
         message="defect_size must be an integer from 1 to 15 (for 16px images), got 20", check=no_file("d")),
    Case("generate-out-inside-its-backgrounds", line("--out", "{w}/good/images"),
         message="it is part of --backgrounds {w}/good, which this command reads"),
    Case("detectability-backgrounds-missing", detect_line("--contrast", "3", bg="nothere"),
         message="{w}/nothere does not exist"),
    Case("detectability-backgrounds-and-data", detect_line("--contrast", "3", "--data", "{w}/data"),
         message="--backgrounds replaces --data and --good"),
    Case("detectability-contrast-and-contrast-sigma", detect_line("--contrast", "3", "--contrast-sigma", "1",
                                                                 "--json", "{w}/r.json"),
         message="--backgrounds needs one contrast", check=no_file("r.json")),
    Case("detectability-backgrounds-smaller-than-the-crop", detect_line("--contrast", "3", "--crop", "64"),
         message="is 32x32, smaller than the 64x64 crop"),
    Case("detectability-defects-larger-than-the-crop", detect_line("--contrast", "1,2", "--defect-size", "8:40",
                                                                  "--plot", "{w}/p.png", "--count", "100"),
         message="defect_size must be an integer from 1 to 31 (for 32px images), got 40", check=no_file("p.png")),
    Case("detectability-plot-onto-a-background", detect_line("--contrast", "1,2", "--count", "100", "--plot",
                                                            "{w}/good/images/0.png"),
         message="it is part of --backgrounds {w}/good, which this command reads"),

    # A line's own images: one bit depth per set, 8-bit labels; shapes a model can take.
    Case("eval-set-mixing-8-and-16-bit", eval_(), setup=image("data/images/2.png"),
         message="{w}/data/images/2.png is 16-bit but 0.png is 8-bit; a set has one bit depth"),
    Case("operating-point-good-mixing-8-and-16-bit", op(), setup=image("good/images/1.png"),
         message="good/images/1.png is 16-bit but 0.png is 8-bit"),
    Case("eval-16-bit-label", eval_(), setup=image("data/labels/1.png"),
         message="{w}/data/labels/1.png is a 16-bit label; labels are 8-bit binary images"),
    Case("eval-label-of-another-size", eval_(), setup=image("data/labels/1.png", (32, 40), "uint8"),
         message="{w}/data/labels/1.png is 40x32 but its image 1.png is 32x32"),
    Case("predict-16-bit-set-mixed-with-8-bit", predict("--input", "{w}/data", "--out", "{w}/pred"),
         setup=image("data/images/3.png"), message="3.png is 16-bit but 0.png is 8-bit", check=no_file("pred")),
    Case("quantize-calib-data-empty-folder", int8("--calib-data", "{w}/emptydir"),
         setup=lambda w: (w / "emptydir").mkdir(), message="no images in {w}/emptydir",
         check=no_file("m.int8.onnx", "m.int8.onnx.json", "calib")),
    Case("quantize-calib-data-missing", int8("--calib-data", "{w}/nowhere"), message="{w}/nowhere does not exist",
         check=no_file("m.int8.onnx", "calib")),
    Case("quantize-calib-data-smaller-than-the-model", int8("--calib-data", "{w}/small"),
         setup=image("small/0.png", (16, 24)),
         message="the images in {w}/small are 24x16, smaller than the model's input 32x32",
         check=no_file("m.int8.onnx", "m.int8.onnx.json", "calib")),
    Case("quantize-calib-data-mixed-depths", int8("--calib-data", "{w}/data"), setup=image("data/images/2.png"),
         message="2.png is 16-bit but 0.png is 8-bit", check=no_file("m.int8.onnx", "calib")),
    Case("quantize-calib-data-with-fp16", fp16("--calib-data", "{w}/data"), message="--calib-data goes with --int8",
         check=no_file("m.fp16.onnx")),
    Case("export-shape-half-given", export("--out", "{w}/k.onnx", "--shape", "12x"),
         message="--shape must be HEIGHTxWIDTH in pixels (e.g. 1024x1024 or 768x1280), got '12x'"),
    Case("export-shape-zero-side", export("--out", "{w}/k.onnx", "--shape", "0x256"),
         message="--shape 0x256: each side must be 16..4096 pixels"),
    Case("export-shape-and-image-size", export("--out", "{w}/k.onnx", "--shape", "256x256", "--image-size", "256"),
         message="give --shape HxW or --image-size N (its square shorthand), not both"),
    Case("export-shape-not-a-multiple-of-the-fold", ["export", "--model", "{w}/inline.keras", "--out", "{w}/k.onnx",
                                                     "-q", "--shape", "256x257"], setup=keras_inline(),
         message="--shape 256x257: inline.keras needs sides that are multiples of 4; 256x260 would do",
         check=no_file("k.onnx", "k.onnx.json")),
    Case("build-engine-shape-of-a-fixed-size-onnx", ["build-engine", "--model", "{w}/m.onnx", "--shape", "64x64", "-q"],
         message="m.onnx is exported for 32x32 images only; build it at --shape 32x32 (or without --shape), or "
                 "re-export the model with edgeseg export --shape HxW"),
    Case("build-engine-shape-malformed", ["build-engine", "--model", "{w}/m.onnx", "--shape", "32x32:64", "-q"],
         message="--shape must be HxW or MINHxMINW:OPTHxOPTW:MAXHxMAXW (e.g. 512x512:1024x1024:2048x2048), got '32x32:64'"),
    Case("build-engine-shape-half-given", ["build-engine", "--model", "{w}/m.onnx", "--shape", "12x", "-q"],
         message="--shape must be HEIGHTxWIDTH in pixels"),
    Case("eval-tile-too-small", eval_("--tile", "8"), message="--tile must be an integer from 16 to 4,096 pixels"),
    Case("predict-tile-of-another-size-than-a-fixed-model", predict("--input", "{w}/data", "--out", "{w}/pred",
                                                                    "--tile", "64"),
         message="--tile 64: m.onnx [onnxruntime fp32] takes 32x32 images only", check=no_file("pred")),
    Case("eval-tile-overlap-leaves-nothing", eval_("--tile", "32", "--tile-overlap", "40", "--model", "classical"),
         message="--tile-overlap 40 leaves nothing of a 32x32 tile"),
    Case("bench-tile-with-url", bench("--url", "http://127.0.0.1:9", "--rate", "5", "--tile", "64"),
         message="--tile goes with local models, not with --url"),
    Case("bench-url-with-16-bit-data", bench("--url", "http://127.0.0.1:9", "--rate", "5", "--data", "{w}/line"),
         setup=image("line/0.png"), message="--url: a served model takes 8-bit images, and the images in {w}/line "
                                            "are 16-bit"),
]



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
    before = {str(root): file_digests(root) for root in watched}
    try:
        result = cli.invoke(app, [a.format(**places) for a in case.argv])
    finally:
        if cleanup:
            cleanup()
    output = result.output
    assert result.exit_code == case.code, output
    assert case.message.format(**places) in output, output
    assert not any(word in output for word in case.absent), output
    assert "Traceback" not in output and (result.exception is None or isinstance(result.exception, SystemExit)), output
    if case.code:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for root in watched:
        after = file_digests(root)
        for rel, digest in before[str(root)].items():
            if root == w and any(fnmatch(rel, g) for g in case.written) or is_hidden(rel):
                continue  # written by the case, or a leftover it had to remove (checked below)
            assert after.get(rel) == digest, f"{root / rel} changed"
        assert not hidden_entries(root), hidden_entries(root)
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
    if not mount(folder, "size=64k"):
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
        umount(folder)


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
def _default_signals() -> None:
    # A process started in the background by a non-interactive shell inherits SIGINT ignored (POSIX), and
    # Python then never raises KeyboardInterrupt: start the writer as a terminal would, whoever runs pytest.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def _start(out: Path, count: int) -> subprocess.Popen:
    return subprocess.Popen([str(EDGESEG), "generate", "--count", str(count), "--quiet", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)


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
    before = file_digests(out)
    proc = _start(out, 3000)
    _wait_for_temp(proc, out)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr  # 128 + SIGINT, whatever the signal
    assert file_digests(out) == before
    assert not hidden_entries(tmp_path), hidden_entries(tmp_path)


def test_a_hang_up_the_caller_ignores_stays_ignored(tmp_path):
    """`nohup edgeseg generate ...`: SIGHUP was ignored when the command started, so it finishes its work."""
    out = tmp_path / "d"

    def ignore_hangup() -> None:
        _default_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen([str(EDGESEG), "generate", "--count", "1500", "--quiet", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_hangup)
    _wait_for_temp(proc, out)
    proc.send_signal(signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "wrote 1500 images" in stdout, stderr
    assert not hidden_entries(tmp_path), hidden_entries(tmp_path)


def test_a_killed_generates_temp_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "d"
    proc = _start(out, 3000)
    _wait_for_temp(proc, out)
    proc.kill()
    proc.wait(timeout=60)
    assert hidden_entries(tmp_path)  # SIGKILL cannot clean up: a temporary folder and the lock file stay
    r = cli.invoke(app, ["generate", "--count", "2", *SMALL, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert not hidden_entries(tmp_path), hidden_entries(tmp_path)
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
    assert not hidden_entries(tmp_path), hidden_entries(tmp_path)


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


# -- help and checks agree; TensorFlow's start-up lines -------------------------------------------------
def test_export_help_states_the_image_sizes_its_check_allows():
    r = cli.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert "(16..4096 pixels)" in r.output, r.output
    for size, code in (("15", 1), ("4097", 1)):
        r = cli.invoke(app, ["export", "--model", "missing.keras", "--image-size", size, "-q"])
        assert r.exit_code == code and "--image-size must be an integer from 16 to 4,096" in r.output, r.output


TF_NOISE = ("oneDNN custom operations", "This TensorFlow binary is optimized",
            "All log messages before absl::InitializeLog()", "To enable the following instructions")


def test_tensorflow_start_up_lines_are_hidden_unless_verbose(tmp_path):
    """A real TensorFlow-loading command (eval of a Keras model) in a real process: none of TensorFlow's
    start-up lines on stderr; with ``--verbose`` they are TensorFlow's to print."""
    from edgeseg.artifacts import write_manifest
    from edgeseg.data.dataset import write_dataset
    from edgeseg.data.synth import PRESETS
    from tiny_models import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny.keras", size=32)
    write_manifest(model, "model", {"model": "tiny"}, threshold=0.5, mask_rule={"grow": None, "min_area": 0})
    data = write_dataset(tmp_path / "d", PRESETS["test"].replace(image_size=32, defect_size=(6, 12)), 2, seed=1)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = ["eval", "--model", str(model), "--data", str(data), "-q"]
    quiet = subprocess.run([str(EDGESEG), *args], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert not [n for n in TF_NOISE if n in quiet.stderr], quiet.stderr
    assert "Dice" in quiet.stdout
    verbose = subprocess.run([str(EDGESEG), "--verbose", *args], capture_output=True, text=True, env=env, timeout=300)
    assert verbose.returncode == 0, verbose.stderr
    if not any(n in verbose.stderr for n in TF_NOISE):  # this TensorFlow may print none: then neither may we
        plain = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env,
                               timeout=300)
        assert not any(n in plain.stderr for n in TF_NOISE), plain.stderr
