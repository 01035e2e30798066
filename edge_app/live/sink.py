"""The contract between the live loop and its outputs: `Frame` (one frame through the loop) and `Sink` (one
output). It imports nothing above `edge_app.read`, so every output (`edge_app.outputs`, the web stream) depends
on this file and not on the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from edge_app.read.annotate import annotate
from edge_app.read.reading import Reading


@dataclass
class Frame:
    """One frame through the loop: what the reader made of it, and the loop's figures."""

    number: int
    image: np.ndarray  # as the source gave it: grey (H, W) or BGR (H, W, 3) uint8
    reading: Reading
    time: str  # ISO 8601 UTC
    fps: float
    latency_ms: dict[str, float]  # capture, then the reader's stages
    stable: str | None  # the stabiliser's reading on view (None: nothing stable)

    @cached_property
    def annotated(self) -> np.ndarray:
        """The frame in colour with boxes, digits and the reading drawn on it, made once for every sink."""
        return annotate(self.image, self.reading, self.fps)

    @cached_property
    def reading_dict(self) -> dict:
        """`Reading.to_dict()`, made once for the history and every sink."""
        return self.reading.to_dict()

    def to_dict(self) -> dict:
        return {"time": self.time, "frame": self.number, **self.reading_dict, "latency_ms": self.latency_ms,
                "fps": round(self.fps, 1)}


class Sink:
    """One output of the live loop. Override what the output needs; every method is called in the loop's thread.

    `uses_outbox`: stable readings are queued in the history's MQTT outbox for this sink.
    """

    name = "sink"
    uses_outbox = False

    def on_frame(self, frame: Frame) -> None:
        """Every frame read (in order)."""

    def on_reading(self, record: dict, frame: Frame) -> None:
        """A stable reading, after it was committed to the history (`record` is the stored row, with its id;
        "suspect" says why the plausibility check refused it as the value, else None)."""

    def on_model(self, model: dict) -> None:
        """The models the reader uses, once when the loop starts and again after it loaded others: {"bundle"
        (None: the models installed with digitlite), "recognizer_sha256", "time"}."""

    def on_correction(self, record: dict) -> None:
        """A user corrected a stored reading (`record`, with "corrected_text"); called from the thread that took
        the correction (the web server's), not the loop's."""

    def close(self) -> None:
        """The loop has ended: flush and release (bounded in time)."""
