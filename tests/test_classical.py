"""The classical baselines (SVM, k-NN, random forest): real fits on small subsets, saved and reloaded, the k
choice, the table merge, a fit from the command line without TensorFlow, and clear errors for bad arguments."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skops")

from digitdata.pixels import to_model_input  # noqa: E402
from train.classical import choose_k, fit_classical, flatten, load_model  # noqa: E402
from train.config import CLASSICAL, TrainConfig  # noqa: E402

# Test accuracy each reaches after fitting on 2,000 training images (measured: SVM 95.0 %, k-NN 90.9 %,
# forest 91.5 % on all 10,000 test images); the floors leave a few points of margin.
FLOORS = {"svm": 0.92, "knn": 0.87, "random-forest": 0.88}


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(FLOORS))
def test_fit_on_2000_images_beats_a_floor_on_held_out_images(arch, tmp_path, mnist):
    cfg = TrainConfig(arch=arch, subset=2000, validation=1000)
    result = fit_classical(cfg, tmp_path / arch, report=False)
    # Reload from disk, as a user would, and score on test images the fit never saw.
    model = load_model(tmp_path / arch / "model.skops", own_file=True)
    x_test = flatten(to_model_input(mnist.x_test[:2000]))
    accuracy = float((model.predict(x_test) == mnist.y_test[:2000]).mean())
    assert accuracy > FLOORS[arch], f"{arch} on 2,000 images reached only {accuracy:.1%} on 2,000 test images"
    config = json.loads((tmp_path / arch / "config.json").read_text())
    assert config["train_images"] == result.train_images == 2000
    assert config["model_bytes"] == (tmp_path / arch / "model.skops").stat().st_size == result.model_bytes > 0
    assert config["pixels"]["scale"] == pytest.approx(1 / 255) and config["train_seconds"] >= 0


def test_k_chosen_on_validation_matches_scikit_learns_own_scores(mnist):
    from sklearn.neighbors import KNeighborsClassifier

    x = flatten(to_model_input(mnist.x_train[:1500]))
    y = mnist.y_train[:1500].astype(np.int64)
    x_train, y_train, x_val, y_val = x[:1000], y[:1000], x[1000:], y[1000:]
    best, accuracy = choose_k(x_train, y_train, x_val, y_val, (1, 3, 5, 7), jobs=1)
    for k, value in accuracy.items():
        expected = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(x_train, y_train).score(x_val, y_val)
        assert value == pytest.approx(expected), f"k {k}: {value} from the shared search, {expected} from sklearn"
    assert accuracy[best] == max(accuracy.values())


@pytest.mark.slow
def test_run_report_and_forest_needs_an_explicit_trust(tmp_path, mnist):
    out = tmp_path / "forest"
    result = fit_classical(TrainConfig(arch="random-forest", subset=1000, validation=500), out)
    for name in ("model.skops", "config.json", "report.md", "report.json", "confusion.png", "misclassified.png"):
        assert (out / name).is_file(), f"{name} missing from the run folder"
    assert not (out / "curves.png").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"] == result.test_accuracy > 0.8
    assert sum(map(sum, report["confusion"])) == 10000 and len(report["per_class"]) == 10
    assert "Fitted on 1,000 training images" in (out / "report.md").read_text()
    # The tree type can make scikit-learn read out of bounds if the file is crafted: never trusted silently.
    with pytest.raises(ValueError, match="own_file=True"):
        load_model(out / "model.skops")


@pytest.mark.slow
def test_classical_rows_merge_into_the_networks_table(tmp_path, mnist):
    from benchmarks.architectures import train_all

    table = tmp_path / "architectures"
    network = {"arch": "dense", "test_accuracy": 0.9672, "reported": 0.976, "params": 101770, "int8_bytes": 108480,
               "train_seconds": 15.2, "epochs": 3, "weights": "scratch"}
    # A table as `train --arch all` wrote it before `digitlite architectures` replaced it: one command for all rows.
    (tmp_path / "architectures.json").write_text(json.dumps({"command": "digitlite train --arch all --epochs 3",
                                                             "rows": [network]}))
    command = "digitlite architectures --only classical --subset 1000 --validation 500"
    markdown = train_all(TrainConfig(subset=1000, validation=500), tmp_path / "runs", mnist, archs=CLASSICAL,
                         command=command, table=table)
    rows = json.loads((tmp_path / "architectures.json").read_text())["rows"]
    assert [r["arch"] for r in rows] == ["dense", "svm", "knn", "random-forest"]
    assert rows[0]["command"] == "digitlite train --arch all --epochs 3" and rows[0]["test_accuracy"] == 0.9672
    assert {r["command"] for r in rows[1:]} == {command}
    assert ("1. `digitlite train --arch all --epochs 3` (run under an earlier name of this command; the same run "
            "today: `digitlite architectures --only networks --epochs 3`)") in markdown
    assert f"2. `{command}`\n" in markdown
    assert "| svm |" in markdown and "| 97.1% |" in markdown and "| 96.58% |" in markdown
    assert "not converted [a]" in markdown and "Not converted to .tflite" in markdown
    assert (table.with_suffix(".md")).read_text() == markdown


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (TrainConfig(arch="knn", validation=0), "--arch knn chooses k on the validation split"),
        (TrainConfig(arch="svm", subset=20), "--subset 20 is smaller than the SVM's 50 PCA components"),
        (TrainConfig(arch="knn", subset=-1), "--subset and --validation must be >= 0, got -1"),
        (TrainConfig(arch="dense"), "unknown classical --arch 'dense'; valid: svm, knn, random-forest"),
    ],
)
def test_bad_settings_are_clear_errors(cfg, message, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_classical(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_fits_a_baseline_from_the_command_line_without_tensorflow(tmp_path, mnist_dir):
    probe = ("import sys, digitlite\n"
             f"code = digitlite.main(['train', '--arch', 'knn', '--subset', '500', '--validation', '200', "
             f"'--out', {str(tmp_path / 'knn')!r}])\n"
             "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 []", f"exit code and TensorFlow modules imported: {result.stdout}"
    assert "knn (k " in result.stdout and (tmp_path / "knn" / "report.md").is_file()


def test_cli_bad_arguments_exit_2_with_the_reason(tmp_path):
    for args, message in ((["--arch", "knn", "--validation", "0"], "chooses k on the validation split"),
                          (["--arch", "svm", "--resume"], "--resume: --arch svm is fitted in one go")):
        # (an unknown --arch, whose message lists these three too, is in test_train.py)
        result = subprocess.run([sys.executable, "-m", "digitlite", "train", *args, "--out", str(tmp_path / "r")],
                                capture_output=True, text=True)
        assert result.returncode == 2, f"{args}: exit {result.returncode}\n{result.stderr}"
        assert message in result.stderr and "Traceback" not in result.stderr, f"{args}: {result.stderr}"
