"""CTC greedy decoding on arrays: repeats merge, blanks separate, confidences and column spans line up."""

from __future__ import annotations

import numpy as np
import pytest

from digitdata.ctc import BLANK, greedy, greedy_batch


def _probs(classes: list[int], sure: float = 0.9) -> np.ndarray:
    p = np.full((len(classes), BLANK + 1), (1 - sure) / BLANK, np.float32)
    p[np.arange(len(classes)), classes] = sure
    return p


def test_repeats_merge_and_a_blank_separates_two_equal_digits():
    b = BLANK
    text, conf, spans = greedy(_probs([b, 3, 3, b, 3, b, b, 7, 7, 7, b]))
    assert text == "337"
    assert spans == [(1, 2), (4, 4), (7, 9)]
    assert conf == pytest.approx([0.9, 0.9, 0.9])


def test_all_blank_is_nothing_and_the_confidence_is_the_best_column():
    assert greedy(_probs([BLANK] * 64)) == ("", [], [])
    p = _probs([BLANK, 5, 5, BLANK])
    p[2, 5] = 0.99
    assert greedy(p)[1] == pytest.approx([0.99])


def test_batch_and_bad_shapes():
    batch = np.stack([_probs([1, BLANK, 2, BLANK]), _probs([BLANK, BLANK, 0, 0])])
    assert greedy_batch(batch) == ["12", "0"]
    with pytest.raises(ValueError, match="expected"):
        greedy(np.zeros((4, 10)))
