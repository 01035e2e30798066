"""The reader on golden images and on inputs that are not what it expects."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from golden_support import GOLDEN, MISSES, golden

from edge_app.cli import make_reader, reader_for

GOLDEN_MIN_CONFIDENCE = 0.6


@pytest.fixture(scope="module")
def reader(repo):
    return make_reader(repo / "models" / "digits_int8.tflite")


@pytest.fixture(scope="module", params=list(MISSES))
def each_reader(request, repo):
    return request.param, make_reader(repo / "models" / "digits_int8.tflite", kind=request.param)


@pytest.mark.parametrize(("name", "truth"), golden())
def test_golden_image_reads_correctly(each_reader, name, truth, request):
    kind, reader = each_reader
    if name in MISSES[kind]:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{kind} reader misses {MISSES[kind][name]}"))
    reading = reader.read(cv2.imread(str(GOLDEN / name)))
    assert reading.text == truth, f"{name}: read {reading.text!r}, truth {truth!r}"
    low = min(d.confidence for d in reading.digits)
    assert low >= GOLDEN_MIN_CONFIDENCE, f"{name}: a digit at confidence {low:.2f}"


def test_all_crops_of_a_frame_go_in_one_batch(reader, repo):
    calls = []
    original = reader.classifier.probabilities
    reader.classifier.probabilities = lambda x: calls.append(len(x)) or original(x)
    try:
        reading = reader.read(cv2.imread(str(repo / "tests" / "data" / "golden" / "scene_00.jpg")))
    finally:
        reader.classifier.probabilities = original
    assert calls == [len(reading.digits) + reading.rejected] and calls[0] >= 6


@pytest.mark.parametrize(
    "frame",
    [np.zeros((480, 640, 3), np.uint8), np.full((480, 640, 3), 255, np.uint8), np.zeros((1, 1), np.uint8),
     np.full((3000, 4000), 200, np.uint8), np.random.default_rng(0).integers(0, 256, (240, 320), np.uint8)],
    ids=["black", "white", "1x1", "huge-blank", "noise"],
)
def test_blank_and_odd_frames_read_as_nothing(reader, frame):
    reading = reader.read(frame)
    assert reading.text == "" and reading.digits == [], f"read {reading.text!r} ({len(reading.digits)} digits)"


def test_not_an_image_is_a_clear_error(reader):
    with pytest.raises(ValueError):
        reader.read(np.zeros((4, 4, 7), np.uint8))


def test_roi_reads_only_that_region(reader, repo):
    frame = cv2.imread(str(repo / "tests" / "data" / "golden" / "grid_cells.png"))
    reader_roi = reader_for(reader.classifier, roi="140,0,260,200")  # the last two cells
    reading = reader_roi.read(frame)
    assert reading.text == "71" and all(d.box[0] >= 140 for d in reading.digits)


def digitlite(*args):
    return subprocess.run([sys.executable, "-m", "digitlite", *args], capture_output=True, text=True)


def test_read_json_contract_and_per_file_errors(repo, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "empty.jpg").write_bytes(b"")
    good = repo / "tests" / "data" / "golden" / "scene_01.jpg"
    result = digitlite("read", str(good), str(tmp_path / "notes.png"), str(tmp_path / "empty.jpg"),
                       str(tmp_path / "missing.png"), "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["source"] for line in lines] == [str(good), str(tmp_path / "notes.png"),
                                                  str(tmp_path / "empty.jpg"), str(tmp_path / "missing.png")]
    first = lines[0]
    assert first["text"] == "7168" and isinstance(first["latency_ms"], float)
    for d in first["digits"]:
        assert set(d) == {"digit", "confidence", "box"} and len(d["box"]) == 4 and 0 <= d["confidence"] <= 1
    assert all("error" in line and "text" not in line for line in lines[1:])
    assert "Traceback" not in result.stderr


def test_read_exits_non_zero_only_when_nothing_was_read(tmp_path):
    (tmp_path / "a.png").write_text("no")
    result = digitlite("read", str(tmp_path / "a.png"))
    assert result.returncode == 1 and "error" in result.stdout and "Traceback" not in result.stderr


def test_read_with_a_corrupt_model_is_a_clear_error(tmp_path, repo):
    (tmp_path / "m.tflite").write_bytes(b"garbage" * 10)
    result = digitlite("read", str(repo / "tests" / "data" / "golden" / "scene_01.jpg"), "--model",
                       str(tmp_path / "m.tflite"))
    assert result.returncode == 2 and "not a TFLite model" in result.stderr and "Traceback" not in result.stderr
