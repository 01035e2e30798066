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
