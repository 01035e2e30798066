"""The region finder's contract: number lines -> a "number here" map and back, tilted rows included."""

from __future__ import annotations

import numpy as np
import pytest

from digitdata import regions


def _row(n: int, height: float, angle_deg: float, x0: float = 40, y0: float = 100) -> np.ndarray:
    """Digit boxes along a row tilted by angle_deg (image y down)."""
    t = np.radians(angle_deg)
    step = 0.8 * height
    centres = [(x0 + k * step * np.cos(t), y0 + k * step * np.sin(t)) for k in range(n)]
    return np.array([(cx - 0.35 * height, cy - height / 2, 0.7 * height, height) for cx, cy in centres], np.float32)


@pytest.mark.parametrize("angle", [0.0, 12.0, -20.0])
def test_line_rect_follows_the_row(angle):
    boxes = _row(6, 30, angle)
    cx, cy, length, height, got = regions.line_rect(boxes)
    assert got == pytest.approx(angle, abs=0.5)
    assert height == pytest.approx(30)
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    assert (cx, cy) == pytest.approx(tuple(centres.mean(axis=0)), abs=2.0)
    assert length > 5 * 0.8 * 30


@pytest.mark.parametrize("angle", [0.0, 15.0])
def test_decode_gives_back_the_lines_that_encode_drew(angle):
    lines = [_row(5, 24, angle, 30, 60), _row(2, 40, 0.0, 100, 180), _row(1, 16, 0.0, 260, 40)]
    target = regions.encode(lines, (64, 80))
    assert set(np.unique(target)) == {0.0, 1.0}
    found = regions.decode(target)
    truth = np.stack([regions.Region(*regions.line_rect(b), 1.0).box() for b in lines])
    tp, fp, fn = regions.match([r.box() for r in found], truth)
    assert (tp, fp, fn) == (3, 0, 0), [r.box() for r in found]
    tilted = min(found, key=lambda r: abs(r.cy - 60 - 2 * 0.8 * 24 * np.sin(np.radians(angle))))
    assert tilted.angle == pytest.approx(angle, abs=4.0)


def test_decode_is_bounded_and_quiet_on_nothing():
    assert regions.decode(np.zeros((64, 80), np.float32)) == []
    noise = (np.random.default_rng(0).random((64, 80)) > 0.5).astype(np.float32)
    assert len(regions.decode(noise, max_regions=7)) <= 7


def test_split_lines_and_scores():
    boxes = np.concatenate([_row(2, 20, 0, 10, 10), _row(3, 20, 0, 10, 60)])
    assert [len(b) for b in regions.split_lines(boxes, "37 504")] == [2, 3]
    assert regions.match(np.zeros((0, 4)), regions.true_line_boxes(boxes, "37 504")) == (0, 0, 2)
