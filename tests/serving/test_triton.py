"""``edgeseg export-triton``: repository entries parsed back with Triton's own ModelConfig schema
(``tritonclient.grpc.model_config_pb2``), for ONNX files, an engine with its manifest, and the CLI's refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from edgeseg.cli.app import app
from serving_models import RULE, SIZE, fake_engine, one_line_error

cli = CliRunner()


def parse(entry: Path):
    """config.pbtxt read by Triton's protobuf schema (fails on any field Triton does not know)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((entry / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def dtype(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value)


def kind(group) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind)


def export(*args: str):
    return cli.invoke(app, ["export-triton", *args])


def test_onnx_entry_holds_the_models_names_types_and_shapes(models, tmp_path):
    repo = tmp_path / "repo"
    result = export("--model", str(models["fp32"]), "--repo", str(repo))
    assert result.exit_code == 0, result.output
    entry = repo / "model"
    assert sorted(p.name for p in entry.iterdir()) == ["1", "config.pbtxt", "manifest.json"]
    assert (entry / "1" / "model.onnx").read_bytes() == models["fp32"].read_bytes()
    c = parse(entry)
    assert (c.name, c.platform, c.max_batch_size) == ("model", "onnxruntime_onnx", 32)
    assert [(i.name, dtype(i.data_type), list(i.dims)) for i in c.input] == [("image", "TYPE_FP32", [SIZE, SIZE, 1])]
    assert [(o.name, dtype(o.data_type), list(o.dims)) for o in c.output] == [("prob", "TYPE_FP32", [SIZE, SIZE, 1])]
    assert [(g.count, kind(g)) for g in c.instance_group] == [(1, "KIND_CPU")]
    assert list(c.dynamic_batching.preferred_batch_size) == [8]
    assert c.dynamic_batching.max_queue_delay_microseconds == 100
    assert dict(c.cc_model_filenames) == {}
    meta = json.loads((entry / "manifest.json").read_text())
    assert meta["kind"] == "triton-model" and meta["threshold"] == 0.6 and meta["mask_rule"] == RULE
    assert meta["config"]["preferred_source"] == "default"


