"""Camera-like scenes: MNIST *test* digits drawn as ink on paper, photographed badly.

Owns the scene generator used by the `synthetic` frame source, by `digitlite eval-scenes` and to make the
golden images in tests/data/golden. A scene is one 1-6 digit number written on paper, with random ink and
paper colours, digit size and stroke width, spacing, perspective (sometimes showing a dark desk at the
edges), uneven light and a shadow, blur, sensor noise and JPEG compression. Only test-set digits are used,
so evaluation never sees a digit the model was trained on.

    python -m digitdata.scenes --count 8 --seed 1 --out /tmp/scenes   # writes PNGs and truth.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from digitdata.mnist import load_mnist

FRAME_SIZE = (640, 480)  # (width, height) px: the camera's low-resolution stream
MAX_DIGITS = 6
# BGR colours. Inks: black, blue, dark blue, green, dark red, pencil grey.
INKS = [(20, 20, 25), (160, 60, 20), (110, 30, 30), (60, 110, 20), (30, 30, 130), (80, 80, 85)]
# Papers: white, beige, grey, yellow-green, yellow sticky note.
PAPERS = [(245, 245, 245), (200, 225, 240), (190, 195, 195), (170, 235, 215), (120, 235, 250)]
DESKS = [(30, 40, 55), (25, 25, 25), (60, 70, 80)]  # dark wood, black, grey
CHALKBOARD_P = 0.05  # share of scenes with bright ink on a dark board (exercises polarity detection)


@dataclass
class Scene:
    """One rendered scene and its ground truth."""

    frame_bgr: np.ndarray  # (H, W, 3) uint8
    text: str  # the number written, e.g. "0427"
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # per digit, x y w h, in the frame
    params: dict = field(default_factory=dict)  # the random choices, for debugging a failure


@lru_cache(maxsize=1)
def mnist_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images (10000, 28, 28) uint8 and labels, through the project's one verified loader
    (`digitdata.mnist`), read on the first scene rendered."""
    m = load_mnist()
    return m.x_test, m.y_test


def _digit_patch(digit_28: np.ndarray, height_px: float, width_factor: float) -> np.ndarray:
    """The MNIST digit's ink (float32 0-1) cropped to its box, scaled to `height_px` tall, restroked."""
    rows = np.flatnonzero(digit_28.max(axis=1) > 30)
    cols = np.flatnonzero(digit_28.max(axis=0) > 30)
    d = digit_28[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    f = height_px / 20.0  # MNIST's 20 px box becomes the written digit height
    h, w = d.shape
    ink = cv2.resize(d, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_CUBIC)
    ink = ink.astype(np.float32) / 255.0
    # Stroke width: MNIST strokes are ~2.2/20 of the box; dilate or erode by the difference.
    delta = int(round(abs(width_factor - 1.0) * 2.2 * f))
    if delta >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (delta + 1, delta + 1))
        ink = cv2.dilate(ink, kernel) if width_factor > 1 else cv2.erode(ink, kernel)
    return np.clip(ink, 0, 1)


