"""The plausibility check of the live loop, for counters and meters: is a new stable reading believable as the
next value?

`Plausibility` holds the rule a device is given (`--expect increasing`, `--max-step N`, `--digits N`) and
`check(text, previous)` says why a reading breaks it, or None. The live loop (`edge_app.live.loop`) runs it on each
stable reading before the history: a reading that breaks it is still stored, marked suspect with the reason,
and shown as such, but it is not the value: it is not queued for MQTT, not sent to Home Assistant, and
`GET /api/value` skips it. The previous value is the newest plausible (or user-corrected) reading in the
history, so the rule holds across restarts, and correcting a suspect reading (`digitlite correct`) makes it
the value the next readings are judged against. Pure Python: no model, no I/O.

    digitlite run --source picamera --headless --expect increasing --max-step 50 --digits 6
"""

from __future__ import annotations

from dataclasses import dataclass

EXPECT = ("increasing",)  # what --expect accepts: a counter or meter never goes down


@dataclass(frozen=True)
class Plausibility:
    """What a believable reading is; every field None means any reading is plausible."""

    expect: str | None = None  # "increasing": never below the previous value (equal is fine)
    max_step: int | None = None  # counts: the largest change from the previous value, up or down
    digits: int | None = None  # how many digits a reading has (a meter with 6 wheels: 6)

    def __post_init__(self):
        if self.expect is not None and self.expect not in EXPECT:
            raise ValueError(f"--expect {self.expect!r}: valid values are {', '.join(EXPECT)}")
        if self.max_step is not None and self.max_step < 0:
            raise ValueError(f"--max-step {self.max_step}: give 0 or more counts")
        if self.digits is not None and self.digits < 1:
            raise ValueError(f"--digits {self.digits}: give at least 1")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.expect, self.max_step, self.digits))

    @property
    def compares(self) -> bool:
        """The rule compares a reading with the previous value (so a reading must be one number)."""
        return self.expect is not None or self.max_step is not None

    def check(self, text: str, previous: str | None) -> str | None:
        """Why `text` is not believable after `previous` (the last value; None: there is none yet), or None.

        Args:
            text: the stable reading, numbers separated by spaces.
            previous: the previous value's text; a comparison is skipped when it is not one number.
        """
        numbers = text.split()
        count = sum(len(n) for n in numbers)
        if self.digits is not None and count != self.digits:
            return f"{count} digits where {self.digits} are expected"
        if not self.compares:
            return None
        if len(numbers) != 1:
            return f"{len(numbers)} numbers where a counter shows one"
        last = previous.split() if previous else []
        if len(last) != 1:
            return None  # the first value (or one stored before the rule): nothing to compare with
        value, before = int(numbers[0]), int(last[0])
        if self.expect == "increasing" and value < before:
            return f"{value} is below the previous value {before} (expected increasing)"
        if self.max_step is not None and abs(value - before) > self.max_step:
            return f"{value} is {abs(value - before)} from the previous value {before} (--max-step {self.max_step})"
        return None

    def describe(self) -> str:
        parts = ([f"expect {self.expect}"] if self.expect else []) + \
                ([f"max step {self.max_step}"] if self.max_step is not None else []) + \
                ([f"{self.digits} digits"] if self.digits is not None else [])
        return ", ".join(parts) or "none"
