"""The data engine: photos of handwritten numbers on paper, rendered from MNIST digits, with the truth.

One renderer, deterministic by seed, used to train the detector (MNIST *training* digits), to evaluate the
reader (MNIST *test* digits) and by the `synthetic` frame source. Every random choice is recorded in
`Scene.params`, and the conditions a scene exercises in `Scene.conditions` (for per-condition scores).

What varies, on purpose (see `EngineConfig` for the ranges):
  * the picture: a 640x480 camera frame, or a crop of any size and aspect, down to one digit filling it;
  * the writing: 1-12 digit numbers on 1-3 lines, digit height from 12 px to the whole crop, spacing from
    overlapping to wide, rows tilted up to 15 degrees (sometimes 30), slant, stroke from fine pen to bold
    marker, faint pencil, ink colours, bright ink on a dark board;
  * the paper: white, beige, grey, coloured, sticky notes; ruled, squared, dotted, printed grid cells;
  * the scene: dark desks and page edges, perspective, hard and soft shadows, glare, uneven light;
  * distractors that are not digits: printed letters, scribbles, underlines, specks, show-through;
  * the camera: blur, noise, JPEG.

    python -m digitdata.engine --count 16 --seed 1 --out /tmp/engine   # PNGs, boxes drawn, and truth.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from digitdata import frames, handwriting, pen

FRAME_SIZE = (640, 480)  # (width, height) px: the camera's low-resolution stream
MNIST_INK = 60  # of 255: MNIST pixels above this are the digit's ink (for its box)


@dataclass(frozen=True)
class EngineConfig:
    """The ranges the engine draws from. Probabilities are per scene unless said otherwise."""

    frame_share: float = 0.5  # camera frames (640x480); the rest are crops of any size
    tight_share: float = 0.45  # of crops: one digit with a small margin (a tight crop) ...
    cut_p: float = 0.12  # ... that now and then shaves up to 5 % of the digit off one side
    max_digits: int = 12  # per line
    min_digits: int = 2  # per line of a number that is not a single digit (long lines: 7 and up)
    long_share: float = 0.2  # lines of 7..max_digits digits
    single_share: float = 0.25  # one digit in the picture (besides tight crops)
    second_line_p: float = 0.15  # a second line of digits (third: a quarter of that)
    min_height_px: float = 12.0  # smallest digit height in a 640x480 frame
    crop_height_px: tuple[float, float] = (18.0, 480.0)  # digit height in a crop, before resizing
    final_long_px: tuple[float, float] = (28.0, 1600.0)  # a crop's long side after resizing (never enlarged)
    final_height_px: float = 0.0  # > 0: a crop is resized so its digits are this tall instead (the stress grid)
    gap: tuple[float, float] = (-0.12, 0.85)  # space between digits, in digit heights (< 0: overlapping)
    touching_p: float = 0.25  # lines whose digits overlap or touch ...
    touching_max_stroke: float = 0.14  # ... written no bolder than this (digit heights)
    tilt_deg: float = 15.0  # rows tilted up to this ...
    steep_tilt_p: float = 0.05  # ... and sometimes twice as much
    slant: float = 0.25  # shear of the writing (italic)
    stroke: tuple[float, float] = (0.006, 0.26)  # stroke width in digit heights: a ballpoint filling a photo
    #                                             to a bold marker, log-uniform (the pen model's width)
    pen_p: float = 0.8  # scenes written by the pen model (a centre line, any width); the rest in MNIST's own look
    mnist_look_stroke: float = 0.035  # ... which cannot draw strokes finer than this (digit heights)
    pressure: tuple[float, float] = (0.0, 0.35)  # the pen's width varies along a stroke by up to this share
    small_zero_p: float = 0.25  # per 0 in a number of 2+ digits: written small and low, like an "o"
    size_jitter: float = 0.1  # per digit: height varies by up to this share inside a number
    styled_p: float = 0.35  # per 1, 7, 4: a flagged 1, a barred 7, an open 4 (see `handwriting.styled`)
    elastic_p: float = 0.4  # per digit: an elastic distortion (handwriting beyond MNIST's)
    bright_ink_p: float = 0.07  # chalk-like bright ink on a dark board
    ruled_p: float = 0.18
    squared_p: float = 0.15
    dotted_p: float = 0.05
    cells_p: float = 0.08  # printed boxes around the digits (forms)
    sticky_p: float = 0.1  # a sticky note on a desk or a page
    desk_p: float = 0.35  # of frames: the page does not fill the frame, a desk shows
    hard_shadow_p: float = 0.2
    soft_shadow_p: float = 0.3
    glare_p: float = 0.12
    text_p: float = 0.25  # printed letters beside the number
    scribble_p: float = 0.2
    underline_p: float = 0.12
    specks_p: float = 0.3
    show_through_p: float = 0.08
    blur_sigma: tuple[float, float] = (0.0, 1.6)  # px
    noise_sigma: tuple[float, float] = (0.0, 9.0)  # grey levels
    jpeg_quality: tuple[int, int] = (30, 96)
    words_p: float = 0.3  # of printed texts: a form's words ("Marks Awarded", "Roll No."), the rest random letters
    handwritten_p: float = 0.35  # of texts: written by hand in the digits' ink (names, grades "B+"; `pen`)
    digits: bool = True  # False: nothing is written, only the marks around (the `distractors` mix)


# The data engine's mixes, by name: what people photograph, forms, today's hard scenes, and pages with no digit.
MIXES = {
    # One number of 1-6 digits filling a good part of the picture, single digits, tight crops, marker digits,
    # with printed words, ruled lines and doodles beside it.
    "photo": EngineConfig(frame_share=0.45, tight_share=0.3, max_digits=6, long_share=0.0, single_share=0.35,
                          second_line_p=0.03, min_height_px=40.0, touching_p=0.2, text_p=0.6, words_p=0.6,
                          scribble_p=0.4, ruled_p=0.25, cells_p=0.04, desk_p=0.2, hard_shadow_p=0.1),
    # Printed labels, dotted and ruled lines, cells and digit boxes, several short numbers per page.
    "form": EngineConfig(frame_share=0.6, tight_share=0.1, max_digits=4, long_share=0.0, single_share=0.3,
                         second_line_p=0.6, min_height_px=22.0, touching_p=0.15, text_p=0.9, words_p=0.85,
                         scribble_p=0.15, ruled_p=0.2, dotted_p=0.15, cells_p=0.35, underline_p=0.3, sticky_p=0.0),
    "hard": EngineConfig(),
    # Printed words, scribbles, boxes, lines and specks, and no digit at all: the right reading is nothing.
    "distractors": EngineConfig(frame_share=0.5, tight_share=0.2, max_digits=6, long_share=0.0, min_height_px=30.0,
                                text_p=0.95, words_p=0.6, scribble_p=0.7, cells_p=0.2, ruled_p=0.3,
                                underline_p=0.3, specks_p=0.5, digits=False),
}


# BGR colours.
INKS = [(20, 20, 25), (150, 50, 20), (110, 30, 30), (140, 40, 60), (60, 110, 20), (30, 30, 140), (70, 70, 75),
        (90, 35, 35), (40, 40, 40)]
PAPERS = [(245, 245, 245), (232, 236, 240), (205, 225, 240), (190, 195, 195), (215, 215, 210), (170, 235, 215),
          (120, 235, 250), (200, 190, 230), (235, 215, 200), (160, 165, 170)]
STICKY = [(120, 235, 250), (140, 240, 170), (210, 170, 250), (245, 200, 140), (150, 190, 250)]
BOARDS = [(45, 60, 40), (35, 35, 35), (70, 55, 40)]
DESKS = [(30, 40, 55), (25, 25, 25), (60, 70, 80), (90, 110, 130), (40, 60, 90), (120, 120, 120)]
RULE_INKS = [(200, 170, 140), (180, 180, 180), (150, 150, 230), (210, 190, 160), (120, 120, 120)]
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZabcdefghkmnprstuvwxyz:-/#."
WORDS = ["Marks", "Awarded", "Max", "Total", "Roll No", "Name", "Date", "Score", "Qty", "Page", "Class", "Room",
         "Tel", "Ph", "No.", "Sum", "Sign", "Mr", "Mrs", "Obtained", "out of", "Grade", "Q", "Item", "Ref", "Amount",
         "Reading", "kWh", "Meter", "Section", "Sub", "Roll", "Exam", "Form", "Id", "Code", "Part", "Unit", "km",
         "Marks Awarded", "Max. Marks", "Signature", "Invigilator", "Student", "Remarks", "Balance", "Paid"]
FONTS = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
         cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX]


# The stress grid (`digitlite eval-scenes --grid`): pen width x digit height x digits, one cell at a time.
GRID_STROKES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25)  # stroke width, in digit heights
GRID_HEIGHTS = (12, 24, 48, 120, 400, 1500)  # px: the digits' height in the picture (1500: one fills a 2,000 px photo)
GRID_DIGITS = ((1, 1), (3, 6), (7, 12))  # digits in the number


def stress_cell(stroke: float, height_px: float, digits: tuple[int, int]) -> EngineConfig:
    """The engine's ranges narrowed to one cell of the stress grid: a crop of one number, written with the pen
    model at `stroke` (digit heights), its digits `height_px` tall in the picture, `digits` (lo, hi) long."""
    lo, hi = digits
    draw_px = max(height_px, min(4.0 * height_px, 160.0))  # small digits are drawn larger, then reduced
    return EngineConfig(frame_share=0.0, tight_share=0.0, single_share=1.0 if hi == 1 else 0.0,
                        long_share=1.0 if lo >= 7 else 0.0, max_digits=max(hi, 2), min_digits=max(lo, 2),
                        second_line_p=0.0, stroke=(stroke, stroke), pen_p=1.0, crop_height_px=(draw_px, draw_px),
                        final_height_px=float(height_px), touching_p=0.0, text_p=0.3, scribble_p=0.1)


@dataclass
class Scene:
    """One rendered picture and its truth."""

    image_bgr: np.ndarray  # (H, W, 3) uint8
    lines: list[str]  # the numbers written, top line first
    digits: list[int] = field(default_factory=list)  # per digit, in reading order
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # per digit: x, y, w, h in the image
    conditions: list[str] = field(default_factory=list)  # e.g. "touching", "tilted", "marker", "tight"
    params: dict = field(default_factory=dict)  # every random choice, to reproduce or explain a result

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def kind(self) -> str:
        """The main condition, for per-kind scores: the first of `conditions`."""
        return self.conditions[0] if self.conditions else "plain"


# ---------------------------------------------------------------------------------------------- layout


@dataclass
class _Placed:
    """One digit placed on the canvas: where its 28x28 source lands, and its ink points there."""

    label: int
    index: int  # into the digit images
    matrix: np.ndarray  # (2, 3) affine: MNIST pixel (x, y) -> canvas
    points: np.ndarray  # (N, 2) float32: its ink pixels on the canvas


def _ink_points(digit_28: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(digit_28 > MNIST_INK)
    return np.stack([xs, ys], axis=1).astype(np.float32) + 0.5


def _place_line(rng, images, picks, origin, angle, height, gap, slant, labels, size_jitter: float = 0.1,
                small_zero_p: float = 0.0) -> list[_Placed]:
    """Digits side by side along a line at `angle` (radians), starting at `origin` (the first digit's left).

    Each digit's height varies by `size_jitter`; a 0 in a number of two or more digits is, with `small_zero_p`,
    written small and sitting low (people write it like an "o").
    """
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-math.sin(angle), math.cos(angle)])
    placed, advance = [], 0.0
    for k, index in enumerate(picks):
        digit = images[index]
        pts = _ink_points(digit)
        if len(pts) < 3:
            pts = np.float32([[4, 4], [24, 24]])
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        h_k = height * rng.uniform(1 - size_jitter, 1 + size_jitter * 0.7)
        drop = 0.0
        if int(labels[index]) == 0 and len(picks) > 1 and rng.random() < small_zero_p:
            small = rng.uniform(0.5, 0.8)
            drop = (h_k - h_k * small) / 2 * rng.uniform(0.4, 1.0)  # sits toward the baseline
            h_k *= small
        s = h_k / max(y1 - y0, 1.0)
        s_x = s * rng.uniform(0.85, 1.15)  # narrower or wider hands
        w_k = (x1 - x0) * s_x
        rot = angle + rng.normal(0, math.radians(3))
        centre = (np.asarray(origin) + direction * (advance + w_k / 2)
                  + normal * (rng.normal(0, 0.04) * height + drop))
        # source centre -> origin, scale, shear (slant), rotate, move to the centre on the canvas
        c, si = math.cos(rot), math.sin(rot)
        rotation = np.array([[c, -si], [si, c]])
        shear = np.array([[1.0, -slant], [0.0, 1.0]])
        linear = rotation @ shear @ np.diag([s_x, s])
        src_centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        matrix = np.hstack([linear, (centre - linear @ src_centre)[:, None]])
        placed.append(_Placed(int(labels[index]), int(index), matrix, pts @ linear.T + matrix[:, 2]))
        advance += w_k + gap * height * rng.uniform(0.8, 1.2) if k < len(picks) - 1 else w_k
    return placed


def _stroke_alpha(rng, digit_28: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int],
                  height: float, stroke: float, pressure: float | None = None) -> np.ndarray:
    """The digit's ink coverage (float32 0-1) inside `roi` of the canvas, with the chosen stroke width.

    With `pressure` (the pen model) the digit's centre line is drawn by a pen `stroke * height` px wide, any
    width; without, MNIST's own strokes are thickened or thinned (not finer than about 3.5 % of the height).
    """
    x, y, w, h = roi
    shifted = matrix.copy()
    shifted[:, 2] -= (x, y)
    if pressure is not None:
        return pen.draw(rng, pen.centre_segments(digit_28), shifted, (w, h), stroke * height, pressure)
    smooth = cv2.warpAffine(digit_28.astype(np.float32) / 255.0, shifted, (w, h), flags=cv2.INTER_CUBIC)
    # MNIST strokes are about 0.11 of the digit height; thresholding the smooth upscaled digit lower or
    # higher makes them thicker or thinner, and a dilation makes a marker.
    level = float(np.clip(0.5 + (0.11 - stroke) * 4.0, 0.15, 0.85))
    soft = max(0.04, 0.6 / max(height * 0.11, 1.0))
    alpha = np.clip((smooth - level) / soft + 0.5, 0, 1)
    extra = (stroke - 0.15) * height
    if extra >= 1.0:
        k = int(round(extra))
        alpha = cv2.dilate(alpha, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k + 1, k + 1)))
    return alpha


# ---------------------------------------------------------------------------------------------- paper


def _jitter(rng, colour, amount: float = 12.0) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, amount, 3), 0, 255)


def _texture(rng, h: int, w: int, cell: int, amount: float) -> np.ndarray:
    small = rng.normal(0, 1, (h // cell + 2, w // cell + 2)).astype(np.float32)
    return 1.0 + amount * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _draw_pattern(rng, canvas: np.ndarray, height: float, line_angle: float, params: dict,
                  cfg: EngineConfig, boxes: list) -> str:
    """Ruled, squared, dotted paper or printed cells, drawn before the ink. Returns the pattern's name."""
    h, w = canvas.shape[:2]
    roll = rng.random()
    colour = tuple(float(v) for v in _jitter(rng, RULE_INKS[rng.integers(len(RULE_INKS))], 10))
    thick = max(1, int(round(rng.uniform(0.6, 1.6) * max(1.0, height / 40))))
    cuts = np.cumsum([cfg.ruled_p, cfg.squared_p, cfg.dotted_p, cfg.cells_p])
    angle = line_angle + rng.normal(0, math.radians(1.5))
    if roll < cuts[0] or roll < cuts[2]:
        spacing = height * (rng.uniform(1.1, 2.2) if roll < cuts[0] else rng.uniform(0.45, 1.2))
        pattern = "ruled" if roll < cuts[0] else ("squared" if roll < cuts[1] else "dotted")
        offset = rng.uniform(0, spacing)
        big = int(2 * (w + h))
        c, s = math.cos(angle), math.sin(angle)
        centre = np.array([w / 2, h / 2])
        for k in range(-big // max(int(spacing), 1) - 2, big // max(int(spacing), 1) + 2):
            d = k * spacing + offset
            if pattern == "dotted":
                break
            p = centre + d * np.array([-s, c])
            a, b = p - big * np.array([c, s]), p + big * np.array([c, s])
            cv2.line(canvas, tuple(int(v) for v in a), tuple(int(v) for v in b), colour, thick, cv2.LINE_AA)
            if pattern == "squared":
                q = centre + d * np.array([c, s])
                a, b = q - big * np.array([-s, c]), q + big * np.array([-s, c])
                cv2.line(canvas, tuple(int(v) for v in a), tuple(int(v) for v in b), colour, thick, cv2.LINE_AA)
        if pattern == "dotted":
            step = max(int(spacing), 4)
            for yy in range(int(offset) % step, h, step):
                for xx in range(int(offset) % step, w, step):
                    cv2.circle(canvas, (xx, yy), thick, colour, -1, cv2.LINE_AA)
        if pattern == "ruled" and rng.random() < 0.4:  # a margin line
            xm = int(rng.uniform(0.05, 0.3) * w)
            cv2.line(canvas, (xm, 0), (xm, h), (90, 90, 220), thick, cv2.LINE_AA)
        params["pattern_spacing_px"] = round(float(spacing), 1)
        return pattern
    if roll < cuts[3] and boxes:
        # Printed cells around each digit, as on a form: dark, sometimes thick borders.
        border = tuple(float(v) for v in _jitter(rng, (60, 60, 60), 30))
        cell_thick = max(1, int(round(rng.uniform(0.02, 0.06) * height)))
        pad = rng.uniform(0.1, 0.35) * height
        for bx, by, bw, bh in boxes:
            cx = bx + bw / 2
            half_w = max(bw, 0.7 * bh) / 2 + pad
            cv2.rectangle(canvas, (int(cx - half_w), int(by - pad)), (int(cx + half_w), int(by + bh + pad)),
                          border, cell_thick, cv2.LINE_AA)
        return "cells"
    return "plain"


def _free_spot(rng, size: tuple[float, float], canvas_hw: tuple[int, int], keep_out: list, tries: int = 12):
    """A top-left corner where a (w, h) box lies inside the canvas and clear of every keep-out box."""
    bw, bh = size
    h, w = canvas_hw
    if bw >= w or bh >= h:
        return None
    for _ in range(tries):
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        if all(x + bw < kx or kx + kw < x or y + bh < ky or ky + kh < y for kx, ky, kw, kh in keep_out):
            return x, y
    return None


def _draw_distractors(rng, canvas: np.ndarray, height: float, ink, keep_out: list, cfg: EngineConfig,
                      conditions: list) -> None:
    """Marks that are not digits: printed letters, scribbles, specks, underlines."""
    h, w = canvas.shape[:2]
    if rng.random() < cfg.text_p:
        for _ in range(int(rng.integers(1, 4))):
            text = (WORDS[rng.integers(len(WORDS))] if rng.random() < cfg.words_p
                    else "".join(rng.choice(list(LETTERS), int(rng.integers(1, 9)))))
            font = FONTS[rng.integers(len(FONTS))]
            target_h = height * rng.uniform(0.25, 0.9)
            (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
            scale = target_h / max(th, 1)
            spot = _free_spot(rng, (tw * scale, th * scale * 1.4), (h, w), keep_out)
            if spot is None:
                continue
            colour = tuple(float(v) for v in _jitter(rng, (40, 40, 40), 25))
            written = pen.handwritten_word(rng, target_h * 1.3) if rng.random() < cfg.handwritten_p else None
            if written is not None:  # a word in the writer's own hand and ink: letters are nothing to read
                wh, ww = written.shape
                spot = _free_spot(rng, (ww, wh), (h, w), keep_out)
                if spot is None:
                    continue
                x0, y0 = int(spot[0]), int(spot[1])
                a = written[:max(0, min(wh, h - y0)), :max(0, min(ww, w - x0))][..., None]
                region = canvas[y0:y0 + a.shape[0], x0:x0 + a.shape[1]].astype(np.float32)
                canvas[y0:y0 + a.shape[0], x0:x0 + a.shape[1]] = (region * (1 - a) + np.asarray(ink) * a).astype(
                    np.uint8)
                keep_out.append((x0, y0, ww, wh))
                conditions.append("handwritten-text")
                continue
            cv2.putText(canvas, text, (int(spot[0]), int(spot[1] + th * scale)), font, scale, colour,
                        max(1, int(round(scale * rng.uniform(0.8, 2.0)))), cv2.LINE_AA)
            keep_out.append((spot[0], spot[1], tw * scale, th * scale * 1.4))
            conditions.append("text")
    if rng.random() < cfg.scribble_p:
        for _ in range(int(rng.integers(1, 3))):
            size = height * rng.uniform(0.6, 2.5)
            spot = _free_spot(rng, (size, size * rng.uniform(0.3, 1.0)), (h, w), keep_out)
            if spot is None:
                continue
            n = int(rng.integers(3, 8))
            pts = np.cumsum(rng.normal(0, size / 4, (n, 2)), axis=0)
            pts = pts - pts.min(axis=0)
            pts = pts * (size / max(pts.max(), 1.0)) + spot
            curve = _smooth_polyline(pts)
            cv2.polylines(canvas, [curve.astype(np.int32)], False, tuple(float(v) for v in ink),
                          max(1, int(round(height * rng.uniform(0.04, 0.12)))), cv2.LINE_AA)
            keep_out.append((spot[0], spot[1], size, size))
            conditions.append("scribble")
    if rng.random() < cfg.specks_p:
        for _ in range(int(rng.integers(3, 40))):
            r = max(1, int(round(height * rng.uniform(0.01, 0.05))))
            cv2.circle(canvas, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), r,
                       tuple(float(v) for v in _jitter(rng, ink, 20)), -1, cv2.LINE_AA)


def _smooth_polyline(pts: np.ndarray, samples: int = 40) -> np.ndarray:
    """A Catmull-Rom-like smooth curve through the points (a hand's scribble, not a polygon)."""
    t = np.linspace(0, len(pts) - 1, samples)
    return np.stack([np.interp(t, np.arange(len(pts)), pts[:, k]) for k in (0, 1)], axis=1)


# ---------------------------------------------------------------------------------------------- light


def _shadow(rng, h: int, w: int, hard: bool) -> np.ndarray:
    """A multiplicative shadow: a random half-plane or blob, sharp-edged (hard) or soft."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:
        a = rng.uniform(0, 2 * np.pi)
        edge = math.cos(a) * (xx - rng.uniform(0.15, 0.85) * w) + math.sin(a) * (yy - rng.uniform(0.15, 0.85) * h)
    else:  # a blob (a hand or a phone)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.2, 0.6) * max(h, w)
        edge = r - np.hypot((xx - cx) * rng.uniform(0.6, 1.4), yy - cy)
    width = rng.uniform(0.5, 2.5) if hard else rng.uniform(0.04, 0.2) * max(h, w)
    depth = rng.uniform(0.3, 0.65) if hard else rng.uniform(0.2, 0.5)
    return (1.0 - depth / (1.0 + np.exp(np.clip(-edge / width, -30, 30)))).astype(np.float32)


def _light(rng, h: int, w: int) -> np.ndarray:
    """A gradient in a random direction and a vignette."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = math.cos(a) * (xx / w - 0.5) + math.sin(a) * (yy / h - 0.5)
    light = 1.0 - rng.uniform(0.0, 0.4) * (ramp + 0.7) / 1.4
    if rng.random() < 0.3:
        r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 2
        light *= 1.0 - rng.uniform(0.1, 0.45) * r2
    return light.astype(np.float32)


def _glare(rng, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    sx, sy = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.3) * h
    spot = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    strength = rng.uniform(0.4, 0.95)
    image += (255.0 - image) * (strength * spot)[..., None]


# ---------------------------------------------------------------------------------------------- a scene


def _choose_digits(rng, cfg: EngineConfig, tight: bool) -> list[int]:
    """How many digits on each line."""
    if tight or rng.random() < cfg.single_share:
        return [1]
    first = int(rng.integers(max(7, cfg.min_digits), cfg.max_digits + 1) if rng.random() < cfg.long_share
                else rng.integers(cfg.min_digits, min(7, cfg.max_digits + 1)))
    lines = [first]
    if rng.random() < cfg.second_line_p:
        lines.append(int(rng.integers(1, 8)))
        if rng.random() < 0.25:
            lines.append(int(rng.integers(1, 8)))
    return lines


def render(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray,
           cfg: EngineConfig = EngineConfig(), kind: str | None = None) -> Scene:  # noqa: B008 (frozen)
    """Render one scene from the digits `images` (N, 28, 28) uint8 with `labels` (N,).

    Args:
        rng: every choice comes from it, so a seed reproduces the scene.
        images, labels: the digits to write with (MNIST training digits for training, test digits for
            evaluation: they never mix).
        cfg: the ranges to draw from.
        kind: "frame" (640x480) or "crop"; default: drawn with `cfg.frame_share`.
    """
    params: dict = {}
    conditions: list[str] = []
    frame = kind == "frame" if kind else rng.random() < cfg.frame_share
    tight = (not frame) and rng.random() < cfg.tight_share
    counts = _choose_digits(rng, cfg, tight)
    touching = rng.random() < cfg.touching_p and max(counts) > 1
    gap = rng.uniform(cfg.gap[0], 0.02) if touching else rng.uniform(0.04, cfg.gap[1])
    tilt = rng.uniform(-1, 1) * cfg.tilt_deg * (2 if rng.random() < cfg.steep_tilt_p else 1)
    if rng.random() < 0.35:
        tilt *= 0.1  # most rows are written nearly level
    angle = math.radians(tilt)
    slant = rng.uniform(-cfg.slant, cfg.slant) * (rng.random() < 0.6)
    stroke = float(np.exp(rng.uniform(np.log(cfg.stroke[0]), np.log(cfg.stroke[1]))))
    if touching:  # overlapping marker strokes merge into a blot no one can read
        stroke = min(stroke, cfg.touching_max_stroke)
    pen_drawn = rng.random() < cfg.pen_p
    pressure = float(rng.uniform(*cfg.pressure)) if pen_drawn else None
    if not pen_drawn:
        stroke = max(stroke, cfg.mnist_look_stroke)
    line_pitch = rng.uniform(1.3, 1.9)  # line spacing, in digit heights

    # Digit height: in a frame, log-uniform from tiny to what still fits; in a crop, its own size.
    widest = max(counts) * (0.7 + max(gap, 0.0)) + 0.2
    if frame:
        fit = min(0.92 * FRAME_SIZE[0] * math.cos(angle) / widest,
                  0.85 * FRAME_SIZE[1] / (len(counts) * line_pitch + widest * abs(math.sin(angle))), 300.0)
        height = float(np.exp(rng.uniform(np.log(cfg.min_height_px), np.log(max(fit, cfg.min_height_px + 1)))))
    else:
        height = float(np.exp(rng.uniform(*np.log(cfg.crop_height_px))))

    picks = [rng.integers(0, len(images), n) for n in counts]
    placed: list[_Placed] = []
    drawn: list[np.ndarray] = []  # each placed digit's 28x28 image as written (styled, distorted)
    line_of: list[int] = []
    normal = np.array([-math.sin(angle), math.cos(angle)])
    for li, line_picks in enumerate(picks):
        origin = normal * li * line_pitch * height + np.array([rng.normal(0, 0.3) * height * (li > 0), 0.0])
        styled = np.stack([handwriting.styled(rng, images[i], int(labels[i]), cfg.styled_p, cfg.elastic_p)
                           for i in line_picks])
        placed += _place_line(rng, styled, np.arange(len(line_picks)), origin, angle, height, gap, slant,
                              labels[line_picks], cfg.size_jitter, cfg.small_zero_p)
        drawn += list(styled)
        line_of += [li] * len(line_picks)

    # The canvas: the content's extent plus margins (crops), or the frame with the content somewhere in it.
    every = np.concatenate([p.points for p in placed])
    spread = max(0.0, (stroke - 0.11) * height / 2) + 1.0  # a thick stroke reaches past MNIST's ink points
    lo, hi = every.min(axis=0) - spread, every.max(axis=0) + spread
    extent = hi - lo
    if frame:
        cw, ch = FRAME_SIZE
        scale = min(1.0, 0.94 * cw / max(extent[0], 1), 0.94 * ch / max(extent[1], 1))
        room = np.array([cw, ch]) - extent * scale
        shift = rng.uniform(0.03, 0.97, 2) * room - lo * scale
    else:
        margin = (rng.uniform(0.06, 0.35, 4) if tight else rng.uniform(0.1, 1.2, 4)) * height
        if tight and rng.random() < cfg.cut_p:  # a hasty crop that shaves a stroke off one side
            margin[rng.integers(4)] = -rng.uniform(0.0, 0.05) * height - spread
        scale = 1.0
        cw, ch = int(math.ceil(extent[0] + margin[0] + margin[1])), int(math.ceil(extent[1] + margin[2] + margin[3]))
        shift = np.array([margin[0], margin[2]]) - lo
    for p in placed:
        p.matrix = np.vstack([p.matrix, [0, 0, 1]])
        p.matrix = (np.array([[scale, 0, shift[0]], [0, scale, shift[1]], [0, 0, 1]]) @ p.matrix)[:2]
        p.points = p.points * scale + shift
    height *= scale
    spread *= scale
    boxes = [_box(p.points, spread) for p in placed]

    # Paper, its pattern, and distractors, then the ink.
    bright = rng.random() < cfg.bright_ink_p
    paper_colour = _jitter(rng, BOARDS[rng.integers(len(BOARDS))] if bright else PAPERS[rng.integers(len(PAPERS))])
    paper_colour *= rng.uniform(0.8, 1.0)
    ink = _jitter(rng, (235, 235, 230) if bright else INKS[rng.integers(len(INKS))], 10)
    canvas = np.empty((ch, cw, 3), np.uint8)  # uint8 while drawing: OpenCV's text needs it
    canvas[:] = paper_colour
    sticky = (not bright) and rng.random() < cfg.sticky_p
    if sticky:  # the digits sit on a coloured square; around it, a desk or a white page
        note = _jitter(rng, STICKY[rng.integers(len(STICKY))], 8)
        around = _jitter(rng, DESKS[rng.integers(len(DESKS))] if rng.random() < 0.5 else (240, 240, 240))
        canvas[:] = around
        pad = rng.uniform(0.3, 1.5, 4) * height
        x0, y0 = lo * scale + shift - pad[:2]
        x1, y1 = hi * scale + shift + pad[2:]
        note_quad = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) + rng.normal(0, 0.1 * height, (4, 2))
        cv2.fillConvexPoly(canvas, note_quad.astype(np.int32), tuple(float(v) for v in note), cv2.LINE_AA)
        conditions.append("sticky-note")
    pattern = "plain" if bright or sticky else _draw_pattern(rng, canvas, height, angle, params, cfg, boxes)
    if pattern != "plain":
        conditions.append(pattern)
    if rng.random() < cfg.show_through_p and not bright:
        ghost = canvas.copy()
        for _ in range(int(rng.integers(2, 6))):
            cv2.putText(ghost, "".join(rng.choice(list(LETTERS + "0123456789"), 8)),
                        (int(rng.uniform(0, cw)), int(rng.uniform(0, ch))), FONTS[rng.integers(4)],
                        height / 30, (0, 0, 0), max(1, int(height / 15)), cv2.LINE_AA)
        ghost = cv2.flip(cv2.GaussianBlur(ghost, (0, 0), 1.5), 1)
        canvas = cv2.addWeighted(canvas, 0.88, ghost, 0.12, 0)
        conditions.append("show-through")
    keep_out = [(x - 0.3 * h, y - 0.3 * h, w + 0.6 * h, h + 0.6 * h) for x, y, w, h in boxes]
    _draw_distractors(rng, canvas, height, ink, keep_out, cfg, conditions)
    if rng.random() < cfg.underline_p and not tight:
        line_boxes = [b for b, li in zip(boxes, line_of, strict=True) if li == len(counts) - 1]
        x0 = min(b[0] for b in line_boxes)
        x1 = max(b[0] + b[2] for b in line_boxes)
        y = max(b[1] + b[3] for b in line_boxes) + rng.uniform(0.12, 0.4) * height
        end = (int(x1 + 0.2 * height), int(y + (x1 - x0) * math.tan(angle)))
        cv2.line(canvas, (int(x0 - 0.2 * height), int(y)), end, tuple(float(v) for v in ink),
                 max(1, int(round(stroke * height * 0.7))), cv2.LINE_AA)
        conditions.append("underline")

    canvas = canvas.astype(np.float32)
    coverage = np.zeros((ch, cw), np.float32)
    for p, digit, box in zip(placed if cfg.digits else [], drawn, boxes, strict=False):
        roi = _grow(box, 0.25 * height + 3, cw, ch)
        if roi[2] < 1 or roi[3] < 1:
            continue
        a = _stroke_alpha(rng, digit, p.matrix, roi, height, stroke, pressure)
        x, y, w, h = roi
        coverage[y:y + h, x:x + w] = np.maximum(coverage[y:y + h, x:x + w], a)
    pencil = rng.random() < 0.15 and not bright and 0.02 < stroke < 0.12  # a pencil is never marker-wide
    strength = rng.uniform(0.35, 0.7) if pencil else rng.uniform(0.8, 1.0)
    coverage *= strength * (_texture(rng, ch, cw, 3, 0.25) if pencil else 1.0)
    coverage = cv2.GaussianBlur(coverage, (0, 0), rng.uniform(0.3, 0.8))
    canvas = canvas * (1 - coverage[..., None]) + ink * coverage[..., None]
    canvas *= _texture(rng, ch, cw, max(8, min(cw, ch) // 12), 0.03)[..., None]

    # The scene: light and shadow on the page.
    canvas *= _light(rng, ch, cw)[..., None]
    if rng.random() < cfg.hard_shadow_p:
        canvas *= _shadow(rng, ch, cw, hard=True)[..., None]
        conditions.append("hard-shadow")
    elif rng.random() < cfg.soft_shadow_p:
        canvas *= _shadow(rng, ch, cw, hard=False)[..., None]
        conditions.append("soft-shadow")
    if rng.random() < cfg.glare_p:
        _glare(rng, canvas)
        conditions.append("glare")

    # Perspective: a frame's page may be smaller than the frame, with a desk around it.
    homography = np.eye(3)
    if frame:
        desk = rng.random() < cfg.desk_p
        homography = _perspective(rng, cw, ch, boxes, desk)
        desk_colour = _jitter(rng, DESKS[rng.integers(len(DESKS))], 15)
        out = cv2.warpPerspective(np.clip(canvas, 0, 255), homography, (cw, ch), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in desk_colour))
        if desk:
            conditions.append("desk")
        canvas = out
    elif rng.random() < 0.3:
        homography = _perspective(rng, cw, ch, boxes, False, amount=0.04)
        canvas = cv2.warpPerspective(canvas, homography, (cw, ch), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
    points = [cv2.perspectiveTransform(p.points[None], homography)[0] for p in placed]
    boxes = [_box(pts, spread) for pts in points]

    # The camera: blur, noise, JPEG; a crop is also resized to its final pixel size.
    image = canvas
    if not frame:
        final_long = float(np.exp(rng.uniform(*np.log(cfg.final_long_px))))
        final_long = max(final_long, 14.0 * max(cw, ch) / max(height, 1.0))  # a digit stays >= 14 px tall
        f = cfg.final_height_px / height if cfg.final_height_px > 0 else final_long / max(cw, ch)
        if f < 1:  # only shrink here: enlarging would waste work, the detector resizes anyway
            nw, nh = max(1, round(cw * f)), max(1, round(ch * f))
            image = frames.shrink(image, (nw, nh), not bright)  # optics spread a fine line, never erase it
            boxes = [_box(pts * [nw / cw, nh / ch], spread * f) for pts in points]
            height *= f
    # a blur wider than twice the stroke erases the writing for anyone: a camera that sharp is not the case
    sigma = min(rng.uniform(*cfg.blur_sigma), max(0.6, 2.0 * stroke * height))
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise = rng.uniform(*cfg.noise_sigma)
    image = np.clip(image + rng.normal(0, noise, image.shape).astype(np.float32), 0, 255).astype(np.uint8)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)

    # Truth in reading order, and the conditions this scene exercises (the first is its "kind").
    lines = ["".join(str(p.label) for p, li in zip(placed, line_of, strict=True) if li == k)
             for k in range(len(counts))]
    size_tag = ("tight" if tight else "crop") if not frame else (
        "small" if height < 24 else "large" if height > 160 else "frame")
    tags = [size_tag]
    if touching:
        tags.append("touching")
    if abs(tilt) > 5:
        tags.append("tilted")
    if stroke > 0.17:
        tags.append("marker")
    elif stroke < 0.02:
        tags.append("ballpoint")
    elif stroke < 0.06:
        tags.append("fine-pen")
    if max(counts) >= 7:
        tags.append("long")
    if len(counts) > 1:
        tags.append("lines")
    if bright:
        tags.append("bright-ink")
    if pencil:
        tags.append("pencil")
    params.update({
        "frame": frame, "tight": tight, "digits_per_line": counts, "height_px": round(height, 1),
        "gap": round(float(gap), 3), "tilt_deg": round(float(tilt), 2), "slant": round(float(slant), 3),
        "stroke": round(stroke, 4), "pen": pen_drawn, "pressure": pressure,
        "pattern": pattern, "bright_ink": bright, "sticky": sticky,
        "blur_sigma": round(float(sigma), 2), "noise_sigma": round(float(noise), 2), "jpeg_quality": quality,
        "size": [int(image.shape[1]), int(image.shape[0])], "digit_index": [int(i) for li in picks for i in li],
    })
    if not cfg.digits:  # the number was laid out (cells, underline) but never written
        return Scene(image, [], [], [], ["no-digit", *tags[:1], *sorted(set(conditions))], params)
    return Scene(image, lines, [p.label for p in placed], boxes, tags + sorted(set(conditions)), params)


def _box(points: np.ndarray, spread: float = 0.0) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(points.min(axis=0) - spread)
    x1, y1 = np.ceil(points.max(axis=0) + spread)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _grow(box, pad: float, w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, int(box[0] - pad)), max(0, int(box[1] - pad))
    x1, y1 = min(w, int(box[0] + box[2] + pad) + 1), min(h, int(box[1] + box[3] + pad) + 1)
    return x0, y0, x1 - x0, y1 - y0


def _perspective(rng, w: int, h: int, boxes: list, desk: bool, amount: float = 0.06) -> np.ndarray:
    """A homography that tilts the page a little (and shrinks it when a desk shows), keeping every digit in."""
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    shrink = rng.uniform(0.06, 0.2) if desk else 0.0
    inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * shrink * np.float32([w, h]) / 2
    corners = np.float32([[[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]]
                          for x, y, bw, bh in boxes]).reshape(-1, 1, 2)
    for _ in range(20):
        jitter = rng.uniform(-amount, amount, (4, 2)) * np.float32([w, h])
        m = cv2.getPerspectiveTransform(src, (src + jitter + inward).astype(np.float32))
        moved = cv2.perspectiveTransform(corners, m)[:, 0]
        if (moved >= 0).all() and (moved[:, 0] < w).all() and (moved[:, 1] < h).all():
            return m
    return np.eye(3)


# ---------------------------------------------------------------------------------------------- a set


def scenes(seed: int, images: np.ndarray, labels: np.ndarray, cfg: EngineConfig = EngineConfig(),  # noqa: B008
           kind: str | None = None):
    """An endless iterator of scenes from one seed."""
    rng = np.random.default_rng(seed)
    while True:
        yield render(rng, images, labels, cfg, kind)


def draw_truth(scene: Scene) -> np.ndarray:
    """The scene's image with its digit boxes and text drawn (for looking at the engine's output)."""
    out = scene.image_bgr.copy()
    for (x, y, w, h), d in zip(scene.boxes, scene.digits, strict=True):
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 0, 255), 1)
        cv2.putText(out, str(d), (x, max(10, y - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m digitdata.engine",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description="Write engine scenes (MNIST test digits) as PNGs with truth.csv.")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/engine"))
    parser.add_argument("--boxes", action="store_true", help="draw the truth boxes on the images")
    args = parser.parse_args(argv)
    from digitdata.mnist import load_mnist

    m = load_mnist()
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "kind", "conditions"])
        for i, scene in zip(range(args.count), scenes(args.seed, m.x_test, m.y_test), strict=False):
            name = f"scene_{i:04d}.png"
            cv2.imwrite(str(args.out / name), draw_truth(scene) if args.boxes else scene.image_bgr)
            writer.writerow([name, "".join(scene.lines), scene.kind, " ".join(scene.conditions)])
    print(f"wrote {args.count} scenes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

