"""Pure functions of the reading pipeline on arrays: crop preparation, grouping, stability."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.digits import group_digits, prepare_crop, split_numbers
from edge_app.reader import Stabilizer, parse_roi


def test_prepare_crop_fits_20x20_and_centres_mass():
    ink = np.zeros((90, 30), np.uint8)
    ink[5:85, 10:20] = 255  # a tall bar, like a "1"
    crop = prepare_crop(ink)
    assert crop.shape == (28, 28) and crop.dtype == np.uint8
    rows, cols = np.nonzero(crop > 30)
    assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20  # fits the 20x20 box
    mass = crop.astype(float)
    cy = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
    cx = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centre of mass in the middle, as MNIST


def test_prepare_crop_keeps_aspect_ratio():
    ink = np.zeros((40, 80), np.uint8)
    ink[10:30, 5:75] = 255  # wide: 70 x 20
    rows, cols = np.nonzero(prepare_crop(ink) > 30)
    width, height = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
    assert width >= 18 and height <= 9  # scaled by the long side, not stretched


def test_prepare_crop_of_nothing_is_black():
    assert prepare_crop(np.zeros((10, 10), np.uint8)).max() == 0


def _box(x, y, w=20, h=30):
    return (x, y, w, h)


def test_group_digits_numbers_and_lines():
    boxes = [_box(0, 0), _box(25, 2), _box(50, 1),  # "123" on line 1
             _box(150, 0), _box(175, 0),  # a second number on line 1, after a wide gap
             _box(10, 100), _box(35, 104)]  # line 2
    lines = group_digits(boxes)
    assert lines == [[[0, 1, 2], [3, 4]], [[5, 6]]]


def test_tilted_row_stays_one_line():
    boxes = [_box(25 * i, 4 * i) for i in range(8)]  # drifts down 28 px over the row
    assert group_digits(boxes) == [[list(range(8))]]


def test_narrow_ones_do_not_split_a_number():
    boxes = [_box(0, 0), _box(40, 0, w=5), _box(60, 0)]  # "2 1 3" with a thin 1 in the middle
    assert split_numbers(boxes, [0, 1, 2]) == [[0, 1, 2]]


def test_stabilizer_reports_once_per_stable_change():
    s = Stabilizer(frames=3)
    seen = [s.update(t) for t in ["12", "12", "12", "12", "13", "12", "12", "12", "", "", "", "12", "12", "12"]]
    assert seen == [None, None, "12", None, None, None, None, None, None, None, None, None, None, "12"]


def test_stabilizer_rejects_zero_frames():
    with pytest.raises(ValueError, match="at least 1"):
        Stabilizer(0)


def test_parse_roi():
    assert parse_roi("10,20,300,200") == (10, 20, 300, 200)
    assert parse_roi(None) is None
    with pytest.raises(ValueError, match="four integers"):
        parse_roi("10,20")


# ---------------------------------------------------------------------------------------------- finding ink


def _page(ink_bgr=(20, 20, 20), paper_bgr=(235, 235, 235), size=(120, 160)):
    """A page with a hand-drawn-like "7" (two thick strokes)."""
    import cv2

    page = np.zeros((*size, 3), np.uint8)
    page[:] = paper_bgr
    cv2.line(page, (50, 30), (100, 30), ink_bgr, 6)
    cv2.line(page, (100, 30), (70, 95), ink_bgr, 6)
    return page


def test_polarity_dark_ink_and_chalk():
    from edge_app.digits import ink_is_dark, to_gray

    page = _page()
    assert ink_is_dark(to_gray(page))
    assert not ink_is_dark(to_gray(255 - page))


def test_blue_ink_on_a_yellow_note_uses_the_channel_that_shows_it():
    from edge_app.digits import to_gray

    page = _page(ink_bgr=(170, 60, 30), paper_bgr=(60, 230, 250))  # BGR: blue ink, yellow paper
    gray = to_gray(page)
    contrast = int(gray[5, 5]) - int(gray[30, 75])  # paper minus ink
    assert contrast > 150, f"ink barely visible in the chosen grey (contrast {contrast})"


def test_blank_noisy_page_has_no_ink():
    from edge_app.digits import binarize, ink_strength

    rng = np.random.default_rng(0)
    page = np.clip(200 + rng.normal(0, 6, (240, 320)), 0, 255).astype(np.uint8)
    strength, _, _ = ink_strength(page)
    assert binarize(strength).sum() < 20


def test_shadow_edge_is_not_a_stroke_but_a_stroke_is():
    from edge_app.digits import is_step_edge

    gray = np.full((100, 100), 220, np.uint8)
    gray[:, :50] = 120  # a shadow on the left half
    mask = np.ones((60, 3), np.uint8)
    assert is_step_edge((49, 20, 3, 60), mask, gray)
    gray = np.full((100, 100), 220, np.uint8)
    gray[20:80, 49:52] = 40  # a pen stroke, paper on both sides
    assert not is_step_edge((49, 20, 3, 60), mask, gray)


def test_grid_cell_border_is_removed_but_a_serifed_one_is_kept():
    from edge_app.digits import remove_grid_lines

    cell = np.zeros((60, 50), np.uint8)
    cell[:2, :] = cell[-2:, :] = cell[:, :2] = cell[:, -2:] = 1  # printed border
    cell[2:50, 24:27] = 1  # a "1" touching the top border
    cleaned = remove_grid_lines(cell)
    assert cleaned is not None and cleaned[:, :4].sum() == 0 and cleaned[:, 20:30].sum() > 100
    one = np.zeros((60, 40), np.uint8)
    one[:, 18:22] = 1
    one[-3:, :] = 1  # base serif
    assert remove_grid_lines(one) is None


def test_a_fives_detached_flag_joins_its_digit():
    from edge_app.digits import attach_flags

    body = ((10, 20, 30, 40), np.ones((40, 30), np.uint8))
    flag = ((22, 18, 20, 4), np.ones((4, 20), np.uint8))
    far = ((200, 18, 20, 4), np.ones((4, 20), np.uint8))
    (box, _), = attach_flags([body], [flag, far])
    assert box == (10, 18, 32, 42)


def test_whole_or_split_keeps_the_surer_reading():
    from edge_app.digits import Candidate, choose_alternatives

    m = np.ones((2, 2), np.uint8)
    cands = [Candidate((0, 0, 1, 1), m, (0, 0, 1, 1)),  # an ordinary digit
             Candidate((0, 0, 1, 1), m, (0, 0, 1, 1), group=1, role="whole"),
             Candidate((0, 0, 1, 1), m, (0, 0, 1, 1), group=1, role="piece"),
             Candidate((0, 0, 1, 1), m, (0, 0, 1, 1), group=1, role="piece")]
    assert choose_alternatives(cands, np.array([0.9, 0.6, 0.95, 0.8])) == [0, 2, 3]
    assert choose_alternatives(cands, np.array([0.9, 0.99, 0.95, 0.4])) == [0, 1]
