"""The golden images' truth, and what each reader still misses among them (shared by the reader and eval tests)."""

from __future__ import annotations

import csv
from pathlib import Path

GOLDEN = Path(__file__).parent / "data" / "golden"
# What each reader still misses (strict: a fix shows up as a failure to remove the entry). Issue 16's hard cases
# defeat the classic finder; the learned detector reads those but not yet these.
MISSES = {
    "classic": {"tight_crop.jpg": "a digit filling a tight crop", "marker_photo.jpg": "a bold marker digit on a "
                "large photo", "touching.jpg": "touching digits"},
    "learned": {"scene_01.jpg": "a 1 beside an 8, read as one digit", "mnist_test_0000.png": "an MNIST 7 read as 1",
                "touching.jpg": "touching digits", "huge_digit.png": "(read right, at confidence 0.57)",
                "grid_cells.png": "(read right, a digit at confidence 0.57)"},
}


def golden():
    with open(GOLDEN / "truth.csv", newline="") as f:
        return [(row["file"], row["text"]) for row in csv.DictReader(f)]
