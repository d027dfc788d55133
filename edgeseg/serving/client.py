"""A minimal client for Triton's HTTP/REST protocol with its binary tensor extension (the KServe v2 protocol;
Triton's docs, protocol/extension_binary_data.md), from the standard library: health, model metadata and
``infer`` for the models ``edgeseg serve`` serves (``image`` (N, H, W) uint8 in, ``prob`` (N, H, W) float32
out). It works against any Triton server; one instance per thread.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from edgeseg.errors import EdgesegError

INPUT, OUTPUT = "image", "prob"
_DTYPES = {"UINT8": np.uint8, "FP32": np.float32, "FP16": np.float16}


class TritonHttp:
    """A minimal Triton HTTP client for one thread (an ``http.client`` connection is not thread-safe)."""

    def __init__(self, url: str, timeout_s: float = 30.0):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise EdgesegError(f"--url {url!r}: give the server's HTTP address, e.g. http://127.0.0.1:8000")
        self.url, self.host, self.port, self.timeout_s = url, parts.hostname, parts.port or 80, timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
        for attempt in (0, 1):  # a keep-alive connection the server closed is reopened once
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                self.conn.request(method, path, body, headers or {})
                r = self.conn.getresponse()
                return r.status, r, r.read()
            except (ConnectionError, http.client.HTTPException) as e:
                self.close()
                if attempt:
                    raise EdgesegError(f"no answer from Triton at {self.url}: {e}") from e
            except OSError as e:
                self.close()
                raise EdgesegError(f"cannot reach Triton at {self.url}: {e}") from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def ready(self, model: str | None = None) -> bool:
        try:
            status, _, _ = self._request("GET", f"/v2/models/{model}/ready" if model else "/v2/health/ready")
        except EdgesegError:
            return False
        return status == 200

    def metadata(self, model: str) -> dict[str, Any]:
        status, _, body = self._request("GET", f"/v2/models/{model}")
        if status != 200:
            raise EdgesegError(f"Triton at {self.url} has no model {model!r}: {_error(body)}")
        return json.loads(body)

    def infer(self, model: str, images: np.ndarray) -> np.ndarray:
        """``images`` (N, H, W) uint8 → the server's ``prob`` output (N, H, W) float32."""
        x = np.ascontiguousarray(images, dtype=np.uint8)
        head = json.dumps({
            "inputs": [{"name": INPUT, "shape": list(x.shape), "datatype": "UINT8",
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": OUTPUT, "parameters": {"binary_data": True}}],
        }).encode()
        status, r, body = self._request("POST", f"/v2/models/{model}/infer", head + x.tobytes(), {
            "Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"})
        if status != 200:
            raise EdgesegError(f"Triton refused a request of {x.shape}: {_error(body)}")
        n = int(r.getheader("Inference-Header-Content-Length") or len(body))
        out = json.loads(body[:n])["outputs"][0]
        data = body[n:n + out["parameters"]["binary_data_size"]]
        return np.frombuffer(data, dtype=_DTYPES[out["datatype"]]).reshape(out["shape"])


def _error(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", body[:200]))
    except ValueError:
        return body[:200].decode(errors="replace")


def wait_ready(url: str, model: str | None = None, timeout_s: float = 60.0, alive=lambda: True) -> None:
    """Block until the server (and ``model``, when given) answers ready, or raise after ``timeout_s``;
    ``alive()`` returning False (the server process ended) stops the wait at once."""
    client, deadline = TritonHttp(url, timeout_s=2.0), time.monotonic() + timeout_s
    try:
        while not (client.ready() and (model is None or client.ready(model))):
            if not alive():
                raise EdgesegError(f"the Triton server for {url} ended before it was ready")
            if time.monotonic() > deadline:
                what = f"model {model!r}" if model and client.ready() else "the server"
                raise EdgesegError(f"Triton at {url}: {what} was not ready within {timeout_s:g} s "
                                   "(`edgeseg serve --model FILE --port PORT` starts one)")
            time.sleep(0.2)
    finally:
        client.close()


def image_shape(url: str, model: str) -> tuple[int, int]:
    """(H, W) of the model's ``image`` input, as the server describes it."""
    client = TritonHttp(url)
    try:
        meta = client.metadata(model)
    finally:
        client.close()
    inputs = {i["name"]: i for i in meta.get("inputs", [])}
    if INPUT not in inputs or inputs[INPUT]["datatype"] != "UINT8":
        raise EdgesegError(f"{model} on {url} takes {meta.get('inputs')}; edgeseg serve's models take "
                           f"{INPUT} UINT8 (N, H, W)")
    h, w = inputs[INPUT]["shape"][-2:]
    return (int(h), int(w)) if h > 0 and w > 0 else (256, 256)
