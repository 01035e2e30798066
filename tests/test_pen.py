"""The pen model, stroke-safe resizing, the stress grid's cells and the real sets' held-out split.

    pytest tests/test_pen.py
"""

from __future__ import annotations

import numpy as np
import pytest

from digitdata import engine, frames, handwriting, pen, realsets
from digitdata.lines import line_input


def _seven() -> np.ndarray:
    """A 28x28 MNIST-form 7 drawn with a 3 px brush (no MNIST needed)."""
    import cv2

    d = np.zeros((28, 28), np.uint8)
    cv2.polylines(d, [np.array([[7, 6], [21, 6], [12, 23]], np.int32)], False, 255, 3, cv2.LINE_AA)
    return d


def _stroke_px(alpha: np.ndarray) -> float:
    """Mean stroke width of a drawn shape: its ink area over its centre line's pixel count."""
    ink = alpha > 0.5
    return float(ink.sum()) / max(int(pen.thin(ink).sum()), 1)


def test_thinning_leaves_a_one_pixel_centre_line():
    bar = np.zeros((20, 40), bool)
    bar[8:13, 5:35] = True
    line = pen.thin(bar)
    assert line.any()
    assert line.sum(axis=0).max() == 1, "a 5 px bar thins to one pixel per column"
    assert set(np.nonzero(line)[0]) <= {9, 10, 11}, "the centre line runs through the middle of the bar"


@pytest.mark.parametrize("width_px", [1.5, 4.0, 10.0])
def test_the_pen_width_does_not_depend_on_the_digit_size(width_px):
    rng = np.random.default_rng(0)
    segments = pen.centre_segments(_seven())
    widths = []
    for scale in (8.0, 30.0):  # a digit about 140 px and about 500 px tall
        m = np.array([[scale, 0, 0], [0, scale, 0]])
        alpha = pen.draw(rng, segments, m, (int(28 * scale), int(28 * scale)), width_px, pressure=0.0)
        widths.append(_stroke_px(alpha))
    # ink area over centre-line pixels: about the pen's width plus its anti-aliased edges, at either size
    assert abs(widths[0] - widths[1]) < 1.5, f"{widths} px wide at 140 and 500 px tall with a {width_px} px pen"
    for w in widths:
        assert width_px - 0.5 < w < width_px + 3.5, f"drawn {w:.2f} px wide with a {width_px} px pen"


def test_a_pen_finer_than_a_pixel_draws_a_fainter_line():
    rng = np.random.default_rng(0)
    m = np.array([[10.0, 0, 0], [0, 10.0, 0]])
    fine = pen.draw(rng, pen.centre_segments(_seven()), m, (280, 280), 0.5, pressure=0.0)
    assert 0.3 < fine.max() <= 0.6


def test_restroke_keeps_the_digit_and_changes_its_stroke():
    rng = np.random.default_rng(1)
    d = _seven()
    thin, bold = pen.restroke_28(rng, d, 0.05), pen.restroke_28(rng, d, 0.25)
    assert thin.shape == bold.shape == (28, 28)
    assert (bold > 128).sum() > 2 * (thin > 128).sum()
    ys, xs = np.nonzero(thin > 60)
    assert 4 <= ys.min() and ys.max() <= 25, "the digit stays where it was"


def test_styled_digits_stay_28x28_and_vary():
    rng = np.random.default_rng(3)
    d = _seven()
    out = [handwriting.styled(rng, d, 7, 1.0, 0.0) for _ in range(5)]
    assert all(o.shape == (28, 28) and o.dtype == np.uint8 for o in out)
    assert any((o > 60).sum() > (d > 60).sum() for o in out), "a bar across the 7 adds ink"


def test_a_stroke_survives_a_large_reduction():
    """A 2 px ballpoint line in a 2,000 px picture reduced to 320 px: plain area averaging leaves a third of its
    contrast (44 %); the stroke-safe reduction keeps more than half (60 %)."""
    import cv2

    big = np.full((1600, 2000), 230, np.uint8)
    cv2.line(big, (100, 800), (1900, 820), 30, 2)
    size = (320, 256)
    plain = cv2.resize(big, size, interpolation=cv2.INTER_AREA)
    safe = frames.shrink(big, size, dark_ink=True)
    paper = float(np.median(safe))
    def kept(small):  # the line's contrast, column by column, at its median
        return float(np.median(np.median(small, axis=0) - small.min(axis=0)))

    assert kept(plain) < 0.45 * 200
    assert kept(safe) > 0.55 * 200, f"the line keeps {kept(safe):.0f} of 200 grey levels"
    assert abs(paper - 230) < 12, "the paper stays paper"
    bright = frames.shrink(255 - big, size, dark_ink=False)
    assert float(np.median(bright.max(axis=0) - np.median(bright, axis=0))) > 0.55 * 200
    assert frames.ink_is_dark(big) and not frames.ink_is_dark(255 - big)


