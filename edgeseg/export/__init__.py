"""Keras → ONNX export (``onnx``), FP16/INT8 conversion of the ONNX graph (``precision``) and the generated
calibration sets INT8 is calibrated on (``calibration``). Precision lives in the ONNX graph so that one file
serves ONNX Runtime on a CPU, TensorRT 10 (JetPack) and TensorRT 11 (strongly typed networks)."""
