"""Reading a frame: find the digits, classify all of them in one batch, group them into numbers.

`DigitReader.read(frame_bgr) -> Reading` is the whole product in one call; `annotate` draws a reading on
the frame; `Stabilizer` reports a live reading once it has been the same for K frames.

    digitlite read photo.jpg --json
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_app.digits import (
    NUMBER_GAP,
    as_bgr_uint8,
    choose_alternatives,
    extract_crops,
    find_candidates,
    group_digits,
)
from edge_app.runtime import Classifier

MIN_CONFIDENCE = 0.5  # below this a blob is more likely a scribble, a letter or a smudge than a digit


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
    latency_ms: dict[str, float] = field(default_factory=dict)  # find, classify, group, total
    rejected: int = 0  # blobs dropped as not confidently a digit
    crops: np.ndarray | None = None  # (N, 28, 28) uint8, the classifier's inputs, aligned with digits

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


def parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    """'x,y,w,h' in pixels -> a tuple; None stays None."""
    if not text:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--roi {text!r}: expected four integers x,y,w,h in pixels, e.g. 100,80,400,200") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ValueError(f"--roi {text!r}: x and y must be >= 0, width and height > 0")
    return x, y, w, h


class DigitReader:
    """Reads the handwritten numbers in frames with one classifier.

    Args:
        classifier: the LiteRT classifier (built once, outside the frame loop).
        min_confidence: digits below this are dropped as non-digits.
        roi: (x, y, w, h): only this part of each frame is read (boxes stay in frame coordinates).
        polarity: "auto", "dark" (ink darker than paper) or "bright" (chalk on a board).
        gap: a horizontal gap wider than this many digit heights separates two numbers.
    """

    def __init__(self, classifier: Classifier, min_confidence: float = MIN_CONFIDENCE,
                 roi: tuple[int, int, int, int] | None = None, polarity: str = "auto", gap: float = NUMBER_GAP):
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if polarity not in ("auto", "dark", "bright"):
            raise ValueError(f"polarity {polarity!r}: valid values are auto, dark, bright")
        self.classifier, self.min_confidence, self.roi = classifier, min_confidence, roi
        self.polarity, self.gap = polarity, gap

    def read(self, frame) -> Reading:
        """Read one frame (BGR or grey, uint8 or float; see `digits.as_bgr_uint8`).

        Raises:
            ValueError: the array is not an image.
        """
        started = time.perf_counter()
        frame_bgr = as_bgr_uint8(frame)
        ox = oy = 0
        if self.roi is not None:
            x, y, w, h = self.roi
            frame_bgr = frame_bgr[y:y + h, x:x + w]
            ox, oy = x, y
            if frame_bgr.size == 0:
                raise ValueError(f"the region of interest {self.roi} lies outside the {frame.shape[1]}x"
                                 f"{frame.shape[0]} frame")
        candidates, context = find_candidates(frame_bgr, polarity=self.polarity)
        crops = extract_crops(candidates, context)
        found = time.perf_counter()
        probabilities = self.classifier.probabilities(self.classifier.pixels_to_input(crops))  # one batch
        classified = time.perf_counter()

        chosen = choose_alternatives(candidates, probabilities.max(axis=1)) if len(candidates) else []
        chosen = [i for i in chosen if probabilities[i].max() >= self.min_confidence]
        kept = [Digit(int(p.argmax()), float(p.max()), (c.box[0] + ox, c.box[1] + oy, c.box[2], c.box[3]))
                for c, p in ((candidates[i], probabilities[i]) for i in chosen)]
        groups = group_digits([d.box for d in kept], self.gap)
        order = [i for line in groups for number in line for i in number]
        lines = [["".join(str(kept[i].digit) for i in number) for number in line] for line in groups]
        done = time.perf_counter()
        latency = {"find": (found - started) * 1e3, "classify": (classified - found) * 1e3,
                   "group": (done - classified) * 1e3, "total": (done - started) * 1e3}
        kept_crops = crops[[chosen[i] for i in order]] if order else np.zeros((0, *crops.shape[1:]), np.uint8)
        return Reading([kept[i] for i in order], lines, latency, len(candidates) - len(kept), kept_crops)


# ---------------------------------------------------------------------------------------------- live readings


class Stabilizer:
    """Reports a reading once it has been the same for `frames` consecutive frames, and once per change.

    A frame with nothing readable resets the count; after `frames` empty frames the same number may be
    reported again (the camera looked away and back). Nothing readable ("") is never a reading. The one
    stabiliser of every live mode (`digitlite run`, `run --web`, `serve --source`).
    """

    def __init__(self, frames: int = 3):
        if frames < 1:
            raise ValueError(f"--stable-frames must be at least 1, got {frames}")
        self.frames = frames
        self._candidate, self._count, self._reported = "", 0, None

    @property
    def stable(self) -> str | None:
        """The reading on view: the last one reported, until `frames` frames in a row show nothing (then None)."""
        return self._reported

    def update(self, text: str) -> str | None:
        """Feed one frame's text; returns it when it has just become stable, else None."""
        if text == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = text, 1
        if self._count < self.frames:
            return None
        if text == "":
            self._reported = None
            return None
        if text != self._reported:
            self._reported = text
            return text
        return None


# ---------------------------------------------------------------------------------------------- drawing


def annotate(frame_bgr: np.ndarray, reading: Reading, fps: float | None = None) -> np.ndarray:
    """A copy of the frame with each digit's box, class and confidence, and the reading on top."""
    out = as_bgr_uint8(frame_bgr).copy()
    scale = max(out.shape[:2]) / 640
    thick = max(1, round(2 * scale))
    for d in reading.digits:
        x, y, w, h = d.box
        colour = (0, 200, 0) if d.confidence >= 0.9 else (0, 165, 255)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thick)
        cv2.putText(out, f"{d.digit} {d.confidence:.0%}", (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, colour, thick, cv2.LINE_AA)
    banner = reading.text or "-"
    if fps is not None:
        banner += f"   {fps:.0f} fps"
    if reading.latency_ms:
        banner += f"   {reading.latency_ms.get('total', 0):.1f} ms"
    cv2.rectangle(out, (0, 0), (out.shape[1], round(28 * scale)), (0, 0, 0), -1)
    cv2.putText(out, banner, (6, round(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255),
                thick, cv2.LINE_AA)
    return out
