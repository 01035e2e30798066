"""Training: a real fit on a small subset, reproducibility, resume, clear errors, tuning."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from digitdata.pixels import to_model_input  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.models import ARCHITECTURES, build_model  # noqa: E402
from train.trainer import RunExistsError, read_history, train  # noqa: E402


def _accuracy(model, mnist, n=2000) -> float:
    probabilities = model.predict(to_model_input(mnist.x_test[:n]), batch_size=500, verbose=0)
    return float((probabilities.argmax(axis=1) == mnist.y_test[:n]).mean())


@pytest.mark.slow
def test_one_epoch_on_2000_images_beats_80_percent(tmp_path, mnist):
    # One short epoch wants more, smaller steps and a higher peak rate than the 15-epoch release schedule.
    cfg = TrainConfig(epochs=1, subset=2000, batch_size=16, learning_rate=1e-2, validation=1000)
    result = train(cfg, tmp_path / "run", report=False, verbose=0)
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    accuracy = _accuracy(model, mnist)  # held out: test images, never seen in training
    assert accuracy > 0.80, f"1 epoch on 2,000 images reached only {accuracy:.1%} on 2,000 held-out images"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["pixels"]["scale"] == pytest.approx(1 / 255) and config["train"]["subset"] == 2000
    assert result.params == config["params"] < 60000


@pytest.mark.slow
def test_same_seed_same_weights(tmp_path, mnist_dir):
    cfg = TrainConfig(epochs=1, subset=512, batch_size=64, validation=256, seed=7)
    weights = []
    for name in ("a", "b"):
        train(cfg, tmp_path / name, report=False, verbose=0)
        weights.append(keras.saving.load_model(tmp_path / name / "model.keras").get_weights())
    assert len(weights[0]) == len(weights[1])
    for w0, w1 in zip(*weights, strict=True):
        np.testing.assert_array_equal(w0, w1)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated power cut after epoch 2")


@pytest.mark.slow
def test_resume_continues_from_checkpoint(tmp_path, mnist_dir):
    cfg = TrainConfig(epochs=3, subset=512, batch_size=64, validation=256, patience=10)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, report=False, verbose=0, callbacks=[_Interrupt()])
    assert (out / "checkpoint").is_dir() and not (out / "model.keras").exists()
    assert read_history(out / "history.csv")["epoch"] == [0.0, 1.0]
    with pytest.raises(RunExistsError, match="--resume"):
        train(cfg, out, report=False, verbose=0)
    result = train(cfg, out, resume=True, report=False, verbose=0)
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [0.0, 1.0, 2.0]  # epochs 1-2 from the first run, only epoch 3 after resuming
    assert result.epochs_run == 3 and not (out / "checkpoint").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "digitlite", "train", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "resnet"], "unknown --arch 'resnet'; valid: logistic, dense, basic-cnn, dropout-cnn, mobilenet, "
                               "svm, knn, random-forest"),
        (["--arch", "all"], "--arch all is its own command: `digitlite architectures` trains every architecture"),
        (["--arch", "classical"], "--arch classical: `digitlite architectures --only classical` fits svm, knn and "
                                  "random-forest"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--data-dir", "/nonexistent/mnist"], "--data-dir /nonexistent/mnist is not a folder"),
    ],
)
def test_bad_arguments_are_clear_errors(args, message, tmp_path):
    result = _cli(*args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_config_file_round_trip_and_unknown_keys(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"train": {"arch": "dense", "epochs": 3}}))
    cfg = TrainConfig.from_file(tmp_path / "c.json")
    assert cfg.arch == "dense" and cfg.epochs == 3 and cfg.seed == TrainConfig().seed
    (tmp_path / "bad.json").write_text(json.dumps({"arch": "dense", "epoch": 3}))
    with pytest.raises(ValueError, match="unknown config keys \\['epoch'\\]"):
        TrainConfig.from_file(tmp_path / "bad.json")


def test_every_architecture_builds_for_28x28_and_ours_is_small():
    for arch in ARCHITECTURES:
        model = build_model(arch)
        assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10), arch
    assert build_model("dropout-cnn").count_params() <= 60000


@pytest.mark.slow
def test_tune_writes_a_config_train_accepts(tmp_path, mnist_dir):
    from train.tune import tune

    best = tune(tmp_path, max_trials=2, epochs=1, subset=300, seed=1)
    assert set(best) >= {"filters", "units", "learning_rate", "val_accuracy"}
    cfg = TrainConfig.from_file(tmp_path / "best_config.json")
    assert (cfg.filters, cfg.units, cfg.learning_rate) == (best["filters"], best["units"], best["learning_rate"])
    assert len(json.loads((tmp_path / "results.json").read_text())["trials"]) == 2
