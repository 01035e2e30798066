"""From a detected digit box to the classifier's input, the way MNIST was made: plain numpy and OpenCV.

`digit_crop` takes the grey picture and one box, separates the ink from the paper around it (a grey
closing or opening estimates the paper, so shadows and uneven light are not ink), keeps the strokes that
belong to this box (a neighbour's strokes and printed lines that run through are left out), and hands the
ink to `mnist_style`: fit in 20x20 keeping the aspect, stroke width normalised, placed in 28x28 by centre
of mass, white on black, uint8.

    python -c "from digitdata.crops import digit_crop; help(digit_crop)"
"""

from __future__ import annotations

import cv2
import numpy as np

MNIST_BOX = 20  # MNIST digits were fit in a 20x20 box ...
MNIST_SIZE = 28  # ... and centred by centre of mass in 28x28
MNIST_STROKE = 2.2  # px: median stroke width of MNIST digits in the 20x20 box (area / half the boundary)
WORK_HEIGHT = 64  # px: a box is processed at most this tall (bounded work for a 2,000 px digit)
MARGIN = 0.2  # of the box height, added around the box to see the paper and whole strokes
PAPER_REACH = 0.45  # of the box height: the paper estimate's window, wider than the boldest stroke
MIN_INK = 0.12  # ink strength (fraction of the paper's brightness) below which nothing is ink
GRAIN_SIGMAS = 4.0  # ink stands this many robust standard deviations of the paper's grain above it
INSIDE_SHARE = 0.4  # a stroke belongs to the box if at least this share of it lies inside the box ...
CLIP_GROW = 0.08  # ... and is kept up to this fraction of the box height outside it (touching neighbours)
POLARITY_SIDE = 256  # px: polarity is judged on a thumbnail this long
LINE_LENGTH = 1.1  # a straight run longer than this many box widths (heights) is a printed line, not ink


