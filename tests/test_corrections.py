"""Corrections (issues 14 and 21): a stored reading keeps its original and corrected text, its number regions
become labelled examples (each region with its number), `digitlite correct` and `digitlite corrections export`
work on a history the live loop filled, and training reads the export back; histories of schema 1 and 2 (whose
examples are 28x28 digit crops) are upgraded in place and stay usable.

    .venv/bin/pytest tests/test_corrections.py
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from fakes import ScriptedReader, region_of

from benchmarks.evaluation import read_labels
from digitdata.labelled import read_digits, read_regions
from edge_app.live.loop import LiveLoop, LoopSettings
from edge_app.store.corrections import export
from edge_app.store.history import HistorySettings, ReadingStore, parse_correction

SHA = "cd" * 32


def regions_of(*numbers: str) -> np.ndarray:
    """(N, 32, 256) uint8 regions, one per number, each showing it."""
    return np.stack([region_of(n) for n in numbers])


def reading(text: str) -> dict:
    return {"text": text, "numbers": text.split(),
            "digits": [{"digit": int(c), "confidence": 0.9, "box": [i * 30, 5, 20, 30]}
                       for i, c in enumerate(text.replace(" ", ""))]}


def test_a_correction_keeps_the_original_and_labels_each_region_with_its_number():
    store = ReadingStore(":memory:")
    record = store.add(reading("12 07"), "cam", SHA, crops=regions_of("12", "07"), frame_jpeg=b"jpeg")
    corrected = store.correct(record["id"], "12 08")
    assert corrected["text"] == "12 07" and corrected["corrected_text"] == "12 08"
    assert corrected["examples"] == {"crops": 2, "kind": "regions", "labelled": True, "frame": True}
    example = store.examples_of(record["id"])
    assert example["labels"] == ["12", "08"], "strings: a leading zero is part of the number"
    assert example["crops"].dtype == np.uint8 and (example["crops"] == regions_of("12", "07")).all()
    assert store.get(record["id"])["corrected_text"] == "12 08"
    (only,) = list(store.corrections())
    assert only["labels"] == ["12", "08"] and only["frame_jpeg"] == b"jpeg" and only["crops"].shape == (2, 32, 256)


def test_a_correction_with_another_number_count_is_kept_unlabelled():
    store = ReadingStore(":memory:")
    record = store.add(reading("4408"), "cam", SHA, crops=regions_of("4408"), frame_jpeg=b"jpeg")
    corrected = store.correct(record["id"], " 44  08 ")
    assert corrected["corrected_text"] == "44 08"
    assert corrected["examples"] == {"crops": 1, "kind": "regions", "labelled": False, "frame": True}
    assert store.examples_of(record["id"])["labels"] is None
    # Fewer digits in the same number of numbers still labels: the region is read as a whole string.
    assert store.correct(record["id"], "440")["examples"]["labelled"]
    assert store.examples_of(record["id"])["labels"] == ["440"]


def test_regions_the_reader_joined_into_one_number_are_kept_but_never_labelled():
    # Two overlapping regions on one line read as one number: two inputs for one number, which of the corrected
    # numbers each shows cannot be told, whatever the correction says.
    store = ReadingStore(":memory:")
    record = store.add(reading("1234"), "cam", SHA, crops=regions_of("12", "34"), frame_jpeg=b"jpeg")
    assert len(store.examples_of(record["id"])["crops"]) == 2, "stored all the same, with the frame"
    for text in ("1234", "12 34"):
        assert store.correct(record["id"], text)["examples"] == {"crops": 2, "kind": "regions", "labelled": False,
                                                                 "frame": True}


def test_crops_that_are_not_number_regions_are_refused():
    store = ReadingStore(":memory:")
    for crops in (np.zeros((4, 28, 28), np.uint8), np.zeros((1, 32, 256), np.float32)):
        with pytest.raises(ValueError, match=r"\(N, 32, 256\) uint8"):
            store.add(reading("4508"), "cam", SHA, crops=crops, frame_jpeg=b"jpeg")
    assert store.count() == 0, "nothing stored"


@pytest.mark.parametrize("text", ["", "45a9", "4 5-9", "٣"])
def test_a_malformed_correction_is_refused_with_an_example(text):
    with pytest.raises(ValueError, match="digits only"):
        parse_correction(text)


def test_an_unknown_id_names_the_history():
    with pytest.raises(KeyError, match="no reading #7"):
        ReadingStore(":memory:").correct(7, "1")


def test_examples_age_out_but_corrected_readings_and_theirs_stay():
    store = ReadingStore(":memory:", HistorySettings(keep=4, examples_keep=2))
    first = store.add(reading("1"), "cam", SHA, crops=regions_of("1"), frame_jpeg=b"1")
    store.correct(first["id"], "7")
    ids = [store.add(reading(str(d)), "cam", SHA, crops=regions_of(str(d)), frame_jpeg=b"x")["id"]
           for d in range(2, 8)]
    assert store.examples_of(first["id"])["labels"] == ["7"], "a corrected reading keeps its examples"
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
    assert store.correct(old_reading["id"], "43")["examples"] == {"crops": 0, "kind": None, "labelled": False,
                                                                  "frame": False}
    new = store.add(reading("5"), "cam", SHA, crops=regions_of("5"), frame_jpeg=b"j")
    assert store.examples_of(new["id"])["crops"].shape == (1, 32, 256)
    store.close()
    with sqlite3.connect(db) as again:
        assert again.execute("PRAGMA user_version").fetchone()[0] == 3


def schema_2_history(path) -> None:
    """A history as issue 14 wrote it: reading #1 '4508' with four 28x28 digit crops (crop k filled with k + 1)
    and its frame, reading #2 '12' corrected to '13' and labelled digit by digit."""
    crops = np.stack([np.full((28, 28), k + 1, np.uint8) for k in range(4)])
    with sqlite3.connect(path) as old:
        old.executescript("""
            CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, text TEXT NOT NULL,
                digits TEXT NOT NULL, source TEXT NOT NULL, origin TEXT NOT NULL, model_sha256 TEXT NOT NULL,
                suspect TEXT, corrected_text TEXT, corrected_time TEXT);
            CREATE TABLE outbox (reading_id INTEGER PRIMARY KEY);
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE examples (reading_id INTEGER PRIMARY KEY, crops BLOB NOT NULL, frame_jpeg BLOB,
                labels TEXT);
            PRAGMA user_version = 2;""")
        ok, jpeg = cv2.imencode(".jpg", np.full((48, 96, 3), 255, np.uint8))
        for text, corrected, labels in (("4508", None, None), ("12", "13", "[1, 3]")):
            cursor = old.execute("INSERT INTO readings (time, text, digits, source, origin, model_sha256, "
                                 "corrected_text) VALUES ('2026-11-21T08:00:00.000+00:00', ?, '[]', 'cam', 'live', "
                                 "'ab', ?)", (text, corrected))
            blob = zlib.compress(crops[:len(text)].tobytes())
            old.execute("INSERT INTO examples VALUES (?, ?, ?, ?)", (cursor.lastrowid, blob, jpeg.tobytes(), labels))


