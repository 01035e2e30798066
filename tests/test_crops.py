"""Ink polarity and the classifier's MNIST-style 28x28 input (plain arrays)."""

from __future__ import annotations

import cv2
import numpy as np

from digitdata.crops import MNIST_SIZE, digit_to_mnist, ink_is_dark, mnist_style


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


# ---------------------------------------------------------------------------------------------- digit_to_mnist


def _seven(h=200, w=160, paper=215, ink=40, thick=14):
    """A hand-drawn-like "7", dark on light, filling a `h` x `w` picture."""
    img = np.full((h, w), paper, np.uint8)
    cv2.line(img, (int(w * 0.2), int(h * 0.15)), (int(w * 0.8), int(h * 0.15)), ink, thick)
    cv2.line(img, (int(w * 0.8), int(h * 0.15)), (int(w * 0.4), int(h * 0.85)), ink, thick)
    return img


def _close(a, b, mean_abs=12):
    return np.abs(a.astype(int) - b.astype(int)).mean() < mean_abs


def test_digit_to_mnist_gives_the_same_crop_in_either_polarity_on_any_paper():
    reference = digit_to_mnist(_seven())
    assert reference.shape == (MNIST_SIZE, MNIST_SIZE) and reference.dtype == np.uint8
    assert reference.max() == 255
    rows, cols = np.nonzero(reference > 30)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21  # the ink box fitted in 20x20
    mass = reference.astype(float)
    cy = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
    cx = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centre of mass at the centre, as MNIST
    light_on_dark = 255 - _seven()
    faint = _seven(paper=250, ink=215)  # a faint pencil on white: 35 grey levels
    shaded = (_seven().astype(np.float32) * np.linspace(0.55, 1.0, 160)[None, :]).astype(np.uint8)  # a shadow
    bgr = cv2.cvtColor(_seven(), cv2.COLOR_GRAY2BGR)
    for name, picture in [("light on dark", light_on_dark), ("faint ink", faint), ("shaded paper", shaded),
                          ("BGR", bgr)]:
        assert _close(digit_to_mnist(picture), reference), f"{name}: a different crop than dark ink on paper"
    assert _close(digit_to_mnist(light_on_dark, dark_ink=False), reference)
    assert not _close(digit_to_mnist(light_on_dark, dark_ink=True), reference)  # told the wrong polarity


def test_a_noisy_jpeg_photo_of_one_digit_becomes_the_same_crop():
    rng = np.random.default_rng(0)
    photo = _seven(1200, 900, thick=70).astype(np.float32)
    photo = photo * np.linspace(0.7, 1.05, 900)[None, :] + rng.normal(0, 4, photo.shape)  # light falls off
    ok, jpeg = cv2.imencode(".jpg", np.clip(photo, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 70])
    crop = digit_to_mnist(cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE))
    assert _close(crop, digit_to_mnist(_seven(120, 90, thick=7)), 20)


def test_blank_and_noise_only_pictures_give_an_empty_crop():
    rng = np.random.default_rng(1)
    noise = np.clip(rng.normal(180, 3, (240, 320)), 0, 255).astype(np.uint8)
    for name, picture in [("blank", np.full((50, 50), 200, np.uint8)), ("sensor noise", noise),
                          ("empty", np.zeros((0, 0), np.uint8)), ("one pixel", np.full((1, 1), 9, np.uint8))]:
        assert not digit_to_mnist(picture).any(), f"{name}: ink found in a picture without any"
