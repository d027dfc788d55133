"""A live Triton Inference Server for an edgeseg model, started from Python with NVIDIA's PyTriton.

    edgeseg serve --model runs/demo/model.onnx --port 8000

serves the model as ``model`` (:func:`edgeseg.serving.triton.model_name_for`): input ``image`` (N, H, W) uint8
raw camera pixels, output ``prob`` (N, H, W) float32 — exactly what ``runner.infer`` gives, through the same
runner ``edgeseg eval`` loads (:func:`edgeseg.runners.load_runner`), nothing applied after it. Triton's dynamic
batcher merges requests into batches of up to ``max_batch`` frames, waiting at most ``max_queue_delay_us``.

PyTriton pins numpy < 2 while the main environment's OpenCV needs numpy 2, so the server runs in its own
environment (``make serve-env``: ``.venv-serve``). :func:`launch` starts ``python -m edgeseg.serving.server``
there as a child process in its own process group; :func:`serve` is that process's body.

HTTP on ``port``, gRPC on ``port + 1`` and metrics on ``port + 2``, all bound to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.serving.client import INPUT, OUTPUT

SERVE_VENV = ".venv-serve"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServeOptions:
    """Where and how to serve: HTTP ``port`` (gRPC and metrics take the next two), the dynamic batcher's
    largest batch and longest wait, and the model's name (default from the file name)."""

    port: int = 8000
    max_batch: int = 32
    max_queue_delay_us: int = 100
    name: str | None = None

    def ports(self) -> dict[str, int]:
        return {"http": self.port, "grpc": self.port + 1, "metrics": self.port + 2}


def serve_python() -> Path:
    """The interpreter of the serving environment (``EDGESEG_SERVE_PYTHON``, else ``.venv-serve`` in the current
    folder or in this checkout), or a one-line error naming the fix."""
    if os.environ.get("EDGESEG_SERVE_PYTHON"):
        candidates = [Path(os.environ["EDGESEG_SERVE_PYTHON"])]
    else:
        candidates = [root / SERVE_VENV / "bin" / "python" for root in (Path.cwd(), _checkout())]
    for python in candidates:
        if python.exists():
            return python
    raise EdgesegError(f"the serving environment is missing ({candidates[0]}): run `make serve-env` "
                       "(PyTriton needs numpy < 2, so it has its own virtual environment)")


def _checkout() -> Path:
    return Path(__file__).resolve().parents[2]


def server_command(python: str | Path, model: str | Path, options: ServeOptions) -> list[str]:
    cmd = [str(python), "-m", "edgeseg.serving.server", "--model", str(Path(model).resolve()),
           "--port", str(options.port), "--max-batch", str(options.max_batch),
           "--max-queue-delay-us", str(options.max_queue_delay_us)]
    return cmd + (["--name", options.name] if options.name else [])


def launch(model: str | Path, options: ServeOptions, python: str | Path | None = None, **popen) -> subprocess.Popen:
    """Start the server as a child process in a process group of its own (stop it with :func:`stop`)."""
    if not Path(model).is_file():
        raise EdgesegError(f"model file not found: {model}")
    python = python or serve_python()
    env = dict(os.environ)
    # The serving environment imports this checkout's edgeseg, even where it was installed from another one.
    if (_checkout() / "pyproject.toml").is_file():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_checkout()), env.get("PYTHONPATH")]))
    return subprocess.Popen(server_command(python, model, options), env=env, start_new_session=True, **popen)


def stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> int:
    """SIGINT to the server's process group (PyTriton shuts Triton down), SIGKILL if it outlives
    ``timeout_s``. Returns the exit code."""
    for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    code = proc.wait()
    # The rest of the group (tritonserver, its backend stub, multiprocessing's resource tracker) ends on its
    # own once the server process is gone; what has not after a few seconds is killed.
    if not _group_gone(proc.pid, 10.0):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        _group_gone(proc.pid, 5.0)
    return code


def _group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def libpython_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this interpreter's own libpython folder first on ``LD_LIBRARY_PATH``.

    Triton's Python backend stub links against a libpython; an interpreter built elsewhere (pyenv, conda)
    is not the system's, and the stub then loads the system's libpython next to this interpreter's standard
    library, which fails inside the model (``'_thread.RLock' object has no attribute '_recursion_count'``)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    out = dict(env)
    if libdir:
        rest = [p for p in out.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
        out["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *rest])
    return out


def serve(model: str | Path, options: ServeOptions) -> None:
    """Serve ``model`` until SIGINT/SIGTERM (the body of the child process; needs PyTriton)."""
    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from edgeseg.runners import load_runner
    from edgeseg.serving.triton import model_name_for

    # tritonserver and its Python backend stubs inherit this process's environment.
    os.environ.update(libpython_env(dict(os.environ)))
    runner = load_runner(model)
    runner.activate()
    h, w = runner.image_shape or (-1, -1)

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        return {OUTPUT: runner.infer(image)}

    ports = options.ports()
    config = TritonConfig(http_address=HOST, http_port=ports["http"], grpc_address=HOST, grpc_port=ports["grpc"],
                          metrics_address=HOST, metrics_port=ports["metrics"], allow_metrics=False, exit_on_error=True)
    try:
        with Triton(config=config) as triton:
            triton.bind(model_name=options.name or model_name_for(model), infer_func=infer,
                        inputs=[Tensor(name=INPUT, dtype=np.uint8, shape=(h, w))],
                        outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(h, w))],
                        config=ModelConfig(max_batch_size=options.max_batch,
                                           batcher=DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us)),
                        strict=True)
            triton.serve()
    finally:
        runner.deactivate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeseg.serving.server", description=serve.__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=ServeOptions.port)
    parser.add_argument("--max-batch", type=int, default=ServeOptions.max_batch)
    parser.add_argument("--max-queue-delay-us", type=int, default=ServeOptions.max_queue_delay_us)
    parser.add_argument("--name", default=None)
    a = parser.parse_args(argv)
    # SIGTERM ends the server the way Ctrl-C does, so Triton is shut down rather than orphaned.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        serve(a.model, ServeOptions(a.port, a.max_batch, a.max_queue_delay_us, a.name))
    except EdgesegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
