"""``edgeseg export-triton`` and ``export-deepstream``: an edgeseg model as the servers plants run read it;
``edgeseg serve``: a live Triton server for one. Thin commands over :mod:`edgeseg.serving`; no heavy import at
module level."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import MAX_BATCH, console, parse_int_list, user_errors
from edgeseg.errors import EdgesegError
from edgeseg.validate import whole

_TRITON_EPILOG = """\
Examples:

  edgeseg export-triton --model runs/demo/model.onnx --repo deploy/triton --mask-output

  edgeseg export-triton --model runs/demo/model.int8.onnx --repo deploy/triton --bench runs/demo/bench.json

  edgeseg export-triton --model engines/model.int8.engine --repo deploy/triton --instances 2

Writes REPO/NAME/config.pbtxt, REPO/NAME/1/model.onnx (or 1/model.plan) and REPO/NAME/manifest.json; then
tritonserver --model-repository REPO. Names, types and shapes come from the model (an engine's from its manifest
and the ONNX file it was built from); --max-batch stays within an engine's profile; the preferred batch is where
--bench found throughput stops growing, else the engine profile's OPT, else 8. --mask-output (ONNX) adds output
mask = uint8(prob >= fitted threshold) to the graph and keeps prob; the mask rule (hysteresis, minimum blob
area) stays with the client and is recorded in manifest.json. --check then starts the tritonserver PyTriton ships
(.venv-serve, `make serve-env`) on the entry: it validates config.pbtxt and stops at the ONNX Runtime or TensorRT
backend, which it does not have; a refused config exits 1 with the server's reason.
"""

_DEEPSTREAM_EPILOG = """\
Examples:

  edgeseg export-deepstream --model runs/demo/model.onnx --out deploy/deepstream

  edgeseg export-deepstream --model engines/model.int8.engine --out deploy/deepstream-int8 --batch-size 8

Writes OUT/config_infer_primary_edgeseg.txt (a Gst-nvinfer \\[property] group: network-type=2, gray input as
raw 0..255 levels, NHWC, segmentation-threshold = the fitted threshold), OUT/labels.txt and a copy of the model;
point nvinfer's config-file-path at the config. nvinfer thresholds the probabilities itself: pass the model
without a mask output.
"""

_SERVE_EPILOG = """\
Examples:

  make serve-env     # once: .venv-serve, with PyTriton (it ships tritonserver)

  edgeseg serve --model runs/demo/model.onnx --port 8000

  edgeseg bench --url http://127.0.0.1:8000 --model runs/demo/model.onnx --cameras 8 --rate 25 --frames 2000

