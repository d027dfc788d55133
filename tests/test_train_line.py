"""Training on a line's own images: --backgrounds (defects placed on the fly), --data (labelled images), their
mix, the held-out validation and operating point, 16-bit backgrounds, and the bad inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("keras")

from typer.testing import CliRunner  # noqa: E402

from edgeseg.artifacts import read_json  # noqa: E402
from edgeseg.cli.app import app  # noqa: E402
from edgeseg.data.dataset import write_dataset  # noqa: E402
from edgeseg.data.synth import PRESETS  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.train import TrainConfig, check, finish, train  # noqa: E402

TINY = dict(model="inline", model_kwargs={"width": 4, "stem": 8}, epochs=2, steps_per_epoch=6, batch_size=4,
            crop=64, val_count=4, fit_count=4, learning_rate=1e-2)


def _write_backgrounds(folder, n=5, size=(80, 96), dtype=np.uint8, seed=0):
    """Defect-free images with a texture (stripes) and noise, 8- or 16-bit."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    for i in range(n):
        image = 110 + 10 * np.sin(xx / (3 + i)) + rng.normal(0, 5, size)
        if dtype == np.uint16:
            image = image * 257
        cv2.imwrite(str(folder / f"{i}.png"), np.clip(image, 0, np.iinfo(dtype).max).astype(dtype))
    return folder


@pytest.mark.slow
def test_backgrounds_run_validates_and_fits_on_held_out_images(tmp_path):
    bgs = _write_backgrounds(tmp_path / "good")
    result = train(TrainConfig(**TINY, backgrounds=str(bgs), contrast_sigma=[4.0, 6.0]), tmp_path / "run")
    m = read_json(tmp_path / "run" / "model.keras.json")
    line = m["training"]["line"]
    assert [i["name"] for i in line["val_backgrounds"]["images"]] == ["4.png"]  # every 5th image is held out
    assert [i["name"] for i in line["backgrounds"]["images"]] == ["0.png", "1.png", "2.png", "3.png"]
    assert line["contrast_unit"] == "local noise sigma" and line["mix"] == {"backgrounds": 1.0}
    assert m["operating_point"]["fitting_set"]["from"] == "held-out line images"
    assert m["input_scaling"]["uint16"].startswith("1/257")
    assert m["config"]["contrast_sigma"] == [4.0, 6.0]
    assert result["validation"]["dice"] > 0
    # A run cut off before its model was written is finished from its checkpoint on the same held-out images.
    (tmp_path / "run" / "model.keras").unlink()
    again = finish(tmp_path / "run")
    assert again["validation"] == pytest.approx(result["validation"])


@pytest.mark.slow
def test_sixteen_bit_backgrounds_and_labelled_data_mixed(tmp_path):
    bgs = _write_backgrounds(tmp_path / "good16", n=2, dtype=np.uint16)
    write_dataset(tmp_path / "labelled", PRESETS["test"].replace(image_size=80, defect_size=(6, 20)), count=6, seed=3)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, [
        "train", "--backgrounds", str(bgs), "--data", str(tmp_path / "labelled"), "--mix", "backgrounds:1,data:1",
        "--model-arg", "width=4", "--model-arg", "stem=8", "--epochs", "1", "--steps-per-epoch", "4",
        "--batch-size", "4", "--crop", "64", "--val-count", "4", "--fit-count", "4", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    line = read_json(out / "model.keras.json")["training"]["line"]
    assert line["backgrounds"]["bits"] == 16 and line["mix"] == {"backgrounds": 0.5, "data": 0.5}
    assert line["val_data"]["images"] == ["4.png"] and "4.png" not in line["data"]["images"]
    # The trained model then scores and predicts a 16-bit labelled set of the line's kind, end to end.
    runner = CliRunner()
    r = runner.invoke(app, ["generate", "--backgrounds", str(bgs), "--contrast-sigma", "4:6", "--crop", "64",
                            "--defect-size", "6:20", "--count", "3", "--out", str(tmp_path / "test16")])
    assert r.exit_code == 0, r.output
    assert cv2.imread(str(tmp_path / "test16" / "images" / "0.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    r = runner.invoke(app, ["eval", "--model", str(out / "model.keras"), "--data", str(tmp_path / "test16"),
                            "--json", str(tmp_path / "eval.json")])
    assert r.exit_code == 0, r.output
    assert read_json(tmp_path / "eval.json")["results"][0]["n_images"] == 3
    r = runner.invoke(app, ["predict", "--model", str(out / "model.keras"), "--input", str(tmp_path / "test16"),
                            "--out", str(tmp_path / "pred")])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "pred").glob("**/*.png"))) >= 3


@pytest.mark.parametrize("args, message", [
    (["--backgrounds", "{empty}"], "no images in"),
    (["--backgrounds", "{small}"], "smaller than the 64x64 crop"),
    (["--backgrounds", "{one}"], "at least 2 images"),
    (["--data", "{unlabelled}"], "has no labels"),
    (["--contrast-sigma", "1:2"], "give --backgrounds"),
    (["--mix", "backgrounds:1"], "give --backgrounds or --data"),
    (["--backgrounds", "{good}", "--mix", "data:1"], "no --data folder"),
    (["--backgrounds", "{good}", "--defect-ratio", "0"], "--defect-ratio"),
    (["--val-data", "{good}"], "--val-data needs --data"),
])
def test_bad_line_options_are_one_line_errors(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    _write_backgrounds(tmp_path / "good")
    _write_backgrounds(tmp_path / "one", n=1)
    _write_backgrounds(tmp_path / "small", n=2, size=(40, 40))
    _write_backgrounds(tmp_path / "unlabelled", n=2)
    args = [a.format(**{k: str(tmp_path / k) for k in ("empty", "good", "one", "small", "unlabelled")}) for a in args]
    r = CliRunner().invoke(app, ["train", "--crop", "64", "--epochs", "1", "--out", str(tmp_path / "run"), *args])
    assert r.exit_code == 1, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow
def test_init_starts_from_a_trained_model_of_the_same_network(tmp_path):
    import keras

    first = train(TrainConfig(**{**TINY, "epochs": 1, "steps_per_epoch": 2}), tmp_path / "first")
    bgs = _write_backgrounds(tmp_path / "good")
    cfg = TrainConfig(**{**TINY, "epochs": 1, "steps_per_epoch": 1, "learning_rate": 1e-9}, backgrounds=str(bgs),
                      init=first["path"])
    train(cfg, tmp_path / "second")
    a = keras.models.load_model(first["path"], compile=False).get_weights()
    b = keras.models.load_model(tmp_path / "second" / "model.keras", compile=False).get_weights()
    # One step at a vanishing learning rate: the weights are the first model's (BatchNorm statistics move a little).
    assert max(float(abs(x - y).max()) for x, y in zip(a, b) if x.ndim == 4) < 1e-5
    other = TrainConfig(**{**TINY, "model_kwargs": {"width": 8, "stem": 8}}, init=first["path"])
    with pytest.raises(EdgesegError, match="--model inline --model-arg width=4 --model-arg stem=8"):
        check(other)
