"""digitdata.handwriting: the classifier's training variants (pen model, writing styles, elastic, low resolution)
are seeded, in MNIST's form, and change what they say they change.

    .venv/bin/python -m pytest -q tests/test_handwriting.py
"""

from __future__ import annotations

import numpy as np

from digitdata.handwriting import StyleParams, bar_seven, flag_one, variants


def _one():
    d = np.zeros((28, 28), np.uint8)
    d[4:24, 13:16] = 255  # a straight stem
    return d


def test_a_flag_goes_down_to_the_left_from_the_top_and_a_bar_crosses_the_stem():
    rng = np.random.default_rng(0)
    one = _one()
    flagged = flag_one(rng, one)
    added = (flagged > 60) & ~(one > 60)
    ys, xs = np.nonzero(added)
    assert len(ys) and xs.max() < 13 and ys.min() >= 4 and ys.max() <= 4 + 0.4 * 20, "no flag at the top left"
    footed = flag_one(rng, one, foot=True)
    assert ((footed > 60) & ~(one > 60))[22:25].any(), "no foot under the stem"
    barred = bar_seven(rng, one)
    ys, xs = np.nonzero((barred > 60) & ~(one > 60))
    assert len(ys) and 12 <= ys.mean() <= 17 and xs.min() < 13 < 16 <= xs.max(), "no bar across the stem"


def test_variants_are_seeded_labelled_and_in_mnist_form(mnist):
    x, y = variants(3, mnist.x_train[:200], mnist.y_train[:200], 60)
    again, _ = variants(3, mnist.x_train[:200], mnist.y_train[:200], 60)
    other, _ = variants(4, mnist.x_train[:200], mnist.y_train[:200], 60)
    assert x.shape == (60, 28, 28) and x.dtype == np.uint8 and y.shape == (60,)
    assert np.array_equal(x, again) and not np.array_equal(x, other)
    assert set(y.tolist()) <= set(mnist.y_train[:200].tolist())
    for i, d in enumerate(x):
        rows, cols = np.nonzero(d > 30)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21, f"variant {i} (a {y[i]}) does not fit 20x20"
    plain, _ = variants(3, mnist.x_train[:200], mnist.y_train[:200], 60,
                        StyleParams(flag_one_p=0, foot_one_p=0, bar_seven_p=0, pen_p=0, elastic_p=0, low_res_p=0))
    assert np.abs(plain.astype(int) - x.astype(int)).mean() > 5, "the variants look like the MNIST digits"
