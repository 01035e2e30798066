"""Number lines for the recognizer: one region of a picture, rendered from MNIST digits, with its truth.

`render_line` draws what the region finder hands the recognizer: a strip of paper holding a number of
0-12 handwritten digits, cut a little loose or a little tight, with the things that sit beside and between
numbers on real pages and are **not** digits: printed and script words, form labels, scribbles, dashes,
dots, ruled, dotted and table lines, digit boxes, a cross-out. Everything that is not one of the MNIST
digits is labelled as nothing (the CTC blank). A share of lines holds no digit at all; another share is a
bare MNIST image (the classifier's own data, so a single digit reads as MNIST digits do).

`line_input` turns a grey region into the recognizer's input; training, the release gate and the device
all call it, so the recognizer sees the same pixels everywhere. numpy and OpenCV.

    python -m digitdata.lines --count 32 --out /tmp/lines   # a PNG strip of lines and their labels
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from digitdata import engine, frames, handwriting, pen

INPUT_HEIGHT = 32  # px: the recognizer's input height (a region is resized to it, keeping its aspect) ...
INPUT_WIDTH = 256  # ... and width: shorter regions are padded on the right, longer ones squeezed
MAX_DIGITS = 12  # per line
MIN_INK_CONTRAST = 40.0  # grey levels: a region whose ink stands out less is scaled as if it had this much
WORDS = engine.WORDS
# Letters drawn as "not a digit": none that a hand writes like a digit (O 0, I l 1, S 5, Z 2, B 8, G b 6, q g 9),
# so a blank learned on them never blanks a real digit written that way.
LETTERS = "ACEFHJKLMNPRTUVWXYacefhkmnprtuvwxy"
SYMBOLS = ":-/.,()#=+*"
FONTS = engine.FONTS


@dataclass(frozen=True)
class LineConfig:
    """The ranges `render_line` draws from. Probabilities are per line."""

    empty_p: float = 0.2  # lines with no digit at all (only marks that are not digits)
    mnist_p: float = 0.08  # a bare MNIST image, as the classifier sees it
    long_p: float = 0.2  # of the other lines: 7..12 digits (the rest 1..6, a single digit weighted up)
    height_px: tuple[float, float] = (22.0, 56.0)  # digit height while drawing
    touching_p: float = 0.3  # digits that overlap or touch
    gap: tuple[float, float] = (0.04, 0.9)  # space between digits, in digit heights (touching: -0.15..0.03)
    slant: float = 0.3  # shear of the writing
    stroke: tuple[float, float] = (0.006, 0.24)  # stroke width in digit heights: ballpoint to bold marker
    pen_p: float = 0.8  # lines written by the pen model (`digitdata.pen`); the rest in MNIST's own look
    pressure: tuple[float, float] = (0.0, 0.35)  # the pen's width varies along a stroke by up to this share
    small_zero_p: float = 0.25  # per 0 in a number: written small and low, like an "o"
    size_jitter: float = 0.12  # per digit: height varies by up to this share inside a number
    max_draw_height_px: float = 160.0  # a fine pen's digits are drawn up to this tall so its line is >= 1 px
    elastic_p: float = 0.5  # per digit: an elastic distortion (handwriting beyond MNIST's)
    styled_p: float = 0.35  # per 1, 7, 4: a flagged 1, a barred 7, an open 4
    word_p: float = 0.5  # printed or script words before or after the number ...
    cursive_p: float = 0.4  # ... of which this share handwritten (a joined pen path: a name, "Verified")
    inside_p: float = 0.08  # a mark between two digits of the number
    scribble_p: float = 0.25
    rule_p: float = 0.3  # a ruled, dotted or underline line through or under the digits
    cells_p: float = 0.12  # a printed box around each digit (forms)
    border_p: float = 0.2  # vertical table borders beside the number
    strike_p: float = 0.03  # of empty lines: struck-out writing
    tilt_deg: float = 4.0  # residual tilt a region keeps after straightening
    pad_y: tuple[float, float] = (-0.04, 0.7)  # region margin above and below, in digit heights
    pad_x: tuple[float, float] = (-0.03, 1.4)  # region margin left and right, in digit heights ...
    wide_region_p: float = 0.2  # ... and now and then four times that (a region that took in a neighbour)
    bright_ink_p: float = 0.06  # chalk-like bright ink on a dark ground
    blur_sigma: tuple[float, float] = (0.0, 1.4)  # px, at the drawing's scale
    noise_sigma: tuple[float, float] = (0.0, 10.0)  # grey levels
    jpeg_quality: tuple[int, int] = (35, 95)


@dataclass
class Line:
    """One rendered region: grey pixels as photographed, the digits in it, and whether its ink is dark."""

    gray: np.ndarray  # (H, W) uint8
    text: str  # the digits, left to right ("" for a line with none)
    dark_ink: bool
    marks: list[str]  # what else is in it: "word", "scribble", "rule", "cells", "border", "inside", ...


# ---------------------------------------------------------------------------------------------- the input


def line_input(gray: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The recognizer's (INPUT_HEIGHT, INPUT_WIDTH) uint8 input for a grey region: ink bright on 0.

    The region is resized to INPUT_HEIGHT keeping its aspect (squeezed to INPUT_WIDTH when longer), the
    paper is estimated by a grey opening wider than any stroke and subtracted (shadows and gradients go),
    and the ink is scaled so its strong strokes reach 255; the rest of the width is 0.
    """
    g = np.asarray(gray)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"expected a grey region (H, W), got shape {g.shape}")
    h, w = g.shape
    nw = max(1, min(INPUT_WIDTH, round(w * INPUT_HEIGHT / h)))
    small = frames.shrink(g, (nw, INPUT_HEIGHT), dark_ink)  # a fine pen's stroke does not fade away
    ink = small.astype(np.float32)
    if dark_ink:
        ink = 255.0 - ink
    k = INPUT_HEIGHT // 2 + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    pad = cv2.copyMakeBorder(ink, k, k, k, k, cv2.BORDER_REFLECT)
    ground = cv2.morphologyEx(pad, cv2.MORPH_OPEN, kernel)[k:-k, k:-k]
    ink = np.clip(ink - ground, 0, None)
    level = max(float(np.percentile(ink, 99.0)), MIN_INK_CONTRAST)
    out = np.zeros((INPUT_HEIGHT, INPUT_WIDTH), np.uint8)
    out[:, :nw] = np.clip(ink * (255.0 / level), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------- digits


def _digit_count(rng, cfg: LineConfig) -> int:
    if rng.random() < cfg.empty_p:
        return 0
    if rng.random() < cfg.long_p:
        return int(rng.integers(7, MAX_DIGITS + 1))
    return int(rng.choice([1, 1, 2, 2, 3, 3, 4, 4, 5, 6]))


# ---------------------------------------------------------------------------------------------- marks


def _word(rng) -> str:
    roll = rng.random()
    if roll < 0.45:
        text = WORDS[rng.integers(len(WORDS))]
    elif roll < 0.8:
        text = "".join(rng.choice(list(LETTERS), int(rng.integers(1, 8))))
    else:
        text = "".join(rng.choice(list(LETTERS + SYMBOLS), int(rng.integers(1, 4))))
    if rng.random() < 0.25:
        text += rng.choice([":", " :", ".", " -", " ="])
    return text


@functools.cache
def _truetype_fonts() -> list[Path]:
    """TrueType faces for printed words: matplotlib's (DejaVu Sans and Serif, STIX, a Times-like face, and
    Computer Modern), present wherever training runs; none on a device, where lines are never rendered."""
    try:
        import matplotlib
    except ImportError:
        return []
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
             "DejaVuSerif-Italic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "cmr10.ttf",
             "cmss10.ttf", "DejaVuSansMono.ttf"]
    return [folder / n for n in names if (folder / n).is_file()]


