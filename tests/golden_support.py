"""The golden images' truth, and what the reader still misses among them (shared by the reader and eval tests)."""

from __future__ import annotations

import csv
from pathlib import Path

GOLDEN = Path(__file__).parent / "data" / "golden"
# What the reader still misses (strict: a fix shows up as a failure to remove the entry).
MISSES: dict[str, str] = {"scene_01.jpg": "a 1 set tight beside a 6 in a small 4-digit row (read as nothing)"}


def golden():
    with open(GOLDEN / "truth.csv", newline="") as f:
        return [(row["file"], row["text"]) for row in csv.DictReader(f)]
