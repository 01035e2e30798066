"""Other people's handwriting from MNIST digits: the classifier's training variants (numpy and OpenCV only).

MNIST is some 500 American writers with one kind of pen; the digits a device sees are written with a fine
ballpoint or a marker, by people who flag their 1s and bar their 7s, and scanned or photographed small. Each
variant here is an MNIST *training* digit changed the way those are, then put back in MNIST's form by the same
last step as every real digit (`digitdata.crops.mnist_style`: ink box to 20x20, centre of mass at the centre):

- a writing style, now and then: a 1 with a flag (and sometimes a foot), a 7 with a bar across its stem;
- the pen model of the data engine (`digitdata.pen.restroke_28`): the digit's centre line redrawn by a pen from a
  fine ballpoint (4 % of the digit's height) to a marker (28 %);
- an elastic distortion (Simard et al. 2003: a smoothed random displacement field);
- a low resolution: the digit shrunk to 7-16 px tall and blown up again, as a small scanned answer box is.

`digitlite train --styled N` adds N of them, drawn once per run from its seed. The numbers live in `StyleParams`,
saved in the run's config.json.

    python -m digitdata.handwriting --out /tmp/styles.png   # a sheet: MNIST digits and their variants
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from digitdata.crops import mnist_style
from digitdata.pen import restroke_28

INK = 60  # a 28x28 pixel above this is ink when a style finds the digit's strokes


@dataclass(frozen=True)
class StyleParams:
    """How often, and how much, each change is made to a variant."""

    flag_one_p: float = 0.5  # of the 1s: a flag from the top down to the left (the European 1)
    foot_one_p: float = 0.15  # of the 1s: a foot (a short bar under the stem)
    bar_seven_p: float = 0.35  # of the 7s: a bar across the stem
    pen_p: float = 0.7  # redrawn by the pen model ...
    pen_min: float = 0.04  # ... with a pen of this share of the digit's height (a fine ballpoint) ...
    pen_max: float = 0.28  # ... up to this (a marker), log-uniform between
    elastic_p: float = 0.5  # an elastic distortion ...
    elastic_alpha: tuple[float, float] = (1.0, 2.6)  # ... displacement in px per unit of the smoothed field ...
    elastic_sigma: tuple[float, float] = (3.0, 4.5)  # ... smoothed by a Gaussian this wide (px)
    low_res_p: float = 0.2  # shrunk to a small height (px) and blown up again ...
    low_res_height: tuple[int, int] = (7, 16)  # ... between these

    def to_dict(self) -> dict:
        return asdict(self)


def _ink_rows_cols(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(d > INK)


def flag_one(rng: np.random.Generator, d: np.ndarray, foot: bool = False) -> np.ndarray:
    """A 1 with a flag from its top down to the left (20-35 % of its height, 30-60 degrees), and a foot."""
    out = d.copy()
    ys, xs = _ink_rows_cols(d)
    if len(ys) < 5:
        return out
    top, bottom = int(ys.min()), int(ys.max())
    height = bottom - top + 1
    x_top = float(xs[ys <= top + 1].mean())
    length = rng.uniform(0.2, 0.35) * height
    angle = np.deg2rad(rng.uniform(30, 60))
    end = (x_top - length * np.cos(angle), top + length * np.sin(angle))
    thick = int(rng.integers(1, 3))
    cv2.line(out, (round(x_top), top), (round(end[0]), round(end[1])), 255, thick, cv2.LINE_AA)
    if foot:
        x_bottom = float(xs[ys >= bottom - 1].mean())
        half = rng.uniform(0.12, 0.2) * height
        cv2.line(out, (round(x_bottom - half), bottom), (round(x_bottom + half), bottom), 255, thick, cv2.LINE_AA)
    return out


def bar_seven(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    """A 7 with a short bar across its stem, a little below the middle."""
    out = d.copy()
    ys, xs = _ink_rows_cols(d)
    if len(ys) < 5:
        return out
    top, bottom = int(ys.min()), int(ys.max())
    yb = int(top + rng.uniform(0.45, 0.6) * (bottom - top))
    row = xs[np.abs(ys - yb) <= 1]
    if len(row):
        xc, half = float(row.mean()), rng.uniform(2.5, 4.5)
        cv2.line(out, (round(xc - half), yb), (round(xc + half), yb), 255, int(rng.integers(1, 3)), cv2.LINE_AA)
    return out


def open_four(d: np.ndarray) -> np.ndarray:
    """A 4 open at the top: the top rows between its two uprights wiped."""
    out = d.copy()
    ys, _ = _ink_rows_cols(d)
    if len(ys) < 5:
        return out
    top, bottom = int(ys.min()), int(ys.max())
    last = int(top + 0.2 * (bottom - top))
    cols = np.nonzero(d[top:last + 1].max(axis=0) > INK)[0]
    if len(cols) > 4:
        mid = (int(cols.min()) + int(cols.max())) // 2
        out[top:last + 1, mid - 1:mid + 2] = 0
    return out


def styled(rng: np.random.Generator, digit_28: np.ndarray, label: int, styled_p: float,
           elastic_p: float) -> np.ndarray:
    """The digit as the data engine writes it (`digitdata.engine`, `digitdata.lines`): now and then a flagged 1,
    a barred 7 or an open 4 (`styled_p`), and an elastic distortion (`elastic_p`); not put back in MNIST's form
    (the engine places the digit by its ink)."""
    d = np.array(digit_28, np.uint8, copy=True)
    if label in (1, 4, 7) and rng.random() < styled_p:
        d = flag_one(rng, d) if label == 1 else bar_seven(rng, d) if label == 7 else open_four(d)
    return elastic(rng, d) if rng.random() < elastic_p else d


def elastic(rng: np.random.Generator, d: np.ndarray, alpha: tuple[float, float] = (1.0, 2.6),
            sigma: tuple[float, float] = (3.0, 4.5)) -> np.ndarray:
    """An elastic distortion: every pixel moved by a smoothed random field (Simard et al. 2003)."""
    a, s = rng.uniform(*alpha), rng.uniform(*sigma)
    h, w = d.shape
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), s) * a * s
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), s) * a * s
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(d, xx + dx, yy + dy, cv2.INTER_LINEAR, borderValue=0)


def low_resolution(rng: np.random.Generator, d: np.ndarray, heights: tuple[int, int] = (7, 16)) -> np.ndarray:
    """The digit shrunk to 7-16 px tall (by area) and blown up again by `mnist_style`: a small scanned box."""
    ys, xs = _ink_rows_cols(d)
    if len(ys) < 5:
        return d.copy()
    crop = d[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    f = int(rng.integers(heights[0], heights[1] + 1)) / crop.shape[0]
    small = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
                       interpolation=cv2.INTER_AREA)
    return mnist_style(small, normalize_width=False)


def variant(rng: np.random.Generator, digit_28: np.ndarray, label: int,
            params: StyleParams = StyleParams()) -> np.ndarray:  # noqa: B008
    """One MNIST-form (28x28 uint8, ink bright) digit changed as `StyleParams` says, in MNIST's form again."""
    d = np.asarray(digit_28, np.uint8)
    if label == 1 and rng.random() < params.flag_one_p:
        d = flag_one(rng, d, foot=rng.random() < params.foot_one_p / params.flag_one_p)
    elif label == 7 and rng.random() < params.bar_seven_p:
        d = bar_seven(rng, d)
    if rng.random() < params.pen_p:
        frac = float(np.exp(rng.uniform(np.log(params.pen_min), np.log(params.pen_max))))
        d = restroke_28(rng, d, frac)
    if rng.random() < params.elastic_p:
        d = elastic(rng, d, params.elastic_alpha, params.elastic_sigma)
    if rng.random() < params.low_res_p:
        d = low_resolution(rng, d, params.low_res_height)
    out = mnist_style(d, normalize_width=False)
    return out if out.any() else np.asarray(digit_28, np.uint8)


