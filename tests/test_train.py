"""Training end to end on tiny, high-contrast data: the loss goes down, artifacts are complete, --resume
continues at the saved epoch, and bad options are one-line user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from typer.testing import CliRunner  # noqa: E402

from edgeseg.artifacts import read_json  # noqa: E402
from edgeseg.cli.app import app  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.operating import CANDIDATE_RULES, THRESHOLDS  # noqa: E402
from edgeseg.train import TrainConfig, train  # noqa: E402

# Contrast 20 (a curriculum pinned there) makes the task easy enough to learn in a few dozen steps.
TINY = dict(model="inline", model_kwargs={"width": 4, "stem": 8}, epochs=2, steps_per_epoch=12, batch_size=8,
            crop=64, curriculum="20:20:1", val_count=4, fit_count=4, learning_rate=1e-2)


@pytest.mark.slow
def test_tiny_training_learns_and_writes_complete_artifacts(tmp_path):
    reports = []
    result = train(TrainConfig(**TINY), tmp_path, progress=lambda *r: reports.append(r))
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert reports[-1] == (8, 8, "fitting the operating point")  # the fit after training shows its progress too
    assert history[1]["loss"] < history[0]["loss"]
    assert history[0]["contrast"] == [20.0, 20.0]
    manifest = read_json(tmp_path / "model.keras.json")
    assert manifest["kind"] == "model"
    assert manifest["config"]["model"] == "inline" and manifest["config"]["model_kwargs"] == {"width": 4, "stem": 8}
    assert manifest["model"]["params"] > 0 and manifest["model"]["flops_per_image"] > 0
    assert 0 < manifest["threshold"] < 1 and manifest["threshold"] == result["threshold"]
    # The operating point (eval/predict/compare apply it) is the sweep's choice, recorded with the whole sweep.
    point = manifest["operating_point"]
    assert point["chosen"]["threshold"] == manifest["threshold"] and point["chosen"]["mask_rule"] == manifest["mask_rule"]
    assert manifest["mask_rule"] in [r.to_dict() for r in CANDIDATE_RULES]
    assert point["budget"] == 0.005 and point["fitting_set"]["defect_images"] == 4
    assert point["chosen"] in point["sweep"] and len(point["sweep"]) == len(CANDIDATE_RULES) * len(THRESHOLDS)
    assert result["mask_rule"] == manifest["mask_rule"]
    assert manifest["training"]["wall_s"] > 0

    import keras

    import edgeseg.models  # noqa: F401

    model = keras.models.load_model(tmp_path / "model.keras", compile=False)
    x = np.full((1, 64, 64, 1), 112.0, np.float32)
    x[0, 10:40, 10:40] += 20.0
    probs = np.asarray(model(x))[0, ..., 0]
    assert probs[15:35, 15:35].mean() > probs[50:, 50:].mean()


@pytest.mark.slow
def test_a_cut_off_run_is_finished_from_its_best_checkpoint(tmp_path):
    from edgeseg.train import finish

    result = train(TrainConfig(**{**TINY, "epochs": 1, "steps_per_epoch": 4}), tmp_path)
    manifest = read_json(tmp_path / "model.keras.json")
    for name in ("model.keras", "model.keras.json", "history.json", "checkpoint/last.weights.h5",
                 "checkpoint/optimizer.npz"):  # as if training had been killed: only best weights + state remain
        (tmp_path / name).unlink()
    again = finish(tmp_path)
    assert again["validation"] == result["validation"] and again["threshold"] == result["threshold"]
    assert read_json(tmp_path / "model.keras.json")["config"] == manifest["config"]
    assert (tmp_path / "history.json").is_file()
    with pytest.raises(EdgesegError, match="nothing to finish"):
        finish(tmp_path / "elsewhere")


@pytest.mark.slow
def test_data_threads_do_not_change_the_run(tmp_path):
    # --workers only decides how many threads draw batches: each batch is seeded by (seed, epoch, index).
    config = {**TINY, "epochs": 1, "steps_per_epoch": 6}
    one = train(TrainConfig(**config), tmp_path / "one")
    three = train(TrainConfig(**config, workers=3), tmp_path / "three")
    assert json.loads((tmp_path / "one" / "history.json").read_text())[0]["loss"] == \
        json.loads((tmp_path / "three" / "history.json").read_text())[0]["loss"]
    assert one["validation"] == three["validation"]


@pytest.mark.slow
def test_cli_resume_continues_at_the_next_epoch(tmp_path):
    runner = CliRunner()
    args = ["train", "--out", str(tmp_path), "--model-arg", "width=4", "--model-arg", "stem=8", "--crop", "64",
            "--steps-per-epoch", "6", "--batch-size", "4", "--curriculum", "20:20:1", "--val-count", "8",
            "--fit-count", "8", "--loss", "bce@0,bce+dice@1", "-q"]
    first = runner.invoke(app, args + ["--epochs", "1"])
    assert first.exit_code == 0, first.output
    epoch0 = json.loads((tmp_path / "history.json").read_text())
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1

    second = runner.invoke(app, args + ["--epochs", "2", "--resume"])
    assert second.exit_code == 0, second.output
    assert "operating point: threshold" in second.output  # the fitted point is reported, not only recorded
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[0] == epoch0[0]  # the first epoch was not retrained
    assert [h["loss_stage"] for h in history] == [0, 1]  # the loss schedule moved on after the resume
    assert read_json(tmp_path / "model.keras.json")["training"]["epochs_run"] == 2


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet"], "unknown model 'resnet': choose one of unet, inline, context"),
    (["--loss", "hinge"], "unknown loss 'hinge': choose one of bce, wbce, dice, focal, tversky"),
    (["--model-arg", "colour=3"], "model 'inline' has no argument colour"),
    (["--model-arg", "width"], "--model-arg must be KEY=VALUE"),
    (["--curriculum", "8:3"], "curriculum must be START:END:EPOCHS"),
    (["--crop", "50"], "--crop must be a multiple of 8"),
    (["--resume"], "nothing to resume"),
    (["--workers", "0"], "--workers must be an integer from 1 to 256, got 0"),
    (["--fit-count", "1"], "--fit-count must be an integer from 2 to"),
    (["--learning-rate", "-1"], "--learning-rate must be in (0, 1], got -1"),
    (["--fa-budget", "nan"], "--fa-budget must be in [0, 1)"),
    (["--fa-budget", "-0.1"], "--fa-budget must be in [0, 1)"),
    (["--preset-arg", "wobble=3"], "--preset-arg wobble: not a generator setting of the preset"),
    (["--preset-arg", "image_size=64"], "the size is --crop"),
    (["--preset-arg", "noise=pink"], "unknown noise 'pink'"),
    (["--preset-arg", "illumination"], "--preset-arg must be KEY=VALUE (e.g. illumination=16)"),
])
def test_cli_bad_options_are_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "-q", "--epochs", "1",
                                      "--steps-per-epoch", "1", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_preset_args_change_the_training_draw_and_are_recorded():
    """--preset-arg overrides the preset's generator settings (JSON values), the crop still sets the size, and
    the training batches are drawn from the changed distribution."""
    import numpy as np

    from edgeseg.train import TrainConfig, _synth_config
    from edgeseg.trainer_data import SynthBatches

    cfg = TrainConfig(crop=64, preset_args={"illumination": 16, "contrast": [20, 20], "defects": [1, 1],
                                            "good_fraction": 0.0, "noise": "gaussian"})
    synth = _synth_config(cfg)
    assert (synth.illumination, synth.contrast, synth.image_size, synth.noise.value) == (16, (20, 20), 64, "gaussian")
    assert cfg.to_dict()["preset_args"]["illumination"] == 16  # recorded with the run's config
    x, y = SynthBatches(synth, 4, 1, seed=0)[0]
    assert x.shape == (4, 64, 64, 1) and all(y[i].any() for i in range(4))  # one defect in every image
    # A defect at contrast 20 stands far above Gaussian noise of std ~7: its pixels average well above the rest.
    assert all(x[i][y[i] > 0].mean() - x[i][y[i] == 0].mean() > 12 for i in range(4))
    assert not np.array_equal(x, SynthBatches(_synth_config(TrainConfig(crop=64)), 4, 1, seed=0)[0][0])