def _put_truetype(rng, canvas: np.ndarray, text: str, x: float, baseline: float, height: float, colour: float,
                  right_end: bool, faces: tuple | list | None = None) -> float:
    """`text` in a TrueType face (as forms are printed, or `faces`: handwriting), its capitals about `height`
    tall."""
    from PIL import Image, ImageDraw, ImageFont

    faces = faces or _truetype_fonts()
    font = ImageFont.truetype(str(faces[rng.integers(len(faces))]), max(6, int(height * 1.35)))
    left, top, right, bottom = font.getbbox(text)
    width = right - left
    x0 = x - width if right_end else x
    layer = Image.new("L", (width + 4, bottom - top + 4), 0)
    ImageDraw.Draw(layer).text((2 - left, 2 - top), text, fill=int(colour), font=font)
    patch = np.asarray(layer)
    ax, ay = int(round(x0)), int(round(baseline - (patch.shape[0] - 4) * 0.8))
    h, w = canvas.shape
    sx0, sy0 = max(0, -ax), max(0, -ay)
    dx0, dy0 = max(0, ax), max(0, ay)
    dx1, dy1 = min(w, ax + patch.shape[1]), min(h, ay + patch.shape[0])
    if dx1 > dx0 and dy1 > dy0:
        region = canvas[dy0:dy1, dx0:dx1]
        np.maximum(region, patch[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0], out=region)
    return x0 if right_end else x0 + width


