"""Learning from a device's corrections (issue 14): `digitlite train --extra DIR...` reads the exported labelled
set, holds out a share of its rows, repeats the rest among the MNIST training images, fine-tunes the released
model, and reports the held-out accuracy before and after.

    .venv/bin/pytest tests/test_train_extra.py
"""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from digitdata.labelled import Row, read_digits, write_set
from train.config import TrainConfig
from train.split import extra_split, split


def labelled_set(folder, mnist, rows: int, digits_per_row: int = 3, start: int = 0) -> list[str]:
    """A labelled set as `digitlite corrections export` writes it, from MNIST *training* digits: one row per
    'frame' of `digits_per_row` digits. Returns the labels written."""
    written, k = [], start
    out = []
    for r in range(rows):
        crops = mnist.x_train[k:k + digits_per_row]
        label = "".join(str(int(d)) for d in mnist.y_train[k:k + digits_per_row])
        k += digits_per_row
        ok, jpeg = cv2.imencode(".jpg", np.full((48, 96, 3), 255, np.uint8))
        out.append(Row(f"r{r:06d}", label, "corrected", jpeg.tobytes(), crops, {"reading_id": r}))
        written.append(label)
    write_set(folder, out)
    return written


def test_split_holds_out_whole_rows_and_weights_the_rest(tmp_path, mnist):
    labels = labelled_set(tmp_path / "a", mnist, rows=8)
    labelled_set(tmp_path / "b", mnist, rows=4, start=100)
    cfg = TrainConfig(extra=[str(tmp_path / "a"), str(tmp_path / "b")], extra_weight=5, extra_held_out=0.25,
                      subset=1000, validation=500)
    extra = extra_split(cfg)
    assert (extra.rows_train, extra.rows_held) == (9, 3) and len(extra.y_held) == 9 and len(extra.y_train) == 27
    everything = read_digits(cfg.extra)
    assert everything.labels[:24].tolist() == [int(c) for c in "".join(labels)]
    # No held-out digit shares a row with a trained one.
    held_rows = {g for g, x in zip(everything.groups, everything.images, strict=True)
                 if any((x == h).all() for h in extra.x_held)}
    trained_rows = {g for g, x in zip(everything.groups, everything.images, strict=True)
                    if any((x == t).all() for t in extra.x_train)}
    assert not held_rows & trained_rows
    x_train, y_train, x_val, _ = split(mnist, cfg)
    assert len(y_train) == 1000 + 5 * 27 and len(x_val) == 500
    assert (y_train[1000:] == np.repeat(extra.y_train, 5)).all()
    assert float(x_train[1000:].max()) <= 1.0, "extra digits in the pixel convention like MNIST"
    assert extra_split(cfg).y_held.tolist() == extra.y_held.tolist(), "seeded: the same rows every time"


def test_bad_extra_folders_are_refused_before_training(tmp_path):
    for args, message in (
            (["--extra", str(tmp_path)], "no labels.csv there"),
            (["--extra", str(tmp_path), "--arch", "knn"], "--arch knn is fitted from scratch"),
            (["--init", str(tmp_path / "none.keras")], "no such Keras model"),
            (["--extra-held-out", "1"], "--extra-held-out must be in [0, 1)")):
        result = subprocess.run([sys.executable, "-m", "digitlite", "train", *args, "--out", str(tmp_path / "run")],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, args


@pytest.mark.slow
def test_train_extra_fine_tunes_the_released_model_and_reports_before_and_after(tmp_path, mnist, mnist_dir):
    pytest.importorskip("keras")
    labelled_set(tmp_path / "corrections", mnist, rows=12, start=50000)
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "digitlite", "train", "--extra", str(tmp_path / "corrections"), "--epochs", "1",
         "--subset", "600", "--validation", "300", "--learning-rate", "3e-4", "--data-dir", str(mnist_dir),
         "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    held = json.loads((out / "held_out.json").read_text())
    assert held["rows"] == 3 and held["digits"] == 9 and held["train_digits"] == 27
    assert held["start"] == "digits.keras"
    # The released model reads these clean MNIST digits; a short, gentle fine-tune keeps it doing so.
    assert held["before"]["accuracy"] >= 8 / 9 and held["after"]["accuracy"] >= 8 / 9, held
    report = (out / "report.md").read_text()
    assert "**Held-out extra digits** (9 digits from 3 of the 12 rows" in report and "| class | before |" in report
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == "fine-tuned from digits.keras" and config["train"]["extra"] == [
        str(tmp_path / "corrections")]
    assert config["test_accuracy"] > 0.98, "fine-tuning from the released model keeps MNIST accuracy"
    assert "held-out extra digits (9 from 3 rows)" in result.stdout
