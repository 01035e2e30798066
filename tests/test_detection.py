"""The detector's output contract on plain arrays: encode -> decode round trips, peaks, matching, reading order."""

from __future__ import annotations

import numpy as np
import pytest

from digitdata import heatmap
from digitdata.frames import Letterbox, detector_input, letterbox
from edge_app.read.layout import reading_order


def _maps_for(boxes, grid=(64, 80)):
    """What a perfect detector would output for these boxes: the encoded targets as model outputs."""
    heat, box = heatmap.encode(np.asarray(boxes, np.float32), grid)
    return heat, box[..., 1:]


def test_encode_then_decode_gives_the_boxes_back():
    truth = np.float32([[20, 30, 14, 20], [40, 32, 12, 19], [200, 150, 60, 80], [300, 10, 6, 9]])
    heat, box = _maps_for(truth)
    found = heatmap.decode(heat, box, threshold=0.5, max_boxes=10)
    assert len(found) == 4
    order = np.argsort(found.boxes[:, 0])
    np.testing.assert_allclose(found.boxes[order], truth[np.argsort(truth[:, 0])], atol=0.01)
    assert heatmap.match(found.boxes, truth) == (4, 0, 0)


def test_touching_digits_keep_separate_peaks():
    # Two 20 px tall digits whose boxes overlap: their centres are 12 px (3 cells) apart.
    truth = np.float32([[100, 100, 14, 20], [112, 100, 14, 20]])
    heat, box = _maps_for(truth)
    assert len(heatmap.decode(heat, box, threshold=0.5, max_boxes=10)) == 2


def test_decode_is_bounded_and_best_first():
    rng = np.random.default_rng(0)
    heat = rng.random((64, 80)).astype(np.float32)  # noise: peaks everywhere
    found = heatmap.decode(heat, np.zeros((64, 80, 4), np.float32), threshold=0.1, max_boxes=16)
    assert len(found) == 16
    assert np.all(np.diff(found.scores) <= 0)


def test_nothing_above_threshold_decodes_to_nothing():
    found = heatmap.decode(np.full((64, 80), 0.05, np.float32), np.zeros((64, 80, 4), np.float32), 0.3, 64)
    assert len(found) == 0 and found.boxes.shape == (0, 4)


def test_match_counts_false_positives_and_misses():
    truth = np.float32([[0, 0, 10, 10], [50, 0, 10, 10]])
    found = np.float32([[1, 1, 10, 10], [200, 200, 10, 10]])
    assert heatmap.match(found, truth) == (1, 1, 1)
    assert heatmap.match(np.zeros((0, 4)), truth) == (0, 0, 2)
    assert heatmap.iou(truth[:1], truth[:1])[0, 0] == pytest.approx(1.0)


def test_letterbox_maps_boxes_both_ways():
    gray = np.full((100, 400), 200, np.uint8)
    boxed, lb = letterbox(gray, (320, 256))
    assert boxed.shape == (256, 320) and lb.scale == pytest.approx(0.8)
    box = np.float32([[40, 10, 30, 50]])
    np.testing.assert_allclose(lb.to_picture(lb.to_input(box)), box, atol=1e-4)


def test_detector_input_of_a_region_maps_back_to_the_whole_picture():
    image = np.full((480, 640, 3), 230, np.uint8)
    x, lb = detector_input(image, (320, 256), region=(100, 200, 160, 128))
    assert x.shape == (256, 320) and lb.scale == pytest.approx(2.0)
    # The region's top-left corner is the input's top-left corner.
    np.testing.assert_allclose(lb.to_picture(np.float32([[0, 0, 2, 2]]))[0], [100, 200, 1, 1], atol=1e-4)
    assert isinstance(lb, Letterbox)


def test_reading_order_follows_a_tilted_row_and_splits_lines():
    # A row rising 20 degrees: each digit 24 px right and 9 px up; then a second line below it.
    row = [(10 + 24 * k, 200 - 9 * k, 16, 24) for k in range(6)]
    below = [(40 + 24 * k, 300, 16, 24) for k in range(3)]
    boxes = below + row[::-1]  # any input order
    lines = reading_order(boxes)
    assert [[boxes[i] for i in number] for number in lines[0]] == [row]
    assert [[boxes[i] for i in number] for number in lines[1]] == [below]


def test_reading_order_splits_numbers_at_wide_gaps_on_one_line():
    boxes = [(0, 0, 14, 20), (18, 1, 14, 20), (120, 0, 14, 20), (138, 2, 14, 20)]
    assert reading_order(boxes) == [[[0, 1], [2, 3]]]
    assert reading_order([]) == []
