"""Ink polarity and the classifier's MNIST-style 28x28 input (plain arrays)."""

from __future__ import annotations

import cv2
import numpy as np

from digitdata.crops import MNIST_SIZE, ink_is_dark, mnist_style


def _page(h=120, w=200, paper=210):
    return np.full((h, w), paper, np.uint8)


def _draw_one(img, x, y, h, colour=30, thick=4):
    """A hand-drawn-like "1" with a flag: two strokes, `h` tall, top-left at (x, y)."""
    cv2.line(img, (x + h // 4, y), (x + h // 4, y + h), colour, thick)
    cv2.line(img, (x, y + h // 4), (x + h // 4, y), colour, thick)
    return img


def test_an_ink_patch_becomes_a_centred_white_on_black_crop():
    ink = 255 - _draw_one(_page(), 60, 30, 60)[26:96, 54:84]  # the "1", ink bright on 0
    ink[ink < 100] = 0
    crop = mnist_style(ink)
    assert crop.shape == (MNIST_SIZE, MNIST_SIZE) and crop.dtype == np.uint8
    assert crop.max() == 255 and crop[0].max() == 0 and crop[-1].max() == 0  # ink bright, border dark
    ys, xs = np.nonzero(crop)
    assert abs(np.average(xs, weights=crop[ys, xs]) - 13.5) < 1.5  # centred by mass, as MNIST is


def test_polarity_and_blank_patches():
    page = _draw_one(_page(), 60, 30, 60)
    assert ink_is_dark(page)
    assert not ink_is_dark(255 - page)
    assert mnist_style(np.zeros((0, 0), np.uint8)).max() == 0
    assert mnist_style(np.zeros((30, 20), np.uint8)).max() == 0