def _put_word(rng, canvas: np.ndarray, x: float, baseline: float, height: float, colour: float,
              right_end: bool = False) -> float:
    """A printed or script word starting (or, with `right_end`, ending) at x on `baseline`; returns its other end."""
    text = _word(rng)
    if _truetype_fonts() and rng.random() < 0.6:
        return _put_truetype(rng, canvas, text, x, baseline, height * rng.uniform(0.5, 1.0), colour, right_end)
    font = FONTS[rng.integers(len(FONTS))]
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = height * rng.uniform(0.35, 0.95) / max(th, 1)
    thick = max(1, int(round(scale * rng.uniform(0.8, 2.6))))
    width = tw * scale
    left = x - width if right_end else x
    cv2.putText(canvas, text, (int(left), int(baseline)), font, scale, colour, thick, cv2.LINE_AA)
    return left if right_end else left + width


def _block_letters(rng, canvas: np.ndarray, x: float, baseline: float, height: float, colour: float, thick: int,
                   right_end: bool = False) -> float:
    """Handwritten capitals and small letters ("SAJ", "MIL" on a form): a single-stroke face, each letter
    tilted, sized and placed a little differently, with the digits' stroke width."""
    text = "".join(rng.choice(list(LETTERS), int(rng.integers(1, 6))))
    font = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX][rng.integers(3)]
    sizes = [cv2.getTextSize(c, font, 1.0, 1)[0] for c in text]
    scale = height * rng.uniform(0.6, 1.0) / max(max(h for _, h in sizes), 1)
    total = sum(w for w, _ in sizes) * scale * 1.15
    x0 = x - total if right_end else x
    cursor = x0
    for c, (w, h) in zip(text, sizes, strict=True):
        layer = np.zeros(canvas.shape, np.uint8)
        y = baseline + rng.normal(0, 0.05) * height
        cv2.putText(layer, c, (int(cursor), int(y)), font, scale * rng.uniform(0.85, 1.15), int(colour), thick,
                    cv2.LINE_AA)
        m = cv2.getRotationMatrix2D((cursor + w * scale / 2, y - h * scale / 2), rng.normal(0, 8), 1.0)
        m[0, 1] += rng.uniform(-0.25, 0.1)  # slant
        np.maximum(canvas, cv2.warpAffine(layer, m, (canvas.shape[1], canvas.shape[0])), out=canvas)
        cursor += w * scale * rng.uniform(1.0, 1.3)
    return x0 if right_end else cursor


