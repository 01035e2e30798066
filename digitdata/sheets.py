"""Mark sheets: ruled tables of handwritten marks, rendered from MNIST digits, with every cell's truth.

`render_sheet` draws what `digitlite read --table` reads: a page holding a ruled table (a printed header row,
a column of printed names, then columns of handwritten marks of 1-3 digits, some cells left empty), a printed
title above it, photographed a little skewed and in perspective (blur, noise, JPEG). `Sheet.cells` holds each
cell's truth: the digits written in it, "" for an empty cell; `Sheet.kinds` says which cells hold printed text
("header", "name") rather than marks ("mark", "empty"). Deterministic by seed; numpy and OpenCV.

    python -m digitdata.sheets --count 4 --seed 1 --out /tmp/sheets   # PNGs and each one's cells as CSV
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

HEADER_WORDS = ("Test", "Quiz", "Exam", "Lab", "Oral", "Essay", "Term", "Home", "Proj", "Viva", "Mark", "Total")
NAMES = ("Anna Berg", "Ben Carter", "Chloe Dunn", "Dev Patel", "Emma Fox", "Felix Gray", "Gina Hart", "Hugo Ives",
         "Iris Jones", "Jack Kerr", "Kate Lowe", "Liam Moss", "Mia Nash", "Noah Orr", "Olga Pike", "Paul Quinn")
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX)
MNIST_INK = 60  # of 255: MNIST pixels above this are the digit's ink (for its box)


@dataclass(frozen=True)
class SheetConfig:
    """The ranges `render_sheet` draws from."""

    rows: tuple[int, int] = (6, 10)  # rows of marks, below the header row
    marks: tuple[int, int] = (3, 6)  # columns of marks, right of the names
    cell_px: tuple[float, float] = (46.0, 64.0)  # px: a row's height
    mark_aspect: tuple[float, float] = (1.5, 2.2)  # a mark column's width, in row heights
    name_aspect: float = 3.2  # the name column's width, in row heights
    digits: tuple[int, int] = (1, 3)  # digits in a mark, a two-digit mark as likely as the rest together
    empty_p: float = 0.15  # a mark cell left empty
    digit_height: tuple[float, float] = (0.45, 0.7)  # of the row's height
    rule_px: tuple[int, int] = (1, 3)  # rule thickness
    rule_grey: tuple[int, int] = (0, 110)  # rules' grey level (0 black)
    skew_deg: tuple[float, float] = (0.0, 4.0)  # degrees: the sheet turned by this much, either way
    perspective: float = 0.02  # corners moved by up to this share of the picture's side
    margin: tuple[float, float] = (0.06, 0.14)  # paper around the table, in shares of its size
    blur_sigma: tuple[float, float] = (0.0, 0.9)  # px
    noise_sigma: tuple[float, float] = (0.0, 5.0)  # grey levels
    jpeg_quality: tuple[int, int] = (70, 95)


@dataclass
class Sheet:
    """One rendered sheet: the picture, each cell's truth and kind, and the table's outer corners."""

    image_bgr: np.ndarray  # (H, W, 3) uint8
    cells: list[list[str]]  # rows top to bottom, cells left to right: the digits written there, "" for none
    kinds: list[list[str]]  # "header", "name" (printed text), "mark", "empty"
    corners: np.ndarray  # (4, 2) float: the table's corners in the picture, clockwise from top left
    params: dict  # the random choices made


def _mark(rng, cfg: SheetConfig) -> str:
    n = 2 if rng.random() < 0.5 else int(rng.integers(cfg.digits[0], cfg.digits[1] + 1))
    first = int(rng.integers(1 if n > 1 else 0, 10))
    return str(first) + "".join(str(int(d)) for d in rng.integers(0, 10, n - 1))


def _digit_ink(images: np.ndarray, index: int) -> np.ndarray:
    """One MNIST digit cropped to its ink (bright on black)."""
    d = images[index]
    ys, xs = np.nonzero(d > MNIST_INK)
    return d[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else d


def _write_number(rng, page: np.ndarray, text: str, box: tuple[int, int, int, int], by_digit: dict, images,
                  cfg: SheetConfig, ink: np.ndarray) -> None:
    """MNIST test digits of `text` side by side, centred in `box` (x, y, w, h) with some jitter."""
    x, y, w, h = box
    height = h * rng.uniform(*cfg.digit_height)
    parts = []
    for ch in text:
        pick = by_digit[int(ch)]
        d = _digit_ink(images, int(pick[rng.integers(len(pick))]))
        scale = height / d.shape[0]
        parts.append(cv2.resize(d, (max(1, round(d.shape[1] * scale)), max(1, round(height))),
                                interpolation=cv2.INTER_LINEAR))
    gap = [round(height * rng.uniform(0.08, 0.3)) for _ in parts[1:]]
    width = sum(p.shape[1] for p in parts) + sum(gap)
    if width > 0.8 * w:  # too wide for the cell: written smaller
        f = 0.8 * w / width
        parts = [cv2.resize(p, (max(1, round(p.shape[1] * f)), max(1, round(p.shape[0] * f)))) for p in parts]
        gap = [round(g * f) for g in gap]
        width = sum(p.shape[1] for p in parts) + sum(gap)
    ph = max(p.shape[0] for p in parts)
    left = x + (w - width) / 2 + rng.uniform(-0.2, 0.2) * (w - width)
    top = y + (h - ph) / 2 + rng.uniform(-0.12, 0.12) * (h - ph)
    cx = int(round(left))
    for k, p in enumerate(parts):
        py = int(round(top))
        alpha = (p.astype(np.float32) / 255.0)[..., None]
        region = page[py:py + p.shape[0], cx:cx + p.shape[1]]
        alpha = alpha[:region.shape[0], :region.shape[1]]
        region[:] = (region * (1 - alpha) + ink * alpha).astype(np.uint8)
        cx += p.shape[1] + (gap[k] if k < len(gap) else 0)


def _print(page: np.ndarray, text: str, box: tuple[int, int, int, int], font: int, height: float,
           colour=(25, 25, 25), left: bool = False) -> None:
    """Printed text in `box`, `height` px tall (cap height), centred or at the left."""
    x, y, w, h = box
    scale = height / cv2.getTextSize("H", font, 1.0, 1)[0][1]
    thick = max(1, round(scale * 1.2))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    if tw > 0.92 * w:
        scale *= 0.92 * w / tw
        (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    ox = x + (int(0.06 * w) if left else (w - tw) // 2)
    cv2.putText(page, text, (ox, y + (h + th) // 2), font, scale, colour, thick, cv2.LINE_AA)


def _camera(rng, page: np.ndarray, corners: np.ndarray, cfg: SheetConfig, paper) -> tuple[np.ndarray, np.ndarray, dict]:
    """The page turned, in perspective, blurred, noisy and JPEG-compressed; the corners moved with it."""
    h, w = page.shape[:2]
    angle = rng.uniform(*cfg.skew_deg) * rng.choice([-1.0, 1.0])
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(-1, 1, (4, 2)).astype(np.float32) * cfg.perspective * max(h, w)
    dst = cv2.transform(src[None], turn)[0] + jitter
    dst -= dst.min(axis=0)
    size = (int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1)
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    out = cv2.warpPerspective(page, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=tuple(int(c) for c in paper))
    sigma = rng.uniform(*cfg.blur_sigma)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    noise = rng.normal(0, rng.uniform(*cfg.noise_sigma), out.shape)
    out = np.clip(out + noise, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*cfg.jpeg_quality))])
    out = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if ok else out
    moved = cv2.perspectiveTransform(corners[None].astype(np.float32), m)[0]
    return out, moved, {"angle_deg": float(angle), "blur_sigma": float(sigma)}


def render_sheet(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray,
                 cfg: SheetConfig = SheetConfig()) -> Sheet:  # noqa: B008
    """One mark sheet photographed.

    Args:
        rng: the only source of randomness.
        images, labels: MNIST digits (N, 28, 28) uint8, bright on black, and their labels (use the test set
            for evaluation).
        cfg: the ranges drawn from.
    """
    n_rows, n_marks = int(rng.integers(cfg.rows[0], cfg.rows[1] + 1)), int(rng.integers(cfg.marks[0], cfg.marks[1] + 1))
    row_h = rng.uniform(*cfg.cell_px)
    widths = [row_h * cfg.name_aspect] + [row_h * rng.uniform(*cfg.mark_aspect)] * n_marks
    xs = np.round(np.concatenate([[0], np.cumsum(widths)])).astype(int)
    ys = np.round(np.arange(n_rows + 2) * row_h).astype(int)
    margin = rng.uniform(*cfg.margin)
    ox, oy = int(margin * xs[-1]) + 10, int(margin * ys[-1] + 1.5 * row_h)
    w, h = xs[-1] + 2 * ox, ys[-1] + oy + int(margin * ys[-1]) + 10
    paper = np.array([rng.integers(225, 250)] * 3, np.float32) - rng.integers(0, 12, 3)
    page = np.empty((h, w, 3), np.uint8)
    page[:] = paper.astype(np.uint8)
    font = int(FONTS[rng.integers(len(FONTS))])
    ink = np.array([[20, 20, 25], [150, 50, 20], [30, 30, 140], [70, 70, 75]][rng.integers(4)], np.float32)
    _print(page, "Mark sheet  Class B", (ox, int(oy - 1.4 * row_h), xs[-1], int(row_h)), font, 0.35 * row_h,
           left=True)

    by_digit = {d: np.flatnonzero(labels == d) for d in range(10)}
    words = rng.permutation(len(HEADER_WORDS))
    names = rng.permutation(len(NAMES))
    cells, kinds = [], []
    for r in range(n_rows + 1):
        row_cells, row_kinds = [], []
        for c in range(n_marks + 1):
            box = (ox + xs[c], oy + ys[r], xs[c + 1] - xs[c], ys[r + 1] - ys[r])
            if r == 0:
                _print(page, "Name" if c == 0 else HEADER_WORDS[words[(c - 1) % len(words)]], box, font, 0.32 * row_h)
                row_cells.append("")
                row_kinds.append("header")
            elif c == 0:
                _print(page, NAMES[names[(r - 1) % len(names)]], box, font, 0.3 * row_h, left=True)
                row_cells.append("")
                row_kinds.append("name")
            elif rng.random() < cfg.empty_p:
                row_cells.append("")
                row_kinds.append("empty")
            else:
                text = _mark(rng, cfg)
                _write_number(rng, page, text, box, by_digit, images, cfg, ink)
                row_cells.append(text)
                row_kinds.append("mark")
        cells.append(row_cells)
        kinds.append(row_kinds)

    thick = int(rng.integers(cfg.rule_px[0], cfg.rule_px[1] + 1))
    grey = int(rng.integers(*cfg.rule_grey))
    for y in ys:
        cv2.line(page, (ox, oy + int(y)), (ox + int(xs[-1]), oy + int(y)), (grey,) * 3, thick)
    for x in xs:
        cv2.line(page, (ox + int(x), oy), (ox + int(x), oy + int(ys[-1])), (grey,) * 3, thick)
    corners = np.float32([[ox, oy], [ox + xs[-1], oy], [ox + xs[-1], oy + ys[-1]], [ox, oy + ys[-1]]])
    image, moved, camera = _camera(rng, page, corners, cfg, paper)
    params = {"rows": n_rows + 1, "columns": n_marks + 1, "row_px": float(row_h), "rule_px": thick,
              "rule_grey": grey, **camera}
    return Sheet(image, cells, kinds, moved, params)


def cells_csv(cells: list[list[str]]) -> str:
    """Rows of cell values as CSV text."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(cells)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m digitdata.sheets", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--count", type=int, default=4, help="sheets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="folder for sheet_NN.png and sheet_NN.csv")
    args = parser.parse_args(argv)
    from digitdata.atomic import write_bytes, write_text
    from digitdata.mnist import load_mnist

    m = load_mnist()
    rng = np.random.default_rng(args.seed)
    for i in range(args.count):
        sheet = render_sheet(rng, m.x_test, m.y_test)
        write_bytes(args.out / f"sheet_{i:02d}.png", cv2.imencode(".png", sheet.image_bgr)[1].tobytes())
        write_text(args.out / f"sheet_{i:02d}.csv", cells_csv(sheet.cells))
    print(f"{args.count} sheets in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
