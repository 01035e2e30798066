"""Pure functions of the classic finder on arrays: crop preparation, grouping, finding ink."""

from __future__ import annotations

import numpy as np

from edge_app.digits import group_digits, prepare_crop, split_numbers


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


def test_a_bold_digit_with_four_straight_sides_is_not_a_grid_cell():
    from edge_app.digits import remove_grid_lines

    bold_eight = np.zeros((46, 40), np.uint8)
    bold_eight[:8, :] = bold_eight[-8:, :] = bold_eight[19:27, :] = 1  # thick top, waist and bottom bars
    bold_eight[:, :8] = bold_eight[:, -8:] = 1  # thick sides
    assert remove_grid_lines(bold_eight) is None


def test_a_digit_touching_a_shadow_edge_is_peeled_off_it():
    from edge_app.digits import peel_edges

    gray = np.full((120, 120), 220, np.uint8)
    gray[:, 70:] = 130  # a shadow over the right of the page
    gray[30:90, 40:45] = 40  # a pen stroke, a "1" ...
    gray[58:62, 45:70] = 40  # ... joined to the shadow by a stray stroke
    mask = np.zeros((120, 120), np.uint8)
    mask[30:90, 40:45] = mask[58:62, 45:70] = 1
    mask[:, 66:74] = 1  # the band along the shadow's edge that the paper estimate took for ink
    box, sub = (40, 0, 34, 120), mask[:, 40:74]
    pieces = peel_edges(box, sub, gray, digit_height=60.0)
    assert len(pieces) == 1  # the stroke, without the band along the edge
    (x, y, w, h), _ = pieces[0]
    assert 38 <= x <= 42 and 28 <= y <= 32 and 58 <= h <= 62 and x + w <= 72  # the band ran the full height


def test_a_shadow_corner_is_no_stroke_but_a_digit_is():
    from edge_app.digits import is_stroke

    gray = np.full((100, 100), 220, np.uint8)
    gray[70:, 60:] = 140  # a shadow's corner at the frame's corner
    corner = np.ones((30, 40), np.uint8)
    assert not is_stroke((60, 70, 40, 30), corner, gray, digit_height=40.0)
    gray = np.full((100, 100), 220, np.uint8)
    gray[60:100, 70:75] = 40  # a "1" written near the bottom edge
    assert is_stroke((70, 60, 5, 40), np.ones((40, 5), np.uint8), gray, digit_height=40.0)


def test_a_broken_digit_or_a_sliver_is_offered_whole_but_neighbours_are_not():
    from edge_app.digits import offer_merges

    def blob(x, y, w, h):
        return (x, y, w, h), np.ones((h, w), np.uint8)

    stem, loop = blob(10, 0, 12, 40), blob(16, 18, 20, 22)  # a 6 broken in two, columns overlap
    sliver, one = blob(60, 8, 3, 28), blob(64, 0, 8, 40)  # a doubled pen stroke beside a "1"
    far = blob(100, 0, 25, 40)  # an ordinary next digit
    out = offer_merges([stem, loop, sliver, one, far], first_group=7)
    roles = [(o[0], o[2], o[3]) for o in out]
    assert ((10, 0, 26, 40), 7, "whole") in roles and ((60, 0, 12, 40), 8, "whole") in roles
    assert ((100, 0, 25, 40), None, "") in roles and len(out) == 7


def test_touching_digits_split_into_as_many_as_fit_whole():
    from edge_app.digits import split_touching

    mask = np.zeros((80, 150), np.uint8)
    for left in (0, 115):  # two "0"s ...
        mask[:, left:left + 35] = 1
        mask[6:-6, left + 6:left + 29] = 0
    mask[72:, 35:115] = 1  # ... joined by a long low stroke: three cuts would leave it a piece of its own
    pieces = split_touching((0, 0, 150, 80), mask)
    assert len(pieces) == 2 and all(p[0][3] == 80 for p in pieces)