def test_the_recognizer_input_keeps_a_fine_pen():
    import cv2

    region = np.full((600, 2400), 235, np.uint8)
    for k in range(4):  # four 1 px strokes in a region 600 px tall: 1/600 of its height
        cv2.line(region, (300 + 500 * k, 100), (300 + 500 * k, 500), 20, 1)
    x = line_input(region, True)
    assert x.max() == 255 and (x > 128).any(axis=0).sum() >= 4


@pytest.mark.parametrize("digits", [(1, 1), (3, 6), (7, 12)])
def test_a_stress_grid_cell_renders_what_it_names(mnist, digits):
    data = mnist
    cfg = engine.stress_cell(0.01, 48, digits)
    for i in range(4):
        scene = engine.render(np.random.default_rng([5, i]), data.x_test, data.y_test, cfg)
        assert digits[0] <= len(scene.text) <= digits[1], scene.text
        assert scene.params["stroke"] == 0.01 and scene.params["pen"]
        assert abs(scene.params["height_px"] - 48) < 0.5
        heights = [b[3] for b in scene.boxes]
        assert 0.5 * 48 < np.median(heights) < 1.6 * 48


def test_small_zeros_are_written_smaller(mnist):
    zeros = np.nonzero(mnist.y_test == 0)[0][:8]
    ones = np.nonzero(mnist.y_test == 1)[0][:8]
    picks = np.concatenate([ones[:1], zeros[:1]])
    images, labels = mnist.x_test, mnist.y_test
    rng = np.random.default_rng(0)
    placed = engine._place_line(rng, images, picks, (0.0, 0.0), 0.0, 100.0, 0.2, 0.0, labels, 0.0, 1.0)
    h_one = np.ptp(placed[0].points[:, 1])
    h_zero = np.ptp(placed[1].points[:, 1])
    assert h_zero < 0.85 * h_one


def test_the_real_sets_are_split_by_writer_group():
    if realsets.datasets_dir() is None or not (realsets.datasets_dir() / realsets.NSYSU).is_dir():
        pytest.skip("../shared/datasets (nsysu-digits, orand-car-a) is not beside this checkout")
    for load, held_count in ((realsets.nsysu, 484), (realsets.orand, 231)):
        s = load()
        train, held = s.part("train"), s.part("held")
        assert len(held) == held_count and len(train) + len(held) == len(s)
        assert not set(train.groups) & set(held.groups), f"{s.name}: a group on both sides"
    semesters = {g[:4] for g in realsets.nsysu().part("held").groups}
    assert semesters == set(realsets.NSYSU_HELD_SEMESTERS)
    x, texts = realsets.amount_inputs("held")
    assert x.shape == (231, 32, 256) and all(t.isdigit() for t in texts)


def test_without_the_real_sets_training_uses_mnist_alone(tmp_path, monkeypatch):
    monkeypatch.setenv(realsets.DATASETS_ENV, str(tmp_path))
    monkeypatch.setattr(realsets, "datasets_dir", lambda root=None: tmp_path)
    x, y = realsets.real_digit_pool()
    assert len(x) == len(y) == 0
    with pytest.raises(FileNotFoundError, match="nsysu-digits"):
        realsets.nsysu()


def test_the_stress_grid_scores_each_cell_and_draws_a_heat_map(mnist):
    from benchmarks.accuracy import grid_markdown, grid_picture, stress_grid

    seen = []

    def first_digit(frame_bgr):  # a reader that reads one "1" wherever it looks: right on the 1s only
        seen.append(frame_bgr.shape)
        return "1", []

    grid = stress_grid({"digitlite": first_digit}, 3, 0, strokes=(0.01, 0.2), heights=(24, 120),
                       digit_counts=((1, 1), (3, 6)))
    assert len(grid["cells"]) == 8 and all(c["scenes"] == 3 for c in grid["cells"])
    assert len(seen) >= 24, "every scene was read"
    assert all(c["exact"]["digitlite"] == 0 for c in grid["cells"] if c["digits"] == "3-6")
    table = grid_markdown(grid)
    assert "| **1-1 digits** |" in table and "| 120 px |" in table and "stroke 20.0%" in table
    picture = grid_picture(grid)
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0]
