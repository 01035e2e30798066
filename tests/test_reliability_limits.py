"""Issue 20, bounded memory per input and paths kept inside their folder: a small 49-megapixel 16-bit PNG is read
within the decode budget (2), a larger one refused from its header (2); a labels.csv line of commas (2), a field
over the csv limit and hostile rows in `train --extra` input (10) are clear errors or reported skips; a labels
row naming a file outside its folder is refused by `eval` and by the labelled-set reader (6). Peak resident
memory is measured in a fresh process and listed at the end of the session.

    .venv/bin/pytest -m reliability tests/test_reliability_limits.py
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.evaluation import LabelsError, labelled_samples
from digitdata.labelled import read_digits, read_regions
from edge_app.read.images import ImageError, ImageLimits, decode_image, read_image

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
BUDGET_MB = ImageLimits().max_decode_bytes / 2**20  # what one image may take decoded (256 MB)


def grey16_png(width: int, height: int) -> bytes:
    """A valid 16-bit grey PNG of width x height, mid-grey, compressed row by row (never held whole): ~100 kB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\0" + b"\x80\x00" * width
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def png_49mp(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "grey16_49mp.png"
    path.write_bytes(grey16_png(7000, 7000))
    return path


MEASURE = """
import sys
def peak_mb():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) / 1024
{setup}
base = peak_mb()
{work}
print("PEAK_MB", peak_mb() - base)
"""


def peak_over_baseline(setup: str, work: str, *args: str) -> tuple[float, str]:
    """Run `work` in a fresh Python (after `setup`, whose memory is the baseline); (peak MB above it, stdout)."""
    result = subprocess.run([sys.executable, "-c", MEASURE.format(setup=setup, work=work), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("PEAK_MB"))
    return float(line.split()[1]), result.stdout


# ---------------------------------------------------------------------------------------------- 2: images


def test_a_49_megapixel_16_bit_png_is_read_within_the_decode_budget(png_49mp, peak_rss):
    assert png_49mp.stat().st_size < 200_000  # a small file: the cost is in its header, not its bytes
    peak, out = peak_over_baseline("from edge_app.read.images import read_image; import PIL.PngImagePlugin",
                                   "frame = read_image(sys.argv[1]); print('SHAPE', frame.shape, frame[0, 0])",
                                   str(png_49mp))
    peak_rss("read: 49 MP 16-bit grey PNG (111 kB), was 1,050 MB", peak)
    assert "SHAPE (2048, 2048, 3) [128 128 128]" in out  # 0x8000 keeps its top 8 bits: 128, not white
    assert peak < BUDGET_MB, f"decoding took {peak:.0f} MB, over the {BUDGET_MB:.0f} MB budget"


def test_an_image_over_the_decode_budget_is_refused_from_its_header(png_49mp):
    small_budget = ImageLimits(max_decode_bytes=64 * 2**20, max_bytes=2**20)
    with pytest.raises(ImageError) as error:
        decode_image(png_49mp.read_bytes(), small_budget)
    assert error.value.status == 413
    assert "7000x7000 I;16: decoding it takes 147.0 MB, and one image may take 67.1 MB" in error.value.message


def test_a_large_8_bit_png_is_reduced_before_it_is_converted(tmp_path):
    """A 6000x5000 RGB PNG: reduced by 2 right after decoding, then to the working size, no full-size copies."""
    page = np.full((5000, 6000, 3), 255, np.uint8)
    cv2.putText(page, "42", (1000, 3500), cv2.FONT_HERSHEY_SIMPLEX, 80, (0, 0, 0), 200)
    cv2.imwrite(str(tmp_path / "page.png"), page)
    frame = read_image(tmp_path / "page.png")
    assert frame.shape == (1707, 2048, 3)
    expected = cv2.resize(page, (2048, 1707), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.astype(int) - expected).mean() < 2  # the same picture as a one-step reduction


def test_exif_orientation_is_applied_to_a_reduced_png(tmp_path):
    from PIL import Image

    image = Image.new("RGB", (5000, 4000), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 500, 500))  # a black square top left
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    image.save(tmp_path / "turned.png", exif=exif)
    frame = read_image(tmp_path / "turned.png")
    assert frame.shape[:2] == (2048, 1638)  # upright: taller than wide
    assert frame[:100, -100:].max() == 0 and frame[-100:, :100].min() == 255  # the square is now top right


# ---------------------------------------------------------------------------------------------- 2, 10: CSVs


def test_eval_refuses_a_100_mb_line_of_commas_in_bounded_memory(tmp_path, peak_rss):
    folder = tmp_path / "set"
    folder.mkdir()
    with open(folder / "labels.csv", "w") as f:
        f.write("file,label\n")
        for _ in range(100):
            f.write("," * 2**20)
        f.write("\n")
    setup = ("from benchmarks.evaluation import LabelsError, labelled_samples; "
             "from edge_app.read.images import read_image")
    work = ("try:\n    labelled_samples(__import__('pathlib').Path(sys.argv[1]), read_image)\n"
            "except LabelsError as exc:\n    print('REFUSED', exc)")
    peak, out = peak_over_baseline(setup, work, str(folder))
    peak_rss("eval: labels.csv with a 100 MB line of commas, was 1,600 MB", peak)
    assert "REFUSED" in out and "line 2: longer than 65536 characters" in out
    assert peak < 32, f"reading the labels took {peak:.0f} MB"


def test_eval_cli_refuses_the_line_of_commas_with_exit_2(tmp_path):
    (tmp_path / "labels.csv").write_text("file,label\n" + "," * 200_000 + "\n")
    result = subprocess.run([sys.executable, "-m", "digitlite", "eval", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "longer than" in result.stderr and "Traceback" not in result.stderr


def write_extra(folder: Path, rows: list[str], regions: bool = False) -> Path:
    """A labelled set whose row r1 has two labelled 28x28 digit crops, or with `regions` two 32x256 number regions
    (reader v3's export); `rows` are its labels.csv rows."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if regions:
        cv2.imwrite(str(folder / "images" / "r1.regions.png"), np.zeros((64, 256), np.uint8))
    else:
        cv2.imwrite(str(folder / "images" / "r1.crops.png"), np.zeros((28, 56), np.uint8))
    cv2.imwrite(str(folder / "images" / "r1.jpg"), np.zeros((40, 40, 3), np.uint8))
    (folder / "labels.csv").write_text("file,label,kind\n" + "".join(row + "\n" for row in rows))
    return folder


# The two ways training reads an export: the classifier's 28x28 digits (`train --extra`), the recognizer's number
# regions (`train-recognizer --extra`): (regions?, reader, the good row's label, what it gives).
EXTRA_READERS = [pytest.param(False, lambda f: read_digits(f).labels.tolist(), "12", [1, 2], id="digits"),
                 pytest.param(True, lambda f: read_regions(f).texts, "12 7", ["12", "7"], id="regions")]


@pytest.mark.parametrize(("regions", "read", "good", "gives"), EXTRA_READERS)
def test_train_extra_a_field_over_the_csv_limit_is_a_clear_error(tmp_path, regions, read, good, gives):
    write_extra(tmp_path, [f"r1.jpg,{good},corrected", 'r2.jpg,"' + "1\n" * 70_000 + '",corrected'], regions)
    with pytest.raises(ValueError, match=r"labels.csv, line 3: not a UTF-8 CSV file \(field larger than"):
        read([tmp_path])


@pytest.mark.parametrize(("regions", "read", "good", "gives"), EXTRA_READERS)
def test_train_extra_hostile_rows_are_skipped_and_reported(tmp_path, caplog, regions, read, good, gives):
    rows = [f"r1.jpg,{good},corrected",  # the one good row: two labelled crops or regions
            "r2.jpg,1x,corrected", "/etc/passwd,1,corrected", "../../../../etc/hostname,1,corrected",
            "nothere.jpg,3,corrected", f"r1.jpg,{good.replace(' ', '')}3,corrected", ",5,corrected",
            "r3.jpg,,corrected"]
    write_extra(tmp_path, rows, regions)
    with caplog.at_level(logging.WARNING, logger="digitdata.labelled"):
        assert read([tmp_path]) == gives
    skipped = (read_regions if regions else read_digits)([tmp_path]).skipped
    assert len(skipped) == 6, skipped  # the row without a file name is not a row
    assert any("is outside" in line for line in skipped)
    assert any("not 1 region(s)" in line if regions else "not 3 digit(s)" in line for line in skipped), skipped
    assert "6 of 7 labelled rows" in caplog.text


def test_labelled_cli_lists_the_skipped_rows(tmp_path):
    write_extra(tmp_path, ["r1.jpg,12,corrected", "r2.jpg,1x,corrected"])
    result = subprocess.run([sys.executable, "-m", "digitdata.labelled", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "1 rows skipped" in result.stdout and "1x" in result.stdout
    assert "1 of 2 labelled rows" in result.stderr  # the warning reaches the console


# ---------------------------------------------------------------------------------------------- 6: paths


@pytest.mark.parametrize("name", ["/etc/passwd", "../../../../etc/passwd", "images/../../outside.png", "link.png"])
def test_eval_refuses_a_file_outside_the_folder(tmp_path, name):
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "outside.png"), np.full((20, 20, 3), 255, np.uint8))
    os.symlink(tmp_path / "outside.png", folder / "link.png")  # a link in the folder that leads out
    cv2.imwrite(str(folder / "images" / "a.png"), np.full((20, 20, 3), 255, np.uint8))
    (folder / "labels.csv").write_text(f"file,label\na.png,1\n{name},2\n")
    with pytest.raises(LabelsError) as error:
        labelled_samples(folder, read_image)
    assert "1 listed files lead out of" in str(error.value) and repr(name) in str(error.value)
    result = subprocess.run([sys.executable, "-m", "digitlite", "eval", str(folder)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "lead out of" in result.stderr
    assert "root:" not in result.stdout + result.stderr  # nothing of /etc/passwd is quoted


def test_a_link_inside_the_folder_is_still_read(tmp_path):
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    cv2.imwrite(str(folder / "images" / "a.png"), np.full((20, 20, 3), 255, np.uint8))
    os.symlink(folder / "images" / "a.png", folder / "b.png")
    (folder / "labels.csv").write_text("file,label\nb.png,1\n")
    _, samples = labelled_samples(folder, read_image)
    assert samples[0].load().shape == (20, 20, 3)