def test_a_schema_2_history_keeps_its_28x28_crops_readable_labellable_and_exportable(tmp_path):
    db = tmp_path / "readings.db"
    schema_2_history(db)
    store = ReadingStore(db)
    old = store.examples_of(1)
    assert old["crops"].shape == (4, 28, 28) and old["crops"][:, 0, 0].tolist() == [1, 2, 3, 4]
    assert store.correct(1, "4509")["examples"] == {"crops": 4, "kind": "digits", "labelled": True, "frame": True}
    assert store.examples_of(1)["labels"] == [4, 5, 0, 9], "old crops are labelled digit by digit, as before"
    assert store.examples_of(2)["labels"] == [1, 3]
    new = store.add(reading("77"), "cam", SHA, crops=regions_of("77"), frame_jpeg=b"j")
    store.correct(new["id"], "78")
    counts = export(store, tmp_path / "out")
    store.close()
    assert counts == {"corrections": 3, "rows": 3, "regions": 1, "digits": 6, "frame_only": 0, "without_frame": 0}
    digits = read_digits([tmp_path / "out"])
    assert digits.labels.tolist() == [4, 5, 0, 9, 1, 3], "`digitlite train --extra` still learns from old crops"
    assert len(digits.skipped) == 1 and "train-recognizer --extra" in digits.skipped[0]
    regions = read_regions([tmp_path / "out"])
    assert regions.texts == ["78"] and (regions.images[0] == region_of("77")).all()
    with sqlite3.connect(db) as again:
        assert again.execute("PRAGMA user_version").fetchone()[0] == 3
        shapes = again.execute("SELECT crop_shape FROM examples ORDER BY reading_id").fetchall()
        assert [s for (s,) in shapes] == ["28x28", "28x28", "32x256"]


@pytest.fixture(scope="module")
def filled_history(tmp_path_factory):
    """A history the live loop filled, reading three pages with a scripted reader: (path, records)."""
    pages = {text: np.full((120, 160, 3), 40 * k, np.uint8) for k, text in enumerate(("4071", "7168", "12 07"))}
    path = tmp_path_factory.mktemp("history") / "readings.db"
    store = ReadingStore(path)
    source = _Frames([frame for frame in pages.values() for _ in range(2)])
    loop = LiveLoop(source, ScriptedReader(pages), store, [], LoopSettings(stable_frames=1))
    assert loop.run() == 0
    loop.close()
    records = store.since()
    store.close()
    return path, records


