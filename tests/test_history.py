"""The readings history (edge_app/store/history.py): committed in SQLite (WAL), the bounded MQTT outbox, and
`digitlite history` reading it back as text, CSV or JSON lines.

    .venv/bin/pytest tests/test_history.py
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from edge_app.store.history import HistoryError, HistorySettings, ReadingStore, parse_since

SHA = "ab" * 32


def reading(text: str, confidence: float = 0.98) -> dict:
    return {"text": text, "digits": [{"digit": int(c), "confidence": confidence, "box": [i * 10, 0, 8, 12]}
                                     for i, c in enumerate(text.replace(" ", ""))]}


def test_a_reading_is_committed_to_a_wal_database(tmp_path):
    db = tmp_path / "state" / "readings.db"
    store = ReadingStore(db)
    record = store.add(reading("7168"), "synthetic", SHA, time="2026-11-21T08:00:00.000+00:00")
    assert record["id"] == 1 and record["text"] == "7168" and record["digits"][0]["digit"] == 7
    # Another connection (another process: `digitlite history`) sees it at once: it is committed.
    with sqlite3.connect(db) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT text, source, origin, model_sha256 FROM readings").fetchall() == [
            ("7168", "synthetic", "live", SHA)]
    store.close()
    assert ReadingStore(db, create=False).since()[0] == record


def test_recent_is_newest_first_and_since_is_oldest_first():
    store = ReadingStore(":memory:")
    for i, text in enumerate(["1", "22", "333", "4444"]):
        store.add(reading(text), "cam", SHA, time=f"2026-11-21T08:0{i}:00.000+00:00")
    assert [r["text"] for r in store.recent(3)] == ["4444", "333", "22"]
    assert [r["text"] for r in store.since("2026-11-21T08:02:00.000+00:00")] == ["333", "4444"]
    assert [r["text"] for r in store.since(limit=2)] == ["1", "22"]


def test_the_history_keeps_its_newest_readings():
    store = ReadingStore(":memory:", HistorySettings(keep=3))
    for text in "12345":
        store.add(reading(text), "cam", SHA)
    assert [r["text"] for r in store.since()] == ["3", "4", "5"]


def test_the_outbox_is_ordered_and_bounded_with_a_counted_warning(caplog):
    store = ReadingStore(":memory:", HistorySettings(outbox_limit=3))
    ids = [store.add(reading(t), "cam", SHA, outbox=True)["id"] for t in "12345"]
    assert [r["id"] for r in store.pending()] == ids[2:], "the oldest were dropped"
    assert store.counter("outbox_dropped") == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "dropped reading #2" in warnings[-1] and "2 dropped in all" in warnings[-1]
    assert [r["text"] for r in store.since()] == list("12345"), "dropped from the outbox, kept in the history"
    store.delivered(ids[2])
    assert [r["id"] for r in store.pending()] == ids[3:]
    assert [r["id"] for r in store.pending(after_id=ids[3])] == ids[4:]
    store.add(reading("6"), "cam", SHA)  # not for MQTT
    assert store.outbox_size() == 2


def test_a_file_that_is_not_a_history_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("not a database " * 100)
    with pytest.raises(HistoryError, match="cannot open the readings history"):
        ReadingStore(bad)
    with pytest.raises(HistoryError, match="no readings history at"):
        ReadingStore(tmp_path / "absent.db", create=False)


def test_parse_since():
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == "2026-11-21T10:30:00.000+00:00"
    assert parse_since("2d", now) == "2026-11-19T12:00:00.000+00:00"
    assert parse_since("2026-11-21T08:30+01:00") == "2026-11-21T07:30:00.000+00:00"
    with pytest.raises(ValueError, match="15m"):
        parse_since("yesterday")


def digitlite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlite", "history", *args], capture_output=True, text=True,
                          timeout=60)


def test_history_command_prints_text_csv_and_json(tmp_path):
    db = tmp_path / "readings.db"
    store = ReadingStore(db)
    store.add(reading("12"), "cam", SHA, time="2026-11-20T08:00:00.000+00:00")
    store.add(reading("345", 0.7), "cam", SHA, time="2026-11-21T08:00:00.000+00:00")
    store.add(reading("6"), "upload", SHA, origin="upload", time="2026-11-21T09:00:00.000+00:00")
    store.close()
    text = digitlite("--db", str(db), "--since", "2026-11-21T00:00+00:00")
    assert text.returncode == 0, text.stderr
    assert [line.split()[2] for line in text.stdout.splitlines()] == ["345", "6"]
    assert "lowest confidence 70%" in text.stdout and "upload: upload" in text.stdout
    rows = list(csv.DictReader(io.StringIO(digitlite("--db", str(db), "--csv").stdout)))
    assert [r["text"] for r in rows] == ["12", "345", "6"] and json.loads(rows[1]["digits"])[0]["confidence"] == 0.7
    lines = [json.loads(x) for x in digitlite("--db", str(db), "--json", "--limit", "2").stdout.splitlines()]
    assert [x["id"] for x in lines] == [1, 2] and lines[0]["model_sha256"] == SHA


def test_history_command_errors_say_what_to_do(tmp_path):
    missing = digitlite("--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "digitlite run` creates it" in missing.stderr
    bad = digitlite("--db", str(tmp_path / "none.db"), "--since", "soon")
    assert bad.returncode == 2 and "--since 'soon'" in bad.stderr
    both = digitlite("--csv", "--json")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_history_command_finds_the_database_named_in_the_config(tmp_path, monkeypatch):
    db = tmp_path / "var" / "readings.db"
    ReadingStore(db).add(reading("42"), "cam", SHA)
    config = tmp_path / "device.toml"
    config.write_text('[history]\npath = "var/readings.db"\n')
    result = digitlite("--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == "42"
