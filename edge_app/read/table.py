"""Ruled tables read cell by cell: a mark sheet, a score pad or a register becomes rows and columns.

`TableReader.read(frame) -> Table` owns the table: it finds the ruled table on the page with OpenCV's
morphology, undoes its skew and perspective, reads each cell on its own with the reader's recognizer, and
says what each cell holds. The steps, each a small function of plain arrays:

  * ink: an adaptive threshold of the grey picture (read at most the reader's work side);
  * the table: the largest connected net of ink, its outer quad (the convex hull simplified to four corners,
    its sides then fitted to the outer rules);
  * rectified: the picture warped so that quad is an upright rectangle (skew and perspective undone);
  * rules: horizontal and vertical openings of the ink longer than any writing (a share of the table, then more
    than a cell) keep the rules and drop the writing; where a row (column) of rule pixels spans a share of the
    table and is thin beside the cells, there is a rule; their crossings make the grid, and a rule missing between
    two grid cells joins them (a merged cell: its value in its first cell);
  * cells: the ink inside each cell's rules (the rules taken out, specks dropped), cut with the reader's margins
    (blank paper where the cell ends) and read by its recognizer (`DigitReader.recognize`:
    `digitdata.lines.line_input`, the model, CTC greedy): one number per cell, or nothing.

A cell is `empty` (no ink), a `number` (digits read surely), `unsure` (digits read, the least sure below
`TableSettings.sure_above`), or `text` (ink, but no number read: a printed header, a name, a mark): in CSV,
"37", "37?", `TEXT_MARK` and "". The work per page is bounded: the picture at most the work side, at most
`TableSettings.max_cells` cells (a finer grid is refused as not a table). The tuned numbers:
`edge_app.config.TableSettings`.

    digitlite read sheet.jpg --table marks.csv
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from digitdata.crops import ink_is_dark
from digitdata.frames import as_bgr_uint8, as_gray_uint8, shrink
from edge_app.config import TableSettings
from edge_app.read.pipeline import DigitReader, crop_roi

TEXT_MARK = "[text]"  # a cell's CSV value where it holds ink that is not a number: "text not read"
STATES = ("empty", "number", "unsure", "text", "merged")


class TableError(ValueError):
    """The picture holds no ruled table this reader can read, or one too fine to read in bounded work."""


@dataclass
class Cell:
    """One cell of a table: what it holds, how sure the reading is, and where it is."""

    state: str  # one of STATES ("merged": covered by the cell above or left of it)
    text: str = ""  # the digits read ("" unless number or unsure)
    confidence: float = 0.0  # the least sure digit's confidence (0 when nothing was read)
    quad: np.ndarray | None = None  # (4, 2) float: the cell's corners in the picture, clockwise from top left
    span: tuple[int, int] = (1, 1)  # rows and columns it covers (a merged cell's first cell)

    @property
    def value(self) -> str:
        """The CSV value: "37", "37?" (unsure), TEXT_MARK (ink, not a number) or "" (empty, merged)."""
        if self.state == "number":
            return self.text
        if self.state == "unsure":
            return self.text + "?"
        return TEXT_MARK if self.state == "text" else ""

    def to_dict(self) -> dict:
        x0, y0 = self.quad.min(axis=0) if self.quad is not None else (0, 0)
        x1, y1 = self.quad.max(axis=0) if self.quad is not None else (0, 0)
        return {"value": self.value, "state": self.state, "text": self.text,
                "confidence": round(float(self.confidence), 4),
                "box": [int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))],
                "span": list(self.span)}


@dataclass
class Table:
    """A table read: its cells row by row, its outer corners in the picture, and how long each step took."""

    cells: list[list[Cell]]
    corners: np.ndarray  # (4, 2) float: the table's corners in the picture, clockwise from top left
    latency_ms: dict[str, float] = field(default_factory=dict)  # find, read, total

    @property
    def rows(self) -> int:
        return len(self.cells)

    @property
    def columns(self) -> int:
        return len(self.cells[0]) if self.cells else 0

    def values(self) -> list[list[str]]:
        """Each cell's CSV value, row by row."""
        return [[c.value for c in row] for row in self.cells]

    def csv_text(self) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(self.values())
        return out.getvalue()

    def write_csv(self, path: str | Path) -> None:
        """The table as CSV at `path`, written atomically (the old file or the whole new one)."""
        from digitdata.atomic import write_text

        write_text(path, self.csv_text())

    def to_dict(self) -> dict:
        return {"rows": self.rows, "columns": self.columns, "values": self.values(),
                "cells": [[c.to_dict() for c in row] for row in self.cells],
                "corners": [[round(float(x), 1), round(float(y), 1)] for x, y in self.corners],
                "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()}}


# ---------------------------------------------------------------------------------------------- the table


def ink_mask(gray_dark: np.ndarray, s: TableSettings) -> np.ndarray:
    """Ink (255) where the picture is darker than its neighbourhood by `threshold_c` grey levels, else 0."""
    block = max(15, int(max(gray_dark.shape) * s.threshold_block) | 1)
    return cv2.adaptiveThreshold(gray_dark, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block,
                                 s.threshold_c)


def table_quads(ink: np.ndarray, s: TableSettings, tries: int = 3) -> list[np.ndarray]:
    """The outer quads (4, 2) of the largest nets of ink, largest first: where a table may be.

    A table's rules are one connected net; its quad is the net's convex hull simplified to four corners
    (`_four_corners`), then its sides fitted to the net's outline (`fit_sides`). Nets whose box covers less than
    `min_table_share` of the picture are not tables."""
    joined = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))  # a rule broken by a pixel
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    area = stats[1:, cv2.CC_STAT_WIDTH].astype(np.int64) * stats[1:, cv2.CC_STAT_HEIGHT]
    order = np.argsort(-area)[:tries]
    quads = []
    for k in order:
        if area[k] < s.min_table_share * ink.size:
            break
        x, y, w, h = stats[k + 1, :4]
        part = (labels[y:y + h, x:x + w] == k + 1).astype(np.uint8)
        outline = max(cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=len)
        outline = outline.reshape(-1, 2).astype(np.float32) + np.float32([x, y])
        quads.append(fit_sides(_four_corners(cv2.convexHull(outline).reshape(-1, 2)), outline))
    return quads


