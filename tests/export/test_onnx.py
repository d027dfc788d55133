"""tf2onnx export of a tiny real Keras model: signature, parity, manifest, and refusals that leave no file."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.artifacts import write_manifest
from edgeseg.errors import EdgesegError

from tiny_models import save_tiny_model

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from edgeseg.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("export")
    keras_path = save_tiny_model(d / "model.keras")
    write_manifest(keras_path, "model", {}, threshold=0.37, model={"name": "tiny", "params": 77})
    result = export_onnx(keras_path, d / "model.onnx", image_size=SIZE, parity_count=2)
    return keras_path, result


def test_onnx_takes_image_with_dynamic_batch(exported):
    import onnx

    _, result = exported
    model = onnx.load(str(result.path))
    (inp,) = model.graph.input
    dims = [d.dim_value if d.dim_value else d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "image"
    assert isinstance(dims[0], str) and dims[1:] == [SIZE, SIZE, 1]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_manifest_records_parity_and_inherits_threshold(exported):
    from edgeseg.artifacts import manifest_path, read_json, sha256_file

    keras_path, result = exported
    meta = read_json(manifest_path(result.path))
    assert result.max_abs_diff <= 1e-4
    assert meta["parity"]["max_abs_diff"] == result.max_abs_diff
    assert meta["precision"] == "fp32"
    assert meta["threshold"] == 0.37 and meta["model"]["name"] == "tiny"
    assert meta["inputs"][str(keras_path)] == sha256_file(keras_path)
    assert meta["sha256"] == sha256_file(result.path)


def test_onnx_runs_any_batch(exported):
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner

    with OnnxRuntimeRunner(exported[1].path) as runner:
        for n in (1, 5):
            assert runner.infer(np.full((n, SIZE, SIZE), 112, np.uint8)).shape == (n, SIZE, SIZE)


def test_parity_failure_writes_nothing(exported, tmp_path):
    from edgeseg.export.onnx import export_onnx

    out = tmp_path / "m.onnx"
    # A tolerance nothing can meet stands in for a conversion that changed the answers.
    with pytest.raises(EdgesegError, match="differs from Keras by max"):
        export_onnx(exported[0], out, image_size=SIZE, parity_count=1, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_are_one_line_errors(exported, tmp_path):
    from edgeseg.export.onnx import export_onnx

    with pytest.raises(EdgesegError, match="model file not found"):
        export_onnx(tmp_path / "missing.keras", tmp_path / "m.onnx")
    with pytest.raises(EdgesegError, match="--opset must be an integer from 17 to 18, got 13"):
        export_onnx(exported[0], tmp_path / "m.onnx", opset=13)
    fixed = save_tiny_model(tmp_path / "fixed.keras", size=48)
    with pytest.raises(EdgesegError, match="takes 48x48 images; pass --image-size 48"):
        export_onnx(fixed, tmp_path / "m.onnx", image_size=SIZE)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("name, kwargs", [("inline", {}), ("unet", {"base": 4})])
def test_registry_models_export_within_tolerance(tmp_path, name, kwargs):
    """The project's own networks (custom layers: in-model standardisation, folds) survive tf2onnx."""
    import edgeseg.models as models
    from edgeseg.export.onnx import export_onnx

    model = models.build(name, **kwargs)
    model.save(tmp_path / "model.keras")
    result = export_onnx(tmp_path / "model.keras", tmp_path / "model.onnx", image_size=64, parity_count=2)
    assert result.max_abs_diff <= 1e-4


def test_export_for_a_line_shape_checks_parity_there_and_records_it(exported, tmp_path):
    import onnx

    from edgeseg.artifacts import manifest_path, read_json
    from edgeseg.export.onnx import export_onnx

    result = export_onnx(exported[0], tmp_path / "line.onnx", shape=(40, 72), parity_count=1)
    dims = [d.dim_value for d in onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [40, 72, 1] and result.max_abs_diff <= 1e-4
    meta = read_json(manifest_path(result.path))
    assert meta["config"]["shape"] == [40, 72] and meta["config"]["image_size"] is None
    assert meta["config"]["size_multiple"] == 1 and meta["input_scaling"]["uint8"] == 1.0


def test_a_shape_the_network_cannot_take_is_refused_before_converting(tmp_path):
    import edgeseg.models as models
    from edgeseg.export.onnx import export_onnx

    models.build("inline").save(tmp_path / "model.keras")  # folds 4x4 cells: sides must be multiples of 4
    for shape, words in (((64, 66), "--shape 64x66: model.keras needs sides that are multiples of 4; 64x68 would do"),
                         ((0, 64), "each side must be 16..4096 pixels")):
        with pytest.raises(EdgesegError, match=words):
            export_onnx(tmp_path / "model.keras", tmp_path / "m.onnx", shape=shape)
    assert not (tmp_path / "m.onnx").exists()
