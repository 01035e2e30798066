"""Today's reader, kept during the transition to the learned detector (`--reader classic`).

Finds digits with the tuned thresholds of `edge_app.digits`, classifies them in one batch and groups
them into numbers. Deleted once the learned reader (`edge_app.reader.DigitReader`) wins on every set.
"""

from __future__ import annotations

import time

import numpy as np

from digitdata.frames import as_bgr_uint8
from edge_app.digits import (
    NUMBER_GAP,
    choose_alternatives,
    extract_crops,
    find_candidates,
    group_digits,
)
from edge_app.reader import MIN_CONFIDENCE, Digit, Reading, crop_roi
from edge_app.runtime import Classifier


class ClassicReader:
    """Reads the handwritten numbers in frames with one classifier.

    Args:
        classifier: the LiteRT classifier (built once, outside the frame loop).
        min_confidence: digits below this are dropped as non-digits.
        roi: (x, y, w, h): only this part of each frame is read (boxes stay in frame coordinates).
        polarity: "auto", "dark" (ink darker than paper) or "bright" (chalk on a board).
        gap: a horizontal gap wider than this many digit heights separates two numbers.
    """

    def __init__(self, classifier: Classifier, min_confidence: float = MIN_CONFIDENCE,
                 roi: tuple[int, int, int, int] | None = None, polarity: str = "auto", gap: float = NUMBER_GAP):
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if polarity not in ("auto", "dark", "bright"):
            raise ValueError(f"polarity {polarity!r}: valid values are auto, dark, bright")
        self.classifier, self.min_confidence, self.roi = classifier, min_confidence, roi
        self.polarity, self.gap = polarity, gap

    def read(self, frame) -> Reading:
        """Read one frame (BGR or grey, uint8 or float; see `digits.as_bgr_uint8`).

        Raises:
            ValueError: the array is not an image.
        """
        started = time.perf_counter()
        frame_bgr = as_bgr_uint8(frame)
        frame_bgr, ox, oy = crop_roi(frame_bgr, self.roi)
        candidates, context = find_candidates(frame_bgr, polarity=self.polarity)
        crops = extract_crops(candidates, context)
        found = time.perf_counter()
        probabilities = self.classifier.probabilities(self.classifier.pixels_to_input(crops))  # one batch
        classified = time.perf_counter()

        chosen = choose_alternatives(candidates, probabilities.max(axis=1)) if len(candidates) else []
        chosen = [i for i in chosen if probabilities[i].max() >= self.min_confidence]
        kept = [Digit(int(p.argmax()), float(p.max()), (c.box[0] + ox, c.box[1] + oy, c.box[2], c.box[3]))
                for c, p in ((candidates[i], probabilities[i]) for i in chosen)]
        groups = group_digits([d.box for d in kept], self.gap)
        order = [i for line in groups for number in line for i in number]
        lines = [["".join(str(kept[i].digit) for i in number) for number in line] for line in groups]
        done = time.perf_counter()
        latency = {"find": (found - started) * 1e3, "classify": (classified - found) * 1e3,
                   "group": (done - classified) * 1e3, "total": (done - started) * 1e3}
        kept_crops = crops[[chosen[i] for i in order]] if order else np.zeros((0, *crops.shape[1:]), np.uint8)
        return Reading([kept[i] for i in order], lines, latency, len(candidates) - len(kept), kept_crops)
