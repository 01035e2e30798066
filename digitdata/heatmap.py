"""The detector's output contract: digit boxes <-> a centre heatmap and box maps at a fixed stride.

CenterNet-style: each digit is a Gaussian peak at its centre on a grid of STRIDE-pixel cells; at the peak
cell, the box maps hold the centre's sub-cell offset and the log of its width and height in cells.
`encode` makes training targets from boxes, `decode` turns the model's maps back into boxes (local maxima,
then boxes: a few lines of numpy). `match` scores boxes against the truth (precision and recall at an IoU).

    python -c "from digitdata.heatmap import encode, decode; help(decode)"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRIDE = 4  # input pixels per heatmap cell
SIGMA_PER_HEIGHT = 0.1  # a peak's Gaussian sigma, as a fraction of the digit height (touching digits stay apart)
MIN_SIGMA = 0.6  # cells: the smallest digits still get a peak wider than one cell
SAME_DIGIT = 0.3  # two peaks closer than this share of a box's width and height are one digit (touching
# digits' centres are about 0.6 of a height apart, a digit's own peak plateau is far narrower)
BOX_CHANNELS = 5  # targets: mask, offset x, offset y, log width, log height (in cells)


@dataclass(frozen=True)
class Detections:
    """Boxes (N, 4) x, y, w, h in input pixels, with their peak scores (N,), best first."""

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def encode(boxes: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Training targets for digit boxes (N, 4) x, y, w, h in input pixels on a (rows, cols) grid.

    Returns:
        heat (rows, cols) float32 in [0, 1], exactly 1 at each digit's centre cell;
        box (rows, cols, 5) float32: mask (1 at centre cells), offset x, offset y, log w, log h.
    """
    rows, cols = grid
    heat = np.zeros((rows, cols), np.float32)
    box = np.zeros((rows, cols, BOX_CHANNELS), np.float32)
    ys, xs = np.arange(rows, dtype=np.float32)[:, None], np.arange(cols, dtype=np.float32)[None, :]
    for x, y, w, h in np.asarray(boxes, np.float32).reshape(-1, 4):
        cx, cy = (x + w / 2) / STRIDE, (y + h / 2) / STRIDE
        ix, iy = int(cx), int(cy)
        if not (0 <= ix < cols and 0 <= iy < rows) or w <= 0 or h <= 0:
            continue
        sigma = max(MIN_SIGMA, SIGMA_PER_HEIGHT * h / STRIDE)
        r = int(np.ceil(3 * sigma))
        y0, y1, x0, x1 = max(0, iy - r), min(rows, iy + r + 1), max(0, ix - r), min(cols, ix + r + 1)
        g = np.exp(-((xs[:, x0:x1] - ix) ** 2 + (ys[y0:y1] - iy) ** 2) / (2 * sigma**2))
        heat[y0:y1, x0:x1] = np.maximum(heat[y0:y1, x0:x1], g)
        box[iy, ix] = (1.0, cx - ix, cy - iy, np.log(w / STRIDE), np.log(h / STRIDE))
    return heat, box


def local_maxima(heat: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the cells that are >= all 8 neighbours and above `threshold`."""
    padded = np.pad(heat, 1, constant_values=-np.inf)
    h, w = heat.shape
    neighbours = np.stack([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    peak = (heat >= neighbours.max(axis=0)) & (heat >= threshold)
    return np.nonzero(peak)


def decode(heat: np.ndarray, box: np.ndarray, threshold: float, max_boxes: int) -> Detections:
    """Boxes from the model's maps: heat (rows, cols) in [0, 1], box (rows, cols, 4) offsets and log sizes.

    Peaks are local maxima; a peak whose centre lies near the centre of a stronger one (closer than
    SAME_DIGIT of either box's size) is the same digit, as happens on the broad peak of a large digit.
    At most `max_boxes`, best first (bounded work for any input, noise included).
    """
    iy, ix = local_maxima(heat, threshold)
    scores = heat[iy, ix]
    order = np.argsort(-scores, kind="stable")[:4 * max_boxes]
    iy, ix, scores = iy[order], ix[order], scores[order]
    b = box[iy, ix]
    w, h = np.exp(b[:, 2]) * STRIDE, np.exp(b[:, 3]) * STRIDE
    cx, cy = (ix + b[:, 0]) * STRIDE, (iy + b[:, 1]) * STRIDE
    keep: list[int] = []
    for i in range(len(scores)):
        if len(keep) == max_boxes:
            break
        k = np.asarray(keep, np.int64)
        near = ((np.abs(cx[k] - cx[i]) < SAME_DIGIT * np.maximum(w[k], w[i]))
                & (np.abs(cy[k] - cy[i]) < SAME_DIGIT * np.maximum(h[k], h[i])))
        if not near.any():
            keep.append(i)
    k = np.asarray(keep, np.int64)
    boxes = np.stack([cx[k] - w[k] / 2, cy[k] - h[k] / 2, w[k], h[k]], axis=1).astype(np.float32)
    return Detections(boxes.reshape(-1, 4), scores[k].astype(np.float32))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of (N, 4) and (M, 4) x, y, w, h boxes -> (N, M)."""
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def match(found: np.ndarray, truth: np.ndarray, min_iou: float = 0.5) -> tuple[int, int, int]:
    """Greedy one-to-one matching of found boxes (best first) to true boxes: (true pos, false pos, missed)."""
    found, truth = np.asarray(found).reshape(-1, 4), np.asarray(truth).reshape(-1, 4)
    if not len(found) or not len(truth):
        return 0, len(found), len(truth)
    overlap = iou(found, truth)
    used = np.zeros(len(truth), bool)
    tp = 0
    for i in range(len(found)):
        candidates = np.where(used, -1.0, overlap[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= min_iou:
            used[j] = True
            tp += 1
    return tp, len(found) - tp, len(truth) - tp
