"""Reading a frame: find the number lines, read each one as a digit string, put them in reading order.

`DigitReader.read(frame) -> Reading` is the whole product in one call (a grey or colour frame); `annotate`
draws a reading on the frame; `Stabilizer` reports a live reading once it has been the same for K frames.

    digitlite read photo.jpg --json
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from digitdata import ctc, regions
from digitdata.crops import ink_is_dark
from digitdata.frames import Letterbox, as_bgr_uint8, as_gray_uint8, detector_input
from digitdata.lines import INPUT_HEIGHT, INPUT_WIDTH, line_input
from edge_app.layout import reading_order
from edge_app.runtime import Classifier, Recognizer, RegionFinder

# A region whose digits' mean confidence is below this is more likely a word, a mark or a smudge: on 3,000
# validation regions (held-out training digits, a fifth without any digit) the mean at 0.75 keeps 80 % of the
# numbers exact and reads nothing on 95 % of the digit-free ones, where the least sure digit at 0.5 gave 79 % and
# 91 % (measured 2026-12-04 with the first released recognizer).
MIN_CONFIDENCE = 0.75


@dataclass(frozen=True)
class ReaderSettings:
    """The reader's tuned numbers, in one place (each model's own are in its manifest entry)."""

    threshold: float = 0.5  # region map value that counts as "number here"
    max_regions: int = 32  # regions read per picture at most (bounded work for any picture, noise included)
    # Margins added to a region before it is read, in its heights: on the validation scenes 97 % of the lines'
    # ink lies within 0.30 above and below the decoded region and 0.57 beyond its ends (2026-12-04); the
    # recognizer learned cuts up to 0.5 (above, below) and 1.4 (ends) looser than the digits, and marks in them.
    pad_height: float = 0.3
    pad_ends: float = 0.6
    read_height: int = 64  # px: a region is cut from the picture at most this tall (then resized to 32)
    zoom_below_px: float = 14.0  # regions shorter than this (finder input px) get a closer look, at their part
    max_upscale: float = 3.0  # the closer look enlarges the picture at most this much
    join_gap: float = 0.6  # regions on one line closer than this many heights are one number (the map often
    # parts a narrow "1" or a wide gap from the rest of its row)
    empty_below_scale: float = 0.6  # a picture shrunk more than this for the first look, where it found nothing,
    empty_tiles: int = 2  # ... is looked at again in this many tiles per side (at most 4 more looks)
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
    """Reads the handwritten numbers in pictures: find the number lines, read each as a digit string.

    find: the region finder's "number here" map on the whole grey picture (letterboxed), its connected
    parts as rotated rectangles, and a closer look where the lines are too small to read at that scale;
    read: each region straightened, cut from the full-resolution picture (`digitdata.lines.line_input`) and
    read by the recognizer (CTC, greedy); a region read as nothing, or not surely, is dropped; order:
    regions into lines and numbers (`edge_app.layout`).

    Args:
        finder: the LiteRT region finder (built once, outside the frame loop).
        recognizer: the LiteRT number recognizer.
        min_confidence: regions whose digits' mean confidence is below this are dropped as not numbers.
        roi: (x, y, w, h): only this part of each frame is read (boxes stay in frame coordinates).
        polarity: "auto", "dark" (ink darker than paper) or "bright" (chalk on a board).
        settings: the tuned numbers.
        classifier: the MNIST digit classifier, kept beside the reader for single drawn digits (the web
            page's canvas); the reader itself does not use it.
    """

    def __init__(self, finder: RegionFinder, recognizer: Recognizer, min_confidence: float = MIN_CONFIDENCE,
                 roi: tuple[int, int, int, int] | None = None, polarity: str = "auto",
                 settings: ReaderSettings = ReaderSettings(), classifier: Classifier | None = None):  # noqa: B008
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if polarity not in ("auto", "dark", "bright"):
            raise ValueError(f"polarity {polarity!r}: valid values are auto, dark, bright")
        self.finder, self.recognizer = finder, recognizer
        self.min_confidence, self.roi, self.polarity, self.settings = min_confidence, roi, polarity, settings
        self.classifier = classifier

    @property
    def integrity(self):
        """The recognizer's integrity (sha256, manifest check): what identifies the model behind a reading."""
        return self.recognizer.integrity

    def read(self, frame) -> Reading:
        """Read one picture (grey or BGR; uint8, uint16 or float; see `as_bgr_uint8`).

        Raises:
            ValueError: the array is not an image, or the region of interest lies outside it.
        """
        started = time.perf_counter()
        gray = as_gray_uint8(frame)
        gray, ox, oy = crop_roi(gray, self.roi)
        # Bounded work for any size: a picture larger than work_side is read at that size.
        f = min(1.0, self.settings.work_side / max(gray.shape[:2]))
        if f < 1:
            gray = cv2.resize(gray, (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f))),
                              interpolation=cv2.INTER_AREA)
        found = _joined(self.find(gray), self.settings.join_gap)
        t_found = time.perf_counter()
        dark = ink_is_dark(gray) if self.polarity == "auto" else self.polarity == "dark"
        read = [self._read_region(gray, r, dark) for r in found]
        t_read = time.perf_counter()

        kept = [(r, *out) for r, out in zip(found, read, strict=True)
                if out[0] and float(np.mean(out[1])) >= self.min_confidence]
        order = reading_order([r.box() for r, *_ in kept], gap=0.0)
        digits, lines, crops = [], [], []
        for line in order:
            numbers = []
            for number in line:
                text = ""
                for i in number:
                    region, s, conf, boxes, crop = kept[i]
                    text += s
                    digits += [Digit(int(c), p, _int_box(b / f, ox, oy)) for c, p, b in zip(s, conf, boxes,
                                                                                            strict=True)]
                    crops.append(crop)
                numbers.append(text)
            lines.append(numbers)
        done = time.perf_counter()
        latency = {"find": (t_found - started) * 1e3, "read": (t_read - t_found) * 1e3,
                   "group": (done - t_read) * 1e3, "total": (done - started) * 1e3}
        return Reading(digits, lines, latency, len(found) - len(kept),
                       np.stack(crops) if crops else np.zeros((0, INPUT_HEIGHT, INPUT_WIDTH), np.uint8))

    def find(self, gray: np.ndarray) -> list[regions.Region]:
        """Number lines in picture pixels, best first: one look at the whole picture, then a closer look at
        the part holding lines too small to read at that scale (at most one, bounded work)."""
        s = self.settings
        found, lb = self._look(gray, None)
        h, w = gray.shape
        if not found and lb.scale < s.empty_below_scale and min(h, w) >= 2 * s.empty_tiles * 8:
            # small writing in a large picture: tiles, closer (none for a sliver: nothing to tile)
            n = s.empty_tiles
            tw, th = w / n, h / n
            for r in range(n):
                for c in range(n):
                    x0, y0 = int(max(0, c * tw - 0.1 * tw)), int(max(0, r * th - 0.1 * th))
                    x1, y1 = int(min(w, (c + 1) * tw + 0.1 * tw)), int(min(h, (r + 1) * th + 0.1 * th))
                    found += self._look(gray, (x0, y0, x1 - x0, y1 - y0))[0]
            return _distinct(found)[:s.max_regions]
        small = [r for r in found if r.height * lb.scale < s.zoom_below_px]
        if small and lb.scale < s.max_upscale:
            boxes = np.stack([r.box() for r in small])
            pad = 2.0 * float(np.median(boxes[:, 3]))
            x0, y0 = max(0, int(boxes[:, 0].min() - pad)), max(0, int(boxes[:, 1].min() - pad))
            x1 = min(gray.shape[1], int((boxes[:, 0] + boxes[:, 2]).max() + pad))
            y1 = min(gray.shape[0], int((boxes[:, 1] + boxes[:, 3]).max() + pad))
            closer, clb = self._look(gray, (x0, y0, x1 - x0, y1 - y0))
            if clb.scale > 1.3 * lb.scale:  # the closer look replaces what the first found there
                inside = [r for r in found if not (x0 <= r.cx < x1 and y0 <= r.cy < y1)]
                found = _distinct(inside + closer)
        return found[:s.max_regions]

    def _look(self, gray, region) -> tuple[list[regions.Region], Letterbox]:
        x, lb = detector_input(gray, self.finder.input_size, region)
        prob = self.finder.map(x)
        found = regions.decode(prob, self.settings.threshold, self.settings.max_regions)
        return [r.scaled(1 / lb.scale, -lb.left / lb.scale, -lb.top / lb.scale) for r in found], lb

    def _read_region(self, gray: np.ndarray, r: regions.Region, dark: bool):
        """(text, digit confidences, digit boxes (N, 4) in picture px, recognizer input) of one region."""
        s = self.settings
        height = r.height * (1 + 2 * s.pad_height)
        length = r.length + 2 * s.pad_ends * r.height
        f = min(1.0, s.read_height / max(height, 1.0))  # cut at most read_height px tall
        out_w, out_h = max(1, round(length * f)), max(1, round(height * f))
        theta = np.radians(r.angle)
        c, si = np.cos(theta), np.sin(theta)
        # picture -> patch: rotate by -angle about the region's centre, scale by f, centre in the patch
        m = np.array([[c * f, si * f, 0.0], [-si * f, c * f, 0.0]])
        m[:, 2] = np.array([out_w / 2, out_h / 2]) - m[:, :2] @ np.array([r.cx, r.cy])
        patch = cv2.warpAffine(gray, m, (out_w, out_h), flags=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        x = line_input(patch, dark)
        text, conf, spans = ctc.greedy(self.recognizer.run(x))
        # digit boxes: each digit's columns, widened to halfway to its neighbours, mapped back to the picture
        used = min(INPUT_WIDTH, max(1, round(out_w * INPUT_HEIGHT / out_h)))
        px_per_col = INPUT_WIDTH / self.recognizer.output_shape[0]
        to_patch = out_w / used
        inverse = cv2.invertAffineTransform(m)
        boxes = []
        centres = [((a + b) / 2 + 0.5) * px_per_col for a, b in spans]
        pitch = float(np.median(np.diff(centres))) if len(centres) > 1 else 0.7 * INPUT_HEIGHT
        for k, centre in enumerate(centres):
            left = (centres[k - 1] + centre) / 2 if k else centre - pitch / 2
            right = (centre + centres[k + 1]) / 2 if k + 1 < len(centres) else centre + pitch / 2
            x0, x1 = max(0.0, left) * to_patch, min(float(used), right) * to_patch
            corners = np.array([[x0, 0, 1], [x1, 0, 1], [x1, out_h, 1], [x0, out_h, 1]], np.float64) @ inverse.T
            lo, hi = corners.min(axis=0), corners.max(axis=0)
            boxes.append((lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]))
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        x0, y0 = np.clip(b[:, 0], 0, gray.shape[1]), np.clip(b[:, 1], 0, gray.shape[0])
        x1 = np.clip(b[:, 0] + b[:, 2], 0, gray.shape[1])
        y1 = np.clip(b[:, 1] + b[:, 3], 0, gray.shape[0])  # a padded cut may reach past the picture's edge
        return text, conf, np.stack([x0, y0, x1 - x0, y1 - y0], axis=1), x


