"""One training run as several worker processes on this host's loopback: ``train(cfg, out, workers)``.

A multi-worker cluster (``--strategy multiworker``, :mod:`edgeseg.distribute`) normally spans hosts, each
started by its operator with its own ``TF_CONFIG``. Here the same cluster is started on 127.0.0.1, one process
per worker, so that ``edgeseg study`` (the ``loopback_workers`` setting) can measure what multi-worker
training costs and trains without a cluster. Worker 0 writes the run into ``out``; every process is stopped
when the run ends, fails, or is interrupted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress, silent

#: How long a run may take before its workers are stopped (a worker waits for the others forever otherwise).
TIMEOUT_S = 6 * 3600

_WORKER = ("import json, sys; from edgeseg.train import TrainConfig, train; "
           "train(TrainConfig(**json.loads(sys.argv[1])), sys.argv[2], resume=sys.argv[3] == '1')")


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports on 127.0.0.1 that nothing listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(addresses: list[str], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``addresses``."""
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def train(cfg, out: str | Path, workers: int, resume: bool = False, progress: Progress = silent) -> dict[str, Any]:
    """Train ``cfg`` (a :class:`~edgeseg.train.TrainConfig`) as ``workers`` processes over loopback under
    ``--strategy multiworker``; returns worker 0's manifest summary from ``out/model.keras.json``."""
    from dataclasses import replace

    from edgeseg.artifacts import read_json

    if workers < 1:
        raise EdgesegError(f"loopback_workers must be at least 1, got {workers}")
    cfg = replace(cfg, strategy="multiworker")
    addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    progress(0, None, f"training on {workers} loopback worker(s)")
    with tempfile.TemporaryDirectory(prefix="edgeseg-loopback-") as logs:
        # stderr to files, not pipes: a worker that writes much would block on a full pipe nobody reads yet.
        streams = [open(Path(logs) / f"worker{i}.log", "w+") for i in range(workers)]
        procs = [subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(cfg.to_dict()), str(out),
                                   "1" if resume else "0"], env={**env, "TF_CONFIG": tf_config(addresses, i)},
                                  stdout=subprocess.DEVNULL, stderr=stream)
                 for i, stream in enumerate(streams)]
        try:
            _wait(procs, TIMEOUT_S)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
        failed.sort(key=lambda f: f[1] == -9)  # a worker that failed by itself, before those killed after it
        if failed:
            i, code = failed[0]
            streams[i].seek(0)
            last = (streams[i].read().strip().splitlines() or ["(no output)"])[-1]
        for stream in streams:
            stream.close()
    if failed:
        raise EdgesegError(f"loopback worker {i} of {workers} exited with {code}: {last}")
    manifest = read_json(Path(out) / "model.keras.json")
    return {"path": str(Path(out) / "model.keras"), "training": manifest.get("training", {})}


def _wait(procs: list[subprocess.Popen], timeout_s: float) -> None:
    """Until every worker has exited, or one has failed (the others would wait for it forever)."""
    deadline = time.monotonic() + timeout_s
    while any(p.poll() is None for p in procs):
        if any(p.returncode not in (None, 0) for p in procs):
            return
        if time.monotonic() > deadline:
            raise EdgesegError(f"the {len(procs)} loopback workers did not finish within {timeout_s:.0f} s; stopped")
        time.sleep(0.2)
