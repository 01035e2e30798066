"""From a digit box to the classifier's 28x28 input: paper, lines, neighbours and polarity (plain arrays)."""

from __future__ import annotations

import cv2
import numpy as np

from digitdata.crops import MNIST_SIZE, digit_crop, ink_is_dark, mnist_style


def _page(h=120, w=200, paper=210):
    return np.full((h, w), paper, np.uint8)


def _draw_one(img, x, y, h, colour=30, thick=4):
    """A hand-drawn-like "1" with a flag: two strokes, `h` tall, top-left at (x, y)."""
    cv2.line(img, (x + h // 4, y), (x + h // 4, y + h), colour, thick)
    cv2.line(img, (x, y + h // 4), (x + h // 4, y), colour, thick)
    return img


def _ink_columns(crop):
    return np.flatnonzero(crop.max(axis=0) > 60)


def test_a_digit_on_paper_becomes_a_centred_white_on_black_crop():
    img = _draw_one(_page(), 60, 30, 60)
    crop = digit_crop(img, (58, 28, 20, 64), dark_ink=True)
    assert crop.shape == (MNIST_SIZE, MNIST_SIZE) and crop.dtype == np.uint8
    assert crop.max() == 255 and crop[0].max() == 0 and crop[-1].max() == 0  # ink bright, border dark
    ys, xs = np.nonzero(crop)
    assert abs(np.average(xs, weights=crop[ys, xs]) - 13.5) < 1.5  # centred by mass, as MNIST is


def test_a_neighbours_strokes_outside_the_box_are_left_out():
    alone = digit_crop(_draw_one(_page(), 60, 30, 60), (58, 28, 20, 64), True)
    img = _draw_one(_draw_one(_page(), 60, 30, 60), 92, 30, 60)  # a second "1" 12 px to the right
    with_neighbour = digit_crop(img, (58, 28, 20, 64), True)
    assert np.abs(alone.astype(int) - with_neighbour.astype(int)).mean() < 8


def test_a_ruled_line_through_the_box_is_not_ink():
    img = _draw_one(_page(), 60, 30, 60)
    cv2.line(img, (0, 75), (199, 75), 120, 2)  # a printed line across the page and the digit
    crop = digit_crop(img, (58, 28, 20, 64), True)
    alone = digit_crop(_draw_one(_page(), 60, 30, 60), (58, 28, 20, 64), True)
    assert np.abs(alone.astype(int) - crop.astype(int)).mean() < 8


def test_polarity_and_blank_boxes():
    page = _draw_one(_page(), 60, 30, 60)
    assert ink_is_dark(page)
    chalk = 255 - page
    assert not ink_is_dark(chalk)
    np.testing.assert_array_equal(digit_crop(chalk, (58, 28, 20, 64), False) > 127,
                                  digit_crop(page, (58, 28, 20, 64), True) > 127)
    assert digit_crop(_page(), (50, 30, 30, 50), True).max() == 0  # a blank box has no ink
    assert digit_crop(_page(), (500, 500, 30, 50), True).max() == 0  # a box outside the picture
    assert mnist_style(np.zeros((0, 0), np.uint8)).max() == 0


def test_a_huge_digit_is_worked_on_at_a_bounded_size():
    big = _draw_one(_page(2400, 2400), 600, 200, 2000, thick=120)
    crop = digit_crop(big, (580, 180, 560, 2040), True)
    assert crop.max() == 255 and len(_ink_columns(crop)) >= 3