def _four_corners(hull: np.ndarray) -> np.ndarray:
    """A convex hull's four corners, clockwise from top left: where its four longest sides (of the hull
    simplified) meet, so a corner cut off or rounded (rule ends that do not meet) is put back; its minimum-area
    rectangle where that gives no sensible quad."""
    closed = hull.reshape(-1, 1, 2)
    poly = cv2.approxPolyDP(closed, 0.01 * cv2.arcLength(closed, True), True).reshape(-1, 2).astype(np.float64)
    box = cv2.boxPoints(cv2.minAreaRect(closed)).astype(np.float32)
    if len(poly) < 4:
        return order_corners(box)
    sides = [(poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))]
    longest = sorted(np.argsort([-np.linalg.norm(b - a) for a, b in sides])[:4])
    corners = [_meet(sides[longest[i]], sides[longest[(i + 1) % 4]]) for i in range(4)]
    if any(c is None for c in corners):
        return order_corners(box)
    quad = np.float32(corners)
    lo, hi = hull.min(axis=0), hull.max(axis=0)
    reach = 0.1 * (hi - lo)  # a corner far outside the hull's box is two nearly parallel sides meeting
    if (quad < lo - reach).any() or (quad > hi + reach).any() or not cv2.isContourConvex(quad.reshape(-1, 1, 2)):
        return order_corners(box)
    return order_corners(quad)