def ink_is_dark(gray: np.ndarray) -> bool:
    """True for dark ink on light paper, False for bright ink on a dark ground.

    Ink is the heavier side of the deviations from the local background (a median filter wider than a
    stroke, on a thumbnail), summed so that a few strokes outweigh symmetric sensor noise; shadows, glare
    and gradients are part of the background. Ties go to dark ink, the common case.
    """
    h, w = gray.shape[:2]
    f = min(1.0, POLARITY_SIDE / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    k = max(3, min(31, (min(small.shape) // 6) | 1))
    deviation = small.astype(np.float32) - cv2.medianBlur(small, k).astype(np.float32)
    return bool(np.clip(-deviation, 0, None).sum() >= np.clip(deviation, 0, None).sum())


def ink_strength(gray: np.ndarray, dark_ink: bool, reach: int) -> np.ndarray:
    """Ink as a fraction of the paper's brightness (float32 0-1); the paper is a grey closing (opening)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach))
    g = gray.astype(np.float32)
    if dark_ink:
        paper = cv2.morphologyEx(g, cv2.MORPH_CLOSE, kernel)
        return np.clip((paper - g) / np.maximum(paper, 1.0), 0, 1)
    ground = cv2.morphologyEx(g, cv2.MORPH_OPEN, kernel)
    return np.clip((g - ground) / np.maximum(255.0 - ground, 1.0), 0, 1)


def printed_lines(binary: np.ndarray, box_w: float, box_h: float) -> np.ndarray:
    """Pixels on straight horizontal or vertical runs longer than the digit box: ruled and grid lines."""
    horizontal = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((1, max(3, int(LINE_LENGTH * box_w))), np.uint8))
    vertical = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((max(3, int(LINE_LENGTH * box_h)), 1), np.uint8))
    return horizontal | vertical


def digit_crop(gray: np.ndarray, box, dark_ink: bool) -> np.ndarray:
    """The MNIST-style (28, 28) uint8 crop of the digit in `box` (x, y, w, h, picture pixels) of `gray`."""
    x, y, w, h = (float(v) for v in box)
    if w < 1 or h < 1:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    pad = MARGIN * h
    x0, y0 = max(0, int(x - pad)), max(0, int(y - pad))
    x1, y1 = min(gray.shape[1], int(np.ceil(x + w + pad))), min(gray.shape[0], int(np.ceil(y + h + pad)))
    region = gray[y0:y1, x0:x1]
    if region.size == 0:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    f = min(1.0, WORK_HEIGHT / h)
    if f < 1:
        region = cv2.resize(region, (max(1, round(region.shape[1] * f)), max(1, round(region.shape[0] * f))),
                            interpolation=cv2.INTER_AREA)
    bx, by, bw, bh = (x - x0) * f, (y - y0) * f, w * f, h * f  # the box inside the region

    strength = ink_strength(region, dark_ink, max(3, int(PAPER_REACH * bh) | 1))
    s8 = (strength * 255).astype(np.uint8)
    otsu, _ = cv2.threshold(s8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Otsu always splits a box in two, even one of bare, grainy paper: ink must also stand out of the grain.
    grain = 1.4826 * float(np.median(np.abs(strength - np.median(strength))))
    threshold = max(otsu / 255.0, MIN_INK, GRAIN_SIGMAS * grain)
    strong = (strength >= threshold).astype(np.uint8)
    weak = (strength >= threshold / 2).astype(np.uint8)
    ink = _hysteresis(strong, weak)
    ink = ink & (1 - printed_lines(ink, bw, bh))
    keep = _strokes_of_box(ink, bx, by, bw, bh)
    return mnist_style((strength * keep * 255).astype(np.uint8))


def _core(shape, bx, by, bw, bh, grow: float) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    g = grow * bh
    m[max(0, int(by - g)):int(np.ceil(by + bh + g)), max(0, int(bx - g)):int(np.ceil(bx + bw + g))] = 1
    return m


def _hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Weak ink pixels connected to strong ones (faint, blurred strokes stay whole)."""
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    if n <= 1:
        return strong
    touched = np.zeros(n, bool)
    touched[labels[strong > 0]] = True
    touched[0] = False
    return touched[labels].astype(np.uint8)


def _strokes_of_box(ink: np.ndarray, bx, by, bw, bh) -> np.ndarray:
    """The connected strokes that lie mostly inside the box, clipped to it (grown by CLIP_GROW)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n <= 1:
        return np.zeros_like(ink)
    inside = _core(ink.shape, bx, by, bw, bh, 0.0)
    share = np.bincount(labels.ravel(), weights=inside.ravel(), minlength=n) / np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    chosen = share >= INSIDE_SHARE
    chosen[0] = False
    return (chosen[labels] & _core(ink.shape, bx, by, bw, bh, CLIP_GROW).astype(bool)).astype(np.uint8)


def stroke_width(binary: np.ndarray) -> float:
    """Median-free stroke width estimate: ink area over half its boundary length (px)."""
    area = float(binary.sum())
    if area == 0:
        return 0.0
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2 * area / max(perimeter, 1.0)


def normalize_stroke(ink_u8: np.ndarray, target_20: float = MNIST_STROKE, width_of=stroke_width) -> np.ndarray:
    """Thicken thin or thin thick strokes so that, once fit in 20x20, they are about `target_20` px wide.

    `width_of(mask) -> px` measures the stroke width (the classic finder keeps its own estimate).
    """
    h, w = ink_u8.shape
    box = max(h, w)
    width = width_of((ink_u8 > 127).astype(np.uint8))
    if width == 0:
        return ink_u8
    width_20 = width * MNIST_BOX / box
    delta_px = (target_20 - width_20) * box / MNIST_BOX  # in crop pixels, total over both sides
    k = int(round(abs(delta_px)))
    if k < 1 or 0.6 * target_20 <= width_20 <= 1.6 * target_20:
        return ink_u8
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k + 1, k + 1))
    if delta_px > 0:
        return cv2.dilate(ink_u8, kernel)
    eroded = cv2.erode(ink_u8, kernel)
    return eroded if eroded.max() > 127 else ink_u8  # never erode a digit away


def mnist_style(ink_u8: np.ndarray, normalize_width: bool = True, width_of=stroke_width) -> np.ndarray:
    """MNIST-style 28x28 uint8 digit from an ink patch (ink bright, paper 0).

    Steps as in LeCun et al.'s MNIST: fit the ink's bounding box in 20x20 keeping the aspect ratio
    (anti-aliased), then place it in 28x28 so that its centre of mass is at the centre. Before that, the
    ink is scaled so strokes reach 255 and, optionally, the stroke width is normalised.

    Returns:
        (28, 28) uint8, white on black; all zeros if there is no ink.
    """
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    ink = np.asarray(ink_u8)
    if ink.ndim != 2 or ink.size == 0 or ink.max() == 0:
        return out
    on = ink > max(20, int(ink.max()) // 4)
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    if len(rows) == 0:
        return out
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = ink.shape
    if max(h, w) > WORK_HEIGHT:
        f = WORK_HEIGHT / max(h, w)
        ink = cv2.resize(ink, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        h, w = ink.shape
    level = float(np.percentile(ink[ink > 20], 90)) if (ink > 20).any() else float(ink.max())
    ink = np.clip(ink.astype(np.float32) * (255.0 / max(level, 1.0)), 0, 255).astype(np.uint8)
    if normalize_width:
        ink = normalize_stroke(ink, width_of=width_of)
    f = MNIST_BOX / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    digit = cv2.resize(ink, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    mass = digit.astype(np.float64)
    total = mass.sum()
    if total == 0:
        return out
    cy = (mass.sum(axis=1) * np.arange(nh)).sum() / total
    cx = (mass.sum(axis=0) * np.arange(nw)).sum() / total
    top = int(np.clip(round(MNIST_SIZE / 2 - cy - 0.5), 0, MNIST_SIZE - nh))
    left = int(np.clip(round(MNIST_SIZE / 2 - cx - 0.5), 0, MNIST_SIZE - nw))
    out[top:top + nh, left:left + nw] = digit
    return out
