"""Number lines for the recognizer: the input contract, determinism, and truth that holds digits only."""

from __future__ import annotations

import numpy as np
import pytest

from digitdata import lines


def test_line_input_is_fixed_size_ink_bright_and_left_aligned():
    gray = np.full((40, 100), 220, np.uint8)
    gray[10:30, 10:14] = 30  # a dark stroke on light paper
    x = lines.line_input(gray, dark_ink=True)
    assert x.shape == (lines.INPUT_HEIGHT, lines.INPUT_WIDTH) and x.dtype == np.uint8
    used = round(100 * lines.INPUT_HEIGHT / 40)
    assert x[:, used:].max() == 0  # padding is empty
    assert x[:, :used].max() == 255 and x[:, 5:9].max() > 200  # the stroke is bright
    assert np.median(x[:, :used]) < 20  # the paper is dark
    bright = lines.line_input(255 - gray, dark_ink=False)
    assert np.abs(bright.astype(int) - x.astype(int)).max() <= 2


def test_line_input_squeezes_long_regions_and_refuses_non_images():
    assert lines.line_input(np.zeros((10, 4000), np.uint8), True).shape == (32, 256)
    with pytest.raises(ValueError, match="grey region"):
        lines.line_input(np.zeros((0, 5), np.uint8), True)
    with pytest.raises(ValueError, match="grey region"):
        lines.line_input(np.zeros((4, 5, 3), np.uint8), True)


def test_render_line_is_deterministic_and_labels_digits_only(mnist):
    a = lines.render_line(np.random.default_rng([5, 1]), mnist.x_test, mnist.y_test)
    b = lines.render_line(np.random.default_rng([5, 1]), mnist.x_test, mnist.y_test)
    assert np.array_equal(a.gray, b.gray) and a.text == b.text
    x, texts, kinds = lines.render_inputs(11, 300, mnist.x_test, mnist.y_test)
    assert x.shape == (300, 32, 256)
    assert all(t.isdigit() or t == "" for t in texts) and max(len(t) for t in texts) <= lines.MAX_DIGITS
    assert {"no-digit", "mnist", "with-marks", "touching"} <= set(kinds)
    assert all(t == "" for t, k in zip(texts, kinds, strict=True) if k == "no-digit")
    # some regions carry words or marks beside their digits: the truth is still the digits alone
    assert sum(k == "with-marks" for k in kinds) > 30


def test_reading_scores_count_exact_strings_and_quiet_regions():
    s = lines.reading_scores(["12", "", "7", "3"], ["12", "", "1", ""], ["plain", "no-digit", "single", "no-digit"])
    assert s["exact"] == pytest.approx(0.5) and s["nothing_read"] == pytest.approx(0.5)
    assert s["per_kind"]["single"]["exact"] == 0.0