Serves MODEL on 127.0.0.1 only (HTTP on PORT, gRPC on PORT+1, metrics on PORT+2) as NAME: input image (N, H, W)
uint8 raw pixels, output prob (N, H, W) float32, the probabilities of the runner `edgeseg eval` uses, nothing
applied after them. Triton's dynamic batcher merges requests into batches of up to --max-batch frames, waiting at
most --max-queue-delay-us. Says so once GET /v2/health/ready and the model answer ready; serves until Ctrl-C.
The server runs in .venv-serve (PyTriton needs numpy < 2); EDGESEG_SERVE_PYTHON names another interpreter.
"""


@user_errors
def serve(
    model: Path = typer.Option(..., "--model", help="The model file to serve (.onnx, .keras, .engine: what `edgeseg eval` runs)."),
    port: int = typer.Option(8000, "--port", help="HTTP port on 127.0.0.1 (gRPC takes PORT+1, metrics PORT+2)."),
    max_batch: int = typer.Option(32, "--max-batch", help=f"Largest batch the dynamic batcher forms, 1..{MAX_BATCH}."),
    max_queue_delay_us: int = typer.Option(100, "--max-queue-delay-us", help="How long a request may wait to be batched (µs)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name on the server (default from the file: model_int8)."),
    ready_timeout_s: float = typer.Option(120.0, "--ready-timeout-s", help="Give up when the server is not ready within this."),
    log: Optional[Path] = typer.Option(None, "--log", help="Write Triton's log here instead of to the terminal."),
) -> None:
    """Serve a model with a Triton Inference Server on this machine (PyTriton), with dynamic batching."""
    from edgeseg.serving.client import wait_ready
    from edgeseg.serving.server import ServeOptions, launch, stop
    from edgeseg.serving.triton import model_name_for
    from edgeseg.validate import finite

    whole("--port", port, 1, 65533)
    whole("--max-batch", max_batch, 1, MAX_BATCH)
    whole("--max-queue-delay-us", max_queue_delay_us, 0, 60_000_000)
    finite("--ready-timeout-s", ready_timeout_s, 0, 3600, lo_open=True, unit="seconds")
    if not model.is_file():
        raise EdgesegError(f"model file not found: {model}")
    options = ServeOptions(port=port, max_batch=max_batch, max_queue_delay_us=max_queue_delay_us, name=name)
    served = name or model_name_for(model)
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "ab")) if log else None
        proc = launch(model, options, stdout=out, stderr=out)
        try:
            wait_ready(url, served, ready_timeout_s, alive=lambda: proc.poll() is None)
            console.print(f"serving {served} at {url} (gRPC 127.0.0.1:{port + 1}, max batch {max_batch}, "
                          f"queue delay {max_queue_delay_us} µs); Ctrl-C stops", highlight=False, soft_wrap=True)
            code = proc.wait()
            if code:
                raise EdgesegError(f"the Triton server for {model} ended with exit code {code}"
                                   + (f" (its log: {log})" if log else ""))
        except KeyboardInterrupt:
            console.print("stopping", highlight=False)
        finally:
            stop(proc)


@user_errors
def export_triton(
    model: Path = typer.Option(..., "--model", help="ONNX file (model.onnx, model.int8.onnx, ...) or edgeseg engine (.engine)."),
    repo: Path = typer.Option(..., "--repo", help="The Triton model repository (created if missing)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in the repository (default from the file: model_int8, model_int8_plan)."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", help=f"max_batch_size, 1..{MAX_BATCH} (default: an engine's profile MAX, else 32)."),
    instances: int = typer.Option(1, "--instances", help="Model instances (instance_group count)."),
    instance_kind: str = typer.Option("auto", "--instance-kind", help="auto (GPU for engines, CPU for ONNX) | cpu | gpu."),
    preferred_batch: Optional[str] = typer.Option(None, "--preferred-batch", help="Preferred batch sizes, e.g. 4,8,16."),
    bench: Optional[Path] = typer.Option(None, "--bench", help="edgeseg bench --json report: prefer its saturation batch."),
    max_queue_delay_us: int = typer.Option(100, "--max-queue-delay-us", help="How long a request may wait to be batched (µs)."),
    mask_output: bool = typer.Option(False, "--mask-output", help="ONNX: also output mask = uint8(prob >= fitted threshold)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing REPO/NAME."),
    check: bool = typer.Option(False, "--check", help="Have the local tritonserver (.venv-serve) validate the config."),
) -> None:
    """A Triton model-repository entry (config.pbtxt + model) for an ONNX file or engine."""
    from edgeseg.serving.triton import InstanceKind, TritonOptions, export_triton as export
    from edgeseg.serving.tritoncheck import check_config, find_tritonserver

    if preferred_batch is not None and bench is not None:
        raise EdgesegError("choose one of --preferred-batch or --bench")
    if max_batch is not None:
        whole("--max-batch", max_batch, 1, MAX_BATCH)
    whole("--instances", instances, 1, 1024)
    whole("--max-queue-delay-us", max_queue_delay_us, 0, 60_000_000)
    options = TritonOptions(
        name=name, max_batch=max_batch, instances=instances, kind=_choice(instance_kind, InstanceKind, "--instance-kind"),
        preferred_batch=tuple(parse_int_list(preferred_batch, "--preferred-batch")) if preferred_batch else None,
        max_queue_delay_us=max_queue_delay_us, bench=bench, mask_output=mask_output, force=force)
    server = find_tritonserver() if check else None  # a missing serving environment fails before anything is written
    result = export(model, repo, options)
    m = result.model
    extra = f", outputs prob + {result.mask_output} (uint8)" if result.mask_output else ""
    console.print(f"wrote {result.path} ({m.platform}, max batch {m.max_batch}, preferred "
                  f"{','.join(map(str, m.preferred))} from {m.preferred_source}, {m.instances}× {m.kind}{extra})",
                  highlight=False, soft_wrap=True)
    if server is not None:
        verdict = check_config(result.path.parent, m.name, server)
        if verdict.verdict == "rejected":
            raise EdgesegError(f"wrote {result.path}, but {verdict.summary()}")
        console.print(verdict.summary(), highlight=False, soft_wrap=True)


@user_errors
def export_deepstream(
    model: Path = typer.Option(..., "--model", help="ONNX file or edgeseg engine (.engine) with one probability output."),
    out: Path = typer.Option(..., "--out", help="Folder to write the nvinfer config, labels and model to."),
    batch_size: int = typer.Option(1, "--batch-size", help=f"nvinfer batch-size (frames per inference, 1..{MAX_BATCH})."),
    gpu_id: int = typer.Option(0, "--gpu-id", help="nvinfer gpu-id."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT."),
) -> None:
    """A DeepStream Gst-nvinfer config (semantic segmentation) and labels file for a model."""
    from edgeseg.serving.deepstream import export_deepstream as export

    whole("--batch-size", batch_size, 1, MAX_BATCH)
    whole("--gpu-id", gpu_id, 0, 1023)
    result = export(model, out, batch_size=batch_size, gpu_id=gpu_id, force=force)
    p = result.properties
    console.print(f"wrote {result.config} (network-mode {p['network-mode']}, batch-size {p['batch-size']}, "
                  f"segmentation-threshold {p['segmentation-threshold']}) and {result.labels.name}",
                  highlight=False, soft_wrap=True)


def _choice(value: str, enum, option: str):
    try:
        return enum(value)
    except ValueError:
        raise EdgesegError(f"{option} must be one of {', '.join(e.value for e in enum)}, got {value!r}") from None


def register(app: typer.Typer) -> None:
    app.command("export-triton", epilog=_TRITON_EPILOG)(export_triton)
    app.command("export-deepstream", epilog=_DEEPSTREAM_EPILOG)(export_deepstream)
    app.command("serve", epilog=_SERVE_EPILOG)(serve)
