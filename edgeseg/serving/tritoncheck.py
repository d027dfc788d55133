"""Ask a real Triton server whether it accepts a model-repository entry, here, without NVIDIA's container.

    edgeseg export-triton --model runs/demo/model.onnx --repo deploy/triton --check

The serving environment (``make serve-env``) holds NVIDIA's PyTriton, which ships ``tritonserver`` itself with
the Python backend only. :func:`check_config` starts that server on one entry (``--model-control-mode explicit
--load-model NAME``, auto-completion off, so the file is read as written; the backend folder pinned to PyTriton's,
so the answer does not depend on what else is installed), asks it over HTTP on 127.0.0.1 what became of the
model, and stops it. The server reads and validates ``config.pbtxt`` and maps the platform to its backend before
it looks for that backend's library, which is not there (``onnxruntime``, ``tensorrt``); so it stops there.

What the server has checked by then (tritonserver 2.51, PyTriton 0.7): the protobuf text format (field names,
enum names such as ``TYPE_FP32``, value types), that the folder is named as the model, a known platform and its
backend, every dim >= 1 or -1, preferred batch sizes within 1..``max_batch_size``, a version folder. What it has
not: that names, types and dims agree with the model file (a batch axis left in the dims passes), the instance
group (``KIND_GPU`` passes on a host without a GPU), and the model file, which it has not opened yet. Those take
the backends, in NVIDIA's Triton container.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import EdgesegError

HOST = "127.0.0.1"
_FIND = ("import importlib.util, pathlib; s = importlib.util.find_spec('pytriton'); "
         "print(pathlib.Path(s.origin).parent / 'tritonserver' if s else '')")
_NO_BACKEND = re.compile(r"unable to find backend library for backend '([^']+)'")


@dataclass(frozen=True)
class TritonServer:
    """The ``tritonserver`` binary PyTriton ships and its backend folder."""

    binary: Path
    backends: Path


@dataclass(frozen=True)
class ConfigCheck:
    """What a real Triton server made of one entry: ``verdict`` is ``accepted`` (the configuration passed and
    loading stopped at the missing ``backend`` library), ``loaded`` (the backend was there too) or ``rejected``;
    ``reason`` is the server's own words."""

    model: str
    server_version: str
    verdict: str
    reason: str
    backend: str | None = None

    def summary(self) -> str:
        server = f"tritonserver {self.server_version}"
        if self.verdict == "accepted":
            return (f"config accepted by {server} (format, platform, dims, batching); backend {self.backend} not "
                    "present here, so the model file and its agreement with the config were not checked (NVIDIA's "
                    "Triton container has the backend)")
        if self.verdict == "loaded":
            return f"{self.model} loaded by {server}"
        return f"{server} refused {self.model}: {self.reason}"


