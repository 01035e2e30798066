"""Test doubles of the device's hardware, kept out of the package the device installs.

Imported by tests (pytest puts tests/ on sys.path); not a test module itself.
"""

from __future__ import annotations

import numpy as np

from edge_app.live.sources import SourceError, SourceLost


class FakeCamera:
    """A camera for tests: serves `frames`, fails from frame `fail_at` on, and recovers after `recover_after`
    reopen attempts (None: never). Records what happened."""

    live = True

    def __init__(self, frames: list[np.ndarray], fail_at: int | None = None, recover_after: int | None = None):
        self.name, self.frames, self.fail_at, self.recover_after = "fake-camera", frames, fail_at, recover_after
        self.served, self.reopens, self.closed, self._failed = 0, 0, False, False

    def read(self) -> np.ndarray | None:
        if self.fail_at is not None and self.served >= self.fail_at and not self._failed:
            self._failed = True
        if self._failed:
            raise SourceLost(f"{self.name} unplugged")
        if self.served >= len(self.frames):
            return None
        frame = self.frames[self.served]
        self.served += 1
        return frame

    def reopen(self) -> None:
        self.reopens += 1
        if self.recover_after is None or self.reopens < self.recover_after:
            raise SourceError(f"{self.name} is still unplugged")
        self._failed, self.fail_at = False, None

    def close(self) -> None:
        self.closed = True


def region_of(number: str) -> np.ndarray:
    """A (32, 256) uint8 recognizer input showing `number` (bright ink on black), distinct for each number."""
    import cv2

    region = np.zeros((32, 256), np.uint8)
    cv2.putText(region, number, (4, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 255, 2)
    return region


class ScriptedReader:
    """A reader for tests that need no models: each frame reads as the text scripted for it (frames are told apart
    by their bytes), as `edge_app.read.DigitReader` returns it: one line of numbers, a digit per character with
    boxes side by side, and one 32x256 region per number in `Reading.crops` (`region_of`). A frame not scripted
    reads as nothing."""

    roi = None

    def __init__(self, scripted: dict[str, np.ndarray], sha256: str = "5c" * 32):
        import hashlib
        from types import SimpleNamespace

        self._key = lambda frame: hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()
        self.texts = {self._key(frame): text for text, frame in scripted.items()}
        self.integrity = SimpleNamespace(sha256=sha256)
        self.reads = 0

    def read(self, frame_bgr: np.ndarray):
        from edge_app.read import Digit, Reading

        self.reads += 1
        numbers = self.texts.get(self._key(frame_bgr), "").split()
        digits = [Digit(int(c), 0.9, (40 * k, 10, 30, 40)) for k, c in enumerate("".join(numbers))]
        crops = np.stack([region_of(n) for n in numbers]) if numbers else np.zeros((0, 32, 256), np.uint8)
        return Reading(digits, [numbers] if numbers else [], {"total": 1.0}, 0, crops)