def variants(seed: int, images: np.ndarray, labels: np.ndarray, count: int,
             params: StyleParams = StyleParams()) -> tuple[np.ndarray, np.ndarray]:  # noqa: B008
    """`count` variants of digits drawn (with replacement, class-balanced by MNIST's own counts) from `images`.

    Returns:
        (count, 28, 28) uint8 and their (count,) int64 labels.
    """
    rng = np.random.default_rng(seed)
    if count <= 0 or len(images) == 0:
        return np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.int64)
    picks = rng.choice(len(images), count, replace=count > len(images))
    out = np.stack([variant(rng, images[i], int(labels[i]), params) for i in picks])
    return out, np.asarray(labels, np.int64)[picks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("styles.png"), help="the sheet to write (PNG)")
    parser.add_argument("--count", type=int, default=10, help="MNIST training digits per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from digitdata.mnist import load_mnist

    data = load_mnist()
    rng = np.random.default_rng(args.seed)
    rows = []
    for c in range(10):
        idx = rng.choice(np.flatnonzero(data.y_train == c), args.count, replace=False)
        tiles = [np.hstack([data.x_train[i], variant(rng, data.x_train[i], c)]) for i in idx]
        rows.append(np.hstack(tiles))
    cv2.imwrite(str(args.out), cv2.resize(255 - np.vstack(rows), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    print(f"wrote {args.out}: each MNIST digit beside a variant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
