"""Hand edgeseg's models to the inference servers plants already run: NVIDIA Triton and DeepStream.

edgeseg writes no scheduler of its own. It writes what those servers read, from what the model files say, and
starts NVIDIA's own server where one runs here:

* :mod:`~edgeseg.serving.signature` — a model's inputs, outputs, batch range and operating point, read from an
  ONNX file or from an engine's manifest;
* :mod:`~edgeseg.serving.mask` — the fitted threshold put into the ONNX graph, so the file also outputs the
  uint8 defect mask;
* :mod:`~edgeseg.serving.triton` — a Triton model-repository entry (``config.pbtxt`` + ``1/model.onnx`` or
  ``1/model.plan``);
* :mod:`~edgeseg.serving.tritoncheck` — ``export-triton --check``: the ``tritonserver`` PyTriton ships reads an
  entry and says whether it accepts the configuration (it has no ONNX Runtime or TensorRT backend to go further);
* :mod:`~edgeseg.serving.deepstream` — a Gst-nvinfer config and its labels file;
* :mod:`~edgeseg.serving.server` — ``edgeseg serve``: a Triton server started with NVIDIA's PyTriton (in its
  own environment, ``make serve-env``) serving a model through edgeseg's runner, with dynamic batching;
* :mod:`~edgeseg.serving.client` — Triton's HTTP inference protocol, for ``edgeseg bench --url``.
"""
