"""String enums shared by the library and the CLI (their values are the CLI's choices)."""

from __future__ import annotations

from enum import Enum


class Backend(str, Enum):
    keras = "keras"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"
    classical = "classical"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"