def fit_sides(quad: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """The quad's corners refined: each side a line fitted to the outline's points along its middle (the rules
    themselves), the corners where those lines meet. A side that is not one straight rule (a table cut by the
    picture's edge: rule ends, writing) is kept as it was."""
    lines = []
    for i in range(4):
        a, b = quad[i].astype(np.float64), quad[(i + 1) % 4].astype(np.float64)
        length = np.linalg.norm(b - a)
        if length < 1:
            return quad
        along, normal = (b - a) / length, np.array([-(b - a)[1], (b - a)[0]]) / length
        rel = outline.astype(np.float64) - a
        t, d = rel @ along / length, np.abs(rel @ normal)
        chosen = (t > 0.15) & (t < 0.85) & (d < max(3.0, 0.02 * length))
        covered = len(np.unique(np.round(t[chosen] * length))) / (0.7 * length)
        if covered < 0.5:  # not one line along most of the side
            lines.append((a, b))
            continue
        near = outline[chosen]
        vx, vy, x0, y0 = cv2.fitLine(near.reshape(-1, 1, 2), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([x0, y0], np.float64), np.array([x0 + vx, y0 + vy], np.float64)))
    corners = [_meet(lines[i - 1], lines[i]) for i in range(4)]
    if any(c is None for c in corners):
        return quad
    refined = np.float32(corners)
    if np.abs(refined - quad).max() > 0.1 * np.linalg.norm(quad[2] - quad[0]):  # a fit gone astray
        return quad
    return refined


def _meet(first, second) -> tuple[float, float] | None:
    """Where the lines through two sides (each two points) cross; None for (nearly) parallel ones."""
    (p, q), (r, t) = first, second
    d1, d2 = q - p, t - r
    cross = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(cross) < 1e-6 * np.linalg.norm(d1) * np.linalg.norm(d2):
        return None
    u = ((r[0] - p[0]) * d2[1] - (r[1] - p[1]) * d2[0]) / cross
    return float(p[0] + u * d1[0]), float(p[1] + u * d1[1])


def order_corners(quad: np.ndarray) -> np.ndarray:
    """Four points clockwise from the top left (the smallest x + y), as the picture shows them."""
    q = np.asarray(quad, np.float32).reshape(4, 2)
    centre = q.mean(axis=0)
    q = q[np.argsort(np.arctan2(q[:, 1] - centre[1], q[:, 0] - centre[0]))]  # clockwise (y points down)
    start = int(np.argmin(q.sum(axis=1)))
    return np.roll(q, -start, axis=0)


def rectify(gray: np.ndarray, quad: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """The picture inside `quad` warped upright (its sides' lengths kept, the long side at most `max_side`),
    and the homography from rectified to picture pixels."""
    tl, tr, br, bl = quad
    w = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    h = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    f = min(1.0, max_side / max(w, h, 1.0))
    w, h = max(2, int(round(w * f))), max(2, int(round(h * f)))
    target = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    to_rect = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    flat = cv2.warpPerspective(gray, to_rect, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return flat, np.linalg.inv(to_rect)


# ---------------------------------------------------------------------------------------------- rules


def find_rules(ink: np.ndarray, s: TableSettings):
    """An upright table's rules: (horizontal mask, vertical mask, horizontal rules, vertical rules), each rule
    (first, last) pixel row or column (`rule_positions`).

    Rules are straight runs of ink (breaks up to `rule_gap_px` bridged) longer than `rule_kernel` of the table
    (openings by a line); then, once the
    first look has given the cells' pitch, longer than `rule_cells` cells: a rule runs on across the rules it
    crosses, while writing stays inside its cell (a column of 1s is not a rule)."""
    h, w = ink.shape
    kh, kv = max(s.min_cell_px, int(w * s.rule_kernel)), max(s.min_cell_px, int(h * s.rule_kernel))
    gap = 2 * s.rule_gap_px + 1
    along = (cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((1, gap), np.uint8)),  # a faint rule's breaks bridged
             cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((gap, 1), np.uint8)))
    for _ in range(2):
        horizontal = cv2.morphologyEx(along[0], cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (kh, 1)))
        vertical = cv2.morphologyEx(along[1], cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, kv)))
        ys, xs = thin_rules(rule_positions(horizontal, 0, s), s), thin_rules(rule_positions(vertical, 1, s), s)
        longer = (_across(kh, xs, w, s), _across(kv, ys, h, s))
        if longer == (kh, kv):
            break
        kh, kv = longer
    return horizontal, vertical, ys, xs


