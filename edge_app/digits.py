"""Finding digits in a frame and preparing them the way MNIST was made: plain functions on numpy arrays.

This module owns everything between a camera frame and a batch of 28x28 crops, and the grouping of
classified digits into numbers and lines. No model, no camera, no I/O: most edge tests live here.

Pipeline (`find_candidates`, then `extract_crops`):
  1. `to_gray`: the colour channel with the most local contrast (blue ink on a yellow sticky note is
     invisible in luminance but clear in the red channel).
  2. `ink_strength`: polarity (dark ink on paper, or chalk-like bright ink) and a flat-field against a
     local paper-brightness estimate, so shadows and uneven light do not become ink; `two_scale_ink` adds
     a wide estimate so bold, large digits are not hollowed out; `paper_mask` drops a dark desk.
  3. `binarize`: Otsu on the ink strength, clamped so a blank page gives no ink at all.
  4. Connected components, then: printed grid-cell borders removed (`remove_grid_lines`), broken strokes
     merged (`merge_fragments`), non-digits rejected (`screen_blobs`: `is_digit_shape`, `is_step_edge`,
     `is_stroke`, `is_edge_band`) and digits that touched a shadow or page edge peeled off it (`peel_edges`),
     detached 5-flags joined (`attach_flags`), touching digits offered split and whole (`split_touching`)
     and broken ones whole and in pieces (`offer_merges`); the reader keeps the surer reading with
     `choose_alternatives`.
     Detection first runs on a FAST_DETECT_SIDE thumbnail and again at full detection size only when the
     digits found there are small (or none).
  5. `prepare_crop`: MNIST-style, fit in 20x20 keeping the aspect ratio, stroke width normalised, placed in
     28x28 by centre of mass, white on black, uint8.

    python -m edge_app.digits tests/data/golden/scene_00.jpg   # writes the crops it found as one PNG strip
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np

from digitdata.crops import MNIST_SIZE, mnist_style
from digitdata.frames import to_gray
from edge_app.layout import split_at_gaps

# ---------------------------------------------------------------------------------------------- defaults
MAX_DETECT_SIDE = 1024  # px; larger frames are downscaled for detection, crops still come from full resolution
FAST_DETECT_SIDE = 320  # px; detection tries this long side first (see `find_candidates`)
MIN_DIGIT_HEIGHT = 10  # px at detection resolution; smaller blobs are specks
MIN_RELATIVE_HEIGHT = 0.45  # of the median candidate height; dots, commas and specks are smaller
MIN_INK_STRENGTH = 0.16  # fraction of the paper brightness; below this a blank page's noise is not ink
MAX_INK_FRACTION = 0.3  # of the frame: handwriting covers far less of a page; more is noise or texture
MAX_BLOBS = 300  # ink blobs in a frame: written numbers make far fewer; more is noise or texture (bounds the work)
MAX_BLOB_DENSITY = 25e-4  # ink blobs per detection pixel: noise makes ~27 per 10,000 px, written pages under 10
WIDE_REACH = 0.1  # of the frame's long side: the wide paper estimate's reach, over half the widest digit
MIN_FINE_SHARE = 0.35  # a wide-estimate blob is ink if this share of it is also ink in the fine estimate
MAX_INK_THRESHOLD = 0.5  # Otsu is clamped here so faint, blurred strokes stay connected
HYSTERESIS = 0.5  # weak ink (this fraction of the threshold) counts where it touches strong ink
PEEL_VALLEY = 0.4  # of a blob's strongest valleys: weaker is the slope of an edge, not a stroke
BORDER_MARGIN = 0.05  # of the frame's short side: blobs this close to the border may be desk or shadow
MIN_STROKE_SHARE = 0.5  # of a blob near the frame border: pixels in a valley, for it to be pen strokes
PEEL_INK = 0.3  # a peeled stroke's valleys reach this fraction of the paper brightness: ink, not texture
MAX_LINE_SHARE = 0.1  # of a printed cell's height (width): the thickest its border lines are
SPLIT_MARGIN = 0.1  # confidence the pieces of a wide blob must gain over the whole blob to be read as two digits
MERGE_ASPECT = 1.0  # two overlapping blobs whose union is narrower than this many heights may be one digit
DIGIT_ASPECT = 0.72  # typical width / height of one handwritten digit, used to split touching digits
NUMBER_GAP = 1.2  # a horizontal gap wider than this many digit heights starts a new number (form cells are wide)


@dataclass
class Candidate:
    """A blob that may be a digit: its box in frame pixels and its ink mask at detection resolution."""

    box: tuple[int, int, int, int]  # x, y, w, h in full-resolution frame pixels
    mask: np.ndarray  # uint8 0/1, the blob's pixels inside `det_box` at detection resolution
    det_box: tuple[int, int, int, int]  # x, y, w, h at detection resolution
    # A blob that might be touching digits is offered both ways: whole ("whole") and split ("piece"),
    # sharing one `group`; the reader keeps whichever the classifier is surer of (`choose_alternatives`).
    group: int | None = None
    role: str = ""


# ---------------------------------------------------------------------------------------------- grey and ink


def _small(image: np.ndarray, long_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    f = long_side / max(h, w)
    if f >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def ink_is_dark(gray: np.ndarray) -> bool:
    """True for dark ink on light paper, False for bright ink on a dark ground (chalk, MNIST itself).

    Ink is the far tail of the deviations from the local background (a median filter wider than a stroke,
    which follows shadows and gradients), looked at in the middle of the frame where the page is, away
    from desk edges. Ties go to dark ink, the common case.
    """
    h, w = gray.shape
    centre = _small(gray[h // 8: h - h // 8, w // 8: w - w // 8], 192)
    k = min(31, max(3, (min(centre.shape) // 6) | 1))
    deviation = centre.astype(np.int16) - cv2.medianBlur(centre, k).astype(np.int16)
    low, high = np.percentile(deviation, (0.5, 99.5))
    return bool(-low >= high)


DESK_RATIO = 0.6  # a region darker than this fraction of the paper, at the frame border, may be desk ...
MAX_DESK_FRACTION = 0.3  # ... if it is a band along the edges; a larger dark region is a shadow on the page


def paper_mask(gray_dark_ink: np.ndarray) -> np.ndarray:
    """uint8 0/1 mask of the paper: everything but a much darker desk showing at the frame border.

    Without it, the band where the dark desk meets the bright paper looks like ink (the desk is dark
    against the paper-brightness estimate) and becomes rows of "1"s. The mask is eroded by the width of
    that band. A page that fills the frame gives an all-ones mask.
    """
    h, w = gray_dark_ink.shape
    small = _small(gray_dark_ink, 160)
    paperish = cv2.morphologyEx(small, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))  # ink removed
    t, bright = cv2.threshold(paperish, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = bright == 0
    if not dark.any() or not bright.any():
        return np.ones((h, w), np.uint8)
    border = np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]])
    if paperish[dark].mean() > DESK_RATIO * paperish[bright == 1].mean() or not border.any() \
            or dark.mean() > MAX_DESK_FRACTION:
        return np.ones((h, w), np.uint8)  # a shadow or a pale border: all of it may carry ink
    # The desk is the dark that reaches the frame border; dark inside the page (a bold digit) is not desk.
    n, labels = cv2.connectedComponents(dark.astype(np.uint8), connectivity=4)
    at_border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    desk = np.isin(labels, at_border[at_border > 0])
    page = (~desk).astype(np.uint8)
    page = cv2.erode(page, np.ones((5, 5), np.uint8))  # the band is ~ the background filter's radius
    return cv2.resize(page, (w, h), interpolation=cv2.INTER_NEAREST)


def background(gray_dark_ink: np.ndarray, reach: float | None = None) -> np.ndarray:
    """Local paper brightness under dark ink: a closing (removes strokes) then a light blur, on a thumbnail.

    Closing (max then min filter) removes dark things narrower than the kernel but keeps the edge of a desk
    or a shadow where it is (a max filter alone spreads bright paper over it and draws a band of "ink").

    Args:
        gray_dark_ink: uint8 grey, ink darker than paper.
        reach: None for the fine estimate (a 5x5 kernel on the frame shrunk 8x: follows shadows closely, but
            the inside of a bold, large digit is taken for paper); else the kernel radius as a fraction of
            the frame's long side (the wide estimate: sees through bold digits, fills narrow shadows).
    """
    h, w = gray_dark_ink.shape
    if reach is None:
        factor = 8 if max(h, w) >= 256 else 4 if max(h, w) >= 64 else 1
        kernel = np.ones((5, 5), np.uint8)
    else:
        factor = max(1, min(4, max(h, w) // 64))
        radius = max(2, round(reach * max(h, w) / factor))
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    small = cv2.resize(gray_dark_ink, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    small = cv2.blur(small, (3, 3))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def ink_strength(gray: np.ndarray, polarity: str = "auto") -> tuple[np.ndarray, np.ndarray, bool]:
    """Ink strength 0-255 (uint8) for every pixel, flat-fielded against the local paper brightness.

    strength = 255 * (paper - pixel) / paper for dark ink (the ratio, so that a shadow, which scales paper
    and ink alike, does not change it); bright ink is inverted first.

    Args:
        gray: uint8 grey image.
        polarity: "auto", "dark" (dark ink on light paper) or "bright" (light ink on a dark ground).

    Returns:
        (strength_u8, paper_u8, dark_ink): `paper_u8` is the background estimate, in the dark-ink grey.
    """
    if polarity not in ("auto", "dark", "bright"):
        raise ValueError(f"polarity {polarity!r}: valid values are 'auto', 'dark', 'bright'")
    dark = ink_is_dark(gray) if polarity == "auto" else polarity == "dark"
    g = gray if dark else 255 - gray
    paper = background(g)
    strength = ink_strength_from(g, paper)
    return strength, paper, dark


def ink_ratio(gray_dark_ink: np.ndarray, paper: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """scale * (paper - pixel) / max(paper, 40), float32 (the floor: black frames are not all ink)."""
    # numpy, not cv2.divide: IEEE division rounds the same on ARM and x86 (OpenCV's NEON path does not, and a
    # crop then differs between the device and this machine; make pi-check caught it).
    # The floor is only in the divisor: a dark desk whose own brightness is its "paper" is not ink.
    p = paper.astype(np.float32)
    return (p - gray_dark_ink.astype(np.float32)) * (scale / np.maximum(p, 40.0))


def ink_strength_from(gray_dark_ink: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """`ink_ratio` on the 0-255 scale, clipped, uint8."""
    return np.clip(ink_ratio(gray_dark_ink, paper, 255.0), 0, 255).astype(np.uint8)


def binarize(strength: np.ndarray) -> np.ndarray:
    """Ink mask (uint8 0/1) with hysteresis: Otsu on the ink strength, clamped to
    [MIN_INK_STRENGTH, MAX_INK_THRESHOLD], and fainter pixels (down to HYSTERESIS of that) kept where they
    touch a confident stroke. A 7's faint, blurred bar stays attached; faint noise on its own does not.
    """
    otsu, _ = cv2.threshold(strength, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    t = float(np.clip(otsu, MIN_INK_STRENGTH * 255, MAX_INK_THRESHOLD * 255))
    strong = strength > t
    weak = (strength > max(HYSTERESIS * t, MIN_INK_STRENGTH * 255)).astype(np.uint8)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    keep = np.zeros(n, np.uint8)
    keep[labels[strong]] = 1
    keep[0] = 0
    return keep[labels]


def two_scale_ink(gray_dark_ink: np.ndarray, fine_strength: np.ndarray, fine_paper: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Ink mask from two paper estimates, and the paper map the crops should use.

    The fine estimate follows shadows and desk edges but hollows out bold, large digits; the wide one sees
    whole bold digits but also takes a narrow shadow or a desk corner for ink. A blob of the wide mask is
    kept whole when at least MIN_FINE_SHARE of it is ink in the fine mask too (a bold digit: its edges are);
    elsewhere only the fine mask counts (a shadow's soft edge is never fine ink, so it drops out).

    Returns:
        (binary uint8 0/1, paper uint8): paper is the wide estimate inside kept wide blobs, else the fine one.
    """
    fine = binarize(fine_strength)
    wide_paper = background(gray_dark_ink, WIDE_REACH)
    wide = binarize(ink_strength_from(gray_dark_ink, wide_paper))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(wide, connectivity=8)
    if n <= 1:
        return fine, fine_paper
    shared = np.bincount(labels[fine.astype(bool)], minlength=n)
    h, w = wide.shape
    bw, bh, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    # A desk or a shadow is larger than a digit, or solid; a bold digit has holes and gaps around strokes.
    digit_like = (bw < 0.35 * w) & (bh < 0.45 * h) & (area < 0.75 * bw * bh)
    keep = (shared >= MIN_FINE_SHARE * area) & digit_like
    keep[0] = False
    kept = keep[labels]
    binary = fine | kept.astype(np.uint8)
    return binary, np.where(kept, wide_paper, fine_paper)