def _cursive(rng, canvas: np.ndarray, x: float, baseline: float, height: float, colour: float, thick: int,
             right_end: bool = False) -> float:
    """A handwritten-looking word: one pen path of loops, humps and ascenders (as a name or "Verified" is
    written), starting (or, with `right_end`, ending) at x; returns its other end. Never a digit's shape alone:
    its letters join."""
    letters = int(rng.integers(3, 10))
    width = height * rng.uniform(0.3, 0.55)
    small = height * rng.uniform(0.3, 0.5)
    total = letters * width
    x0 = x - total if right_end else x
    t = np.linspace(0, letters, letters * 24)
    tall = rng.random(letters) < 0.3
    low = (~tall) & (rng.random(letters) < 0.15)
    k = np.minimum(t.astype(int), letters - 1)
    amp = np.where(tall, height * rng.uniform(0.7, 1.0), small)
    phase = 2 * np.pi * t
    loop = rng.uniform(0.15, 0.45) * width
    xs = x0 + t * width + loop * np.sin(phase)
    ys = baseline - amp[k] * (1 - np.cos(phase)) / 2 + np.where(low[k], height * 0.35 * np.sin(phase / 2) ** 2, 0)
    slant = rng.uniform(-0.35, 0.1)
    xs = xs + slant * (ys - baseline)
    pts = np.stack([xs, ys], axis=1)
    cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, colour, thick, cv2.LINE_AA)
    return x0 if right_end else x0 + total


def _scribble(rng, canvas: np.ndarray, x: float, y: float, size: float, colour: float, thick: int) -> None:
    n = int(rng.integers(3, 9))
    pts = np.cumsum(rng.normal(0, size / 3, (n, 2)), axis=0)
    pts = pts - pts.min(axis=0)
    pts = pts * (size / max(float(pts.max()), 1.0)) + (x, y)
    curve = engine._smooth_polyline(pts)
    cv2.polylines(canvas, [curve.astype(np.int32)], False, colour, thick, cv2.LINE_AA)


# ---------------------------------------------------------------------------------------------- a line


