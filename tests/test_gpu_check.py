"""tools/gpu_check.sh on a host without a GPU: it says what could not run and why, runs the checks that need
no GPU (the static TensorRT importer check), and writes its one JSON report with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def conv_model(path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1, 1, 3, 3), 0.1, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["prob"], name="conv", pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_without_a_gpu_the_report_says_what_could_not_run(tmp_path):
    run, out = tmp_path / "run", tmp_path / "out"
    run.mkdir()
    for name in ("model.fp16.onnx", "model.int8.onnx"):
        conv_model(run / name)
    env = {**os.environ, "RUN": str(run), "OUT": str(out), "NVIDIA_SMI": "false", "PY": sys.executable,
           "STEP_TIMEOUT": "120"}
    done = subprocess.run(["bash", str(ROOT / "tools/gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["gpu"] is None and report["tensorrt_ran"] is False
    steps = report["steps"]
    assert steps["check"]["status"] == "passed"
    for name in ("transport-tests", "engine-fp16", "engine-int8", "bench"):
        assert steps[name]["status"] == "not run" and "no NVIDIA GPU" in steps[name]["why"], name
    assert "transport results come from a test kernel" in report["note"]


def test_the_report_reads_pytest_junit_and_the_int8_over_fp16_ratio(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gpu_report
    finally:
        sys.path.pop(0)
    (tmp_path / "gpu.txt").write_text("NVIDIA H100 80GB HBM3, 9.0, 580.65\n")
    (tmp_path / "steps.tsv").write_text("gpu-tests\t1\t42\nbench\t0\t30\n")
    (tmp_path / "gpu-tests.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="0">'
        '<testcase classname="tests.trt.test_demo_engines" name="test_a"/>'
        '<testcase classname="tests.trt.test_demo_engines" name="test_b"><failure message="EDGESEG_REQUIRE_GPU=1 but '
        'this test needs tensorrt"/></testcase><testcase classname="x" name="c"/></testsuite></testsuites>')
    rows = [{"model": f"e/model.{p}.engine", "mode": "batched", "batch_size": 8, "images_per_s": v}
            for p, v in (("fp16", 1000.0), ("int8", 1500.0))]
    (tmp_path / "bench.json").write_text(json.dumps({"rows": rows}))
    assert gpu_report.main(str(tmp_path)) == 1  # a step failed
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["gpu_tests"]["passed"] == 2 and report["gpu_tests"]["failures"] == 1
    assert report["gpu_tests"]["failed"][0]["message"].endswith("needs tensorrt")
    assert report["speed"]["int8_over_fp16"] == {"8": 1.5}  # JSON keys are strings
    assert report["steps"]["bench"] == {"status": "passed", "exit_code": 0, "seconds": 30}
