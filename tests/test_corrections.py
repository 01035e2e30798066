"""Corrections (issue 14): a stored reading keeps its original and corrected text, its crops become labelled
examples, `digitlite correct` and `digitlite corrections export` work on a history the real reader filled, and
training reads the export back; the history's schema 1 is upgraded in place.

    .venv/bin/pytest tests/test_corrections.py
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

from digitdata.labelled import read_digits
from edge_app.cli import make_reader
from edge_app.history import HistorySettings, ReadingStore, parse_correction
from edge_app.live import LiveLoop, LoopSettings
from edge_app.sources import open_source

SHA = "cd" * 32


def crops_of(*digits: int) -> np.ndarray:
    """Distinct (N, 28, 28) uint8 crops: digit d's crop is filled with d + 1."""
    return np.stack([np.full((28, 28), d + 1, np.uint8) for d in digits])


def reading(text: str) -> dict:
    return {"text": text, "digits": [{"digit": int(c), "confidence": 0.9, "box": [i * 30, 5, 20, 30]}
                                     for i, c in enumerate(text.replace(" ", ""))]}


def test_a_correction_keeps_the_original_and_labels_the_crops():
    store = ReadingStore(":memory:")
    record = store.add(reading("4508"), "cam", SHA, crops=crops_of(4, 5, 0, 8), frame_jpeg=b"jpeg")
    corrected = store.correct(record["id"], "4509")
    assert corrected["text"] == "4508" and corrected["corrected_text"] == "4509"
    assert corrected["examples"] == {"crops": 4, "labelled": True, "frame": True}
    example = store.examples_of(record["id"])
    assert example["labels"] == [4, 5, 0, 9] and (example["crops"] == crops_of(4, 5, 0, 8)).all()
    assert store.get(record["id"])["corrected_text"] == "4509"
    (only,) = list(store.corrections())
    assert only["labels"] == [4, 5, 0, 9] and only["frame_jpeg"] == b"jpeg"


def test_a_correction_with_another_digit_count_is_kept_unlabelled():
    store = ReadingStore(":memory:")
    record = store.add(reading("44080"), "cam", SHA, crops=crops_of(4, 4, 0, 8, 0), frame_jpeg=b"jpeg")
    corrected = store.correct(record["id"], " 4408 ")
    assert corrected["corrected_text"] == "4408"
    assert corrected["examples"] == {"crops": 5, "labelled": False, "frame": True}
    assert store.examples_of(record["id"])["labels"] is None


@pytest.mark.parametrize("text", ["", "45a9", "4 5-9", "٣"])
def test_a_malformed_correction_is_refused_with_an_example(text):
    with pytest.raises(ValueError, match="digits only"):
        parse_correction(text)


def test_an_unknown_id_names_the_history():
    with pytest.raises(KeyError, match="no reading #7"):
        ReadingStore(":memory:").correct(7, "1")


def test_examples_age_out_but_corrected_readings_and_theirs_stay():
    store = ReadingStore(":memory:", HistorySettings(keep=4, examples_keep=2))
    first = store.add(reading("1"), "cam", SHA, crops=crops_of(1), frame_jpeg=b"1")
    store.correct(first["id"], "7")
    ids = [store.add(reading(str(d)), "cam", SHA, crops=crops_of(d), frame_jpeg=b"x")["id"] for d in range(2, 8)]
    assert store.examples_of(first["id"])["labels"] == [7], "a corrected reading keeps its examples"
    assert store.get(first["id"]) is not None, "and is never deleted by `keep`"
    assert [i for i in ids if store.examples_of(i) is not None] == ids[-2:], "only the last 2 keep theirs"
    assert [r["id"] for r in store.since()] == [first["id"], *ids[-4:]]