def _distinct(found: list[regions.Region], max_overlap: float = 0.3) -> list[regions.Region]:
    """The regions best first, without those that overlap a better one by more than `max_overlap` (IoU) or
    whose centre lies inside it: overlapping looks see a number twice."""
    order = sorted(found, key=lambda r: -r.score * r.length * r.height)
    kept: list[regions.Region] = []
    for r in order:
        box = r.box()
        if all(regions.iou(box, k.box())[0, 0] <= max_overlap and not _contains(k.box(), (r.cx, r.cy)) for k in kept):
            kept.append(r)
    return kept


def _joined(found: list[regions.Region], gap: float, max_tilt: float = 10.0) -> list[regions.Region]:
    """Nearly level regions side by side on one line, less than `gap` of the taller's height apart, joined into
    one (the union along the line, the taller's height): repeated until no two are that close."""
    found = list(found)
    joined = True
    while joined:
        joined = False
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                a, b = found[i], found[j]
                if abs(a.angle) > max_tilt or abs(b.angle) > max_tilt:
                    continue
                (ax, _, aw, _), (bx, _, bw, _) = a.box(), b.box()
                tall = a if a.height >= b.height else b
                low = b if tall is a else a
                space = max(bx - (ax + aw), ax - (bx + bw))
                if space < gap * tall.height and abs(low.cy - tall.cy) < 0.5 * tall.height:
                    x0, x1 = min(ax, bx), max(ax + aw, bx + bw)
                    found[i] = regions.Region((x0 + x1) / 2, tall.cy, x1 - x0, tall.height, tall.angle,
                                              max(a.score, b.score))
                    del found[j]
                    joined = True
                    break
            if joined:
                break
    return found


def _contains(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def _int_box(b, ox: int, oy: int) -> tuple[int, int, int, int]:
    x, y, w, h = (float(v) for v in b)
    return int(round(x)) + ox, int(round(y)) + oy, max(1, int(round(w))), max(1, int(round(h)))


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