def _illumination(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A multiplicative light field: a gradient in a random direction, sometimes a soft-edged shadow."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5))  # about -0.7..0.7
    light = 1.0 - rng.uniform(0.0, 0.45) * (ramp + 0.7) / 1.4
    if rng.random() < 0.4:
        a2 = rng.uniform(0, 2 * np.pi)
        edge = np.cos(a2) * (xx - rng.uniform(0.2, 0.8) * w) + np.sin(a2) * (yy - rng.uniform(0.2, 0.8) * h)
        softness = rng.uniform(5, 40)
        light *= 1.0 - rng.uniform(0.2, 0.45) / (1.0 + np.exp(-edge / softness))
    return light.astype(np.float32)


def _corners(box: tuple[int, int, int, int], homography: np.ndarray) -> np.ndarray:
    """The four corners of an (x, y, w, h) box after the perspective warp, (4, 2) float32."""
    x, y, w, h = box
    return cv2.perspectiveTransform(np.float32([[[x, y], [x + w, y], [x + w, y + h], [x, y + h]]]), homography)[0]


def _inside(boxes: list, homography: np.ndarray, fw: int, fh: int) -> bool:
    """Whether every digit box stays whole inside the frame after the warp."""
    return all(((c >= 0) & (c <= [fw - 1, fh - 1])).all() for c in (_corners(b, homography) for b in boxes))


def render_scene(rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE, n_digits: int | None = None,
                 images: np.ndarray | None = None, labels: np.ndarray | None = None) -> Scene:
    """Render one scene.

    Args:
        rng: the random generator (all choices come from it, so a seed reproduces a scene).
        size: (width, height) of the frame in px.
        n_digits: how many digits; default: 1 to MAX_DIGITS at random.
        images, labels: digits to draw from; default: the MNIST test set.

    Returns:
        The Scene, with the truth text and the digits' boxes in frame coordinates.
    """
    if images is None or labels is None:
        images, labels = mnist_test_digits()
    fw, fh = size
    n = int(n_digits or rng.integers(1, MAX_DIGITS + 1))
    picks = rng.integers(0, len(images), n)
    height = rng.uniform(0.12, 0.32) * fh
    gaps = rng.uniform(0.08, 0.4, n) * height
    width_factor = float(rng.uniform(0.6, 1.7))
    patches = [_digit_patch(images[i], height * rng.uniform(0.92, 1.05), width_factor) for i in picks]
    total = sum(p.shape[1] for p in patches) + gaps[:-1].sum()
    if total > 0.85 * fw:  # shrink to fit the frame width
        f = 0.85 * fw / total
        patches = [cv2.resize(p, (max(1, round(p.shape[1] * f)), max(1, round(p.shape[0] * f))))
                   for p in patches]
        gaps, height, total = gaps * f, height * f, 0.85 * fw
    alpha = np.zeros((fh, fw), np.float32)
    x = (fw - total) / 2 + rng.uniform(-0.5, 0.5) * (fw - total) * 0.8
    y_centre = fh / 2 + rng.uniform(-0.25, 0.25) * (fh - height)
    tilt = rng.uniform(-0.08, 0.08)  # rows drift up or down: a fraction of the height per digit
    boxes = []
    for k, p in enumerate(patches):
        ph, pw = p.shape
        y = int(round(y_centre - ph / 2 + (rng.uniform(-0.05, 0.05) + tilt * k) * height))
        x0, y = int(round(x)), int(np.clip(y, 0, fh - ph))
        alpha[y:y + ph, x0:x0 + pw] = np.maximum(alpha[y:y + ph, x0:x0 + pw], p[:, : fw - x0])
        boxes.append((x0, y, pw, ph))
        x += pw + gaps[k]

    chalkboard = rng.random() < CHALKBOARD_P
    ink = np.array(INKS[rng.integers(len(INKS))], np.float32)
    paper = np.array(PAPERS[rng.integers(len(PAPERS))], np.float32) * rng.uniform(0.85, 1.0)
    if chalkboard:
        ink, paper = np.array([235, 235, 230], np.float32), np.array([45, 60, 40], np.float32)
    a = (alpha * rng.uniform(0.75, 1.0))[..., None]
    image = paper * (1 - a) + ink * a
    # Paper texture: low-frequency blotches.
    texture = cv2.resize(rng.normal(0, 1, (fh // 32 + 1, fw // 32 + 1)).astype(np.float32), (fw, fh))
    image *= (1 + 0.03 * texture)[..., None]
    image *= _illumination(rng, fw, fh)[..., None]

    # Perspective: jitter the corners; sometimes the paper is smaller than the frame and a desk shows.
    desk = rng.random() < 0.3
    shrink = rng.uniform(0.08, 0.16) if desk else 0.0
    src = np.float32([[0, 0], [fw, 0], [fw, fh], [0, fh]])
    inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * shrink * [fw, fh] / 2
    for _ in range(20):  # a digit the warp pushes out of the frame cannot be in the truth: draw again
        jitter = rng.uniform(-0.05, 0.05, (4, 2)) * [fw, fh]
        homography = cv2.getPerspectiveTransform(src, (src + jitter + inward).astype(np.float32))
        if _inside(boxes, homography, fw, fh):
            break
    desk_colour = tuple(float(c) for c in DESKS[rng.integers(len(DESKS))])
    image = cv2.warpPerspective(np.clip(image, 0, 255).astype(np.uint8), homography, (fw, fh),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=desk_colour if desk else tuple(float(c) for c in paper))
    warped_boxes = []
    for box in boxes:
        pts = _corners(box, homography)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        warped_boxes.append((int(x0), int(y0), int(x1 - x0), int(y1 - y0)))

    sigma = rng.uniform(0, 1.3)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise = rng.uniform(0, 7)
    image = np.clip(image.astype(np.float32) + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
    quality = int(rng.integers(35, 96))
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    text = "".join(str(int(labels[i])) for i in picks)
    params = {"n_digits": n, "height_px": round(float(height), 1), "width_factor": round(width_factor, 2),
              "chalkboard": bool(chalkboard), "desk": bool(desk), "blur_sigma": round(float(sigma), 2),
              "noise_sigma": round(float(noise), 2), "jpeg_quality": quality, "mnist_test_index": picks.tolist()}
    return Scene(image, text, warped_boxes, params)


def scenes(seed: int = 0, size: tuple[int, int] = FRAME_SIZE):
    """An endless iterator of scenes from one seed."""
    rng = np.random.default_rng(seed)
    images, labels = mnist_test_digits()
    while True:
        yield render_scene(rng, size, images=images, labels=labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic scenes as PNGs with a truth.csv.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("scenes"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "text"])
        for i, scene in zip(range(args.count), scenes(args.seed), strict=False):
            name = f"scene_{i:02d}.png"
            cv2.imwrite(str(args.out / name), scene.frame_bgr)
            writer.writerow([name, scene.text])
    print(f"wrote {args.count} scenes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
