"""The region finder's output contract: number lines <-> a per-pixel "number here" map at a fixed stride.

DBNet-style (Liao et al. 2020, PP-OCR's detector): each line of a number is a rotated rectangle along its
digits; the training target fills a shrunk copy of it (half its height, a little shorter), so lines close
above each other stay apart on the map. `decode` takes the connected parts of the thresholded map, fits a
rotated rectangle to each and grows it back to the line's size: a few lines of numpy and OpenCV. `match`
scores found lines against the truth (precision and recall at an IoU of their upright boxes).

    python -c "from digitdata.regions import decode; help(decode)"
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitdata.heatmap import iou, match  # noqa: F401 (re-exported: the detector's upright IoU and greedy matching)

STRIDE = 4  # input pixels per map cell
SHRINK_HEIGHT = 0.5  # the target fills this share of a line's height ...
SHRINK_ENDS = 0.15  # ... and stops this many line heights short of each end
MAX_TILT_DEG = 45.0  # lines are read left to right: a rectangle is turned to within this of level
MIN_LINE_ASPECT = 1.6  # a part shorter than this many heights is one digit (its target is 0.8 heights long)
GROWN_HEIGHT = 1.25  # the map's parts come out this much taller than their targets (median decoded / true line
# height on the validation scenes: 1.21 photo, 1.36 form, 1.23 hard, measured 2026-12-04 on the first region finder)
MIN_CELLS = 1  # connected parts smaller than this many cells are dropped (a 12 px digit in a frame is one cell)
MAX_REGIONS = 32  # per look (bounded work for any picture, noise included)


@dataclass(frozen=True)
class Region:
    """One number line in input pixels: centre, length along the writing, height, tilt (degrees), score."""

    cx: float
    cy: float
    length: float
    height: float
    angle: float  # degrees, positive clockwise (image y down), within +-MAX_TILT_DEG
    score: float  # mean map value over its part

    def box(self) -> np.ndarray:
        """The upright bounding box x, y, w, h of the rotated rectangle."""
        pts = self.corners()
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return np.array([x0, y0, x1 - x0, y1 - y0], np.float32)

    def corners(self) -> np.ndarray:
        return cv2.boxPoints(((self.cx, self.cy), (self.length, self.height), self.angle)).astype(np.float32)

    def scaled(self, scale: float, dx: float = 0.0, dy: float = 0.0) -> Region:
        """The region in another frame: coordinates * scale + (dx, dy)."""
        return Region(self.cx * scale + dx, self.cy * scale + dy, self.length * scale, self.height * scale,
                      self.angle, self.score)


def line_rect(digit_boxes: np.ndarray) -> tuple[float, float, float, float, float]:
    """(cx, cy, length, height, angle) of the line through digit boxes (N, 4) x, y, w, h, in their order.

    The writing's direction is the least-squares line through the box centres (level for one digit); the
    rectangle spans the boxes along it, and its height is their median height.
    """
    b = np.asarray(digit_boxes, np.float32).reshape(-1, 4)
    centres = b[:, :2] + b[:, 2:] / 2
    height = float(np.median(b[:, 3]))
    if len(b) > 1 and np.ptp(centres[:, 0]) > 0.5 * height:
        slope = float(np.polyfit(centres[:, 0], centres[:, 1], 1)[0])
    else:
        slope = 0.0
    angle = float(np.degrees(np.arctan(slope)))
    u = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))], np.float32)
    corners = np.concatenate([b[:, :2], b[:, :2] + [0, 1] * b[:, 2:], b[:, :2] + [1, 0] * b[:, 2:],
                              b[:, :2] + b[:, 2:]])
    along = corners @ u
    normal = np.array([-u[1], u[0]], np.float32)
    c = u * (along.min() + along.max()) / 2 + normal * float((centres @ normal).mean())
    length = float(along.max() - along.min())
    return float(c[0]), float(c[1]), length, height, angle


def encode(lines: list[np.ndarray], grid: tuple[int, int]) -> np.ndarray:
    """The target map (rows, cols) float32 in {0, 1} for number lines, each (N, 4) digit boxes in input px."""
    target = np.zeros(grid, np.uint8)
    for boxes in lines:
        if not len(boxes):
            continue
        cx, cy, length, height, angle = line_rect(boxes)
        inner = ((cx / STRIDE, cy / STRIDE),
                 (max(length - 2 * SHRINK_ENDS * height, 0.3 * height) / STRIDE, SHRINK_HEIGHT * height / STRIDE),
                 angle)
        pts = cv2.boxPoints(inner)
        cv2.fillPoly(target, [np.round(pts).astype(np.int32)], 1)
        ix, iy = int(cx / STRIDE), int(cy / STRIDE)
        if 0 <= iy < grid[0] and 0 <= ix < grid[1]:
            target[iy, ix] = 1  # a line too small for its polygon to cover a cell still marks one
    return target.astype(np.float32)


def decode(prob: np.ndarray, threshold: float = 0.5, max_regions: int = MAX_REGIONS) -> list[Region]:
    """Number lines from the map prob (rows, cols) in [0, 1], in input pixels, best first."""
    on = (np.asarray(prob) >= threshold).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(on, connectivity=8)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:4 * max_regions] + 1
    regions = []
    for k in order:
        if stats[k, cv2.CC_STAT_AREA] < MIN_CELLS:
            continue
        ys, xs = np.nonzero(labels == k)
        pts = np.stack([xs, ys], axis=1).astype(np.float32) + 0.5
        cell_corners = np.concatenate([pts + d for d in ((-.25, -.25), (.25, -.25), (.25, .25), (-.25, .25))])
        (cx, cy), (w, h), angle = cv2.minAreaRect(cell_corners.astype(np.float32))
        if angle > MAX_TILT_DEG:
            angle, w, h = angle - 90.0, h, w
        elif angle < -MAX_TILT_DEG:
            angle, w, h = angle + 90.0, h, w
        if w < MIN_LINE_ASPECT * h:  # one digit, not a row: its blob's tilt says nothing, keep it upright
            x0, y0 = cell_corners.min(axis=0)
            x1, y1 = cell_corners.max(axis=0)
            (cx, cy), (w, h), angle = ((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), 0.0
        height = h * STRIDE / SHRINK_HEIGHT / GROWN_HEIGHT
        length = w * STRIDE + 2 * SHRINK_ENDS * height
        regions.append(Region(cx * STRIDE, cy * STRIDE, length, height, float(angle),
                              float(np.asarray(prob)[ys, xs].mean())))
    regions.sort(key=lambda r: -r.score * r.length * r.height)
    return regions[:max_regions]


def split_lines(boxes: np.ndarray, text: str) -> list[np.ndarray]:
    """A scene's digit boxes (in reading order) grouped into its lines by its text ("37 50" -> 2 and 2)."""
    out, start = [], 0
    for number in text.split():
        out.append(np.asarray(boxes[start:start + len(number)]))
        start += len(number)
    return out


