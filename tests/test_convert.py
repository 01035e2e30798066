"""Conversion: quantization read from the model, the accuracy gate, corrupt inputs, the committed release."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from convert.evaluate import mcnemar_exact
from edge_app.runtime import Classifier, ModelError, Quantization, dequantize, quantize

RELEASED = ("digits_float32.tflite", "digits_int8.tflite")


@pytest.fixture(scope="module")
def models_dir(repo):
    path = repo / "models"
    if not (path / "manifest.json").exists():
        pytest.fail("models/manifest.json is missing: the release is part of the repository")
    return path


def digitlite(*args):
    return subprocess.run([sys.executable, "-m", "digitlite", *args], capture_output=True, text=True)


# ---------------------------------------------------------------------------------------------- pure maths


def test_quantize_dequantize_round_trip_within_half_a_step():
    q = Quantization(1 / 255, -128)
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    back = dequantize(quantize(x, q, np.int8), q)
    assert np.abs(back - x).max() <= q.scale / 2 + 1e-7
    assert quantize(np.array([2.0, -1.0]), q, np.int8).tolist() == [127, -128]  # saturates


def test_dequantize_widens_before_subtracting_zero_point():
    q = Quantization(0.5, 200)
    assert dequantize(np.array([0, 255], np.uint8), q).tolist() == [-100.0, 27.5]


def test_mcnemar_exact_values():
    a = np.array([True] * 10 + [False] * 5)
    b = np.array([False] * 10 + [False] * 5)
    result = mcnemar_exact(a, b)
    assert (result["a_right_b_wrong"], result["a_wrong_b_right"]) == (10, 0)
    assert result["p_value"] == pytest.approx(2 * 0.5**10)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_calibration_sample_is_class_balanced(mnist):
    from convert.tflite import calibration_sample

    sample = calibration_sample(mnist.x_train, mnist.y_train, size=300, seed=3)
    assert sample.shape == (300, 28, 28, 1) and 0 <= sample.min() and sample.max() <= 1


# ---------------------------------------------------------------------------------------------- the release


def test_int8_quantization_is_what_the_model_declares(models_dir):
    clf = Classifier(models_dir / "digits_int8.tflite")
    detail = clf.interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    assert detail["dtype"] == np.int8
    assert (clf.info.input_quant.scale, clf.info.input_quant.zero_point) == (scale, zero_point)
    entry = json.loads((models_dir / "manifest.json").read_text())["models"]["digits_int8.tflite"]
    assert entry["input"]["quantization"] == {"scale": scale, "zero_point": zero_point}
    out_scale, out_zero = clf.interpreter.get_output_details()[0]["quantization"]
    assert entry["output"]["quantization"] == {"scale": out_scale, "zero_point": out_zero}


@pytest.mark.parametrize("name", RELEASED)
def test_committed_models_match_their_manifest(models_dir, name, mnist_dir):
    """CI re-checks the shipped files on all 10,000 test images through LiteRT."""
    from convert.check import check_model

    result = check_model(models_dir / name, tolerance=0.0)
    assert result.sha256_matches, f"{name}: sha256 differs from the manifest"
    assert result.passed, result.failures
    assert result.accuracy == pytest.approx(result.recorded["overall"], abs=1e-9)
    assert result.per_class == pytest.approx(result.recorded["per_class"], abs=1e-9)


def test_release_targets(models_dir):
    entries = json.loads((models_dir / "manifest.json").read_text())["models"]
    int8, f32 = entries["digits_int8.tflite"], entries["digits_float32.tflite"]
    assert int8["accuracy"]["overall"] >= 0.994
    assert f32["accuracy"]["overall"] - int8["accuracy"]["overall"] <= 0.001 + 1e-12
    assert int8["bytes"] <= 64 * 1024 == 65536
    assert f32["keras_agreement"] >= 0.999
    for entry in entries.values():
        assert entry["pixels"]["scale"] == pytest.approx(1 / 255)
        assert entry["source_model"]["sha256"] and entry["commands"] and entry["versions"]


# ---------------------------------------------------------------------------------------------- bad models


@pytest.fixture(scope="module")
def damaged_keras(models_dir, tmp_path_factory):
    """The released Keras model with every weight array shuffled: same graph, no skill."""
    import keras

    model = keras.saving.load_model(models_dir / "digits.keras")
    rng = np.random.default_rng(0)
    model.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in model.get_weights()])
    path = tmp_path_factory.mktemp("damaged") / "damaged.keras"
    model.save(path)
    return path


@pytest.mark.slow
def test_damaged_model_fails_convert_and_nothing_is_released(damaged_keras, tmp_path, mnist_dir):
    out = tmp_path / "models"
    result = digitlite("convert", str(damaged_keras), "--out", str(out))
    assert result.returncode == 4, result.stderr
    assert "not released" in result.stderr and "--min-accuracy" in result.stderr
    assert list(out.iterdir()) == []
    assert not any(p.name.startswith(".models.staging") for p in tmp_path.iterdir())


@pytest.mark.slow
def test_damaged_tflite_fails_check_against_manifest(damaged_keras, models_dir, tmp_path, mnist):
    import keras

    from convert.tflite import calibration_sample, convert_variant

    model = keras.saving.load_model(damaged_keras)
    (tmp_path / "digits_int8.tflite").write_bytes(
        convert_variant(model, "int8", calibration_sample(mnist.x_train, mnist.y_train, 100)))
    shutil.copy(models_dir / "manifest.json", tmp_path / "manifest.json")
    result = digitlite("check", str(tmp_path / "digits_int8.tflite"), "--json")
    assert result.returncode == 4
    report = json.loads(result.stdout)
    assert report["sha256_matches"] is False and report["accuracy"] < 0.5
    assert "below the manifest" in result.stderr


@pytest.mark.parametrize("damage", ["truncated", "not-tflite", "empty"])
def test_corrupt_tflite_is_a_clear_error(models_dir, tmp_path, damage):
    good = (models_dir / "digits_int8.tflite").read_bytes()
    content = {"truncated": good[: len(good) // 3], "not-tflite": b"\x89PNG\r\n\x1a\n" + b"0" * 100,
               "empty": b""}[damage]
    path = tmp_path / "digits_int8.tflite"
    path.write_bytes(content)
    result = digitlite("check", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(path) in result.stderr
    with pytest.raises(ModelError):
        Classifier(path)


def test_wrong_input_shape_is_a_clear_error(tmp_path):
    import keras

    from convert.tflite import convert_variant

    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = tmp_path / "cifar.tflite"
    path.write_bytes(convert_variant(model, "float32"))
    result = digitlite("check", str(path))
    assert result.returncode == 2
    assert "is not (N, 28, 28, 1)" in result.stderr and "Traceback" not in result.stderr


def test_missing_keras_model_is_a_clear_error(tmp_path):
    result = digitlite("convert", str(tmp_path / "nope.keras"), "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and "not found" in result.stderr and not (tmp_path / "m").exists()
