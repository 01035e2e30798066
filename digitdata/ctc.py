"""CTC greedy decoding of the recognizer's per-column probabilities: plain numpy, the same on every machine.

The recognizer outputs, for each of its columns, a probability for each digit and for the blank ("no digit
here"). Greedy decoding takes the likeliest class per column, merges repeats and drops blanks (Graves et al.
2006); a digit's confidence is its best column's probability, a string's the product of its digits'.

    python -c "from digitdata.ctc import greedy; help(greedy)"
"""

from __future__ import annotations

import numpy as np

BLANK = 10  # class index of the blank; 0-9 are the digits themselves


def greedy(probabilities: np.ndarray) -> tuple[str, list[float], list[tuple[int, int]]]:
    """Decode one (columns, 11) probability array.

    Returns:
        the digit string, each digit's confidence, and each digit's first and last column (inclusive).
    """
    p = np.asarray(probabilities, np.float32)
    if p.ndim != 2 or p.shape[1] != BLANK + 1:
        raise ValueError(f"expected (columns, {BLANK + 1}) probabilities, got shape {p.shape}")
    best = p.argmax(axis=1)
    text, confidences, spans = [], [], []
    previous = BLANK
    for col, k in enumerate(best):
        k = int(k)
        if k != BLANK and k == previous:  # the same digit continued
            confidences[-1] = max(confidences[-1], float(p[col, k]))
            spans[-1] = (spans[-1][0], col)
        elif k != BLANK:
            text.append(str(k))
            confidences.append(float(p[col, k]))
            spans.append((col, col))
        previous = k
    return "".join(text), confidences, spans


def greedy_batch(probabilities: np.ndarray) -> list[str]:
    """The digit strings of a (N, columns, 11) batch."""
    return [greedy(p)[0] for p in probabilities]
