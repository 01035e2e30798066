"""The one stabiliser of every live mode: a reading is reported once it has held for K frames."""

from __future__ import annotations


class Stabilizer:
    """Reports a reading once it has been the same for `frames` consecutive frames, and once per change.

    A frame with nothing readable resets the count; after `frames` empty frames the same number may be
    reported again (the camera looked away and back). Nothing readable ("") is never a reading. The one
    stabiliser of every live mode (`digitlite run`, `run --web`, `serve --source`).
    """

    def __init__(self, frames: int = 3):
        if frames < 1:
            raise ValueError(f"--stable-frames must be at least 1, got {frames}")
        self.frames = frames
        self._candidate, self._count, self._reported = "", 0, None

    @property
    def stable(self) -> str | None:
        """The reading on view: the last one reported, until `frames` frames in a row show nothing (then None)."""
        return self._reported

    def update(self, text: str) -> str | None:
        """Feed one frame's text; returns it when it has just become stable, else None."""
        if text == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = text, 1
        if self._count < self.frames:
            return None
        if text == "":
            self._reported = None
            return None
        if text != self._reported:
            self._reported = text
            return text
        return None