# ---------------------------------------------------------------------------------------------- blobs


def _runs_in_band(lines: np.ndarray, axis: int, low: float, high: float) -> bool:
    """Whether `lines` (0/1) has any pixel in rows (axis=0) or columns (axis=1) within [low, high)."""
    profile = lines.any(axis=1 - axis)
    n = len(profile)
    return bool(profile[int(low * n): max(int(high * n), int(low * n) + 1)].any())


def remove_grid_lines(mask: np.ndarray) -> np.ndarray | None:
    """A blob's mask with printed cell borders removed, or None when the blob is not a grid.

    A printed cell (or a row of cells) has four straight sides: long horizontal lines in the top and bottom
    15 % of rows AND long vertical ones in the left and right 15 % of columns. A handwritten 3, 5 or 8 has
    bars at top and bottom but no straight sides; a "1" with a base serif or a crossed 7 has neither pair.
    """
    h, w = mask.shape
    if h < 12 or w < 12:
        return None
    # Zero outside the box: OpenCV's default border for erosion counts the outside as ink, which would
    # stretch a stroke that touches the box edge into a "line".
    outside = {"borderType": cv2.BORDER_CONSTANT, "borderValue": 0}
    horizontal = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((1, max(3, int(0.85 * w))), np.uint8), **outside)
    vertical = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((max(3, int(0.85 * h)), 1), np.uint8), **outside)
    is_grid = (_runs_in_band(horizontal, 0, 0, 0.15) and _runs_in_band(horizontal, 0, 0.85, 1.0)) and (
        _runs_in_band(vertical, 1, 0, 0.15) and _runs_in_band(vertical, 1, 0.85, 1.0))
    # Printed lines are thin; a bold 0 or 8 can have four straight sides too, but as thick as its strokes.
    thin = horizontal.any(axis=1).sum() <= 2 * max(2, MAX_LINE_SHARE * h) and \
        vertical.any(axis=0).sum() <= 2 * max(2, MAX_LINE_SHARE * w)
    if not (is_grid and thin):
        return None
    lines = cv2.dilate(horizontal | vertical, np.ones((3, 3), np.uint8))
    return mask & (1 - lines)


