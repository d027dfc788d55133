"""``edgeseg export-triton`` repositories read by a real ``tritonserver`` (the one PyTriton ships, from
``.venv-serve``: ``make serve-env``, created here when missing, as in test_server.py).

That server has the Python backend only. It reads, validates and maps ``config.pbtxt`` to its backend before it
looks for the backend's library, so an entry edgeseg writes must get as far as "unable to find backend library
for backend 'onnxruntime'" (or 'tensorrt'), and a broken config must be refused earlier, with the server's own
reason. Every server is started on 127.0.0.1 and stopped inside :func:`check_config`; a fixture checks that none
outlives its test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app
from edgeseg.serving.server import SERVE_VENV
from edgeseg.serving.tritoncheck import check_config, find_tritonserver

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("onnx")

cli = CliRunner()
BACKEND_MISSING = "unable to find backend library for backend '{}'"


@pytest.fixture(scope="module")
def server():
    python = ROOT / SERVE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["make", "serve-env"], cwd=ROOT, check=True, timeout=600)
    return find_tritonserver(python)


@pytest.fixture
def repo(tmp_path):
    """A fresh repository folder; after the test no process may still have it on its command line."""
    path = tmp_path / "repo"
    yield path
    left = [pid for pid, cmd in _cmdlines() if str(path) in cmd and "tritonserver" in cmd]
    assert not left, f"tritonserver still running on {path}: pids {left}"


def _cmdlines():
    for f in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            yield int(f.parent.name), f.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue


def export(*args: str):
    return cli.invoke(app, ["export-triton", *args])


@pytest.mark.parametrize("source,flags,name", [
    ("fp32", [], "model"),
    ("int8", [], "model_int8"),
    ("fp32", ["--mask-output"], "model"),
])
def test_onnx_entries_pass_the_servers_config_checks(server, models, repo, source, flags, name):
    r = export("--model", str(models[source]), "--repo", str(repo), *flags, "--check")
    assert r.exit_code == 0, r.output
    assert "config accepted by tritonserver 2." in r.output and "backend onnxruntime not present here" in r.output
    c = check_config(repo, name, server)
    assert (c.verdict, c.backend) == ("accepted", "onnxruntime"), c
    assert BACKEND_MISSING.format("onnxruntime") in c.reason


def test_plan_entry_is_checked_without_the_server_opening_the_plan(server, models, repo):
    r = export("--model", str(models["engine"]), "--repo", str(repo), "--check")
    assert r.exit_code == 0, r.output
    assert "backend tensorrt not present here" in r.output
    entry = repo / "model_int8_plan"
    # The plan bytes here are a stand-in; the server stops before reading them, as it does with no file at all.
    (entry / "1" / "model.plan").unlink()
    c = check_config(repo, "model_int8_plan", server)
    assert (c.verdict, c.backend) == ("accepted", "tensorrt"), c


def _broken(repo: Path, source: Path, name: str, edit) -> str:
    """A copy of ``source``'s entry as ``name`` with ``edit(config text)`` applied."""
    shutil.copytree(source, repo / name)
    text = (source / "config.pbtxt").read_text().replace(f'name: "{source.name}"', f'name: "{name}"', 1)
    (repo / name / "config.pbtxt").write_text(edit(text))
    return name


BROKEN = {
    "preferred_above_max": (lambda t: t.replace("preferred_batch_size: [ 8 ]", "preferred_batch_size: [ 64 ]"),
                            "dynamic batching preferred size must be <= max batch size"),
    "no_batching_with_batcher": (lambda t: t.replace("max_batch_size: 32", "max_batch_size: 0"),
                                 "dynamic batching preferred size must be <= max batch size"),
    "zero_dim": (lambda t: t.replace("dims: [ 32, 32, 1 ]", "dims: [ 0, 32, 1 ]", 1),
                 "model input 'image' dimension must be integer >= 1, or -1"),
    "unknown_type": (lambda t: t.replace("TYPE_FP32", "TYPE_FLOAT32", 1),
                     'Unknown enumeration value of "TYPE_FLOAT32" for field "data_type"'),
    "unknown_platform": (lambda t: t.replace("onnxruntime_onnx", "onnxruntime_onx"),
                         "unexpected platform type 'onnxruntime_onx'"),
    "renamed": (lambda t: t.replace('name: "renamed"', 'name: "other"'),
                "directory name must equal model name"),
}


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_broken_configs_are_refused_before_the_backend(server, models, repo, variant):
    assert export("--model", str(models["fp32"]), "--repo", str(repo)).exit_code == 0
    edit, reason = BROKEN[variant]
    c = check_config(repo, _broken(repo, repo / "model", variant, edit), server)
    assert c.verdict == "rejected", c
    assert reason in c.reason and BACKEND_MISSING.format("onnxruntime") not in c.reason, c


def test_a_missing_version_folder_is_refused(server, models, repo):
    assert export("--model", str(models["fp32"]), "--repo", str(repo)).exit_code == 0
    shutil.rmtree(repo / "model" / "1")
    c = check_config(repo, "model", server)
    assert c.verdict == "rejected" and "at least one version must be available" in c.reason, c


@pytest.mark.parametrize("variant,edit", [
    ("batch_axis_in_dims", lambda t: t.replace("dims: [ 32, 32, 1 ]", "dims: [ -1, 32, 32, 1 ]")),
    ("kind_gpu", lambda t: t.replace("KIND_CPU", "KIND_GPU")),
])
def test_what_only_the_backend_checks_passes_here(server, models, repo, variant, edit):
    """Wrong for the model, yet the server has no way to tell before the backend reads the model (or, for the
    instance group, before it creates instances: KIND_GPU passes with or without a GPU here): these stop at the
    missing backend, like a correct entry."""
    assert export("--model", str(models["fp32"]), "--repo", str(repo)).exit_code == 0
    c = check_config(repo, _broken(repo, repo / "model", variant, edit), server)
    assert (c.verdict, c.backend) == ("accepted", "onnxruntime"), c


def test_check_without_the_serving_environment_names_the_fix_and_writes_nothing(models, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEG_SERVE_PYTHON", str(tmp_path / "missing" / "python"))
    r = export("--model", str(models["fp32"]), "--repo", str(tmp_path / "repo"), "--check")
    assert r.exit_code == 1 and "make serve-env" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "repo").exists()
