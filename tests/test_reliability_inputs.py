"""Issue 13, hostile inputs: every image is answered cleanly and alike by `digitlite read`, the live loop and the
web (1: degenerate sizes; 2: a noise frame; 7: 16-bit grey; 9: the pixel limit), `read` prints each result as
soon as it has it, and a Hypothesis fuzz of the one decoder with degenerate shapes and every pixel format.

    .venv/bin/pytest -m reliability tests/test_reliability_inputs.py
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_app.read.images import ImageError, ImageLimits, decode_image

pytestmark = pytest.mark.reliability

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
MEMORY_CAP = 2 * 1024**3  # B of address space for `read` in the pixel-limit test (the 2 GB cap)


def digitlite(*args: str, cap_memory: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    return subprocess.run([sys.executable, "-m", "digitlite", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap if cap_memory else None)


def save_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def reader(repo):
    from edge_app.wiring import make_reader

    return make_reader(repo / "models" / "digits_int8.tflite")


def blurred_noise(height: int, width: int) -> np.ndarray:
    """Uniform noise blurred by one pixel: many ink-like specks, the frame the old finder spent minutes on."""
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width), np.uint8), (0, 0), 1)


# ---------------------------------------------------------------------------------------------- 1: degenerate


@pytest.mark.parametrize("shape", [(1, 5000, 3), (5000, 1, 3)], ids=["1x5000", "5000x1"])
def test_reader_answers_a_degenerate_frame_cleanly(reader, shape):
    frame = np.full(shape, 255, np.uint8)
    frame[:, ::7] = 0  # some ink
    try:
        reading = reader.read(frame)
    except ValueError:
        return  # a clear refusal is a clean answer
    assert reading.text == ""


def photos_with_a_thin_one(tmp_path: Path, shape: tuple[int, int]) -> Path:
    """A folder: two golden scenes and, between them in name order, a white image of `shape` (rows, columns)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("scene_02.jpg", "scene_03.jpg"):
        (folder / name).write_bytes((GOLDEN / name).read_bytes())
    save_png(folder / "scene_02_thin.png", np.full(shape, 255, np.uint8))
    return folder


def test_read_reports_a_degenerate_image_and_reads_the_others(tmp_path):
    folder = photos_with_a_thin_one(tmp_path, (1, 5000))
    result = digitlite("read", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    lines = {Path(r["source"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert lines["scene_02.jpg"]["text"] == "499684" and lines["scene_03.jpg"]["text"] == "69"
    assert "5000x1 pixels" in lines["scene_02_thin.png"]["error"]
    assert "Traceback" not in result.stderr


def test_run_skips_a_degenerate_image_and_reads_the_others(tmp_path):
    folder = photos_with_a_thin_one(tmp_path, (5000, 1))
    result = digitlite("run", "--source", str(folder), "--headless", "--stable-frames", "1",
                       "--history", str(tmp_path / "readings.db"))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["499684", "69"]
    assert "skipping" in result.stderr and "scene_02_thin.png" in result.stderr and "too thin" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------- 2: noise


def test_a_noise_frame_reads_as_nothing(reader):
    reading = reader.read(blurred_noise(240, 320))
    assert reading.text == "" and reading.digits == [], f"a noise frame read as {len(reading.digits)} digits"


# ---------------------------------------------------------------------------------------------- 7: 16-bit grey


def test_16_bit_grey_png_reads_the_same_as_8_bit(tmp_path):
    page = cv2.cvtColor(cv2.imread(str(GOLDEN / "scene_02.jpg")), cv2.COLOR_BGR2GRAY)
    paths = [save_png(tmp_path / "page8.png", page), save_png(tmp_path / "page16.png", page.astype(np.uint16) * 257)]
    result = digitlite("read", *map(str, paths), "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["499684", "499684"]


# ---------------------------------------------------------------------------------------------- 9: pixel limit


def test_read_under_a_memory_cap_refuses_a_huge_image_and_reads_the_others(tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("1", (20_000, 20_000)).save(huge)  # 400 megapixels in ~50 kB: 1.2 GB as BGR
    good = [str(GOLDEN / "scene_02.jpg"), str(GOLDEN / "scene_03.jpg")]
    result = digitlite("read", good[0], str(huge), good[1], "--json", cap_memory=True)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("text") for line in lines] == ["499684", None, "69"]
    assert "megapixels" in lines[1]["error"] and "Traceback" not in result.stderr


def test_read_prints_each_result_before_reading_the_next(monkeypatch, capsys):
    """Ctrl-C (or any fatal error) in the middle of a folder keeps what was already printed."""
    from edge_app import cli
    from edge_app.wiring import make_reader

    class Interrupted:
        def __init__(self, real):
            self.real, self.calls = real, 0

        def read(self, frame):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return self.real.read(frame)

    monkeypatch.setattr(cli, "reader_from_args", lambda args: Interrupted(make_reader(args.model)))
    with pytest.raises(KeyboardInterrupt):
        cli.read_main([str(GOLDEN / "scene_02.jpg"), str(GOLDEN / "scene_03.jpg"), "--json"])
    printed = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["text"] for line in printed] == ["499684"]


# ---------------------------------------------------------------------------------------------- fuzz

MODES = ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "CMYK"]
FORMATS = {"PNG": ("L", "RGB", "RGBA", "LA", "P", "1", "I;16"), "JPEG": ("L", "RGB", "CMYK"),
           "BMP": ("L", "RGB", "P", "1"), "GIF": ("L", "P"), "WEBP": ("RGB", "RGBA")}
LIMITS = ImageLimits(max_pixels=2_000_000, work_side=512)


@st.composite
def images(draw):
    """Image bytes of any shape (degenerate ones often), pixel format and format, and what was drawn."""
    side = st.one_of(st.integers(1, 12), st.integers(1, 400), st.sampled_from([1, 2, 7, 8, 9, 5000]))
    width, height = draw(side), draw(side)
    if width * height > 1_000_000:  # keep the fuzz fast: large shapes are checked from their header
        width, height = (width, 1) if width > height else (1, height)
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    if fmt == "WEBP" and max(width, height) > 16383:
        fmt = "PNG"
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    grey = rng.integers(0, 256, (height, width), np.uint8)
    image = Image.fromarray(grey).convert("RGB").convert(mode) if mode not in ("L", "I;16") else (
        Image.fromarray(grey) if mode == "L" else Image.fromarray(grey.astype(np.uint16) * 257))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue(), width, height


def test_fuzz_the_decoder_with_degenerate_shapes_and_every_pixel_format():
    """Any shape, pixel format and format: a BGR uint8 frame of a shape the reader can take, or an ImageError
    with a status and a message; a degenerate shape is always refused, never decoded."""

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(images())
    def probe(case):
        data, width, height = case
        short, long = min(width, height), max(width, height)
        degenerate = short < LIMITS.min_side or long > LIMITS.max_aspect * short
        try:
            frame = decode_image(data, LIMITS)
        except ImageError as exc:
            assert exc.status in (400, 413, 415, 422) and exc.message, (width, height, exc)
            if degenerate:
                assert exc.status == 422 and f"{width}x{height}" in exc.message
            return
        assert not degenerate, f"a {width}x{height} image was decoded"
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert max(frame.shape[:2]) <= LIMITS.work_side and min(frame.shape[:2]) >= 1

    probe()