def true_line_boxes(boxes: np.ndarray, text: str) -> np.ndarray:
    """The upright boxes (N, 4) of a scene's true number lines, full size."""
    out = []
    for line in split_lines(boxes, text):
        cx, cy, length, height, angle = line_rect(line)
        out.append(Region(cx, cy, length, height, angle, 1.0).box())
    return np.asarray(out, np.float32).reshape(-1, 4)


def region_scores(maps: np.ndarray, scene_set, threshold: float, min_iou: float = 0.5) -> dict:
    """Precision and recall of number lines (upright boxes at `min_iou`), and the share of scenes with no digit
    where nothing was found."""
    tp = fp = fn = 0
    quiet = empty = 0
    for i in range(len(scene_set)):
        found = [r.box() for r in decode(maps[i], threshold)]
        truth = true_line_boxes(scene_set.boxes_of(i), scene_set.texts[i])
        a, b, c = match(found, truth, min_iou)
        tp, fp, fn = tp + a, fp + b, fn + c
        if not len(truth):
            empty += 1
            quiet += not found
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "lines": tp + fn,
            "scenes": len(scene_set), "digit_free_quiet": quiet / empty if empty else None, "min_iou": min_iou,
            "threshold": threshold}


def all_scores(maps_of: dict[str, np.ndarray], sets: dict, threshold: float) -> dict:
    per_mix = {mix: region_scores(maps_of[mix], sets[mix], threshold) for mix in sets}
    lines = [s for s in per_mix.values() if s["lines"]]
    tp = sum(s["recall"] * s["lines"] for s in lines)
    found = sum(s["recall"] * s["lines"] / max(s["precision"], 1e-9) for s in lines if s["precision"] > 0)
    return {"recall": tp / max(sum(s["lines"] for s in lines), 1), "precision": tp / max(found, 1e-9),
            "per_mix": per_mix}
