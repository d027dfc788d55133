"""Fixtures of the serving tests."""

from __future__ import annotations

import pytest

from serving_models import fake_engine, save_with_manifest, tiny_model, tiny_qdq_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """FP32, FP16-labelled and Q/DQ INT8 ONNX files with manifests, and an INT8 engine file built from the last."""
    d = tmp_path_factory.mktemp("serving-models")
    int8 = save_with_manifest(tiny_qdq_model(), d / "model.int8.onnx", precision="int8")
    return {"fp32": save_with_manifest(tiny_model(), d / "model.onnx"), "int8": int8,
            "fp16": save_with_manifest(tiny_model(), d / "model.fp16.onnx", precision="fp16"),
            "engine": fake_engine(d / "engines", int8)}