def _across(kernel: int, rules: list[tuple[int, int]], side: int, s: TableSettings) -> int:
    """The opening's length once the rules across it are known: `rule_cells` of their median pitch, at most
    nine tenths of the table."""
    if len(rules) < 2:
        return kernel
    pitch = float(np.median(np.diff([(a + b) / 2 for a, b in rules])))
    return int(max(kernel, min(s.rule_cells * pitch, 0.9 * side)))


def rule_positions(mask: np.ndarray, axis: int, s: TableSettings) -> list[tuple[int, int]]:
    """The rules of one direction as (first, last) pixel rows (axis 0: horizontal rules) or columns (axis 1).

    A rule is where rule pixels cover at least `rule_span` of the table across (a rule a pixel or two off
    straight counts: the mask is widened by `rule_slack` first); it reaches as far either way as they cover
    `rule_edge` of it. Rules closer than `min_cell_px` are one."""
    m = mask if axis == 0 else mask.T
    slack = max(1, s.rule_slack)
    wide = cv2.dilate(m, np.ones((2 * slack + 1, 1), np.uint8))
    cover = (wide > 0).mean(axis=1)
    strong = cover >= s.rule_span
    found: list[tuple[int, int]] = []
    i, n = 0, len(cover)
    while i < n:
        if not strong[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and strong[j + 1]:
            j += 1
        a, b = i, j
        while a > 0 and cover[a - 1] >= s.rule_edge:
            a -= 1
        while b + 1 < n and cover[b + 1] >= s.rule_edge:
            b += 1
        if found and a - found[-1][1] < s.min_cell_px:
            found[-1] = (found[-1][0], b)
        else:
            found.append((a, b))
        i = j + 1
    return found


def thin_rules(rules: list[tuple[int, int]], s: TableSettings) -> list[tuple[int, int]]:
    """The rules that are thin beside the cells they bound (a ruled line, not a pen stroke: a digit's bar found
    as a "rule" is as thick as a share of its glyph): at most `rule_max_share` of the median spacing."""
    if len(rules) < 2:
        return rules
    centres = np.array([(a + b) / 2 for a, b in rules])
    spacing = float(np.median(np.diff(centres)))
    return [(a, b) for a, b in rules if b - a + 1 - 2 * s.rule_slack <= s.rule_max_share * spacing]


def _with_edges(rules: list[tuple[int, int]], size: int, s: TableSettings) -> list[tuple[int, int]]:
    """The rules with the table's own edges added where none lies near them (a table cut by the picture)."""
    out = list(rules)
    if not out or out[0][0] >= s.min_cell_px:
        out.insert(0, (0, 0))
    if out[-1][1] <= size - 1 - s.min_cell_px:
        out.append((size - 1, size - 1))
    return out


def _present(mask: np.ndarray, rule: tuple[int, int], lo: int, hi: int, axis: int, s: TableSettings) -> bool:
    """Whether a rule (first, last) really runs between lo and hi along itself (a merged cell lacks it)."""
    a, b = max(0, rule[0] - s.rule_slack), rule[1] + s.rule_slack + 1
    band = mask[a:b, lo:hi] if axis == 0 else mask[lo:hi, a:b].T
    if band.size == 0:
        return True
    return float((band > 0).any(axis=0).mean()) >= s.rule_present


# ---------------------------------------------------------------------------------------------- cells


def _groups(rows: int, cols: int, right: np.ndarray, below: np.ndarray) -> dict[tuple[int, int], tuple[int, int]]:
    """Merged cells: for each grid cell covered by a larger one, the larger one's first cell (row, col); a cell
    is joined to its neighbour where the rule between them is missing, and a group is kept only as a rectangle."""
    parent = list(range(rows * cols))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols and not right[r, c]:
                parent[root(r * cols + c + 1)] = root(r * cols + c)
            if r + 1 < rows and not below[r, c]:
                parent[root((r + 1) * cols + c)] = root(r * cols + c)
    members: dict[int, list[int]] = {}
    for i in range(rows * cols):
        members.setdefault(root(i), []).append(i)
    covered = {}
    for group in members.values():
        rs, cs = [i // cols for i in group], [i % cols for i in group]
        r0, c0 = min(rs), min(cs)
        if len(group) > 1 and len(group) == (max(rs) - r0 + 1) * (max(cs) - c0 + 1):  # a rectangle
            covered.update({(i // cols, i % cols): (r0, c0) for i in group})
    return covered


def ink_box(ink: np.ndarray, inner: tuple[int, int, int, int], s: TableSettings) -> tuple[int, int, int, int] | None:
    """The box (x, y, w, h) of a cell's writing in `ink` (the cell between its rules, the rules taken out): its
    ink parts that reach into `inner` (the cell inset from its rules) and are taller or wider than `ink_min_extent`
    of its height, or than `ink_min_px` in a large cell (specks, dust and rule ends are not writing); a part
    that reaches under the inset (a digit touching a rule) is kept whole. None when there is none."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    ix, iy, iw, ih = inner
    least = min(max(2.0, s.ink_min_extent * ih), s.ink_min_px)
    keep = [k for k in range(1, n) if max(stats[k, 2], stats[k, 3]) >= least
            and stats[k, 0] < ix + iw and stats[k, 0] + stats[k, 2] > ix
            and stats[k, 1] < iy + ih and stats[k, 1] + stats[k, 3] > iy]
    if not keep:
        return None
    x0 = min(stats[k, 0] for k in keep)
    y0 = min(stats[k, 1] for k in keep)
    x1 = max(stats[k, 0] + stats[k, 2] for k in keep)
    y1 = max(stats[k, 1] + stats[k, 3] for k in keep)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def cut_writing(flat: np.ndarray, box: tuple[int, int, int, int], inner: tuple[int, int, int, int],
                pad_height: float, pad_ends: float) -> np.ndarray:
    """The writing in `box` with the reader's margins around it (in the writing's heights, as the reader cuts a
    region): what lies inside the cell's rules (`inner`: x, y, w, h) is cut from the picture, the rest is blank
    paper (the cell's paper grey), so a number that fills its cell is read as a loosely cut one, without the
    rules."""
    x, y, w, h = box
    ix, iy, iw, ih = inner
    want = (int(x - pad_ends * h), int(y - pad_height * h), int(np.ceil(x + w + pad_ends * h)),
            int(np.ceil(y + h + pad_height * h)))
    x0, y0 = max(ix, want[0]), max(iy, want[1])
    x1, y1 = min(ix + iw, want[2]), min(iy + ih, want[3])
    part = flat[y0:y1, x0:x1]
    paper = int(np.percentile(flat[iy:iy + ih, ix:ix + iw], 90))  # the ink is dark: paper is the bright side
    return cv2.copyMakeBorder(part, y0 - want[1], want[3] - y1, x0 - want[0], want[2] - x1, cv2.BORDER_CONSTANT,
                              value=paper)


class TableReader:
    """Reads the ruled table in a picture, cell by cell, with a `DigitReader`'s recognizer and margins.

    Args:
        reader: the reader whose recognizer, margins, polarity, region of interest and work side are used.
        settings: the table's tuned numbers.
    """

    def __init__(self, reader: DigitReader, settings: TableSettings = TableSettings()):  # noqa: B008
        self.reader, self.settings = reader, settings

    def read(self, frame) -> Table:
        """The table in one picture (grey or BGR).

        Raises:
            TableError: no ruled table (at least two rules each way), or more cells than `max_cells`.
            ValueError: the array is not an image, or the region of interest lies outside it.
        """
        started = time.perf_counter()
        rs = self.reader.settings
        gray = as_gray_uint8(frame)
        gray, ox, oy = crop_roi(gray, self.reader.roi)
        polarity = self.reader.polarity
        dark = ink_is_dark(gray) if polarity == "auto" else polarity == "dark"
        f = min(1.0, rs.work_side / max(gray.shape[:2]))
        if f < 1:  # bounded work: the picture at most the reader's work side
            gray = shrink(gray, (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f))), dark)
        try:
            flat, to_picture, grid = self._find(gray if dark else 255 - gray)  # from here on the ink is dark
        except TableError:
            if polarity != "auto" or _tail_is_dark(gray) == dark:
                raise
            # the guess is made on a thumbnail, where a dense grid is a flat grey: the other polarity, once, where
            # the grey levels' longer tail says so
            flat, to_picture, grid = self._find(255 - gray if dark else gray)
        t_found = time.perf_counter()
        cells = self._read_cells(flat, grid)
        scale = np.array([[1 / f, 0, ox], [0, 1 / f, oy], [0, 0, 1]]) @ to_picture
        for row in cells:
            for cell in row:
                cell.quad = _mapped(cell.quad, scale)
        h, w = flat.shape
        corners = _mapped(np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]), scale)
        done = time.perf_counter()
        return Table(cells, corners, {"find": (t_found - started) * 1e3, "read": (done - t_found) * 1e3,
                                      "total": (done - started) * 1e3})

    def _find(self, gray: np.ndarray):
        """The rectified table, its homography to the picture, and its grid (rules each way, merged cells)."""
        s = self.settings
        ink = ink_mask(gray, s)
        quads = table_quads(ink, s)
        best = None
        for quad in quads:
            flat, to_picture = rectify(gray, quad, self.reader.settings.work_side)
            flat_ink = ink_mask(flat, s)
            horizontal, vertical, ys, xs = find_rules(flat_ink, s)
            if len(ys) >= 2 and len(xs) >= 2:
                best = flat, to_picture, flat_ink, horizontal, vertical, ys, xs
                break
            best = best or (None, None, None, None, None, ys, xs)
        if best is None or best[0] is None:
            found = f" (found {len(best[5])} horizontal and {len(best[6])} vertical)" if best else ""
            raise TableError("no ruled table found: a table needs ruled rows and columns, at least two rules each way"
                             f"{found}; numbers outside a table are read without the table option (--table)")
        flat, to_picture, flat_ink, horizontal, vertical, ys, xs = best
        ys, xs = _with_edges(ys, flat.shape[0], s), _with_edges(xs, flat.shape[1], s)
        rows, cols = len(ys) - 1, len(xs) - 1
        if rows * cols > s.max_cells:
            raise TableError(f"{rows * cols:,} cells ({rows} rows x {cols} columns): a table may have at most "
                             f"{s.max_cells:,} (TableSettings.max_cells), graph paper or a pattern is not one; crop "
                             f"the picture to the table")
        right = np.array([[_present(vertical, xs[c + 1], ys[r][1] + 1, ys[r + 1][0], 1, s) for c in range(cols)]
                          for r in range(rows)], bool).reshape(rows, cols)
        below = np.array([[_present(horizontal, ys[r + 1], xs[c][1] + 1, xs[c + 1][0], 0, s) for c in range(cols)]
                          for r in range(rows)], bool).reshape(rows, cols)
        rules = cv2.dilate(horizontal | vertical, np.ones((3, 3), np.uint8))  # with their anti-aliased fringe
        writing = cv2.bitwise_and(flat_ink, cv2.bitwise_not(rules))
        return flat, to_picture, (writing, ys, xs, _groups(rows, cols, right, below))

    def _read_cells(self, flat: np.ndarray, grid) -> list[list[Cell]]:
        flat_ink, ys, xs, covered = grid
        rows, cols = len(ys) - 1, len(xs) - 1
        ends = {}  # a merged cell's last row and column
        for (r, c), first in covered.items():
            last = ends.get(first, first)
            ends[first] = (max(last[0], r), max(last[1], c))
        cells = []
        for r in range(rows):
            row = []
            for c in range(cols):
                first = covered.get((r, c), (r, c))
                if first != (r, c):
                    row.append(Cell("merged", quad=self._quad(ys, xs, r, c, r, c)))
                    continue
                r1, c1 = ends.get((r, c), (r, c))
                cell = self._read_cell(flat, flat_ink, ys, xs, r, c, r1, c1)
                cell.span = (r1 - r + 1, c1 - c + 1)
                row.append(cell)
            cells.append(row)
        return cells

    @staticmethod
    def _quad(ys, xs, r0, c0, r1, c1) -> np.ndarray:
        x0, x1, y0, y1 = xs[c0][1], xs[c1 + 1][0], ys[r0][1], ys[r1 + 1][0]
        return np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])

    def _read_cell(self, flat, flat_ink, ys, xs, r0, c0, r1, c1) -> Cell:
        """One cell (rows r0..r1, columns c0..c1 of the grid): its ink cut inside its rules and read."""
        s, rs = self.settings, self.reader.settings
        quad = self._quad(ys, xs, r0, c0, r1, c1)
        x0, y0, x1, y1 = int(quad[0, 0]) + 1, int(quad[0, 1]) + 1, int(quad[2, 0]), int(quad[2, 1])
        inset_x, inset_y = int(s.cell_inset * (x1 - x0)) + s.rule_slack, int(s.cell_inset * (y1 - y0)) + s.rule_slack
        inner = (inset_x, inset_y, x1 - x0 - 2 * inset_x, y1 - y0 - 2 * inset_y)  # in the cell
        if inner[2] < s.min_cell_px // 2 or inner[3] < s.min_cell_px // 2:
            return Cell("empty", quad=quad)
        box = ink_box(flat_ink[y0:y1, x0:x1], inner, s)
        if box is None:
            return Cell("empty", quad=quad)
        patch = cut_writing(flat, (box[0] + x0, box[1] + y0, box[2], box[3]), (x0, y0, x1 - x0, y1 - y0),
                            rs.pad_height, rs.pad_ends)
        text, conf, _, _ = self.reader.recognize(patch, True)
        least = min(conf, default=0.0)
        if not text or least < s.number_above:
            return Cell("text", confidence=least, quad=quad)
        return Cell("number" if least >= s.sure_above else "unsure", text, least, quad)


STATE_COLOURS = {"number": (0, 170, 0), "unsure": (0, 140, 255), "text": (160, 160, 160), "empty": (210, 170, 90),
                 "merged": (210, 170, 90)}  # BGR


def draw_table(frame, table: Table) -> np.ndarray:
    """A BGR copy of the picture with the table's cells outlined (green: a number, orange: unsure, grey: text not
    read, blue: empty) and each number written in its cell: the grid the reader read."""
    out = as_bgr_uint8(frame).copy()
    scale = max(out.shape[:2]) / 1000
    thick = max(1, round(2 * scale))
    for row in table.cells:
        for cell in row:
            if cell.quad is None or cell.state == "merged":
                continue
            colour = STATE_COLOURS[cell.state]
            cv2.polylines(out, [np.round(cell.quad).astype(np.int32).reshape(-1, 1, 2)], True, colour, thick)
            if cell.state in ("number", "unsure"):
                x, y = cell.quad.min(axis=0)
                cv2.putText(out, cell.value, (int(x) + 3 * thick, int(y) + round(18 * scale) + thick),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, thick, cv2.LINE_AA)
    return out


def _tail_is_dark(gray: np.ndarray) -> bool:
    """Whether the grey levels reach further below the paper (the median) than above it: dark ink."""
    lo, mid, hi = np.percentile(gray[::4, ::4], (2, 50, 98))
    return mid - lo >= hi - mid


def _mapped(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(np.asarray(points, np.float32).reshape(1, -1, 2), homography)[0]
