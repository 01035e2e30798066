"""The plausibility check for counters and meters (issue 14): the rule itself, and the live loop storing a reading
that breaks it as suspect, keeping it out of the MQTT outbox and the value, until a user corrects it.

    .venv/bin/pytest tests/test_plausibility.py
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_app.live.loop import LiveLoop, LoopSettings, Sink
from edge_app.outputs.local import JsonLines
from edge_app.read import Digit, Reading
from edge_app.store.history import ReadingStore, value_of
from edge_app.store.plausibility import Plausibility


@pytest.mark.parametrize("rule, text, previous, why", [
    (Plausibility(expect="increasing"), "1250", "1249", None),
    (Plausibility(expect="increasing"), "1249", "1249", None),
    (Plausibility(expect="increasing"), "1248", "1249", "below the previous value 1249"),
    (Plausibility(expect="increasing"), "1248", None, None),  # the first value
    (Plausibility(expect="increasing"), "12 48", "1249", "2 numbers where a counter shows one"),
    (Plausibility(max_step=10), "1259", "1249", None),
    (Plausibility(max_step=10), "1260", "1249", "11 from the previous value 1249"),
    (Plausibility(max_step=10), "1238", "1249", "11 from the previous value 1249"),
    (Plausibility(expect="increasing", max_step=5), "7249", "1249", "6000 from the previous value"),
    (Plausibility(digits=6), "001249", "001248", None),
    (Plausibility(digits=6), "1249", None, "4 digits where 6 are expected"),
    (Plausibility(digits=4), "12 49", None, None),
    (Plausibility(), "3", "9", None),
])
def test_the_rule(rule, text, previous, why):
    got = rule.check(text, previous)
    assert (got is None) if why is None else (why in got), got


@pytest.mark.parametrize("kwargs, message", [({"expect": "decreasing"}, "valid values are increasing"),
                                             ({"max_step": -1}, "--max-step -1"), ({"digits": 0}, "--digits 0")])
def test_a_bad_rule_names_its_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Plausibility(**kwargs)


class Texts:
    """A reader that reads the given texts, one per frame, each number with its 32x256 region (the reader's
    contract)."""

    def __init__(self, texts):
        self.texts = list(texts)

    def read(self, frame) -> Reading:
        text = self.texts.pop(0)
        digits = [Digit(int(c), 0.97, (10 * i, 0, 8, 12)) for i, c in enumerate(text.replace(" ", ""))]
        return Reading(digits, [text.split()] if text else [], {"total": 0.1}, 0,
                       np.zeros((len(text.split()), 32, 256), np.uint8))


class Frames:
    name = "frames"

    def __init__(self, n):
        self.n = n

    def read(self):
        if self.n == 0:
            return None
        self.n -= 1
        return np.full((48, 64, 3), 200, np.uint8)

    def close(self):
        pass


class Corrections(Sink):
    name = "corrections"

    def __init__(self):
        self.seen = []

    def on_correction(self, record):
        self.seen.append(record["corrected_text"])


def test_a_breaking_reading_is_stored_as_suspect_and_not_published_as_the_value():
    texts = ["1249", "1250", "1205", "1251", "9999"]
    store, lines, corrections = ReadingStore(":memory:"), [], Corrections()
    outbox = type("Outbox", (Sink,), {"uses_outbox": True})()  # the MQTT sink's flag, without a broker
    loop = LiveLoop(Frames(len(texts)), Texts(texts), store, [JsonLines(lines.append), outbox, corrections],
                    LoopSettings(stable_frames=1), plausibility=Plausibility(expect="increasing", max_step=100))
    assert loop.run() == 0
    stored = store.since()
    assert [(r["text"], bool(r["suspect"])) for r in stored] == [
        ("1249", False), ("1250", False), ("1205", True), ("1251", False), ("9999", True)]
    assert "below the previous value 1250" in stored[2]["suspect"]
    assert "8748 from the previous value 1251" in stored[4]["suspect"]
    printed = [json.loads(line) for line in lines]
    assert [p.get("suspect") is not None for p in printed] == [False, False, True, False, True], "shown as suspect"
    assert [r["text"] for r in store.pending()] == ["1249", "1250", "1251"], "suspect readings are not queued"
    assert value_of(store.latest_value()) == "1251"
    assert all(store.examples_of(r["id"])["crops"].shape == (1, 32, 256) for r in stored), "suspects keep examples"

    # The user says 9999 was right after all: the corrected reading becomes the value, and the loop's sinks hear.
    loop.corrected(store.correct(stored[4]["id"], "9999"))
    assert value_of(store.latest_value()) == "9999" and corrections.seen == ["9999"]
