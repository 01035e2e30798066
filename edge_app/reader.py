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

from digitdata import heatmap
from digitdata.crops import digit_crop, ink_is_dark
from digitdata.frames import Letterbox, as_bgr_uint8, detector_input, to_gray
from edge_app.layout import NUMBER_GAP, reading_order
from edge_app.runtime import DEFAULT_DETECTOR, Classifier, Detector

MIN_CONFIDENCE = 0.5  # below this a box is more likely a scribble, a letter or a smudge than a digit


@dataclass(frozen=True)
class ReaderSettings:
    """The reader's tuned numbers, in one place (the detector's own are in its manifest entry)."""

    peak: float = 0.3  # heatmap peak score that makes a detection
    max_digits: int = 64  # detections per look (bounded work for any picture, noise included)
    zoom_below_px: float = 14.0  # detections shorter than this (detector input px) get a closer look ...
    zoom_trigger: float = 0.15  # ... as do weaker peaks of small boxes (a row too small to be sure of)
    zoom_target_px: float = 36.0  # ... at a scale that makes them about this tall
    max_upscale: float = 2.0  # the closer look enlarges the picture at most this much
    max_tiles: int = 4  # closer looks per picture at most
    zoom_when_empty: float = 0.5  # a first look that found nothing, shrinking the picture more than this, looks closer
    duplicate_iou: float = 0.5  # two boxes overlapping more than this are one digit (the surer is kept) ...
    duplicate_cover: float = 0.7  # ... as is a box lying more than this share inside a surer one
    work_side: int = 2048  # px: larger pictures are read at this long side (bounded work per picture)


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
    rejected: int = 0  # boxes dropped as not confidently a digit
    crops: np.ndarray | None = None  # (N, 28, 28) uint8: the classifier's inputs, aligned with `digits`

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


def crop_roi(frame_bgr: np.ndarray, roi: tuple[int, int, int, int] | None) -> tuple[np.ndarray, int, int]:
    """The part of the frame a reader reads, and its offset (x, y) in the frame.

    Raises:
        ValueError: the region lies outside the frame.
    """
    if roi is None:
        return frame_bgr, 0, 0
    x, y, w, h = roi
    part = frame_bgr[y:y + h, x:x + w]
    if part.size == 0:
        raise ValueError(f"the region of interest {roi} lies outside the {frame_bgr.shape[1]}x{frame_bgr.shape[0]} "
                         f"frame")
    return part, x, y