def render_line(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray,
                cfg: LineConfig = LineConfig()) -> Line:  # noqa: B008 (frozen)
    """One region from the digits `images` (N, 28, 28) uint8 with `labels` (N,): MNIST *training* digits for
    training, *test* digits for evaluation."""
    if rng.random() < cfg.mnist_p:
        return _mnist_line(rng, images, labels)
    n = _digit_count(rng, cfg)
    height = float(np.exp(rng.uniform(*np.log(cfg.height_px))))
    touching = n > 1 and rng.random() < cfg.touching_p
    gap = rng.uniform(-0.15, 0.03) if touching else rng.uniform(*cfg.gap)
    slant = rng.uniform(-cfg.slant, cfg.slant) * (rng.random() < 0.6)
    stroke = float(np.exp(rng.uniform(*np.log(cfg.stroke))))
    if touching:
        stroke = min(stroke, 0.14)
    pen_drawn = rng.random() < cfg.pen_p
    pressure = float(rng.uniform(*cfg.pressure)) if pen_drawn else None
    if not pen_drawn:
        stroke = max(stroke, engine.EngineConfig.mnist_look_stroke)
    else:  # a fine pen is drawn large enough to be a line (a photo of it is; the input's resizing keeps it)
        height = max(height, min(cfg.max_draw_height_px, pen.MIN_WIDTH_PX / stroke))
    marks: list[str] = []

    # Ink coverage on a wide canvas: words, the number, words; then the region is cut from it.
    word_room = 8 * height
    cw = int(2 * word_room + (n * 1.1 + 1) * height * (1 + max(gap, 0)) + 2 * height)
    ch = int(3.2 * height)
    ink = np.zeros((ch, cw), np.uint8)  # marks drawn in 255 (OpenCV's text needs uint8)
    baseline_y = ch / 2 + height / 2
    picks = rng.integers(0, len(images), n)
    x0 = word_room + height * rng.uniform(0.2, 0.8)
    placed = []
    if n:
        styled = np.stack([handwriting.styled(rng, images[i], int(labels[i]), cfg.styled_p, cfg.elastic_p)
                           for i in picks])
        placed = engine._place_line(rng, styled, np.arange(n), (x0, ch / 2), 0.0, height, gap, slant,
                                    labels[picks], cfg.size_jitter, cfg.small_zero_p)
    coverage = np.zeros((ch, cw), np.float32)
    for p in placed:
        x, y, w, h = engine._grow(engine._box(p.points), 0.25 * height + 3, cw, ch)
        if w > 0 and h > 0:
            a = engine._stroke_alpha(rng, styled[p.index], p.matrix, (x, y, w, h), height, stroke, pressure)
            coverage[y:y + h, x:x + w] = np.maximum(coverage[y:y + h, x:x + w], a)
    if n:
        every = np.concatenate([p.points for p in placed])
        nx0, ny0 = every.min(axis=0)
        nx1, ny1 = every.max(axis=0)
    else:
        nx0, nx1 = x0, x0 + height * rng.uniform(1, 5)
        ny0, ny1 = ch / 2 - height / 2, ch / 2 + height / 2
    pen_px = max(1, int(round(stroke * height * 0.8)))

    def word(x: float, baseline: float, right_end: bool) -> float:
        if rng.random() < cfg.cursive_p and pen.handwriting_fonts() and rng.random() < 0.5:
            return _put_truetype(rng, ink, pen.HANDWRITTEN_WORDS[rng.integers(len(pen.HANDWRITTEN_WORDS))], x,
                                 baseline, height * rng.uniform(0.6, 1.0), 255, right_end, pen.handwriting_fonts())
        if rng.random() < cfg.cursive_p:  # handwritten: joined (a name) or letter by letter (capitals on a form)
            draw = _cursive if rng.random() < 0.5 else _block_letters
            return draw(rng, ink, x, baseline, height, 255, max(1, pen_px), right_end)
        return _put_word(rng, ink, x, baseline, height, 255, right_end)

    if rng.random() < cfg.word_p or n == 0:
        if rng.random() < 0.7 or n == 0:
            x = nx0 - height * rng.uniform(0.25, 1.0)
            left = word(x, baseline_y + rng.normal(0, 0.1) * height, True)
            if rng.random() < 0.3:
                word(left - height * rng.uniform(0.2, 0.5), baseline_y, True)
        if rng.random() < 0.4:
            word(nx1 + height * rng.uniform(0.25, 1.0), baseline_y + rng.normal(0, 0.1) * height, False)
        marks.append("word")
    if n > 1 and rng.random() < cfg.inside_p:
        k = int(rng.integers(1, n))
        xm = (placed[k - 1].points[:, 0].max() + placed[k].points[:, 0].min()) / 2
        if rng.random() < 0.5:
            cv2.line(ink, (int(xm - 0.15 * height), int(ch / 2)), (int(xm + 0.15 * height), int(ch / 2)), 255, pen_px)
        else:
            cv2.circle(ink, (int(xm), int(ny1 - 0.05 * height)), max(1, pen_px), 255, -1)
        marks.append("inside")
    if rng.random() < cfg.scribble_p or (n == 0 and rng.random() < 0.5):
        size = height * rng.uniform(0.5, 1.6)
        side = nx0 - size - height * rng.uniform(0.3, 1.2) if rng.random() < 0.5 else nx1 + height * rng.uniform(0.3,
                                                                                                               1.2)
        if n == 0:
            side = nx0 + rng.uniform(0, 2) * height
        _scribble(rng, ink, side, ch / 2 - size / 2 + rng.normal(0, 0.1) * height, size, 255, pen_px)
        marks.append("scribble")
    if n == 0 and rng.random() < cfg.strike_p * 10:
        cv2.line(ink, (int(nx0), int(ch / 2)), (int(nx1), int(ch / 2 + rng.normal(0, 0.1) * height)), 255, pen_px)
    rule = rng.random() < cfg.rule_p
    if rule:
        y = ny1 + height * rng.uniform(-0.05, 0.3) if rng.random() < 0.7 else ny0 - height * rng.uniform(0.05, 0.3)
        thick = max(1, int(round(height * rng.uniform(0.02, 0.07))))
        if rng.random() < 0.3:  # dotted
            step = max(3, int(height * rng.uniform(0.12, 0.3)))
            for xx in range(0, cw, step):
                cv2.circle(ink, (xx, int(y)), thick, 160, -1)
        else:
            cv2.line(ink, (0, int(y)), (cw, int(y + rng.normal(0, 0.02) * height)), int(rng.integers(90, 256)),
                     thick, cv2.LINE_AA)
        marks.append("rule")
    if n and rng.random() < cfg.cells_p:
        pad = height * rng.uniform(0.08, 0.3)
        thick = max(1, int(round(height * rng.uniform(0.02, 0.06))))
        for p in placed:
            px0, py0 = p.points.min(axis=0)
            px1, py1 = p.points.max(axis=0)
            cx, half = (px0 + px1) / 2, max(px1 - px0, 0.7 * height) / 2 + pad
            cv2.rectangle(ink, (int(cx - half), int(ny0 - pad)), (int(cx + half), int(ny1 + pad)), 200, thick)
        marks.append("cells")
    if rng.random() < cfg.border_p:
        thick = max(1, int(round(height * rng.uniform(0.02, 0.08))))
        for xb in (nx0 - height * rng.uniform(0.2, 1.0), nx1 + height * rng.uniform(0.2, 1.0)):
            if rng.random() < 0.7:
                cv2.line(ink, (int(xb), 0), (int(xb), ch), 200, thick)
        marks.append("border")
    if rng.random() < 0.3:  # specks
        for _ in range(int(rng.integers(1, 8))):
            cv2.circle(ink, (int(rng.uniform(0, cw)), int(rng.uniform(0, ch))),
                       max(1, int(height * rng.uniform(0.01, 0.04))), 255, -1)
    coverage = np.maximum(coverage, cv2.GaussianBlur(ink.astype(np.float32) / 255.0, (0, 0), 0.5))

    # The region: the number's box with loose or tight margins, straightened but for a small tilt.
    py = rng.uniform(*cfg.pad_y, 2) * height
    px = rng.uniform(*cfg.pad_x, 2) * height * (4 if rng.random() < cfg.wide_region_p else 1)
    if n == 0:  # a region around whatever was drawn
        ys, xs = np.nonzero(ink)
        if len(xs):
            nx0, nx1, ny0, ny1 = xs.min(), xs.max(), max(ny0, ys.min()), min(ny1, ys.max())
        px = rng.uniform(0, 0.6, 2) * height
    rx0, rx1 = max(0, int(nx0 - px[0])), min(cw, int(math.ceil(nx1 + px[1])))
    ry0, ry1 = max(0, int(ny0 - py[0])), min(ch, int(math.ceil(ny1 + py[1])))
    tilt = math.radians(rng.uniform(-cfg.tilt_deg, cfg.tilt_deg))
    if abs(tilt) > 1e-3:
        m = cv2.getRotationMatrix2D(((rx0 + rx1) / 2, (ry0 + ry1) / 2), math.degrees(tilt), 1.0)
        coverage = cv2.warpAffine(coverage, m, (cw, ch), flags=cv2.INTER_LINEAR)
    coverage = coverage[ry0:ry1, rx0:rx1]
    gray = _photograph(rng, coverage, height, cfg, stroke * height)
    bright = rng.random() < cfg.bright_ink_p
    if bright:
        gray = 255 - gray
    text = "".join(str(int(labels[i])) for i in picks)
    return Line(gray, text, not bright, marks + (["touching"] if touching else []))


