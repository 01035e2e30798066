"""Reading order: digit boxes -> lines (top to bottom) of numbers (left to right). Plain numpy.

Handwritten rows drift and tilt, so lines are not horizontal bands: the writing direction is estimated
from each digit's nearest neighbour, the centres are turned level, and digits chain into a line when
each is beside the next (a line follows a drifting baseline). A gap wider than `NUMBER_GAP` digit heights
starts a new number.

    python -c "from edge_app.read.layout import reading_order; print(reading_order([(0, 0, 7, 10), (9, 1, 7, 10)]))"
"""

from __future__ import annotations

import numpy as np

NUMBER_GAP = 1.2  # a gap wider than this many digit heights starts a new number (form cells are wide)
DIGIT_ASPECT = 0.72  # typical width / height of a handwritten digit ("1" is narrow: gaps use at least this)
MAX_TILT_DEG = 45.0  # neighbours further from level than this are on another line, not the same row
SAME_LINE = 0.55  # two digits are on one line if their levelled centres differ by less than this many heights
REACH = 2.5  # ... and lie within this many heights of each other along the line


def writing_angle(centres: np.ndarray, heights: np.ndarray) -> float:
    """The direction of the rows (radians): the median angle to each digit's nearest side neighbour."""
    n = len(centres)
    if n < 2:
        return 0.0
    d = centres[None, :, :] - centres[:, None, :]
    dist = np.hypot(d[..., 0], d[..., 1])
    np.fill_diagonal(dist, np.inf)
    angle = np.arctan2(d[..., 1], d[..., 0])
    angle = (angle + np.pi / 2) % np.pi - np.pi / 2  # a neighbour on the left counts like one on the right
    beside = np.abs(angle) <= np.radians(MAX_TILT_DEG)
    dist = np.where(beside, dist, np.inf)
    nearest = dist.argmin(axis=1)
    ok = np.isfinite(dist[np.arange(n), nearest]) & (dist[np.arange(n), nearest] < REACH * 2 * heights)
    return float(np.median(angle[np.arange(n), nearest][ok])) if ok.any() else 0.0


def reading_order(boxes, gap: float = NUMBER_GAP) -> list[list[list[int]]]:
    """Lines (top to bottom) of numbers (left to right) of indices into `boxes` (x, y, w, h)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(b)
    if n == 0:
        return []
    centres = b[:, :2] + b[:, 2:] / 2
    heights = np.maximum(b[:, 3], 1.0)
    theta = writing_angle(centres, heights)
    c, s = np.cos(theta), np.sin(theta)
    along = centres[:, 0] * c + centres[:, 1] * s
    across = -centres[:, 0] * s + centres[:, 1] * c

    # Chain digits into lines: union-find over pairs that sit side by side.
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            h = (heights[i] + heights[j]) / 2
            if abs(across[i] - across[j]) < SAME_LINE * h and abs(along[i] - along[j]) < REACH * h + b[i, 2] + b[j, 2]:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    # Numbers far apart on one row did not chain: join groups that sit at the same level.
    height = float(np.median(heights))
    lines: list[list[int]] = []
    for g in sorted(groups.values(), key=lambda g: float(np.mean(across[g]))):
        if lines and abs(np.mean(across[g]) - np.mean(across[lines[-1]])) < SAME_LINE * height:
            lines[-1] += g
        else:
            lines.append(g)
    return [split_at_gaps(sorted(line, key=lambda i: along[i]), along, b, gap) for line in lines]


def split_at_gaps(line: list[int], along: np.ndarray, b: np.ndarray, gap: float) -> list[list[int]]:
    """Split one line (indices in writing order) where the space between digits exceeds `gap` heights.

    `along`: each box's centre along the writing direction; `b`: the boxes (N, 4) x, y, w, h. A "1" is a
    narrow box: gaps are measured as if every digit were at least a typical digit wide.
    """
    height = float(np.median(b[line, 3]))
    half = {i: max(b[i, 2], DIGIT_ASPECT * height) / 2 for i in line}
    numbers = [[line[0]]]
    for prev, cur in zip(line[:-1], line[1:], strict=True):
        space = (along[cur] - half[cur]) - (along[prev] + half[prev])
        if space > gap * height:
            numbers.append([cur])
        else:
            numbers[-1].append(cur)
    return numbers