def test_options_land_in_the_config(models, tmp_path):
    repo = tmp_path / "repo"
    result = export("--model", str(models["int8"]), "--repo", str(repo), "--name", "seg-int8", "--max-batch", "16",
                    "--instances", "3", "--instance-kind", "gpu", "--preferred-batch", "16,4,8",
                    "--max-queue-delay-us", "250")
    assert result.exit_code == 0, result.output
    c = parse(repo / "seg-int8")
    assert (c.name, c.max_batch_size) == ("seg-int8", 16)
    assert [(g.count, kind(g)) for g in c.instance_group] == [(3, "KIND_GPU")]
    assert list(c.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert c.dynamic_batching.max_queue_delay_microseconds == 250


def test_mask_output_serves_the_threshold_in_the_graph(models, tmp_path):
    import numpy as np
    import onnxruntime as ort

    repo = tmp_path / "repo"
    result = export("--model", str(models["fp32"]), "--repo", str(repo), "--mask-output")
    assert result.exit_code == 0, result.output
    c = parse(repo / "model")
    assert [(o.name, dtype(o.data_type), list(o.dims)) for o in c.output] == [
        ("prob", "TYPE_FP32", [SIZE, SIZE, 1]), ("mask", "TYPE_UINT8", [SIZE, SIZE, 1])]
    session = ort.InferenceSession(str(repo / "model" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["prob", "mask"]
    images = np.random.default_rng(0).normal(112, 8, (2, SIZE, SIZE, 1)).astype(np.float32)
    prob, mask = session.run(None, {"image": images})
    assert np.array_equal(mask, (prob >= 0.6).astype(np.uint8)) and 0 < mask.sum() < mask.size
    meta = json.loads((repo / "model" / "manifest.json").read_text())
    assert meta["serving"]["applied_in_graph"] == "mask = uint8(prob >= 0.6)"
    assert meta["serving"]["left_to_caller"]["mask_rule"] == RULE


def test_preferred_batch_defaults_to_the_bench_saturation(models, tmp_path):
    from edgeseg.bench.report import record, saturation

    ips = {1: 100.0, 2: 190.0, 4: 360.0, 8: 650.0, 16: 1000.0, 32: 1020.0}  # +2 % after 16: saturated at 16
    rows = [{"model": str(models["fp32"]), "backend": "onnxruntime", "precision": "fp32",
             "mode": "single" if b == 1 else "batched", "batch_size": b, "images_per_s": v} for b, v in ips.items()]
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(record(rows, {})))
    assert saturation(rows)[0]["saturation_batch"] == 16
    result = export("--model", str(models["fp32"]), "--repo", str(tmp_path / "repo"), "--bench", str(bench))
    assert result.exit_code == 0, result.output
    assert list(parse(tmp_path / "repo" / "model").dynamic_batching.preferred_batch_size) == [16]
    other = export("--model", str(models["int8"]), "--repo", str(tmp_path / "repo"), "--bench", str(bench))
    one_line_error(other, "has no saturation entry for")


def test_engine_entry_is_a_plan_keyed_by_its_compute_capability(models, tmp_path):
    repo = tmp_path / "repo"
    result = export("--model", str(models["engine"]), "--repo", str(repo))
    assert result.exit_code == 0, result.output
    entry = repo / "model_int8_plan"
    assert (entry / "1" / "model.plan").read_bytes() == models["engine"].read_bytes()
    c = parse(entry)
    assert (c.platform, c.max_batch_size) == ("tensorrt_plan", 32)
    assert dict(c.cc_model_filenames) == {"8.7": "model.plan"} and c.default_model_filename == "model.plan"
    assert [(o.name, list(o.dims)) for o in c.output] == [("prob", [SIZE, SIZE, 1])]  # from the source ONNX
    assert [(g.count, kind(g)) for g in c.instance_group] == [(1, "KIND_GPU")]
    assert list(c.dynamic_batching.preferred_batch_size) == [8]  # the profile's OPT
    meta = json.loads((entry / "manifest.json").read_text())
    assert meta["profile"] == [1, 8, 32] and meta["precision"] == "int8"


def test_existing_entry_needs_force(models, tmp_path):
    repo = tmp_path / "repo"
    assert export("--model", str(models["fp32"]), "--repo", str(repo)).exit_code == 0
    one_line_error(export("--model", str(models["fp32"]), "--repo", str(repo), "--max-batch", "8"),
                   "already exists: pass --force")
    assert parse(repo / "model").max_batch_size == 32
    forced = export("--model", str(models["fp32"]), "--repo", str(repo), "--max-batch", "8", "--force")
    assert forced.exit_code == 0, forced.output
    assert parse(repo / "model").max_batch_size == 8
    assert sorted(p.name for p in repo.iterdir()) == ["model"]  # no temporary or lock files left


def test_refusals_are_one_line(models, tmp_path):
    from onnx import TensorProto, helper

    repo = str(tmp_path / "repo")
    one_line_error(export("--model", str(tmp_path / "missing.onnx"), "--repo", repo), "model not found")

    bare = tmp_path / "bare" / "model.int8.engine"
    bare.parent.mkdir()
    bare.write_bytes(b"plan")
    one_line_error(export("--model", str(bare), "--repo", repo), "has no manifest")

    one_line_error(export("--model", str(models["engine"]), "--repo", repo, "--max-batch", "64"),
                   "outside")
    one_line_error(export("--model", str(models["engine"]), "--repo", repo, "--mask-output"), "is an engine")
    one_line_error(export("--model", str(models["engine"]), "--repo", repo, "--instance-kind", "cpu"),
                   "runs on a GPU only")
    one_line_error(export("--model", str(models["fp32"]), "--repo", repo, "--max-batch", "4",
                          "--preferred-batch", "8"), "outside 1..4")
    one_line_error(export("--model", str(models["fp32"]), "--repo", repo, "--instance-kind", "tpu"),
                   "--instance-kind must be one of auto, cpu, gpu")

    moved = tmp_path / "moved"
    moved.mkdir()
    orphan = fake_engine(moved, models["int8"])
    shutil.move(str(models["int8"]), str(tmp_path / "elsewhere.onnx"))
    try:
        one_line_error(export("--model", str(orphan), "--repo", repo), "which is not here")
    finally:
        shutil.move(str(tmp_path / "elsewhere.onnx"), str(models["int8"]))

    two = helper.make_graph(
        [helper.make_node("Add", ["image", "extra"], ["prob"])], "two",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", SIZE, SIZE, 1]),
         helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["N", SIZE, SIZE, 1])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", SIZE, SIZE, 1])])
    path = tmp_path / "two.onnx"
    import onnx

    onnx.save(helper.make_model(two, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    one_line_error(export("--model", str(path), "--repo", repo), "has 2 inputs (image, extra)")
    assert not Path(repo).exists() or list(Path(repo).iterdir()) == []