def _photograph(rng, coverage: np.ndarray, height: float, cfg: LineConfig, stroke_px: float = 1e9) -> np.ndarray:
    """Ink coverage (0-1) as a grey photo: paper, ink, light, shadow, blur, noise, JPEG. The blur is drawn in
    digit heights, but never wider than twice the stroke (a photo whose blur erases the strokes reads as
    nothing to anyone)."""
    h, w = coverage.shape
    paper = rng.uniform(130, 250)
    contrast = rng.uniform(0.25, 0.9) * paper if rng.random() < 0.2 else rng.uniform(0.5, 0.92) * paper
    img = paper * engine._texture(rng, h, w, max(4, int(height / 3)), 0.04)
    strength = rng.uniform(0.6, 1.0)
    img = img - contrast * strength * coverage
    img *= engine._light(rng, h, w)
    if rng.random() < 0.2:
        img *= engine._shadow(rng, h, w, hard=rng.random() < 0.5)
    sigma = min(rng.uniform(*cfg.blur_sigma) * height / 32, max(0.8, 2.0 * stroke_px))
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.random() < 0.5:  # the region is seen at camera resolution: often small
        f = rng.uniform(14, 40) / height
        if f < 1:
            # a camera's optics spread a fine line over a pixel rather than fade it away: a stroke-safe reduction
            img = frames.shrink(img.astype(np.float32), (max(1, round(w * f)), max(1, round(h * f))), True)
    img = img + rng.normal(0, rng.uniform(*cfg.noise_sigma), img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)


