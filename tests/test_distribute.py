"""Data-parallel training (edgeseg.distribute): options checked before TensorFlow starts, two logical CPU
devices training a tiny network for real, and its checkpoint resumed on one device. Each training runs in
a fresh process: the CPU can be split into devices only before TensorFlow's runtime starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(model="inline", model_kwargs={"width": 4, "stem": 8}, epochs=2, steps_per_epoch=8, batch_size=8,
            crop=64, curriculum="20:20:1", val_count=4, fit_count=4, learning_rate=1e-2)


@pytest.mark.parametrize("kind, devices, message", [
    ("sideways", 1, "--strategy must be one of auto, none, mirrored, multiworker"),
    ("auto", 0, "--devices must be at least 1"),
    ("none", 2, "--devices 2 needs --strategy mirrored"),
    ("multiworker", 1, r"not supported: Keras 3's model.fit fails under MultiWorkerMirroredStrategy "
                       r"\(keras-team/keras#20585\)"),
])
def test_bad_distribution_options_are_one_line(kind, devices, message):
    from edgeseg.distribute import prepare

    with pytest.raises(EdgesegError, match=message) as e:
        prepare(kind, devices)
    assert "\n" not in str(e.value)


def _train(out: Path, devices: int, epochs: int, resume: bool) -> dict:
    code = ("import json, sys; from edgeseg.train import TrainConfig, train; "
            f"r = train(TrainConfig(**{dict(TINY, epochs=epochs, devices=devices)!r}), sys.argv[1], resume={resume}); "
            "print(json.dumps(r['training']))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_cpu_devices_train_and_the_checkpoint_resumes_on_one(tmp_path):
    two = _train(tmp_path, devices=2, epochs=2, resume=False)
    assert two["distribution"]["strategy"] == "mirrored" and two["distribution"]["replicas"] == 2
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1] and history[1]["loss"] < history[0]["loss"]
    one = _train(tmp_path, devices=1, epochs=3, resume=True)
    assert one["distribution"]["replicas"] == 1 and one["epochs_run"] == 3
    manifest = json.loads((tmp_path / "model.keras.json").read_text())
    assert manifest["config"]["devices"] == 1 and manifest["training"]["epochs_run"] == 3
