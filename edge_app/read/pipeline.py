"""Reading a picture: find the number lines, read each one as a digit string, put them in reading order.

`DigitReader.read(frame) -> Reading` is the whole product in one call. It works on one grey channel: a grey
frame (the Pi camera's Y plane) is read as it is, a colour one is turned grey once (`digitdata.frames`). The
tuned numbers are `edge_app.config.ReaderSettings`.

    digitlite read photo.jpg --json
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from digitdata import ctc, regions
from digitdata.crops import ink_is_dark
from digitdata.frames import STROKE_SAFE_BELOW, Letterbox, as_gray_uint8, detector_input, pool_ink, shrink
from digitdata.lines import INPUT_HEIGHT, INPUT_WIDTH, line_input
from edge_app.config import MIN_CONFIDENCE, ReaderSettings
from edge_app.read.layout import reading_order
from edge_app.read.reading import Digit, Reading
from edge_app.runtime import Classifier, Recognizer, RegionFinder


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
    regions into lines and numbers (`edge_app.read.layout`).

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
        self.bundle: str | None = None  # the model bundle its models come from (`edge_app.wiring` sets it)

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
        dark = ink_is_dark(gray) if self.polarity == "auto" else self.polarity == "dark"
        # Bounded work for any size: a picture larger than work_side is read at that size.
        f = min(1.0, self.settings.work_side / max(gray.shape[:2]))
        if f < 1:
            gray = shrink(gray, (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f))), dark)
        found = _joined(self.find(gray, dark), self.settings.join_gap)
        t_found = time.perf_counter()
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

    def find(self, gray: np.ndarray, dark: bool | None = None) -> list[regions.Region]:
        """Number lines in picture pixels, best first: one look at the whole picture, then a closer look at
        the part holding lines too small to read at that scale (at most one, bounded work)."""
        s = self.settings
        found, lb = self._look(gray, None, dark)
        h, w = gray.shape
        if not found and lb.scale < s.empty_below_scale and min(h, w) >= 2 * s.empty_tiles * 8:
            # small writing in a large picture: tiles, closer (none for a sliver: nothing to tile)
            n = s.empty_tiles
            tw, th = w / n, h / n
            for r in range(n):
                for c in range(n):
                    x0, y0 = int(max(0, c * tw - 0.1 * tw)), int(max(0, r * th - 0.1 * th))
                    x1, y1 = int(min(w, (c + 1) * tw + 0.1 * tw)), int(min(h, (r + 1) * th + 0.1 * th))
                    found += self._look(gray, (x0, y0, x1 - x0, y1 - y0), dark)[0]
            return _distinct(found)[:s.max_regions]
        small = [r for r in found if r.height * lb.scale < s.zoom_below_px]
        if small and lb.scale < s.max_upscale:
            boxes = np.stack([r.box() for r in small])
            pad = 2.0 * float(np.median(boxes[:, 3]))
            x0, y0 = max(0, int(boxes[:, 0].min() - pad)), max(0, int(boxes[:, 1].min() - pad))
            x1 = min(gray.shape[1], int((boxes[:, 0] + boxes[:, 2]).max() + pad))
            y1 = min(gray.shape[0], int((boxes[:, 1] + boxes[:, 3]).max() + pad))
            closer, clb = self._look(gray, (x0, y0, x1 - x0, y1 - y0), dark)
            if clb.scale > 1.3 * lb.scale:  # the closer look replaces what the first found there
                inside = [r for r in found if not (x0 <= r.cx < x1 and y0 <= r.cy < y1)]
                found = _distinct(inside + closer)
        return found[:s.max_regions]

    def _look(self, gray, region, dark: bool | None = None) -> tuple[list[regions.Region], Letterbox]:
        x, lb = detector_input(gray, self.finder.input_size, region, dark)
        prob = self.finder.map(x)
        found = regions.decode(prob, self.settings.threshold, self.settings.max_regions)
        return [r.scaled(1 / lb.scale, -lb.left / lb.scale, -lb.top / lb.scale) for r in found], lb

    def recognize(self, patch: np.ndarray, dark: bool) -> tuple[str, list[float], list[tuple[int, int]], np.ndarray]:
        """One grey patch cut around a number (a region, a table's cell) read by the recognizer: its digits, each
        digit's confidence and first and last column (CTC greedy), and the recognizer's input (`line_input`)."""
        x = line_input(patch, dark)
        text, conf, spans = ctc.greedy(self.recognizer.run(x))
        return text, conf, spans, x

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
        source, sx, sy = _pooled(gray, r, f, dark)
        m_source = m.copy()
        m_source[:, 2] += m[:, :2] @ np.array([sx, sy], np.float64)
        patch = cv2.warpAffine(source, m_source, (out_w, out_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        text, conf, spans, x = self.recognize(patch, dark)
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


def _pooled(gray: np.ndarray, r: regions.Region, f: float, dark: bool) -> tuple[np.ndarray, int, int]:
    """The part of the picture around region `r` that its cut samples, and that part's (x, y) in the picture.

    A warp samples; reduced by `f` below half size, the ink is pooled (`frames.pool_ink`, as `frames.shrink`
    does) and averaged over the whole factor first, so a fine pen's stroke neither fades nor breaks into dots."""
    if f >= STROKE_SAFE_BELOW:
        return gray, 0, 0
    reach = int(r.length / 2 + r.height) + 2
    x0, y0 = max(0, int(r.cx) - reach), max(0, int(r.cy) - reach)
    x1, y1 = min(gray.shape[1], int(r.cx) + reach), min(gray.shape[0], int(r.cy) + reach)
    part = pool_ink(gray[y0:y1, x0:x1], f, dark)
    return cv2.blur(part, (max(1, int(1 / f)), max(1, int(1 / f)))), x0, y0


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