def _mnist_line(rng, images: np.ndarray, labels: np.ndarray) -> Line:
    """A bare MNIST image (bright ink on black, its own 4 px border), as the classifier is tested on."""
    i = int(rng.integers(len(images)))
    return Line(np.ascontiguousarray(images[i]), str(int(labels[i])), False, ["mnist"])


# ---------------------------------------------------------------------------------------------- sets


def render_inputs(seed: int, count: int, images: np.ndarray, labels: np.ndarray, cfg: LineConfig = LineConfig(),  # noqa: B008
                  offset: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """Lines `offset`..`offset + count` of `seed` as recognizer inputs (count, H, W) uint8, their texts and
    kinds (line i always comes from the seed [seed, i])."""
    inputs = np.zeros((count, INPUT_HEIGHT, INPUT_WIDTH), np.uint8)
    texts, kinds = [], []
    for i in range(count):
        line = render_line(np.random.default_rng([seed, offset + i]), images, labels, cfg)
        inputs[i] = line_input(line.gray, line.dark_ink)
        texts.append(line.text)
        kinds.append(line_kind(line))
    return inputs, texts, kinds


def reading_scores(read: list[str], texts: list[str], kinds: list[str]) -> dict:
    """Exact-string accuracy overall and per kind, and the share of digit-free regions read as nothing."""
    right = np.array([r == t for r, t in zip(read, texts, strict=True)])
    empty = np.array([t == "" for t in texts])
    per_kind = {}
    for k in sorted(set(kinds)):
        sel = np.array([x == k for x in kinds])
        per_kind[k] = {"regions": int(sel.sum()), "exact": float(right[sel].mean())}
    return {"exact": float(right[~empty].mean()) if (~empty).any() else 0.0,
            "nothing_read": float(right[empty].mean()) if empty.any() else 1.0,
            "regions": len(texts), "digit_free": int(empty.sum()), "per_kind": per_kind}


def mnist_inputs(images_28: np.ndarray) -> np.ndarray:
    """MNIST images (bright ink on black) as recognizer inputs, one digit per region."""
    return np.stack([line_input(d, dark_ink=False) for d in images_28])


def line_kind(line: Line) -> str:
    """The one word a per-kind score groups a line by."""
    if "mnist" in line.marks:
        return "mnist"
    if not line.text:
        return "no-digit"
    if "touching" in line.marks:
        return "touching"
    if len(line.text) >= 7:
        return "long"
    if set(line.marks) & {"word", "scribble", "inside", "cells", "border", "rule"}:
        return "with-marks"
    return "single" if len(line.text) == 1 else "plain"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m digitdata.lines",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description="Write rendered number lines (MNIST test digits) as one PNG.")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/lines"))
    parser.add_argument("--inputs", action="store_true", help="show the recognizer inputs, not the regions")
    args = parser.parse_args(argv)
    from digitdata.mnist import load_mnist

    m = load_mnist()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.count):
        line = render_line(np.random.default_rng([args.seed, i]), m.x_test, m.y_test)
        shown = line_input(line.gray, line.dark_ink) if args.inputs else cv2.resize(
            line.gray, (min(INPUT_WIDTH, max(1, round(line.gray.shape[1] * 48 / line.gray.shape[0]))), 48))
        row = np.full((60, INPUT_WIDTH + 200), 128, np.uint8)
        row[:shown.shape[0], :shown.shape[1]] = shown
        cv2.putText(row, line.text or "-", (INPUT_WIDTH + 8, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2)
        rows.append(row)
    cv2.imwrite(str(args.out / "lines.png"), np.concatenate(rows))
    print(f"wrote {args.count} lines to {args.out / 'lines.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
