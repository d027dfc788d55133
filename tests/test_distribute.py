"""Data-parallel training (edgeseg.distribute): options checked before TensorFlow starts, two logical CPU
devices training a tiny network for real, two worker processes over loopback doing the same through
edgeseg.train_loop, and checkpoints resumed on one device. Each training runs in a fresh process: the CPU can
be split into devices only before TensorFlow's runtime starts, and a worker joins its cluster once."""

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
    ("multiworker", 1, "reads the cluster from TF_CONFIG, which is not set"),
])
def test_bad_distribution_options_are_one_line(kind, devices, message, monkeypatch):
    from edgeseg.distribute import prepare

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(EdgesegError, match=message) as e:
        prepare(kind, devices)
    assert "\n" not in str(e.value)


def _tf_config(workers: list[str], task: str = "worker", index: int = 0, **cluster) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": {"worker": workers, **cluster}, "task": {"type": task, "index": index}})}


@pytest.mark.parametrize("env, message", [
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG must be JSON with a cluster and this task"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}}'}, "TF_CONFIG must be JSON with a cluster and this task"),
    (_tf_config(["a:1", "b:1"], index=2), r"task worker:2 is not in its cluster \({'worker': 2}\)"),
    (_tf_config(["a:1"], task="ps"), "task ps:0 is not in its cluster"),
    (_tf_config(["a:1"], task="chief", chief=["c:1", "d:1"]), "one chief at most"),
])
def test_a_bad_tf_config_is_one_line(env, message):
    from edgeseg.distribute import cluster

    with pytest.raises(EdgesegError, match=message) as e:
        cluster(env)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("env, workers, chief", [
    (_tf_config(["a:1", "b:1"], index=0), 2, True),
    (_tf_config(["a:1", "b:1"], index=1), 2, False),
    (_tf_config(["a:1", "b:1"], index=0, chief=["c:1"]), 3, False),  # a named chief writes, not worker 0
    (_tf_config(["a:1", "b:1"], task="chief", chief=["c:1"]), 3, True),
])
def test_the_chief_is_the_chief_task_or_else_worker_0(env, workers, chief):
    from edgeseg.distribute import cluster

    c = cluster(env)
    assert (c.workers, c.is_chief) == (workers, chief)


def test_a_cpu_worker_is_one_device(monkeypatch):
    from edgeseg.distribute import prepare

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv(*next(iter(_tf_config(["a:1", "b:1"]).items())))
    with pytest.raises(EdgesegError, match="this worker has no GPU, and its CPU is one device"):
        prepare("multiworker", 2)


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


def _cli_train(out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    tiny = ["--model", "inline", "--model-arg", "width=4", "--model-arg", "stem=8", "--batch-size", "8", "--crop", "64",
            "--curriculum", "20:20:1", "--val-count", "4", "--fit-count", "4", "--learning-rate", "0.01", "-q"]
    cmd = [sys.executable, "-m", "edgeseg.cli.app", "train", *tiny, *args, "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **(env or {})})


def _finished(*runs: subprocess.Popen) -> list[str]:
    """Each run's stdout once all have ended (all are killed if one hangs)."""
    try:
        outputs = [run.communicate(timeout=600) for run in runs]
    finally:
        for run in runs:
            run.kill()
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-3000:]
    return [stdout for stdout, _ in outputs]


@pytest.mark.slow
def test_two_workers_over_loopback_train_the_mirrored_step_and_the_chief_alone_writes(tmp_path):
    """Two worker processes (MultiWorkerMirroredStrategy over 127.0.0.1) against two logical devices in one
    process (MirroredStrategy through model.fit): the same initial weights, the same global batch split the
    same way, so the first step's loss is the same (model.fit reports the replicas' sum, the loop their
    mean); the chief writes the run, the other worker nothing; the chief's checkpoint resumes on one device."""
    from edgeseg.loopback import free_ports

    ports = free_ports(2)
    workers = [f"127.0.0.1:{p}" for p in ports]
    steps = ["--epochs", "2", "--steps-per-epoch", "1", "--loss", "bce"]
    chief, other = tmp_path / "chief", tmp_path / "other"
    runs = [_cli_train(out, "--strategy", "multiworker", *steps, env=_tf_config(workers, index=i))
            for i, out in enumerate((chief, other))]
    _, said = _finished(*runs)
    assert "worker:1 of 2 workers: trained 2 epochs" in said
    assert not other.exists()  # the other worker claims and writes nothing
    manifest = json.loads((chief / "model.keras.json").read_text())
    assert manifest["training"]["distribution"] == {"strategy": "multiworker", "replicas": 2, "devices": ["/cpu:0"],
                                                    "workers": 2, "task": "worker:0", "chief": True}
    _finished(_cli_train(tmp_path / "mirrored", "--devices", "2", *steps))
    looped = json.loads((chief / "history.json").read_text())
    fitted = json.loads((tmp_path / "mirrored" / "history.json").read_text())
    assert looped[0]["loss"] == pytest.approx(fitted[0]["loss"] / 2, rel=1e-4)
    assert looped[1]["loss"] < looped[0]["loss"]
    _finished(_cli_train(chief, "--devices", "1", "--epochs", "3", "--resume"))
    resumed = json.loads((chief / "model.keras.json").read_text())["training"]
    assert resumed["epochs_run"] == 3 and resumed["distribution"]["replicas"] == 1


def test_the_global_batch_must_split_over_every_workers_replicas_before_any_worker_is_contacted(monkeypatch):
    from edgeseg.train import TrainConfig, check

    # Port 1 on loopback: nothing listens there, so a check that contacted the cluster would fail otherwise.
    monkeypatch.setenv(*next(iter(_tf_config(["127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1"]).items())))
    with pytest.raises(EdgesegError, match="--batch-size 8 does not split evenly over 3 replicas"):
        check(TrainConfig(strategy="multiworker", batch_size=8))
