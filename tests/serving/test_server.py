"""``edgeseg serve`` and ``edgeseg bench --url`` against a real Triton server (PyTriton) on the loopback.

The server runs from ``.venv-serve`` (``make serve-env``, created here when missing: PyTriton pins numpy < 2),
serving a tiny real ONNX model. Every server this module starts is stopped in a fixture's teardown or a
``finally``, its whole process group (tritonserver and the Python backend stub included).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app
from edgeseg.errors import EdgesegError
from edgeseg.serving.client import TritonHttp, wait_ready
from edgeseg.serving.server import SERVE_VENV

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def serve_env() -> Path:
    python = ROOT / SERVE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["make", "serve-env"], cwd=ROOT, check=True, timeout=600)
    return python


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tiny_models import tiny_onnx

    from edgeseg.artifacts import write_manifest

    path = tiny_onnx(tmp_path_factory.mktemp("serve") / "tiny.onnx", size=32)
    write_manifest(path, "onnx", config={}, threshold=0.5, mask_rule={"grow": None, "min_area": 0})
    return path


def _free_port() -> int:
    """A port p with p, p+1, p+2 free on the loopback (HTTP, gRPC, metrics)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            for p in (port, port + 1, port + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no three consecutive free ports on 127.0.0.1")


def _start(model: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgeseg.cli.app", "serve", "--model", str(model), "--port", str(port),
           "--max-batch", "16", "--log", str(log)]
    return subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _kill_group(proc: subprocess.Popen) -> None:
    from edgeseg.serving.server import stop

    stop(proc, timeout_s=30)  # SIGINT to `edgeseg serve`'s group, SIGKILL if it outlives that
    # The server's own process group (tritonserver, the backend stub), should `edgeseg serve` have died first.
    for pid in _server_pids(proc.pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _server_pids(parent: int) -> list[int]:
    """The children of ``parent`` (Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def server(serve_env, tiny_model, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "triton.log"
    proc = _start(tiny_model, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, "tiny", timeout_s=120, alive=lambda: proc.poll() is None)
        yield url
    finally:
        _kill_group(proc)


def test_bench_url_counts_every_frame_and_agrees_with_local_inference(server, tiny_model, tmp_path):
    out = tmp_path / "remote.json"
    r = CliRunner().invoke(app, ["bench", "--url", server, "--model", str(tiny_model), "--cameras", "8",
                                 "--rate", "40", "--frames", "200", "--json", str(out)])
    assert r.exit_code == 0, r.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["mode"] == "remote" and row["model"] == "tiny" and row["cameras"] == 8
    assert row["frames_in"] == 200
    assert row["frames_in"] == row["frames_out"] + row["dropped"]
    assert row["errors"] == row["lost"] == row["duplicated"] == 0 and row["integrity_ok"]
    assert row["frames_out"] > 0 and row["images_per_s"] > 0
    assert row["latency_ms_p50"] <= row["latency_ms_p90"] <= row["latency_ms_p99"]
    # Served masks are the local runner's: same graph, same ONNX Runtime, no post-processing on the server.
    assert row["agreement_frames"] > 0
    assert 0.0 < row["agreement_mask_fraction"] < 1.0  # neither empty nor full, so the IoU says something
    assert row["agreement_iou"] >= 0.999
    assert row["agreement_max_abs_dprob"] < 1e-5


def test_wrong_shape_is_refused_and_the_server_keeps_serving(server, tiny_model):
    from edgeseg.runners import load_runner

    client = TritonHttp(server)
    try:
        with pytest.raises(EdgesegError, match="shape"):
            client.infer("tiny", np.zeros((1, 16, 16), np.uint8))
        frames = np.random.default_rng(0).integers(100, 125, (3, 32, 32), dtype=np.uint8)
        served = client.infer("tiny", frames)
    finally:
        client.close()
    with load_runner(tiny_model) as runner:
        local = runner.infer(frames)
    assert served.shape == (3, 32, 32)
    np.testing.assert_allclose(served, local, atol=1e-6)


def test_ctrl_c_stops_the_server_and_its_processes(serve_env, tiny_model, tmp_path):
    port = _free_port()
    proc = _start(tiny_model, port, tmp_path / "triton.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, "tiny", timeout_s=120, alive=lambda: proc.poll() is None)
        children = _server_pids(proc.pid)
        assert children, "edgeseg serve started no server process"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not any(_group_alive(pid) for pid in children), "tritonserver outlived edgeseg serve"
        assert not TritonHttp(url, timeout_s=2).ready()
    finally:
        _kill_group(proc)


def test_serve_without_its_environment_names_the_fix(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGESEG_SERVE_PYTHON", str(tmp_path / "missing" / "python"))
    r = CliRunner().invoke(app, ["serve", "--model", str(tiny_model), "--port", "18999"])
    assert r.exit_code == 1
    assert "make serve-env" in r.output and "Traceback" not in r.output