class DigitReader:
    """Reads the handwritten numbers in pictures: detect, crop, classify, then lines and numbers.

    detect: the learned detector on the whole picture (letterboxed, grey), then a closer look at rows too
    small to read at that scale; crop: each box cut from the full-resolution picture and prepared the
    MNIST way (`digitdata.crops`); classify: one batch through the classifier; order: `edge_app.layout`.

    Args:
        classifier: the LiteRT digit classifier (built once, outside the frame loop).
        detector: the LiteRT digit detector; default: the released one, with the classifier's threads.
        min_confidence: digits the classifier is less sure of are dropped as non-digits.
        roi: (x, y, w, h): only this part of each frame is read (boxes stay in frame coordinates).
        polarity: "auto", "dark" (ink darker than paper) or "bright" (chalk on a board).
        gap: a gap wider than this many digit heights separates two numbers.
        settings: the tuned numbers.
    """

    def __init__(self, classifier: Classifier, detector: Detector | None = None,
                 min_confidence: float = MIN_CONFIDENCE, roi: tuple[int, int, int, int] | None = None,
                 polarity: str = "auto", gap: float = NUMBER_GAP, settings: ReaderSettings = ReaderSettings()):  # noqa: B008
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if polarity not in ("auto", "dark", "bright"):
            raise ValueError(f"polarity {polarity!r}: valid values are auto, dark, bright")
        self.classifier, self.min_confidence, self.roi = classifier, min_confidence, roi
        self.detector = detector or Detector(DEFAULT_DETECTOR, threads=classifier.runtime.threads)
        self.polarity, self.gap, self.settings = polarity, gap, settings

    def read(self, frame) -> Reading:
        """Read one picture (BGR or grey, uint8, uint16 or float; see `as_bgr_uint8`).

        Raises:
            ValueError: the array is not an image, or the region of interest lies outside it.
        """
        started = time.perf_counter()
        frame_bgr = as_bgr_uint8(frame)
        frame_bgr, ox, oy = crop_roi(frame_bgr, self.roi)
        # Bounded work for any size: a picture larger than work_side is read at that size (digits stay
        # readable: a 4,000 px photo whose digits are 30 px tall still gives 15 px digits).
        f = min(1.0, self.settings.work_side / max(frame_bgr.shape[:2]))
        if f < 1:
            frame_bgr = cv2.resize(frame_bgr, (max(1, round(frame_bgr.shape[1] * f)),
                                               max(1, round(frame_bgr.shape[0] * f))), interpolation=cv2.INTER_AREA)
        gray = to_gray(frame_bgr)
        boxes, scores = self.detect(gray)
        found = time.perf_counter()
        dark = ink_is_dark(gray) if self.polarity == "auto" else self.polarity == "dark"
        crops = np.stack([digit_crop(gray, b, dark) for b in boxes]) if len(boxes) else np.zeros((0, 28, 28), np.uint8)
        probabilities = self.classifier.probabilities(self.classifier.pixels_to_input(crops))
        classified = time.perf_counter()

        # A box with no ink in it (paper grain, a shadow's edge) is not a digit, whatever the classifier says.
        keep = ((probabilities.max(axis=1) >= self.min_confidence) & (crops.reshape(len(crops), -1).max(axis=1) > 0)
                if len(boxes) else np.zeros(0, bool))
        kept = [Digit(int(p.argmax()), float(p.max()), _int_box(b / f, ox, oy))
                for b, p in zip(boxes[keep], probabilities[keep], strict=True)]
        crops = crops[keep]
        groups = reading_order([d.box for d in kept], self.gap)
        order = [i for line in groups for number in line for i in number]
        lines = [["".join(str(kept[i].digit) for i in number) for number in line] for line in groups]
        done = time.perf_counter()
        latency = {"find": (found - started) * 1e3, "classify": (classified - found) * 1e3,
                   "group": (done - classified) * 1e3, "total": (done - started) * 1e3}
        return Reading([kept[i] for i in order], lines, latency, len(boxes) - len(kept), crops[order])

    def detect(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Digit boxes (N, 4) x, y, w, h in picture pixels and their scores, best first.

        One look at the whole picture; then closer looks (at most `max_tiles`) where it found digits too
        small to be sure of, or, in a large picture where it found nothing, over the whole picture.
        """
        s = self.settings
        boxes, scores, lb = self._look(gray, None, min(s.peak, s.zoom_trigger))
        small = (boxes[:, 3] * lb.scale < s.zoom_below_px) & (lb.scale < s.max_upscale)
        sure = scores >= s.peak
        if small.any():
            h_px = float(np.median(boxes[small, 3]))
            b = boxes[small]
            area = (b[:, 0].min(), b[:, 1].min(), (b[:, 0] + b[:, 2]).max(), (b[:, 1] + b[:, 3]).max())
            regions = self._tiles(area, s.zoom_target_px / max(h_px, 1.0), 1.5 * h_px, gray.shape, lb.scale)
        elif not sure.any() and lb.scale < s.zoom_when_empty:
            regions = self._tiles((0, 0, gray.shape[1], gray.shape[0]), 2 * lb.scale, 0.0, gray.shape, lb.scale)
        else:
            regions = []
        if regions:  # the closer looks replace what the first look found there
            seen = np.zeros(len(boxes), bool)
            for region in regions:
                seen |= _centres_inside(boxes, region)
            closer = [self._look(gray, region, s.peak)[:2] for region in regions]
            boxes = np.concatenate([boxes[sure & ~seen], *(c[0] for c in closer)])
            scores = np.concatenate([scores[sure & ~seen], *(c[1] for c in closer)])
        else:
            boxes, scores = boxes[sure], scores[sure]
        keep = _non_duplicates(boxes, scores, s.duplicate_iou, s.duplicate_cover)
        return boxes[keep], scores[keep]

    def _look(self, gray, region, threshold) -> tuple[np.ndarray, np.ndarray, Letterbox]:
        x, lb = detector_input(gray, self.detector.input_size, region)
        heat, box = self.detector.maps(x)
        det = heatmap.decode(heat, box, threshold, self.settings.max_digits)
        return lb.to_picture(det.boxes), det.scores, lb

    def _tiles(self, area, target: float, pad: float, shape, first_scale: float) -> list[tuple[int, int, int, int]]:
        """Overlapping regions covering `area` (x0, y0, x1, y1) at `target` detector px per picture px.

        At most `max_tiles` (the enlargement shrinks to fit); none if that is no closer than the first look.
        """
        s = self.settings
        target = min(target, s.max_upscale)
        x0, y0 = max(0, int(area[0] - pad)), max(0, int(area[1] - pad))
        x1, y1 = min(shape[1], int(area[2] + pad)), min(shape[0], int(area[3] + pad))
        in_w, in_h = self.detector.input_size
        while True:
            cols = max(1, int(np.ceil((x1 - x0) * target / in_w)))
            rows = max(1, int(np.ceil((y1 - y0) * target / in_h)))
            if cols * rows <= s.max_tiles:
                break
            target *= 0.8  # too many looks: settle for a smaller enlargement
        if target <= first_scale * 1.15:
            return []
        tw, th = (x1 - x0) / cols, (y1 - y0) / rows
        overlap = max(pad, 0.1 * min(tw, th))  # tiles overlap so that no digit is cut in every tile
        tiles = []
        for r in range(rows):
            for c in range(cols):
                tx0, ty0 = max(x0, int(x0 + c * tw - overlap)), max(y0, int(y0 + r * th - overlap))
                tx1, ty1 = min(x1, int(x0 + (c + 1) * tw + overlap)), min(y1, int(y0 + (r + 1) * th + overlap))
                tiles.append((tx0, ty0, tx1 - tx0, ty1 - ty0))
        return tiles


def _int_box(b, ox: int, oy: int) -> tuple[int, int, int, int]:
    x, y, w, h = (float(v) for v in b)
    return int(round(x)) + ox, int(round(y)) + oy, max(1, int(round(w))), max(1, int(round(h)))


def _centres_inside(boxes: np.ndarray, region) -> np.ndarray:
    x, y, w, h = region
    cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    return (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)


def _non_duplicates(boxes: np.ndarray, scores: np.ndarray, max_iou: float, max_cover: float) -> np.ndarray:
    """Indices of the boxes to keep, best first: a box is dropped if it overlaps a kept one by more than
    `max_iou`, or lies more than `max_cover` inside it (a digit cut by a tile's edge, seen whole in another)."""
    order = np.argsort(-scores, kind="stable")
    overlap = heatmap.iou(boxes, boxes)
    area = boxes[:, 2] * boxes[:, 3]
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    x1 = np.minimum(boxes[:, None, 0] + boxes[:, None, 2], boxes[None, :, 0] + boxes[None, :, 2])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    y1 = np.minimum(boxes[:, None, 1] + boxes[:, None, 3], boxes[None, :, 1] + boxes[None, :, 3])
    cover = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None) / np.maximum(area[:, None], 1e-6)
    keep: list[int] = []
    for i in order:
        if all(overlap[i, j] <= max_iou and cover[i, j] <= max_cover for j in keep):
            keep.append(int(i))
    return np.array(sorted(keep, key=lambda i: -scores[i]), np.int64)

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
