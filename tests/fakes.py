"""Test doubles of the device's hardware, kept out of the package the device installs.

Imported by tests (pytest puts tests/ on sys.path); not a test module itself.
"""

from __future__ import annotations

import numpy as np

from edge_app.sources import SourceError, SourceLost


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
