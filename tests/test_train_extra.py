"""Learning from a device's corrections. Since reader v3 (issue 21) a correction labels number regions:
`digitlite train-recognizer --extra DIR...` reads the exported regions, holds out every 5th row, repeats the rest
among the rendered regions (up to 5 % of them) and reports the held-out exact strings before and after. The
classifier's `digitlite train --extra DIR...` (issue 14) still learns from 28x28 digit crops (readings stored
before reader v3, hand-labelled crops): it holds out a share of their rows, repeats the rest among the MNIST
training images, fine-tunes the released model and reports the held-out accuracy before and after; a folder of
regions alone is refused, pointing at `train-recognizer --extra`.

    .venv/bin/pytest tests/test_train_extra.py
"""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from digitdata import lines
from digitdata.labelled import Row, read_digits, read_regions, write_set
from train.config import TrainConfig
from train.split import EXTRA_HELD_EVERY, extra_regions, extra_split, split

# Clear digits and nothing else: regions a correction could label.
PLAIN_LINES = lines.LineConfig(empty_p=0.0, mnist_p=0.0, long_p=0.0, touching_p=0.0, word_p=0.0, inside_p=0.0,
                               scribble_p=0.0, rule_p=0.0, cells_p=0.0, border_p=0.0, bright_ink_p=0.0)


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


def region_set(folder, mnist, rows: int, per_row: int = 2, seed: int = 0) -> list[list[str]]:
    """A labelled set as `digitlite corrections export` writes it since reader v3, from MNIST *training* digits:
    one row per 'frame' of `per_row` number regions (32x256, rendered by the data engine). Returns the numbers."""
    x, texts, _ = lines.render_inputs(seed, rows * per_row, mnist.x_train[:5000], mnist.y_train[:5000], PLAIN_LINES)
    assert all(texts), "every region shows a number"
    out, written = [], []
    for r in range(rows):
        numbers = texts[r * per_row:(r + 1) * per_row]
        ok, jpeg = cv2.imencode(".jpg", np.full((48, 96, 3), 255, np.uint8))
        out.append(Row(f"r{r:06d}", " ".join(numbers), "corrected", jpeg.tobytes(), meta={"reading_id": r},
                       regions=x[r * per_row:(r + 1) * per_row]))
        written.append(numbers)
    write_set(folder, out)
    return written


def test_recognizer_extra_holds_out_every_5th_row_whole_and_weights_the_rest(tmp_path, mnist):
    numbers = region_set(tmp_path / "a", mnist, rows=8)
    region_set(tmp_path / "b", mnist, rows=4, per_row=1, seed=1)
    folders = [tmp_path / "a", tmp_path / "b"]
    everything = read_regions(folders)
    assert everything.texts[:16] == [n for row in numbers for n in row] and everything.skipped == []
    extra = extra_regions(folders, rendered=1000)
    # 12 rows: the 5th and the 10th are held out (a's 5th: 2 regions; b's 2nd: 1 region).
    assert (extra.rows_train, extra.rows_held) == (10, 2) and EXTRA_HELD_EVERY == 5
    assert extra.t_held == [*numbers[4], everything.texts[17]] and len(extra.t_train) == 17
    assert extra.repeats == 3, "17 regions x 3 = 51 copies: at most 5 % of 1000 + 51"
    assert 17 * extra.repeats / (1000 + 17 * extra.repeats) <= 0.05 < 17 * 4 / (1000 + 17 * 4)
    assert extra.x_train.shape == (17, 32, 256) and extra.x_held.dtype == np.uint8
    assert extra_regions(folders, rendered=10).repeats == 1, "each region is seen once at least"
    few = extra_regions([tmp_path / "b"], rendered=1000)
    assert (few.rows_train, few.rows_held) == (3, 1), "2 to 4 rows: the last is held out"


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


