"""How a picture becomes the detector's input: one grey channel, letterboxed, contrast stretched.

Training and its scene sets (`digitdata/scene_sets.py`), the release gate (`convert/`) and the device
(`edge_app/`) all call `detector_input`, so the detector sees the same pixels everywhere. numpy and OpenCV.

    python -c "from digitdata.frames import detector_input; help(detector_input)"
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitdata.crops import ink_is_dark

DETECTOR_SIZE = (320, 256)  # (width, height) px of the detector input; both multiples of its 32 px stride
STRETCH_PERCENTILES = (0.5, 99.5)  # grey levels mapped to 0 and 255 (robust to a few specks and glints)
MIN_CONTRAST = 24  # grey levels: a flatter picture is only shifted, not stretched (no noise blown up)
STROKE_SAFE_BELOW = 0.5  # a reduction to less than half the size pools the ink first (`shrink`) ...
STROKE_SAFE_SHARE = 0.5  # ... over this share of the reduction factor: a stroke keeps >= ~half an output pixel


@dataclass(frozen=True)
class Letterbox:
    """Where the picture sits in the detector input: input = picture * scale + (left, top)."""

    scale: float
    left: float
    top: float

    def to_picture(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x, y, w, h boxes in input pixels -> picture pixels."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        b[:, 0] = (b[:, 0] - self.left) / self.scale
        b[:, 1] = (b[:, 1] - self.top) / self.scale
        b[:, 2:] /= self.scale
        return b

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x, y, w, h boxes in picture pixels -> input pixels."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        b[:, :2] = b[:, :2] * self.scale + (self.left, self.top)
        b[:, 2:] *= self.scale
        return b


def as_bgr_uint8(frame: np.ndarray) -> np.ndarray:
    """Any image array (grey, BGR, BGRA; uint8, uint16 or float in [0, 1]) as contiguous BGR uint8.

    Raises:
        ValueError: for arrays that are not an image (wrong rank, channel count, or empty).
    """
    a = np.asarray(frame)
    if a.ndim not in (2, 3) or a.size == 0 or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = np.clip(np.nan_to_num(a) * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2 or a.shape[2] == 1:
        return cv2.cvtColor(a.reshape(a.shape[:2]), cv2.COLOR_GRAY2BGR)
    if a.shape[2] == 4:
        return cv2.cvtColor(a, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(a)


def as_gray_uint8(frame: np.ndarray) -> np.ndarray:
    """Any image array as a contiguous grey uint8 picture: a grey frame as it is (the Pi camera's Y plane),
    a colour one by `to_gray` (the channel in which the ink stands out most).

    Raises:
        ValueError: for arrays that are not an image.
    """
    a = np.asarray(frame)
    if a.ndim == 2 and a.dtype == np.uint8 and a.size:
        return np.ascontiguousarray(a)
    return to_gray(as_bgr_uint8(a))


def to_gray(image_bgr: np.ndarray) -> np.ndarray:
    """The grey image in which the ink stands out most: luminance or one colour channel.

    Coloured ink on coloured paper can vanish in luminance (blue on yellow); one channel always separates
    them. The choice is made by local contrast (mean |pixel - local mean|) on a thumbnail, which large
    smooth areas such as a desk or a shadow hardly affect.
    """
    if image_bgr.ndim == 2:
        return image_bgr
    h, w = image_bgr.shape[:2]
    f = min(1.0, 160 / max(h, w))
    small = cv2.resize(image_bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    candidates = [cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)] + [small[:, :, c] for c in range(3)]
    scores = [float(np.abs(g.astype(np.float32) - cv2.blur(g, (9, 9)).astype(np.float32)).mean()) for g in candidates]
    best = int(np.argmax(scores))
    # Luminance unless a single channel is clearly better: it averages the sensor noise of three channels.
    if scores[best] < 1.15 * scores[0]:
        best = 0
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if best == 0 else np.ascontiguousarray(image_bgr[:, :, best - 1])


def shrink(gray: np.ndarray, size: tuple[int, int], dark_ink: bool | None = None) -> np.ndarray:
    """The grey picture resized to `size` (width, height) so that a stroke never fades away.

    An area reduction by a factor of 6 turns a 2 px ballpoint line into a third of a pixel at a third of its
    contrast. Below `STROKE_SAFE_BELOW`, the ink is first pooled (a grey erosion for dark ink, a dilation for
    bright) over `STROKE_SAFE_SHARE` of the factor, so a stroke reaches about half an output pixel at full
    contrast; then the area reduction. Enlarging is linear.

    Args:
        dark_ink: the ink's polarity; None guesses it (`crops.ink_is_dark`).
    """
    h, w = gray.shape[:2]
    f = min(size[0] / max(w, 1), size[1] / max(h, 1))
    if f >= 1:
        return cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR)
    if f < STROKE_SAFE_BELOW:
        gray = pool_ink(gray, f, ink_is_dark(gray) if dark_ink is None else dark_ink)
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def pool_ink(gray: np.ndarray, f: float, dark_ink: bool) -> np.ndarray:
    """The picture with its ink widened ahead of a reduction by `f` (< 1): a grey erosion (dark ink) or dilation
    (bright ink) over `STROKE_SAFE_SHARE` of the reduction factor, at least 2 px."""
    k = max(2, int(round(STROKE_SAFE_SHARE / f)))
    kernel = np.ones((k, k), np.uint8)
    return cv2.erode(gray, kernel) if dark_ink else cv2.dilate(gray, kernel)


def stretch(gray: np.ndarray) -> np.ndarray:
    """Map the picture's robust grey range to 0-255 (a dim photo looks like a well-lit one)."""
    lo, hi = np.percentile(gray, STRETCH_PERCENTILES)
    if hi - lo < MIN_CONTRAST:
        centre = (hi + lo) / 2
        lo, hi = centre - MIN_CONTRAST / 2, centre + MIN_CONTRAST / 2
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return cv2.LUT(gray, lut)


def letterbox(gray: np.ndarray, size: tuple[int, int] = DETECTOR_SIZE,
              dark_ink: bool | None = None) -> tuple[np.ndarray, Letterbox]:
    """Fit the grey picture in `size` (width, height) keeping its aspect, centred, contrast stretched and
    padded with its median grey."""
    w_in, h_in = size
    h, w = gray.shape[:2]
    scale = min(w_in / w, h_in / h)
    nw, nh = max(1, min(w_in, round(w * scale))), max(1, min(h_in, round(h * scale)))
    resized = stretch(shrink(gray, (nw, nh), dark_ink))
    left, top = (w_in - nw) // 2, (h_in - nh) // 2
    out = np.full((h_in, w_in), int(np.median(resized)), np.uint8)
    out[top:top + nh, left:left + nw] = resized
    return out, Letterbox(scale, left, top)


def detector_input(image: np.ndarray, size: tuple[int, int] = DETECTOR_SIZE,
                   region: tuple[int, int, int, int] | None = None,
                   dark_ink: bool | None = None) -> tuple[np.ndarray, Letterbox]:
    """The detector's (H, W) uint8 input for a BGR or grey picture, and where the picture sits in it.

    Args:
        image: BGR or grey uint8.
        size: (width, height) of the input.
        region: (x, y, w, h) of the picture to use (a zoomed second look); boxes map back to the whole picture.
        dark_ink: the ink's polarity for a stroke-safe reduction (`shrink`); None guesses it.
    """
    gray = to_gray(image) if image.ndim == 3 else image
    ox = oy = 0
    if region is not None:
        x, y, w, h = region
        gray, ox, oy = gray[y:y + h, x:x + w], x, y
    boxed, lb = letterbox(gray, size, dark_ink)
    return boxed, Letterbox(lb.scale, lb.left - ox * lb.scale, lb.top - oy * lb.scale)