def _components(binary: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[tuple[tuple, np.ndarray]]:
    """[(box (x, y, w, h) with offset, 0/1 mask inside the box)] for each 8-connected blob."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < 4:
            continue
        sub = (labels[y:y + h, x:x + w] == i).astype(np.uint8)
        out.append(((x + offset[0], y + offset[1], w, h), sub))
    return out


def _union(a: tuple, b: tuple) -> tuple[tuple, np.ndarray]:
    """Merge two (box, mask) blobs into one."""
    (ax, ay, aw, ah), am = a
    (bx, by, bw, bh), bm = b
    x0, y0 = min(ax, bx), min(ay, by)
    x1, y1 = max(ax + aw, bx + bw), max(ay + ah, by + bh)
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    m[ay - y0:ay - y0 + ah, ax - x0:ax - x0 + aw] |= am
    m[by - y0:by - y0 + bh, bx - x0:bx - x0 + bw] |= bm
    return (x0, y0, x1 - x0, y1 - y0), m


def merge_fragments(blobs: list[tuple[tuple, np.ndarray]]) -> list[tuple[tuple, np.ndarray]]:
    """Merge pieces of one broken digit: blobs stacked vertically with mostly shared columns, close by.

    A faint stroke can break a 5's flag or an open 4 into two blobs; their column ranges overlap by more
    than 60 % of the narrower one and the vertical gap is under 25 % of their combined height. Digits of
    neighbouring lines are further apart than that.
    """
    blobs = list(blobs)
    merged = True
    while merged and len(blobs) > 1:
        merged = False
        for i in range(len(blobs)):
            for j in range(i + 1, len(blobs)):
                (ax, ay, aw, ah), _ = blobs[i]
                (bx, by, bw, bh), _ = blobs[j]
                overlap = min(ax + aw, bx + bw) - max(ax, bx)
                gap = max(ay, by) - min(ay + ah, by + bh)
                height = max(ay + ah, by + bh) - min(ay, by)
                small, big = sorted((ah, bh))
                # Pieces of one digit sit above and below each other; a blob inside another (a digit
                # within the page outline) is not a piece of it.
                stacked = gap > -0.3 * small
                digit_shaped = max(aw, bw) <= 1.2 * height  # not a digit plus a ruled line or a page edge
                if overlap > 0.6 * min(aw, bw) and stacked and gap < 0.25 * height and small < 0.8 * big \
                        and digit_shaped:
                    blobs[i] = _union(blobs[i], blobs[j])
                    del blobs[j]
                    merged = True
                    break
            if merged:
                break
    return blobs


def attach_flags(digits: list[tuple[tuple, np.ndarray]], pieces: list[tuple[tuple, np.ndarray]],
                 ) -> list[tuple[tuple, np.ndarray]]:
    """Join short, detached strokes near the top of a digit to that digit: a 5's flag, a 7's bar.

    A piece (too small to be a digit itself) under half a digit's height, centred in that digit's top 40 %
    and within a quarter of its height horizontally, belongs to it; otherwise it would be dropped as a
    speck and the 5 read as a 6.
    """
    out = list(digits)
    for piece in pieces:
        (x, y, w, h), _ = piece
        best, best_gap = None, None
        for k, ((bx, by, bw, bh), _) in enumerate(out):
            if h >= 0.5 * bh or w > 0.8 * bh or not by - 0.15 * bh <= y + h / 2 <= by + 0.4 * bh:
                continue
            gap = max(bx - (x + w), x - (bx + bw), 0)
            if gap <= 0.25 * bh and (best_gap is None or gap < best_gap):
                best, best_gap = k, gap
        if best is not None:
            out[best] = _union(out[best], piece)
    return out


def is_digit_shape(box: tuple, mask: np.ndarray, frame_shape: tuple[int, int]) -> bool:
    """Reject blobs that cannot be one digit: specks, solid blocks, long rules, desk edges along a border."""
    x, y, w, h = box
    fh, fw = frame_shape
    if h < MIN_DIGIT_HEIGHT or w > 6 * h:
        return False
    area = int(mask.sum())
    fill = area / float(w * h)
    if fill > 0.85 and h < 3 * w:  # a solid block (a finger, a desk corner); a "1" is a solid thin bar
        return False
    if fill < 0.04:
        return False
    if w > 0.6 * fw and h > 0.6 * fh and fill < 0.15:  # the outline of the page, not a digit filling a crop
        return False
    # A desk edge or the paper's shadow runs along the frame border; a digit in a tight crop only touches it.
    border = 0
    if x == 0:
        border += int(mask[:, 0].sum())
    if x + w >= fw:
        border += int(mask[:, -1].sum())
    if y == 0:
        border += int(mask[0, :].sum())
    if y + h >= fh:
        border += int(mask[-1, :].sum())
    return border <= 0.5 * max(w, h)


def _near_border(box: tuple, frame_shape: tuple[int, int]) -> bool:
    """Whether a box comes within BORDER_MARGIN of the frame's short side of any frame border."""
    x, y, w, h = box
    fh, fw = frame_shape
    margin = BORDER_MARGIN * min(fh, fw)
    return x < margin or y < margin or x + w > fw - margin or y + h > fh - margin


def is_edge_band(box: tuple, frame_shape: tuple[int, int], blobs: list) -> bool:
    """A long thin piece of the band where the page meets the desk: elongated, and much longer than the
    typical blob (or, near the frame border, somewhat longer). A "1" is elongated too, but digit-sized."""
    w, h = box[2:]
    if max(w, h) < 2.5 * min(w, h):
        return False
    roundish = [b[0][3] for b in blobs if max(b[0][2], b[0][3]) < 2.5 * min(b[0][2], b[0][3])]
    typical = float(np.median(roundish)) if roundish else float(h)
    return max(w, h) > 2.5 * typical or (_near_border(box, frame_shape) and max(w, h) > 1.3 * typical)


def _step_ratio(mask: np.ndarray, gray: np.ndarray, box: tuple) -> float | None:
    """Median over thin scan lines of |left - right| / (paper - stroke), scanning rows of `box`."""
    x, y, w, h = box
    W = gray.shape[1]
    ratios = []
    for f in (0.2, 0.35, 0.5, 0.65, 0.8):
        r = min(h - 1, int(f * h))
        on = np.flatnonzero(mask[r])
        if len(on) == 0 or on[-1] - on[0] + 1 > max(3, 0.3 * max(w, h)):
            continue  # only thin runs: a 0's full-width row says nothing about steps
        d = max(2, (on[-1] - on[0] + 1) // 2)
        left = float(gray[y + r, max(0, x + on[0] - d)])
        right = float(gray[y + r, min(W - 1, x + on[-1] + d)])
        centre = float(gray[y + r, x + on[0]:x + on[-1] + 1].min())
        ratios.append(abs(left - right) / max(max(left, right) - centre, 1.0))
    return float(np.median(ratios)) if len(ratios) >= 3 else None


def is_step_edge(box: tuple, mask: np.ndarray, gray_dark_ink: np.ndarray) -> bool:
    """True for a blob that is the edge of a shadow, of the page or of the desk rather than a pen stroke.

    A stroke is a valley: paper on both sides. An edge is a step: paper on one side, darker ground on the
    other. Tested across thin runs of the blob, along rows and along columns (a page corner is an L).
    """
    x, y, w, h = box
    across_rows = _step_ratio(mask, gray_dark_ink, box)
    across_cols = _step_ratio(mask.T, gray_dark_ink.T, (y, x, h, w))
    return any(r is not None and r > 0.6 for r in (across_rows, across_cols))


def valley_depth(box: tuple, mask: np.ndarray, gray_dark_ink: np.ndarray, digit_height: float | None,
                 ) -> np.ndarray:
    """How far a grey closing raises each pixel of the blob's box, as a fraction of the paper brightness.

    A stroke is a valley (paper on both sides), so a closing wider than the stroke fills it; the edge of a
    shadow or of the page is a step, and a shadow's corner a plateau, which a closing leaves where they are.

    Args:
        digit_height: the typical digit height at detection resolution (the closing spans a bold stroke),
            None when no digit was found (three times the blob's own stroke width is used).
    """
    x, y, w, h = box
    k = int(round(0.35 * digit_height)) if digit_height else int(round(3 * stroke_width(mask)))
    k = max(3, min(k, 41)) | 1
    H, W = gray_dark_ink.shape
    x0, y0, x1, y1 = max(0, x - k), max(0, y - k), min(W, x + w + k), min(H, y + h + k)
    patch = gray_dark_ink[y0:y1, x0:x1]
    closed = cv2.morphologyEx(patch, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8), borderType=cv2.BORDER_REPLICATE)
    inner = (slice(y - y0, y - y0 + h), slice(x - x0, x - x0 + w))
    return ink_ratio(patch[inner], closed[inner])


def is_stroke(box: tuple, mask: np.ndarray, gray_dark_ink: np.ndarray, digit_height: float | None) -> bool:
    """Whether most of a blob is pen stroke (valleys), not the plateau of a shadow's corner."""
    depth = valley_depth(box, mask, gray_dark_ink, digit_height)[mask > 0]
    return bool(depth.size) and float(np.mean(depth >= MIN_INK_STRENGTH)) >= MIN_STROKE_SHARE


def peel_edges(box: tuple, mask: np.ndarray, gray_dark_ink: np.ndarray, digit_height: float | None,
               ) -> list[tuple[tuple, np.ndarray]]:
    """The pen strokes inside a blob rejected as a shadow or page edge, as blobs: a digit that touches the
    edge was rejected with it. Pixels that `valley_depth` raises by less than PEEL_VALLEY of the blob's
    strongest valleys are edge, not stroke; pieces on the frame border, of the wrong height or faint are
    dropped."""
    x, y = box[:2]
    H, W = gray_dark_ink.shape
    depth = valley_depth(box, mask, gray_dark_ink, digit_height)
    inside = depth[mask > 0]
    if inside.size == 0:
        return []
    floor = max(MIN_INK_STRENGTH, PEEL_VALLEY * float(np.percentile(inside, 95)))
    strokes = cv2.morphologyEx(((mask > 0) & (depth >= floor)).astype(np.uint8), cv2.MORPH_OPEN,
                               np.ones((2, 2), np.uint8))
    pieces = []
    for (px, py, pw, ph), pm in _components(strokes, offset=(x, y)):
        if px == 0 or py == 0 or px + pw >= W or py + ph >= H:
            continue  # the frame border: desk, not a digit
        if digit_height and not 0.6 * digit_height <= ph <= 1.6 * digit_height:
            continue
        if max(pw, ph) < MIN_DIGIT_HEIGHT or np.percentile(depth[py - y:py - y + ph, px - x:px - x + pw][pm > 0],
                                                           90) < PEEL_INK:
            continue
        pieces.append(((px, py, pw, ph), pm))
    return pieces


def split_touching(box: tuple, mask: np.ndarray) -> list[tuple[tuple, np.ndarray]]:
    """Split a blob wider than one digit into n pieces at the thinnest columns near the expected cuts.

    n is the blob's width in typical digit widths, or fewer when a piece would come out short: touching
    digits each span most of the blob's height; a short piece is a 5's flag or a 7's bar cut off."""
    x, y, w, h = box
    if w < 1.25 * h:
        return [(box, mask)]
    columns = mask.sum(axis=0).astype(np.float32)
    for n in range(int(round(w / (DIGIT_ASPECT * h))), 1, -1):
        cuts = [0]
        for k in range(1, n):
            expected = k * w / n
            lo, hi = int(expected - 0.3 * w / n), int(expected + 0.3 * w / n) + 1
            lo, hi = max(lo, cuts[-1] + 1), min(hi, w - 1)
            cuts.append(lo + int(np.argmin(columns[lo:hi])) if hi > lo else int(expected))
        cuts.append(w)
        pieces = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            part = mask[:, a:b]
            rows = np.flatnonzero(part.any(axis=1))
            cols = np.flatnonzero(part.any(axis=0))
            if len(rows) == 0:
                continue
            part = part[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            pieces.append(((x + a + int(cols[0]), y + int(rows[0]), part.shape[1], part.shape[0]), part))
        if all(p[0][3] >= 0.6 * h for p in pieces):
            return pieces
    return [(box, mask)]


def find_candidates(frame_bgr: np.ndarray, polarity: str = "auto", max_side: int = MAX_DETECT_SIDE,
                    ) -> tuple[list[Candidate], dict]:
    """Blobs that may be digits, left to right, and what the crops need (grey, paper, scale).

    Args:
        frame_bgr: the frame, BGR uint8 (see `as_bgr_uint8` for other inputs).
        polarity: "auto", "dark" or "bright" ink.
        max_side: detection runs on the frame downscaled to this long side (crops use full resolution).

    Returns:
        (candidates, context): context holds "gray" (full resolution, dark ink), "paper" (detection
        resolution) and "scale" (full-resolution px per detection px), for `extract_crops`.
    """
    gray = to_gray(frame_bgr)
    if max(gray.shape) > FAST_DETECT_SIDE and max_side > FAST_DETECT_SIDE:
        # Most frames hold digits big enough to find on a thumbnail (2.5x fewer pixels for 640x480); small
        # digits, or none, send the frame through again at full detection resolution.
        candidates, context = _detect(gray, polarity, FAST_DETECT_SIDE)
        heights = [c.det_box[3] for c in candidates]
        if heights and np.median(heights) >= 2 * MIN_DIGIT_HEIGHT:
            return candidates, context
    return _detect(gray, polarity, max_side)


def _detect(gray: np.ndarray, polarity: str, max_side: int) -> tuple[list[Candidate], dict]:
    """`find_candidates` at one detection resolution."""
    fh, fw = gray.shape
    scale = max(1.0, max(fh, fw) / max_side)
    det = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(fw / scale)), max(1, round(fh / scale))),
                                               interpolation=cv2.INTER_AREA)
    strength, paper, dark = ink_strength(det, polarity)
    binary, paper = two_scale_ink(det if dark else 255 - det, strength, paper)
    binary &= paper_mask(det if dark else 255 - det)
    context = {"gray": gray if dark else 255 - gray, "paper": paper, "scale": scale, "dark_ink": dark}
    if binary.mean() > MAX_INK_FRACTION:  # noise, a texture or a screen: no page with writing to read
        return [], context
    blobs = []
    for box, mask in _components(binary):
        if box[3] < MIN_DIGIT_HEIGHT and box[2] < MIN_DIGIT_HEIGHT:
            continue
        x, y, w, h = box
        sides = (x == 0) + (y == 0) + (x + w >= binary.shape[1]) + (y + h >= binary.shape[0])
        # A blob touching three frame sides is the desk around the page, not a printed grid with margins.
        cleaned = remove_grid_lines(mask) if sides < 3 else None
        if cleaned is None:
            blobs.append((box, mask))
        else:
            blobs.extend(_components(cleaned, offset=box[:2]))
    blobs = [b for b in blobs if max(b[0][2], b[0][3]) >= MIN_DIGIT_HEIGHT // 2]
    if len(blobs) > min(MAX_BLOBS, MAX_BLOB_DENSITY * binary.size):  # merging is quadratic: noise took minutes
        return [], context
    blobs = merge_fragments(blobs)
    dh, dw = binary.shape
    blobs, shaped = screen_blobs(blobs, det if dark else 255 - det)
    # Shadow edges are out before the typical height is taken: a tall one would make real digits look small.
    median_h = float(np.median([b[0][3] for b, ok in zip(blobs, shaped, strict=True) if ok] or [0]))
    tall = [ok and b[0][3] >= MIN_RELATIVE_HEIGHT * median_h for b, ok in zip(blobs, shaped, strict=True)]
    blobs = attach_flags([b for b, ok in zip(blobs, tall, strict=True) if ok],
                         [b for b, ok in zip(blobs, tall, strict=True) if not ok and b[0][3] < 0.5 * median_h])
    blobs = [b for b in blobs if not is_edge_band(b[0], (dh, dw), blobs)]
    if blobs:
        median_h = float(np.median([b[0][3] for b in blobs]))
        blobs = [b for b in blobs if b[0][3] >= MIN_RELATIVE_HEIGHT * median_h]
    pieces = []  # (box, mask, group, role)
    single = []
    for group, b in enumerate(blobs):
        split = split_touching(*b)
        if len(split) == 1:
            single.append(b)
        else:
            pieces.append((*b, group, "whole"))
            pieces.extend((*p, group, "piece") for p in split)
    pieces.extend(offer_merges(single, first_group=len(blobs)))
    pieces.sort(key=lambda b: b[0][0])
    candidates = []
    for (x, y, w, h), mask, group, role in pieces:
        full = (int(x * scale), int(y * scale), max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        candidates.append(Candidate(full, mask, (x, y, w, h), group, role))
    return candidates, context


def screen_blobs(blobs: list[tuple[tuple, np.ndarray]], gray_dark_ink: np.ndarray,
                 ) -> tuple[list[tuple[tuple, np.ndarray]], list[bool]]:
    """Which blobs may be digits (`is_digit_shape`, not `is_step_edge`; near the frame border, `is_stroke`),
    with the strokes peeled off rejected edges (`peel_edges`) appended to the blobs.

    Returns:
        (blobs, ok): the blobs, then the peeled pieces; and for each, whether it may be a digit.
    """
    dh, dw = gray_dark_ink.shape

    def plausible(b):
        return is_digit_shape(b[0], b[1], (dh, dw)) and not is_step_edge(b[0], b[1], gray_dark_ink)

    ok = [plausible(b) for b in blobs]
    heights = [b[0][3] for b, good in zip(blobs, ok, strict=True) if good]
    typical = float(np.median(heights)) if heights else None
    for i, (box, mask) in enumerate(blobs):  # a shadow's corner in the frame's corner is no digit
        if ok[i] and _near_border(box, (dh, dw)):
            ok[i] = is_stroke(box, mask, gray_dark_ink, typical)
    peeled = [piece for b, good in zip(blobs, ok, strict=True) if not good and max(b[0][2:]) >= 2 * MIN_DIGIT_HEIGHT
              for piece in peel_edges(*b, gray_dark_ink, typical)]
    return blobs + peeled, ok + [plausible(p) for p in peeled]


def offer_merges(blobs: list[tuple[tuple, np.ndarray]], first_group: int) -> list[tuple]:
    """(box, mask, group, role) for each blob; two neighbours whose union is no wider than a digit and whose
    columns overlap (a 6 broken into its stem and its loop), or one of which is a short thin sliver close to
    the other (a doubled pen stroke), are also offered as one, in a group of their own, for
    `choose_alternatives` to decide."""
    blobs = sorted(blobs, key=lambda b: b[0][0])
    out, k, group = [], 0, first_group
    while k < len(blobs):
        if k + 1 < len(blobs):
            (ax, ay, aw, ah), (bx, by, bw, bh) = blobs[k][0], blobs[k + 1][0]
            union_w = max(ax + aw, bx + bw) - min(ax, bx)
            union_h = max(ay + ah, by + bh) - min(ay, by)
            if (bx < ax + aw or _is_sliver(blobs[k][0], blobs[k + 1][0])) and union_w < MERGE_ASPECT * union_h \
                    and union_h <= 1.3 * max(ah, bh):
                out.append((*_union(blobs[k], blobs[k + 1]), group, "whole"))
                out.extend((*b, group, "piece") for b in blobs[k:k + 2])
                k, group = k + 2, group + 1
                continue
        out.append((*blobs[k], None, ""))
        k += 1
    return out


def _is_sliver(a: tuple, b: tuple) -> bool:
    """Whether one of two neighbouring boxes (a left of b) is a short thin stroke hugging the other."""
    gap = b[0] - (a[0] + a[2])
    for (sw, sh), (nw, nh) in (((a[2], a[3]), (b[2], b[3])), ((b[2], b[3]), (a[2], a[3]))):
        if sw < 0.5 * nw and sh < 0.85 * nh and gap < 0.25 * nh:
            return True
    return False


def choose_alternatives(candidates: list[Candidate], confidences: np.ndarray) -> list[int]:
    """Indices of the candidates to keep: for each whole-or-split group, the reading the classifier is
    surer of (the whole blob's confidence against its weakest piece's, which must win by SPLIT_MARGIN: a wide
    digit cut in two often reads as two confident halves); ungrouped candidates all stay."""
    keep, groups = [], {}
    for i, c in enumerate(candidates):
        if c.group is None:
            keep.append(i)
        else:
            groups.setdefault(c.group, {"whole": [], "piece": []})[c.role].append(i)
    for members in groups.values():
        whole = max((confidences[i] for i in members["whole"]), default=0.0)
        pieces = min((confidences[i] for i in members["piece"]), default=0.0)
        keep.extend(members["piece"] if pieces > whole + SPLIT_MARGIN else members["whole"])
    return sorted(keep)


# ---------------------------------------------------------------------------------------------- crops


def stroke_width(binary: np.ndarray) -> float:
    """Mean stroke width in px of a 0/1 mask: area / (boundary pixels / 2), exact for long thin strokes."""
    area = float(binary.sum())
    if area == 0:
        return 0.0
    boundary = area - float(cv2.erode(binary, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                                      borderValue=0).sum())
    return area / max(boundary / 2.0, 1.0)


def prepare_crop(ink_u8: np.ndarray, normalize_width: bool = True) -> np.ndarray:
    """MNIST-style 28x28 uint8 digit from an ink-strength patch (ink bright, paper 0): `digitdata.crops.mnist_style`
    with this finder's stroke-width estimate."""
    return mnist_style(ink_u8, normalize_width, width_of=stroke_width)


def extract_crops(candidates: list[Candidate], context: dict) -> np.ndarray:
    """(N, 28, 28) uint8 MNIST-style crops, cut from the full-resolution frame through each blob's mask."""
    gray, paper, scale = context["gray"], context["paper"], context["scale"]
    crops = np.zeros((len(candidates), MNIST_SIZE, MNIST_SIZE), np.uint8)
    for i, c in enumerate(candidates):
        dx, dy, dw, dh = c.det_box
        x, y, w, h = c.box
        w, h = min(w, gray.shape[1] - x), min(h, gray.shape[0] - y)
        if w < 1 or h < 1:
            continue
        # Grow the mask by about a stroke's blur so anti-aliased edges survive, without a neighbour's ink.
        grow = max(1, round(min(dw, dh) / 12))
        mask = cv2.dilate(c.mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        paper_patch = paper[dy:dy + dh, dx:dx + dw]
        if scale != 1.0:
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
            paper_patch = cv2.resize(paper_patch, (w, h), interpolation=cv2.INTER_LINEAR)
        strength = ink_strength_from(gray[y:y + h, x:x + w], paper_patch[:h, :w])
        crops[i] = prepare_crop(strength * mask[:h, :w])
    return crops


# ---------------------------------------------------------------------------------------------- grouping


def group_lines(boxes: list[tuple[int, int, int, int]]) -> list[list[int]]:
    """Indices of `boxes` grouped into text lines, top to bottom, each left to right.

    Boxes are taken left to right; each joins the line whose last box it overlaps most vertically (by more
    than half the smaller height), so tilted rows stay one line: each digit is compared with its
    left neighbour, not with the line's first digit.
    """
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    lines: list[list[int]] = []
    for i in order:
        x, y, w, h = boxes[i]
        best, best_overlap = None, 0.0
        for line in lines:
            lx, ly, lw, lh = boxes[line[-1]]
            overlap = (min(y + h, ly + lh) - max(y, ly)) / float(min(h, lh))
            if overlap > 0.5 and overlap > best_overlap:
                best, best_overlap = line, overlap
        if best is None:
            lines.append([i])
        else:
            best.append(i)
    lines.sort(key=lambda line: np.mean([boxes[i][1] + boxes[i][3] / 2 for i in line]))
    return lines


def split_numbers(boxes: list[tuple[int, int, int, int]], line: list[int], gap: float = NUMBER_GAP,
                  ) -> list[list[int]]:
    """Split one line (indices, left to right) into numbers where the gap exceeds `gap` digit heights."""
    if not line:
        return []
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return split_at_gaps(line, b[:, 0] + b[:, 2] / 2, b, gap)


def group_digits(boxes: list[tuple[int, int, int, int]], gap: float = NUMBER_GAP) -> list[list[list[int]]]:
    """Lines (top to bottom) of numbers (left to right) of digit indices into `boxes`."""
    return [split_numbers(boxes, line, gap) for line in group_lines(boxes)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m edge_app.digits IMAGE [OUT.png]", file=sys.stderr)
        return 2
    frame = cv2.imread(argv[0], cv2.IMREAD_COLOR)
    if frame is None:
        print(f"cannot read {argv[0]} as an image", file=sys.stderr)
        return 1
    candidates, context = find_candidates(frame)
    crops = extract_crops(candidates, context)
    out = argv[1] if len(argv) > 1 else "crops.png"
    strip = np.hstack(list(crops)) if len(crops) else np.zeros((28, 28), np.uint8)
    cv2.imwrite(out, strip)
    print(f"{len(crops)} candidates: {[c.box for c in candidates]} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