def test_a_schema_1_history_is_upgraded_in_place(tmp_path):
    db = tmp_path / "readings.db"
    with sqlite3.connect(db) as old:  # the schema issue 13 shipped
        old.executescript("""
            CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, text TEXT NOT NULL,
                digits TEXT NOT NULL, source TEXT NOT NULL, origin TEXT NOT NULL, model_sha256 TEXT NOT NULL);
            CREATE TABLE outbox (reading_id INTEGER PRIMARY KEY);
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT INTO readings (time, text, digits, source, origin, model_sha256)
                VALUES ('2026-11-21T08:00:00.000+00:00', '42', '[]', 'cam', 'live', 'ab');
            PRAGMA user_version = 1;""")
    store = ReadingStore(db)
    (old_reading,) = store.since()
    assert old_reading["text"] == "42" and old_reading["suspect"] is None
    assert store.correct(old_reading["id"], "43")["examples"] == {"crops": 0, "labelled": False, "frame": False}
    store.close()
    with sqlite3.connect(db) as again:
        assert again.execute("PRAGMA user_version").fetchone()[0] == 2


@pytest.fixture(scope="module")
def filled_history(repo, tmp_path_factory):
    """A history the live loop filled with the real reader from the golden scenes: (path, records, reader)."""
    reader = make_reader(repo / "models" / "digits_int8.tflite")
    path = tmp_path_factory.mktemp("history") / "readings.db"
    store = ReadingStore(path)
    loop = LiveLoop(open_source(str(repo / "tests" / "data" / "golden" / "scene_0*.jpg")), reader, store, [],
                    LoopSettings(stable_frames=1), model_sha256=reader.classifier.integrity.sha256)
    assert loop.run() == 0
    loop.close()
    records = store.since()
    store.close()
    return path, records, reader


def test_correct_and_export_on_a_history_the_reader_filled(filled_history, tmp_path):
    path, records, reader = filled_history
    target = next(r for r in records if r["text"] == "7168")
    cli = [sys.executable, "-m", "digitlite"]
    corrected = subprocess.run([*cli, "correct", str(target["id"]), "7169", "--db", str(path)],
                               capture_output=True, text=True, timeout=60)
    assert corrected.returncode == 0, corrected.stderr
    assert f"#{target['id']} '7168' corrected to '7169'; its 4 crops are labelled 7169" in corrected.stdout
    out = tmp_path / "corrections"
    exported = subprocess.run([*cli, "corrections", "export", str(out), "--db", str(path)],
                              capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert "1 corrections written" in exported.stdout and "4 labelled digits" in exported.stdout

    # labels.csv as `digitlite eval` reads it: file,label,kind; the file in images/; the frame decodes.
    rows = list(csv.DictReader(open(out / "labels.csv")))
    assert rows == [{"file": f"r{target['id']:06d}.jpg", "label": "7169", "kind": "corrected"}]
    frame = cv2.imread(str(out / "images" / rows[0]["file"]))
    assert reader.read(frame).text == "7168", "the frame kept is the one the reader read"
    manifest = json.loads((out / "corrections.json").read_text())
    assert manifest[0]["read"] == "7168" and manifest[0]["boxes"] == [d["box"] for d in target["digits"]]

    # Training reads the crops: the classifier's own inputs (it reads them as it read the frame), now labelled.
    digits = read_digits([out])
    assert digits.labels.tolist() == [7, 1, 6, 9] and digits.skipped == []
    probabilities = reader.classifier.probabilities(reader.classifier.pixels_to_input(digits.images))
    assert probabilities.argmax(axis=1).tolist() == [7, 1, 6, 8]


def test_correct_says_what_is_wrong(filled_history):
    path, _, _ = filled_history
    for args, message in ((["999999", "1"], "no reading #999999"), (["1", "12a"], "digits only")):
        result = subprocess.run([sys.executable, "-m", "digitlite", "correct", *args, "--db", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_reading_crops_are_the_classifier_inputs_aligned_with_the_digits(repo):
    reader = make_reader(repo / "models" / "digits_int8.tflite")
    for path in sorted((repo / "tests" / "data" / "golden").glob("*.*g")):
        reading = reader.read(cv2.imread(str(path)))
        assert reading.crops.shape == (len(reading.digits), 28, 28) and reading.crops.dtype == np.uint8, path.name
        if reading.digits:
            again = reader.classifier.probabilities(reader.classifier.pixels_to_input(reading.crops))
            assert again.argmax(axis=1).tolist() == [d.digit for d in reading.digits], path.name
            assert np.allclose(again.max(axis=1), [d.confidence for d in reading.digits]), path.name