def find_tritonserver(python: str | Path | None = None) -> TritonServer:
    """The ``tritonserver`` in the serving environment (:func:`edgeseg.serving.server.serve_python`), or a
    one-line error naming the fix."""
    from edgeseg.serving.server import serve_python

    python = Path(python or serve_python())
    try:
        found = subprocess.run([str(python), "-c", _FIND], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EdgesegError(f"cannot run the serving environment's interpreter {python}: {e}") from None
    root = Path(found.stdout.strip()) if found.returncode == 0 and found.stdout.strip() else None
    if root is None or not (root / "bin" / "tritonserver").is_file():
        raise EdgesegError(f"{python} has no PyTriton with tritonserver: run `make serve-env`")
    return TritonServer(root / "bin" / "tritonserver", root / "backends")


def check_config(repo: str | Path, name: str, server: TritonServer | None = None,
                 timeout_s: float = 60.0) -> ConfigCheck:
    """Start ``server`` (default: :func:`find_tritonserver`) on ``repo/name`` alone, read its verdict, stop it.

    The server's process group is stopped however this returns. Raises :class:`EdgesegError` when the server
    does not come up within ``timeout_s``."""
    repo = Path(repo).resolve()
    if not (repo / name / "config.pbtxt").is_file():
        raise EdgesegError(f"{repo / name} has no config.pbtxt: write it with edgeseg export-triton")
    server = server or find_tritonserver()
    with tempfile.TemporaryDirectory(prefix="edgeseg-tritoncheck-") as tmp:
        log = Path(tmp) / "tritonserver.log"
        for _ in range(3):  # the free port can be taken between choosing it and the server binding it
            answer = _ask(server, repo, name, _free_port(), log, timeout_s)
            if answer is not None:
                version, index = answer
                return _verdict(name, version, index, log.read_text(errors="replace"))
            text = log.read_text(errors="replace")
            if "already in use" not in text:
                raise EdgesegError(f"tritonserver ended before it answered on {HOST}: {_tail(text)}")
        raise EdgesegError(f"tritonserver found no free port on {HOST}: {_tail(text)}")


def server_command(server: TritonServer, repo: Path, name: str, port: int) -> list[str]:
    return [str(server.binary), "--model-repository", str(repo), "--model-control-mode", "explicit",
            "--load-model", name, "--disable-auto-complete-config", "--exit-on-error", "false",
            "--backend-directory", str(server.backends), "--http-address", HOST, "--http-port", str(port),
            "--allow-grpc", "false", "--allow-metrics", "false",
            # A configuration check runs no inference: no pinned host memory pool, and no 30 s drain on exit.
            "--pinned-memory-pool-byte-size", "0", "--exit-timeout-secs", "5"]


def _ask(server: TritonServer, repo: Path, name: str, port: int, log: Path, timeout_s: float
         ) -> tuple[str, list[dict]] | None:
    """(server version, repository index) from a server started on ``port``, or None if it ended first."""
    from edgeseg.serving.server import stop

    with open(log, "wb") as out:
        proc = subprocess.Popen(server_command(server, repo, name, port), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        # The HTTP service starts once the models named by --load-model have been tried.
        while _get(port, "GET", "/v2/health/live") is None:
            if proc.poll() is not None:
                return None
            if time.monotonic() > deadline:
                raise EdgesegError(f"tritonserver did not answer on {HOST}:{port} within {timeout_s:g} s: "
                                   f"{_tail(log.read_text(errors='replace'))}")
            time.sleep(0.1)
        meta, index = _get(port, "GET", "/v2"), _get(port, "POST", "/v2/repository/index")
        if proc.poll() is not None or meta is None or index is None:
            return None  # another process answered on the port
        return str(meta.get("version", "?")), list(index)
    finally:
        stop(proc, timeout_s=10)


def _get(port: int, method: str, path: str):
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request(method, path, b"" if method == "POST" else None)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            return None
        return json.loads(body) if body.strip() else {}  # /v2/health/live answers 200 with no body
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def _verdict(name: str, version: str, index: list[dict], log: str) -> ConfigCheck:
    entry = next((e for e in index if e.get("name") == name), {})
    if entry.get("state") == "READY":
        return ConfigCheck(name, version, "loaded", "READY")
    if entry.get("state"):
        reason = str(entry.get("reason", ""))
        missing = _NO_BACKEND.search(reason)
        if missing:
            return ConfigCheck(name, version, "accepted", reason, missing.group(1))
        return ConfigCheck(name, version, "rejected", reason)
    # Refused before loading: the reason is in the log only ("Poll failed for model directory ...").
    q = re.escape(name)
    found = re.search(rf"Poll failed for model directory '{q}': (.*?)\"?$", log, re.M) or \
        re.search(rf"failed to load model '{q}': (.*?)\"?$", log, re.M)
    reason = found.group(1) if found else f"the server did not load it: {_tail(log)}"
    parse = re.search(r"Error parsing text-format inference\.ModelConfig: (.*)$", log, re.M)
    if parse and "failed to read text proto" in reason:
        reason += f" ({parse.group(1).strip()})"
    return ConfigCheck(name, version, "rejected", reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _tail(log: str, lines: int = 3) -> str:
    errors = [line for line in log.splitlines() if line.startswith("E") or "error" in line.lower()]
    return " | ".join((errors or log.splitlines() or ["(no output)"])[-lines:])