def test_bad_extra_folders_are_refused_before_training(tmp_path, mnist):
    region_set(tmp_path / "regions", mnist, rows=2)
    labelled_set(tmp_path / "digits", mnist, rows=2)
    for args, message in (
            (["--extra", str(tmp_path / "regions")], "train-recognizer --extra"),
            (["--extra", str(tmp_path)], "no labels.csv there"),
            (["--extra", str(tmp_path), "--arch", "knn"], "--arch knn is fitted from scratch"),
            (["--init", str(tmp_path / "none.keras")], "no such Keras model"),
            (["--extra-held-out", "1"], "--extra-held-out must be in [0, 1)")):
        result = subprocess.run([sys.executable, "-m", "digitlite", "train", *args, "--out", str(tmp_path / "run")],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, args
    for args, message in (
            (["--extra", str(tmp_path)], "no labels.csv"),
            (["--extra", str(tmp_path / "digits")], f"`digitlite train --extra {tmp_path / 'digits'}` learns"),
            (["--init", str(tmp_path / "none.keras")], "no such Keras model")):
        result = subprocess.run([sys.executable, "-m", "digitlite", "train-recognizer", *args, "--out",
                                 str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, args
        assert "tensorflow" not in result.stderr.lower(), "refused before TensorFlow is loaded"


@pytest.mark.slow
def test_train_recognizer_extra_reports_the_held_out_regions_before_and_after(tmp_path, mnist, mnist_dir):
    keras = pytest.importorskip("keras")
    from train.recognizer_config import RecognizerConfig
    from train.recognizer_trainer import predict_texts, train_recognizer

    region_set(tmp_path / "corrections", mnist, rows=10, seed=7)
    with open(tmp_path / "corrections" / "labels.csv", "a") as f:  # a hostile export's row: not a number
        f.write("r000099.jpg,seven,corrected\n")
    out = tmp_path / "run"
    cfg = RecognizerConfig(lines=640, validation_lines=64, epochs=1, batch_size=32, width=4, real_share=0.0)
    scores = train_recognizer(cfg, out, data_dir=mnist_dir, verbose=0, extra=[tmp_path / "corrections"])
    held = json.loads((out / "held_out.json").read_text())
    assert (held["rows"], held["rows_all"], held["regions"], held["train_regions"]) == (2, 10, 4, 16)
    assert held["repeats"] == 2 and held["training_set"] == 640 + 32, "16 regions x 2: at most 5 % of the set"
    assert held["start"] == "a new model" and scores["held_out_extra"]["after"] == held["after"]
    # "after" is the saved model's reading of the held-out regions, exact strings against their labels.
    model = keras.saving.load_model(out / "model.keras", compile=False)
    regions = read_regions([tmp_path / "corrections"])
    held_x = regions.images[np.isin(regions.groups, [5, 10])]
    assert predict_texts(model, held_x) == held["after"]["read"]
    assert held["after"]["exact"] == np.mean([r == t for r, t in zip(held["after"]["read"], held["texts"],
                                                                     strict=True)])
    report = (out / "report.md").read_text()
    assert "**Held-out extra regions** (4 regions from 2 of the 10 rows" in report
    assert "**1 --extra rows left out**" in report and "label 'seven' is not numbers of digits" in report
    assert len(held["skipped"]) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["extra"]["folders"] == [str(tmp_path / "corrections")] and config["extra"]["held_every"] == 5



@pytest.mark.slow
def test_train_recognizer_learns_real_cheque_amounts_and_judges_on_their_held_out_part(tmp_path, mnist_dir):
    from digitdata import realsets

    if realsets.datasets_dir() is None or not (realsets.datasets_dir() / realsets.ORAND).is_dir():
        pytest.skip("../shared/datasets/orand-car-a is not beside this checkout")
    pytest.importorskip("keras")
    from train.recognizer_config import RecognizerConfig
    from train.recognizer_trainer import train_recognizer

    out = tmp_path / "run"
    cfg = RecognizerConfig(lines=640, validation_lines=64, epochs=1, batch_size=32, width=4, real_share=0.3)
    scores = train_recognizer(cfg, out, data_dir=mnist_dir, verbose=0)
    real = scores["held_out_real"]
    held, train = realsets.orand().part("held"), realsets.orand().part("train")
    assert (real["held"], real["train"]) == (len(held), len(train)) == (231, 822)
    assert real["copies"] == 1, "640 rendered regions: one copy of each amount is 30 % of the set"
    assert 0.0 <= real["before"]["exact"] <= 1.0 and len(real["after"]["read"]) == 231
    report = (out / "report.md").read_text()
    assert "**Held-out real cheque amounts** (orand-car-a, 231 amounts" in report


@pytest.mark.slow
def test_train_extra_fine_tunes_the_released_model_and_reports_before_and_after(tmp_path, mnist, mnist_dir):
    pytest.importorskip("keras")
    labelled_set(tmp_path / "corrections", mnist, rows=12, start=50000)
    with open(tmp_path / "corrections" / "labels.csv", "a") as f:  # a hostile export's row: not a number
        f.write("r000099.jpg,seven,corrected\n")
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
    assert "**1 --extra rows left out**" in report and "'seven'" in report and len(held["skipped"]) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == "fine-tuned from digits.keras" and config["train"]["extra"] == [
        str(tmp_path / "corrections")]
    assert config["test_accuracy"] > 0.98, "fine-tuning from the released model keeps MNIST accuracy"
    assert "held-out extra digits (9 from 3 rows)" in result.stdout