class _Frames:
    name = "frames"

    def __init__(self, frames):
        self.frames = list(frames)

    def read(self):
        return self.frames.pop(0).copy() if self.frames else None

    def close(self):
        pass


def test_correct_and_export_on_a_history_the_live_loop_filled(filled_history, tmp_path):
    path, records = filled_history
    assert [r["text"] for r in records] == ["4071", "7168", "12 07"]
    one, two = records[1], records[2]
    cli = [sys.executable, "-m", "digitlite"]
    for target, text, said in ((one, "7169", "its 1 number region(s) are labelled 7169"),
                               (two, "12 08", "its 2 number region(s) are labelled 12, 08")):
        corrected = subprocess.run([*cli, "correct", str(target["id"]), *text.split(), "--db", str(path)],
                                   capture_output=True, text=True, timeout=60)
        assert corrected.returncode == 0, corrected.stderr
        assert f"#{target['id']} {target['text']!r} corrected to {text!r}; {said}" in corrected.stdout
    out = tmp_path / "corrections"
    exported = subprocess.run([*cli, "corrections", "export", str(out), "--db", str(path)],
                              capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert "2 corrections written" in exported.stdout and "3 labelled number regions" in exported.stdout

    # labels.csv as `digitlite eval` reads it: file,label,kind; the numbers' spaces kept; the frame decodes.
    rows = list(csv.DictReader(open(out / "labels.csv")))
    assert rows == [{"file": f"r{one['id']:06d}.jpg", "label": "7169", "kind": "corrected"},
                    {"file": f"r{two['id']:06d}.jpg", "label": "12 08", "kind": "corrected"}]
    assert [label for _, label, _ in read_labels(out / "labels.csv")] == ["7169", "1208"]
    assert cv2.imread(str(out / "images" / rows[0]["file"])).shape == (120, 160, 3)
    manifest = json.loads((out / "corrections.json").read_text())
    assert manifest[1]["read"] == "12 07" and manifest[1]["boxes"] == [d["box"] for d in two["digits"]]

    # The regions strip: the recognizer's own inputs stacked top to bottom, one per number.
    strip = cv2.imread(str(out / "images" / f"r{two['id']:06d}.regions.png"), cv2.IMREAD_GRAYSCALE)
    assert strip.shape == (64, 256) and (strip[32:] == region_of("07")).all()
    assert not (out / "images" / f"r{two['id']:06d}.crops.png").exists()

    # Training reads the regions back, each with its number; the classifier's --extra finds no digit crops.
    regions = read_regions([out])
    assert regions.texts == ["7169", "12", "08"] and regions.skipped == []
    assert regions.images.shape == (3, 32, 256) and regions.images.dtype == np.uint8
    assert (regions.images[0] == region_of("7168")).all(), "the region the reader read, now labelled"
    assert regions.groups.tolist() == [1, 2, 2], "the regions of one frame stay together"
    assert len(read_digits([out])) == 0


def test_correct_says_what_is_wrong(filled_history):
    path, _ = filled_history
    for args, message in ((["999999", "1"], "no reading #999999"), (["1", "12a"], "digits only")):
        result = subprocess.run([sys.executable, "-m", "digitlite", "correct", *args, "--db", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_the_field_simulation_corrects_misreads_with_the_right_number_count_and_labels_them(tmp_path, mnist,
                                                                                           monkeypatch):
    from tools import field_corrections

    class OneNumber(ScriptedReader):
        """Reads every frame as the one number 12."""

        def read(self, frame_bgr):
            self.texts = {self._key(frame_bgr): "12"}
            return super().read(frame_bgr)

    monkeypatch.setattr(field_corrections, "make_reader", lambda: OneNumber({}))
    counts = field_corrections.simulate(tmp_path / "readings.db", scenes=12, seed=3)
    assert counts["exact"] + counts["corrected"] + counts["wrong_count"] == 12
    assert counts["corrected"] > 0 and counts["labelled"] == counts["corrected"], counts
    store = ReadingStore(tmp_path / "readings.db")
    corrected = list(store.corrections())
    store.close()
    assert len(corrected) == counts["corrected"]
    for c in corrected:  # one region read, one number there: the region is labelled with the scene's number
        assert c["text"] == "12" and c["labels"] == [c["corrected_text"]] and (c["crops"] == region_of("12")).all()
