"""What a reading is, and what reads: `Digit`, `Reading` and the `Reader` protocol every reader meets (the
learned `DigitReader`, a test's fake, a peer). Nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Digit:
    digit: int
    confidence: float
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels

    def to_dict(self) -> dict:
        return {"digit": self.digit, "confidence": round(self.confidence, 4), "box": [int(v) for v in self.box]}


@dataclass
class Reading:
    """What one frame says: digits in reading order, the numbers they form, and how long each stage took."""

    digits: list[Digit] = field(default_factory=list)
    lines: list[list[str]] = field(default_factory=list)  # lines top to bottom, numbers left to right
    latency_ms: dict[str, float] = field(default_factory=dict)  # find, read, group, total
    rejected: int = 0  # boxes dropped as not confidently a digit
    crops: np.ndarray | None = None  # (N, 32, 256) uint8: the recognizer's inputs, one per number region

    @property
    def numbers(self) -> list[str]:
        return [number for line in self.lines for number in line]

    @property
    def text(self) -> str:
        """Numbers separated by a space, in reading order (lines top to bottom)."""
        return " ".join(self.numbers)

    def to_dict(self) -> dict:
        return {"text": self.text, "numbers": self.numbers, "digits": [d.to_dict() for d in self.digits],
                "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()}}


class Reader(Protocol):
    """Anything that reads a picture: grey (H, W) or BGR (H, W, 3) uint8 in, a `Reading` out."""

    def read(self, frame: np.ndarray) -> Reading: ...
