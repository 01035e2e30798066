"""Waiting in tests without asserting a speed: a generous bound, polled.

Imported by tests (pytest puts tests/ on sys.path); not a test module itself.
"""

from __future__ import annotations

import time

import pytest

WAIT_S = 60  # generous: the machine may be busy; nothing here asserts a speed


def wait_for(condition, what: str, timeout: float = WAIT_S):
    """`condition()`'s first truthy value, polled every 50 ms; the test fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
