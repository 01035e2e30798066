"""Pure functions of the reading pipeline on arrays: MNIST-style crops, the grey channel, reading order,
stability and the region of interest."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digitdata.crops import ink_is_dark, mnist_style
from digitdata.frames import to_gray
from edge_app.live.stabilizer import Stabilizer
from edge_app.read import parse_roi
from edge_app.read.layout import reading_order


def test_mnist_style_fits_20x20_and_centres_mass():
    ink = np.zeros((90, 30), np.uint8)
    ink[5:85, 10:20] = 255  # a tall bar, like a "1"
    crop = mnist_style(ink)
    assert crop.shape == (28, 28) and crop.dtype == np.uint8
    rows, cols = np.nonzero(crop > 30)
    assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20  # fits the 20x20 box
    mass = crop.astype(float)
    cy = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
    cx = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centre of mass in the middle, as MNIST


def test_mnist_style_keeps_aspect_ratio():
    ink = np.zeros((40, 80), np.uint8)
    ink[10:30, 5:75] = 255  # wide: 70 x 20
    rows, cols = np.nonzero(mnist_style(ink) > 30)
    width, height = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
    assert width >= 18 and height <= 9  # scaled by the long side, not stretched
    assert mnist_style(np.zeros((10, 10), np.uint8)).max() == 0


def _box(x, y, w=20, h=30):
    return (x, y, w, h)


def test_reading_order_numbers_and_lines():
    boxes = [_box(0, 0), _box(25, 2), _box(50, 1),  # "123" on line 1
             _box(150, 0), _box(175, 0),  # a second number on line 1, after a wide gap
             _box(10, 100), _box(35, 104)]  # line 2
    assert reading_order(boxes) == [[[0, 1, 2], [3, 4]], [[5, 6]]]


def test_a_drifting_row_stays_one_line_and_narrow_ones_do_not_split_a_number():
    assert reading_order([_box(25 * i, 4 * i) for i in range(8)]) == [[list(range(8))]]  # drifts 28 px down
    assert reading_order([_box(0, 0), _box(40, 0, w=5), _box(60, 0)]) == [[[0, 1, 2]]]  # "2 1 3", a thin 1


FRAMES = ["12", "12", "12", "12", "13", "12", "12", "12", "", "", "", "12", "12", "12"]
_ = None  # a frame after which nothing is reported


def test_a_reading_is_reported_once_it_held_for_n_frames_and_again_after_looking_away():
    # The one stabiliser of every live mode reports numbers only, never "" (nothing in view).
    s = Stabilizer(3)
    assert [s.update(t) for t in FRAMES] == [_, _, "12", _, _, _, _, _, _, _, _, _, _, "12"]
    with pytest.raises(ValueError, match="at least 1"):
        Stabilizer(0)


def test_parse_roi():
    assert parse_roi("10,20,300,200") == (10, 20, 300, 200)
    assert parse_roi(None) is None
    with pytest.raises(ValueError, match="four integers"):
        parse_roi("10,20")


def _page(ink_bgr=(20, 20, 20), paper_bgr=(235, 235, 235), size=(120, 160)):
    """A page with a hand-drawn-like "7" (two thick strokes)."""
    page = np.zeros((*size, 3), np.uint8)
    page[:] = paper_bgr
    cv2.line(page, (50, 30), (100, 30), ink_bgr, 6)
    cv2.line(page, (100, 30), (70, 95), ink_bgr, 6)
    return page


def test_polarity_dark_ink_and_chalk():
    page = _page()
    assert ink_is_dark(to_gray(page))
    assert not ink_is_dark(to_gray(255 - page))


def test_blue_ink_on_a_yellow_note_uses_the_channel_that_shows_it():
    page = _page(ink_bgr=(170, 60, 30), paper_bgr=(60, 230, 250))  # BGR: blue ink, yellow paper
    gray = to_gray(page)
    contrast = int(gray[5, 5]) - int(gray[30, 75])  # paper minus ink
    assert contrast > 150, f"ink barely visible in the chosen grey (contrast {contrast})"
