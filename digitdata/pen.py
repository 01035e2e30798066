"""The pen model: a digit's centre line drawn by a pen whose width does not depend on the digit's size.

MNIST's strokes are about 11 % of a digit's height, whatever wrote them; a ballpoint digit that fills a phone
photo has a stroke of 0.5-1 % of its height, a marker's 20 %. The engine and the line renderer draw a digit
here: the MNIST image (or any 28x28 grey digit) is upscaled smoothly, thinned to its centre line, and the line
is drawn with a pen of `width_px` pixels of the paper, its pressure varying along the stroke. Nothing here
depends on TensorFlow or scikit-image: the device's synthetic source renders scenes with only the [edge] extra.

    python -m digitdata.pen --out /tmp/pen.png   # one MNIST digit at five pen widths and four sizes
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import cv2
import numpy as np

UPSCALE = 4  # the 28x28 digit is thinned at 4x (112x112): a smooth centre line, not MNIST's pixel stairs
INK_LEVEL = 0.45  # of the digit's peak: the smooth upscaled digit's ink, before thinning
SUBPIXEL_BITS = 3  # cv2.line's `shift`: endpoints at 1/8 px
MIN_WIDTH_PX = 1.0  # a pen narrower than this draws a 1 px line, lighter in proportion (a faint fine pen) ...
MIN_SEEN_PX = 0.6  # ... but never lighter than this: a camera's optics spread a finer line, they do not erase it
PRESSURE_BANDS = 4  # the stroke is drawn in this many width bands along a smooth pressure field
# Handwriting faces for words and letters beside the numbers (letters are nothing to read): Debian's
# fonts-dkg-handwriting, fonts-humor-sans, fonts-dancingscript, fonts-femkeklaver, fonts-breip, fonts-bwht,
# installed by `make system-deps`; rendering goes on without them (the pen-path words of `digitdata.lines`).
HANDWRITING_FONTS = ("truetype/fifthhorseman", "truetype/humor-sans", "opentype/dancingscript",
                     "truetype/femkeklaver", "truetype/breip", "opentype/bwht", "truetype/bwht")
FONT_ROOT = Path("/usr/share/fonts")
HANDWRITTEN_WORDS = ("A", "B+", "C", "D-", "A+", "B", "E", "Fail", "Pass", "Absent", "Good", "Total", "Name",
                     "Date", "Signed", "Marks", "Grade", "Rs", "Paid", "Nil", "OK", "ok", "yes", "no", "Room",
                     "Max", "Kumar", "Anna", "Smith", "Rahul", "Maria", "Jones", "Lee", "Chen", "Priya")


def thin(binary: np.ndarray, max_passes: int = 64) -> np.ndarray:
    """The one-pixel centre line of a binary shape (Zhang-Suen thinning), as bool.

    Args:
        binary: (H, W) bool or 0/1.
        max_passes: bounds the work (a 112x112 digit thins in about 10).
    """
    img = np.pad(np.asarray(binary, bool), 1).astype(np.uint8)
    for _ in range(max_passes):
        changed = False
        for step in (0, 1):
            p = img
            p2, p3, p4 = p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:]
            p5, p6, p7 = p[2:, 2:], p[2:, 1:-1], p[2:, :-2]
            p8, p9 = p[1:-1, :-2], p[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            neighbours = p2.astype(np.int32) + p3 + p4 + p5 + p6 + p7 + p8 + p9
            transitions = sum(((ring[k] == 0) & (ring[k + 1] == 1)).astype(np.int32) for k in range(8))
            if step == 0:
                c1, c2 = p2 * p4 * p6, p4 * p6 * p8
            else:
                c1, c2 = p2 * p4 * p8, p2 * p6 * p8
            remove = ((p[1:-1, 1:-1] == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1)
                      & (c1 == 0) & (c2 == 0))
            if remove.any():
                img[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            break
    return img[1:-1, 1:-1].astype(bool)


def centre_segments(digit_28: np.ndarray) -> np.ndarray:
    """The digit's centre line as (N, 2, 2) float32 segments in the 28x28 image's pixel coordinates.

    Each segment joins two neighbouring centre-line pixels; drawn with a round pen they make the stroke.
    """
    d = np.asarray(digit_28, np.float32)
    peak = float(d.max())
    if peak <= 0:
        return np.zeros((0, 2, 2), np.float32)
    big = cv2.resize(d / peak, (28 * UPSCALE, 28 * UPSCALE), interpolation=cv2.INTER_CUBIC)
    line = thin(big > INK_LEVEL)
    ys, xs = np.nonzero(line)
    if len(xs) == 0:
        return np.zeros((0, 2, 2), np.float32)
    segments = []
    # Each pixel joins its right, lower-left, lower and lower-right neighbours: every 8-neighbour pair once; a
    # diagonal only where no pixel turns the corner (else a staircase would be drawn as little triangles).
    padded = np.pad(line, 1)
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        ny, nx = ys + dy, xs + dx
        ok = padded[ny + 1, nx + 1]
        if dy and dx:
            ok &= ~padded[ys + 1, nx + 1] & ~padded[ny + 1, xs + 1]
        segments.append(np.stack([np.stack([xs[ok], ys[ok]], 1), np.stack([nx[ok], ny[ok]], 1)], 1))
    lonely = _isolated(line, ys, xs)  # a dot (the centre line of a tiny blob) is a zero-length segment
    segments.append(np.stack([lonely, lonely], 1))
    seg = np.concatenate(segments).astype(np.float32)
    return (seg + 0.5) / UPSCALE


def _isolated(line: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    padded = np.pad(line, 1).astype(np.int32)
    count = sum(padded[1 + dy:1 + dy + line.shape[0], 1 + dx:1 + dx + line.shape[1]]
                for dy in (-1, 0, 1) for dx in (-1, 0, 1)) - line
    alone = count[ys, xs] == 0
    return np.stack([xs[alone], ys[alone]], 1)


def draw(rng: np.random.Generator, segments: np.ndarray, matrix: np.ndarray, size: tuple[int, int],
         width_px: float, pressure: float = 0.25) -> np.ndarray:
    """Ink coverage (float32 0-1, shape (h, w)) of the centre line drawn by a pen `width_px` wide.

    Args:
        rng: draws the pressure field along the stroke.
        segments: (N, 2, 2) from `centre_segments`, in the source digit's coordinates.
        matrix: (2, 3) affine from the source digit's coordinates to the output pixels.
        size: (w, h) of the output.
        width_px: the pen's width in output pixels, whatever the digit's size.
        pressure: how much the width varies along the stroke (0: a constant pen; 0.25: +-25 %).
    """
    w, h = size
    alpha = np.zeros((h, w), np.uint8)
    if len(segments) == 0:
        return alpha.astype(np.float32)
    pts = segments.reshape(-1, 2) @ matrix[:, :2].T + matrix[:, 2]
    pts = pts.reshape(-1, 2, 2)
    # Pressure: a smooth field over the digit, so neighbouring segments share a width (a stroke, not noise).
    centre = pts.reshape(-1, 2).mean(axis=0)
    span = max(float(np.ptp(pts.reshape(-1, 2), axis=0).max()), 1.0)
    wave = rng.normal(0, 1, 3)
    mid = (pts[:, 0] + pts[:, 1]) / 2 - centre
    field = np.tanh(wave[0] * mid[:, 0] / span + wave[1] * mid[:, 1] / span
                    + 0.5 * np.sin(wave[2] * 6 * (mid[:, 0] + mid[:, 1]) / span))
    bands = np.clip(((field + 1) / 2 * PRESSURE_BANDS).astype(int), 0, PRESSURE_BANDS - 1)
    scale = 1 << SUBPIXEL_BITS
    for band in range(PRESSURE_BANDS):
        chosen = pts[bands == band]
        if len(chosen) == 0:
            continue
        bw = max(width_px, MIN_SEEN_PX) * (1 + pressure * ((band + 0.5) / PRESSURE_BANDS * 2 - 1))
        thickness = max(1, int(round(bw)))
        level = int(round(255 * min(1.0, bw / MIN_WIDTH_PX)))
        fixed = np.round(chosen * scale).astype(np.int32)
        cv2.polylines(alpha, list(fixed), False, level, thickness, cv2.LINE_AA, SUBPIXEL_BITS)
    return alpha.astype(np.float32) / 255.0


@functools.cache
def handwriting_fonts() -> tuple[Path, ...]:
    """The handwriting faces installed on this machine (`HANDWRITING_FONTS`), maybe none."""
    found = []
    for folder in HANDWRITING_FONTS:
        found += sorted((FONT_ROOT / folder).glob("*.[ot]tf")) if (FONT_ROOT / folder).is_dir() else []
    return tuple(found)


def handwritten_word(rng: np.random.Generator, height_px: float, text: str | None = None) -> np.ndarray | None:
    """Ink coverage (float32 0-1) of a word or grade letter in a handwriting face, its capitals about
    `height_px` tall; None when no handwriting face is installed."""
    from PIL import Image, ImageDraw, ImageFont

    faces = handwriting_fonts()
    if not faces:
        return None
    text = text or HANDWRITTEN_WORDS[rng.integers(len(HANDWRITTEN_WORDS))]
    font = ImageFont.truetype(str(faces[rng.integers(len(faces))]), max(6, int(height_px * 1.4)))
    left, top, right, bottom = font.getbbox(text)
    layer = Image.new("L", (max(1, right - left) + 4, max(1, bottom - top) + 4), 0)
    ImageDraw.Draw(layer).text((2 - left, 2 - top), text, fill=255, font=font)
    return np.asarray(layer, np.float32) / 255.0


def restroke_28(rng: np.random.Generator, digit_28: np.ndarray, stroke_frac: float,
                pressure: float = 0.25) -> np.ndarray:
    """An MNIST-form digit (28x28 uint8, ink bright) redrawn along its centre line with a pen of `stroke_frac`
    of the digit's ink height (0.05: a fine pen, 0.25: a marker). Drawn at 4x, then reduced by area."""
    d = np.asarray(digit_28)
    ys = np.nonzero(d.max(axis=1) > 60)[0]
    ink_h = float(ys.max() - ys.min() + 1) if len(ys) else 20.0
    big = 28 * UPSCALE
    matrix = np.array([[UPSCALE, 0, 0], [0, UPSCALE, 0]], np.float64)
    alpha = draw(rng, centre_segments(d), matrix, (big, big), stroke_frac * ink_h * UPSCALE, pressure)
    small = cv2.resize(alpha, (28, 28), interpolation=cv2.INTER_AREA)
    return np.clip(small * 255.0 / max(float(small.max()), 1e-6), 0, 255).astype(np.uint8) if small.max() > 0 \
        else d.copy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("pen.png"), help="the sheet to write (PNG)")
    parser.add_argument("--index", type=int, default=0, help="which MNIST test digit")
    args = parser.parse_args(argv)
    from digitdata.mnist import load_mnist

    digit = load_mnist().x_test[args.index]
    rng = np.random.default_rng(0)
    seg = centre_segments(digit)
    rows = []
    for height in (24, 60, 150, 400):
        tiles = []
        for frac in (0.006, 0.02, 0.06, 0.12, 0.25):
            s = height / 20.0
            m = np.array([[s, 0, 0], [0, s, 0]])
            a = draw(rng, seg, m, (int(28 * s), int(28 * s)), max(0.6, frac * height))
            tiles.append(cv2.resize((255 - a * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_AREA))
        rows.append(np.hstack(tiles))
    cv2.imwrite(str(args.out), np.vstack(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
