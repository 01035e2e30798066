"""Ink primitives and the classifier's MNIST-style input: plain numpy and OpenCV.

`ink_is_dark` tells dark ink on light paper from bright ink on a dark ground (the reader's polarity);
`mnist_style` makes the classifier's 28x28 input from an ink patch the way MNIST was made (fit in 20x20
keeping the aspect, placed in 28x28 by centre of mass, white on black). `digit_to_mnist` is THE preparation of
a picture of one digit for the classifier (polarity, paper level, contrast stretch, then `mnist_style`): the
release gate's real digits, the web page's drawings and photos (`/api/digit`) and training's real digits all go
through it, so that what the gate measures is what the device does.

    python -c "from digitdata.crops import digit_to_mnist; help(digit_to_mnist)"
"""

from __future__ import annotations

import cv2
import numpy as np

MNIST_BOX = 20  # MNIST digits were fit in a 20x20 box ...
MNIST_SIZE = 28  # ... and centred by centre of mass in 28x28
MNIST_STROKE = 2.2  # px: median stroke width of MNIST digits in the 20x20 box (area / half the boundary)
POLARITY_SIDE = 256  # px: polarity is judged on a thumbnail this long
WORK_HEIGHT = 64  # px: a patch is processed at most this tall (bounded work for a 2,000 px digit)
DIGIT_WORK_SIDE = 256  # px: a picture of one digit is reduced to at most this long before it is prepared
PAPER_WINDOW = 0.5  # of the picture's shorter side: the median window that gives the local paper level
NOISE_SIGMAS = 3.0  # ink must stand this many noise sigmas (the paper's MAD x 1.4826) off the paper
INK_PERCENTILE = 90  # the contrast stretch maps this percentile of the ink to 255 (faint ink becomes full)
MIN_INK_CONTRAST = 12  # grey levels above the paper's noise: less is a blank picture (the faintest nsysu digit: 25)


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


def digit_to_mnist(image: np.ndarray, dark_ink: bool | None = None, normalize_width: bool = False) -> np.ndarray:
    """A picture of one handwritten digit as the classifier's MNIST-style 28x28 input (ink 255 on 0).

    The one preparation for every single digit handed to the classifier (the gate's real digits, `/api/digit`,
    training on real digits):

    1. polarity: the ink is the side of the grey levels that lies farther from the median (the paper), unless
       `dark_ink` says which it is;
    2. paper level: a median over half the picture's shorter side is the local paper (shading and a grey
       scanner background cancel), and the ink is how far a pixel is from it, less 3 noise sigmas of the paper;
    3. contrast stretch: the 90th percentile of the ink becomes 255 (scanned exam digits are faint: without
       the stretch the released model reads 65 % of them);
    4. the ink's box fitted in 20x20, keeping its aspect, and its centre of mass put at the centre of 28x28
       (`mnist_style`), as LeCun et al. made MNIST.

    Args:
        image: (H, W) grey or (H, W, 3) BGR uint8, any size; the digit should fill a good part of it.
        dark_ink: True for dark ink on light paper, False for light on dark; None decides from the picture.
        normalize_width: also bring the stroke width to MNIST's (off: the released model learned other pens).

    Returns:
        (28, 28) uint8, white on black; all zeros when the picture holds no ink.
    """
    gray = np.asarray(image)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY if gray.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if gray.ndim != 2 or gray.size == 0:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    gray = gray.astype(np.uint8, copy=False)
    h, w = gray.shape
    if max(h, w) > DIGIT_WORK_SIDE:
        f = DIGIT_WORK_SIDE / max(h, w)
        gray = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    median = float(np.median(gray))
    if dark_ink is None:
        low, high = np.percentile(gray, (1, 99))
        dark_ink = median - low >= high - median  # ties: dark ink, the common case
    k = max(3, int(min(gray.shape) * PAPER_WINDOW) | 1)
    paper = cv2.medianBlur(np.ascontiguousarray(gray), k).astype(np.float32) if min(gray.shape) >= 3 \
        else np.full(gray.shape, median, np.float32)
    ink = (paper - gray) if dark_ink else (gray - paper)
    noise = NOISE_SIGMAS * 1.4826 * float(np.median(np.abs(gray - paper)))
    ink = np.clip(ink - noise, 0, None)
    if ink.max() < MIN_INK_CONTRAST:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    level = float(np.percentile(ink[ink > 0.25 * ink.max()], INK_PERCENTILE))
    ink_u8 = np.clip(ink * (255.0 / max(level, 1e-6)), 0, 255).astype(np.uint8)
    return mnist_style(ink_u8, normalize_width=normalize_width)
