"""edgeseg: inline defect segmentation from synthetic data to ONNX/TensorRT deployment.

Layout follows the pipeline: data → models/losses/train → export (ONNX, FP16, INT8) → trt (engines)
→ runners (one interface for every backend) → bench. The CLI in ``edgeseg.cli`` is a thin layer on top.
"""

__version__ = "0.1.0"
