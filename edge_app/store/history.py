"""The device's readings history: every stable reading, committed to an embedded SQLite database first.

`ReadingStore` owns the database file: the `readings` table (time, text, digits with their confidences and
boxes, source, origin, the sha256 of the model that read it; whether the plausibility check found it suspect,
and a user's correction beside the original text), the `examples` of the last readings (the recognizer's 32x256
input of each number region and the frame, kept so that a correction can label each region with its number; a
corrected reading's are kept for good), and the `outbox` of readings still to be published over MQTT, bounded
(the oldest are dropped, and counted). WAL mode with synchronous=FULL: a reading whose commit returned survives
a crash or a power cut, and `digitlite history` can read while the service writes. The live loop commits each
stable reading here before any sink sees it; `edge_app.outputs.mqtt` publishes from the outbox; the web view lists the
recent readings from it. This module also holds `digitlite history`.

A history is checked when it is opened (`PRAGMA quick_check`): a corrupt file is refused with a message naming
it, and `digitlite history --repair` copies what is readable into a new file, keeping the old one beside it. A
write that fails (a full or read-only disk) raises `HistoryWriteError`; `last_error` says so until a write
succeeds again. Every input is bounded here: reading ids (SQLite's 64-bit integers), `--since` (at most
`MAX_SINCE_DAYS` back) and corrections (`MAX_CORRECTION_CHARS`), alike for the CLI and the web.

Examples written before schema 3 (reader v3, issue 21) are the classifier's 28x28 crops, one per digit; the
`crop_shape` column says which an example holds ("28x28" for every row from before it, set by the upgrade), so
they stay readable: a correction labels old crops digit by digit as before, new regions number by number.

    digitlite history --since 1h
    digitlite history --since 2026-11-01 --csv > readings.csv
    digitlite history --repair --db /var/lib/digitlite/readings.db
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import sqlite3
import sys
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from digitdata.lines import INPUT_HEIGHT, INPUT_WIDTH
from edge_app.config import HistorySettings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 2: suspect, corrected_text, corrected_time and the examples table (issue 14);
#                    3: examples.crop_shape, number regions instead of digit crops (issue 21)
DB_NAME = "readings.db"


SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,          -- ISO 8601 in UTC with milliseconds: sorts as text
    text TEXT NOT NULL,          -- the numbers read, space-separated, in reading order
    digits TEXT NOT NULL,        -- JSON: [{"digit", "confidence", "box": [x, y, w, h]}, ...]
    source TEXT NOT NULL,        -- the frame source (or "upload")
    origin TEXT NOT NULL,        -- "live" (a stable camera reading) or "upload" (a photo sent to the web view)
    model_sha256 TEXT NOT NULL,  -- the model file that read it
    suspect TEXT,                -- why the plausibility check refused it as the value (NULL: plausible)
    corrected_text TEXT,         -- what a user said it reads (NULL: not corrected); `text` keeps the original
    corrected_time TEXT          -- when it was corrected
);
CREATE INDEX IF NOT EXISTS readings_time ON readings(time);
CREATE TABLE IF NOT EXISTS outbox (reading_id INTEGER PRIMARY KEY);  -- readings not yet acknowledged by MQTT
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS examples (
    reading_id INTEGER PRIMARY KEY,
    crops BLOB NOT NULL,         -- zlib of the (N, H, W) uint8 crops: the recognizer's inputs, one per number
                                 -- region in reading order (32x256); before schema 3, one 28x28 crop per digit
    frame_jpeg BLOB,             -- the frame the reader read (the boxes in `digits` are in its pixels)
    labels TEXT,                 -- JSON, once corrected (NULL: unlabelled): the number (a string) of each region,
                                 -- or for 28x28 crops the digit (an integer) of each crop
    crop_shape TEXT NOT NULL DEFAULT '28x28'  -- HxW of each crop; rows that do not say are from before schema 3
);
"""
# v1 -> v2: the columns the plausibility check and corrections added (the examples table is created above).
# v2 -> v3: the examples say what their crops are (a v1 history gets the v2 table first, then the column).
MIGRATIONS = {2: ("ALTER TABLE readings ADD COLUMN suspect TEXT", "ALTER TABLE readings ADD COLUMN corrected_text TEXT",
                  "ALTER TABLE readings ADD COLUMN corrected_time TEXT"),
              3: ("CREATE TABLE IF NOT EXISTS examples (reading_id INTEGER PRIMARY KEY, crops BLOB NOT NULL, "
                  "frame_jpeg BLOB, labels TEXT)",
                  "ALTER TABLE examples ADD COLUMN crop_shape TEXT NOT NULL DEFAULT '28x28'")}
REGION_SHAPE = (INPUT_HEIGHT, INPUT_WIDTH)  # px: the recognizer's input, what `Reading.crops` holds per number
DIGIT_SHAPE = (28, 28)  # px: the classifier's input, what examples held before schema 3 (read back, never written)
MAX_READING_ID = 2**63 - 1  # SQLite's largest integer: ids are 1 to this
MAX_CORRECTION_CHARS = 200  # characters a correction may have (web and CLI alike): a meter has a few numbers
MAX_SINCE_DAYS = 36_600  # --since goes back at most 100 years
REPAIR_BATCH = 512  # rows copied per query by --repair; a range that fails is split until the bad rows are found


class HistoryError(OSError):
    """The history database cannot be opened, is not a digitlite history, or is corrupt."""


class HistoryWriteError(HistoryError):
    """A reading could not be committed (a full or read-only disk): nothing of it was stored."""


def check_reading_id(reading_id: int) -> int:
    """The id, or ValueError when it cannot be a reading's id (1 to MAX_READING_ID)."""
    if not 1 <= reading_id <= MAX_READING_ID:
        raise ValueError(f"reading id {reading_id} is out of range: ids are 1 to {MAX_READING_ID} "
                         f"(`digitlite history` lists them)")
    return reading_id


def default_history_path() -> Path:
    """$STATE_DIRECTORY (systemd's StateDirectory=, /var/lib/digitlite for the service), else
    $XDG_STATE_HOME/digitlite, else ~/.local/state/digitlite; then readings.db."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / DB_NAME
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "digitlite" / DB_NAME


def now_iso() -> str:
    """The current time as ISO 8601 in UTC with milliseconds (what every record and message carries)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ReadingStore:
    """The readings history and the MQTT outbox in one SQLite file; safe to share between threads.

    Args:
        path: the database file; its folder is created. ":memory:" for a throwaway store.
        settings: retention and outbox bound.
        create: False to refuse a path where no history exists yet (`digitlite history`).

    Raises:
        HistoryError: the file cannot be opened, or is not a digitlite history.
    """

    def __init__(self, path: str | Path, settings: HistorySettings = HistorySettings(), create: bool = True):
        self.path, self.settings = Path(path), settings
        memory = str(path) == ":memory:"
        if not memory and not create and not self.path.is_file():
            raise HistoryError(f"no readings history at {self.path}: `digitlite run` creates it with the first "
                               f"stable reading (the service's is in [history] path of /etc/digitlite.toml).")
        try:
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                       timeout=settings.busy_timeout_ms / 1000)
            self._db.row_factory = sqlite3.Row
            if not memory:
                self._check_integrity()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # the WAL is synced at each commit: nothing committed is lost
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(f"{self.path}: history schema {version} is newer than this digitlite's "
                                   f"({SCHEMA_VERSION}); upgrade digitlite.")
            if version and version < SCHEMA_VERSION:
                self._migrate(version)
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            if "malformed" not in str(exc):  # not SQLite at all, a folder not writable, a locked file
                raise HistoryError(f"cannot open the readings history {self.path} ({exc}); is the folder writable "
                                   f"by this user, and the file a digitlite history? Choose another with "
                                   f"--history.") from exc
            raise self._corrupt(str(exc)) from exc
        self._lock = threading.Lock()
        self.closed = False
        self.last_error: str | None = None  # why the last write failed; None once one succeeds

    def _check_integrity(self) -> None:
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check(5)").fetchall()]
        if problems != ["ok"]:
            self._db.close()
            raise self._corrupt("; ".join(problems))

    def _corrupt(self, problem: str) -> HistoryError:
        return HistoryError(f"the readings history {self.path} is corrupt ({problem[:300]}). Copy what is readable "
                            f"into a new file with `digitlite history --repair --db {self.path}` (the old file is "
                            f"kept beside it), or start a new one with --history.")

    def _migrate(self, version: int) -> None:
        """Bring a history written by an older digitlite up to SCHEMA_VERSION, in one transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(step, ()):
                    self._db.execute(statement)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        log.info("readings history %s upgraded from schema %d to %d", self.path, version, SCHEMA_VERSION)

    # ------------------------------------------------------------------ writing
    def add(self, reading: dict, source: str, model_sha256: str, origin: str = "live", time: str | None = None,
            outbox: bool = False, suspect: str | None = None, crops: np.ndarray | None = None,
            frame_jpeg: bytes | None = None) -> dict:
        """Commit one reading (and, with `outbox`, queue it for MQTT); returns the stored record with its id.

        Args:
            reading: has "text" and "digits" ([{"digit", "confidence", "box"}]), and "numbers" (else the text's
                space-separated numbers), as `Reading.to_dict()`.
            source: where the frame came from.
            model_sha256: the model that read it.
            origin: "live" or "upload".
            time: ISO 8601 UTC; default: now.
            outbox: queue it for publishing; the oldest queued readings beyond `outbox_limit` are dropped.
            suspect: why the plausibility check refused it as the value (None: plausible).
            crops: the (N, 32, 256) uint8 recognizer inputs, one per number region in reading order
                (`Reading.crops`), kept as examples for a correction, with `frame_jpeg`, for the last
                `examples_keep` readings. N is the count of numbers, except where the reader joined two regions
                into one number: they are kept all the same, and a correction then labels none of them.
            frame_jpeg: the frame as JPEG, its pixels those of the digits' boxes.

        Raises:
            ValueError: crops that are not (N, 32, 256) uint8. HistoryWriteError: the disk refused the write.
        """
        record = {"time": time or now_iso(), "text": str(reading["text"]),
                  "digits": [dict(d) for d in reading.get("digits", [])], "source": str(source),
                  "origin": origin, "model_sha256": model_sha256, "suspect": suspect, "corrected_text": None,
                  "corrected_time": None}
        packed = pack_crops(crops, REGION_SHAPE) if crops is not None else None
        numbers = reading.get("numbers") or record["text"].split()
        if crops is not None and len(crops) != len(numbers):
            log.debug("reading %r: %d regions for %d numbers; its regions are kept but a correction cannot label "
                      "them one to one", record["text"], len(crops), len(numbers))
        dropped, total = [], 0
        with self._lock, self._writing(), self._transaction():
            cursor = self._db.execute(
                "INSERT INTO readings (time, text, digits, source, origin, model_sha256, suspect) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record["time"], record["text"], json.dumps(record["digits"]), record["source"], origin,
                 model_sha256, suspect))
            record["id"] = cursor.lastrowid
            if packed is not None:
                self._db.execute("INSERT INTO examples (reading_id, crops, frame_jpeg, crop_shape) VALUES (?, ?, ?, ?)",
                                 (record["id"], packed, frame_jpeg, shape_name(REGION_SHAPE)))
            # Corrected readings are labelled data: neither they nor their examples age out.
            self._db.execute("DELETE FROM readings WHERE id <= ? AND corrected_text IS NULL",
                             (record["id"] - self.settings.keep,))
            self._db.execute("DELETE FROM examples WHERE reading_id <= ? AND reading_id NOT IN (SELECT id FROM "
                             "readings WHERE corrected_text IS NOT NULL)",
                             (record["id"] - min(self.settings.keep, self.settings.examples_keep),))
            if outbox:
                self._db.execute("INSERT INTO outbox (reading_id) VALUES (?)", (record["id"],))
                excess = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.settings.outbox_limit
                if excess > 0:
                    dropped = [r[0] for r in self._db.execute(
                        "SELECT reading_id FROM outbox ORDER BY reading_id LIMIT ?", (excess,))]
                    self._db.executemany("DELETE FROM outbox WHERE reading_id = ?", [(i,) for i in dropped])
                    self._count("outbox_dropped", len(dropped))
                    total = self._counter("outbox_dropped")
        if dropped:
            log.warning("MQTT outbox full (%d readings waiting): dropped reading #%s, the oldest; %d dropped in all. "
                        "They stay in the history (`digitlite history`); raise --outbox-limit to keep more.",
                        self.settings.outbox_limit, ", #".join(map(str, dropped)), total)
        return record

    def correct(self, reading_id: int, text: str, time: str | None = None) -> dict:
        """Record what a user says reading `reading_id` reads; its examples become labelled by it.

        The original text stays in `text`; a second correction replaces the first. The number regions are
        labelled one to one, each with its number of the corrected text (split on spaces), when the reading had
        as many regions as numbers and the correction has as many numbers; else the correction is kept, and its
        frame still serves `digitlite eval`, but its regions cannot be labelled. (The 28x28 digit crops of a
        reading stored before schema 3 are labelled digit by digit when the digit counts agree, as they were.)

        Args:
            reading_id: the id in this history (`digitlite history` and the web view show it).
            text: the numbers as they really are: digits, numbers separated by single spaces (see
                `parse_correction`).
            time: ISO 8601 UTC of the correction; default: now.

        Returns:
            The corrected record, with "examples": {"crops" (how many), "kind" ("regions", "digits", or None:
            none kept), "labelled", "frame"} saying what was kept.

        Raises:
            ValueError: malformed text, an id out of range. KeyError: no reading with that id.
            HistoryWriteError: the disk refused the write.
        """
        text = parse_correction(text)
        check_reading_id(reading_id)
        with self._lock, self._writing(), self._transaction():
            row = self._db.execute("SELECT * FROM readings WHERE id = ?", (reading_id,)).fetchone()
            if row is None:
                raise KeyError(f"no reading #{reading_id} in {self.path}; `digitlite history` lists the ids")
            self._db.execute("UPDATE readings SET corrected_text = ?, corrected_time = ? WHERE id = ?",
                             (text, time or now_iso(), reading_id))
            example = self._db.execute("SELECT crops, frame_jpeg, crop_shape FROM examples WHERE reading_id = ?",
                                       (reading_id,)).fetchone()
            kept = {"crops": 0, "kind": None, "labelled": False, "frame": False}
            if example is not None:
                shape = parse_shape(example["crop_shape"])
                count = len(unpack_crops(example["crops"], shape))
                labels = labels_for(count, shape, row["text"], text)
                self._db.execute("UPDATE examples SET labels = ? WHERE reading_id = ?",
                                 (json.dumps(labels) if labels is not None else None, reading_id))
                kept = {"crops": count, "kind": "regions" if shape == REGION_SHAPE else "digits",
                        "labelled": labels is not None, "frame": example["frame_jpeg"] is not None}
            record = _record(self._db.execute("SELECT * FROM readings WHERE id = ?", (reading_id,)).fetchone())
        return {**record, "examples": kept}

    def corrections(self) -> Iterator[dict]:
        """Every corrected reading, oldest first, with its examples: "crops" ((N, 32, 256) uint8 number regions,
        (N, 28, 28) digit crops from before schema 3, or None), "labels" (aligned with them: a number string per
        region, a digit per crop; or None) and "frame_jpeg" (bytes or None)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.*, e.crops AS e_crops, e.frame_jpeg AS e_frame, e.labels AS e_labels, "
                "e.crop_shape AS e_shape FROM readings r LEFT JOIN examples e ON e.reading_id = r.id "
                "WHERE r.corrected_text IS NOT NULL ORDER BY r.id").fetchall()
        for row in rows:
            crops = unpack_crops(row["e_crops"], parse_shape(row["e_shape"])) if row["e_crops"] is not None else None
            yield {**_record(row), "crops": crops, "labels": json.loads(row["e_labels"]) if row["e_labels"] else None,
                   "frame_jpeg": row["e_frame"]}

    def examples_of(self, reading_id: int) -> dict | None:
        """The kept crops and frame of one reading ({"crops", "frame_jpeg", "labels"}, as `corrections` gives
        them), or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM examples WHERE reading_id = ?", (reading_id,)).fetchone()
        if row is None:
            return None
        return {"crops": unpack_crops(row["crops"], parse_shape(row["crop_shape"])), "frame_jpeg": row["frame_jpeg"],
                "labels": json.loads(row["labels"]) if row["labels"] else None}

    def _count(self, name: str, n: int) -> None:
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                         "value = value + excluded.value", (name, n))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """HistoryWriteError for a write SQLite refused (disk full, read-only, I/O error); `last_error` kept."""
        try:
            yield
        except sqlite3.Error as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise HistoryWriteError(f"the readings history {self.path} cannot store readings ({exc}): is its disk "
                                    f"full or read-only?") from exc
        self.last_error = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ the outbox
    def pending(self, after_id: int = 0, limit: int = 100) -> list[dict]:
        """Queued readings with an id above `after_id`, oldest first (what MQTT publishes next)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.* FROM outbox o JOIN readings r ON r.id = o.reading_id WHERE o.reading_id > ? "
                "ORDER BY o.reading_id LIMIT ?", (after_id, limit)).fetchall()
        return [_record(r) for r in rows]

    def delivered(self, reading_id: int) -> None:
        """The broker acknowledged this reading: it leaves the outbox."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE reading_id = ?", (reading_id,))

    def outbox_size(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def counter(self, name: str) -> int:
        """A running count kept in the database ("outbox_dropped")."""
        with self._lock:
            return self._counter(name)

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ reading back
    def recent(self, limit: int = 20) -> list[dict]:
        """The last `limit` readings, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM readings ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_record(r) for r in rows]

    def since(self, since: str | None = None, limit: int | None = None) -> list[dict]:
        """Readings at or after `since` (ISO 8601 UTC; None: all), oldest first, at most `limit`."""
        query, args = "SELECT * FROM readings", []
        if since is not None:
            query, args = query + " WHERE time >= ?", [since]
        query += " ORDER BY id"
        if limit is not None:
            query, args = query + " LIMIT ?", [*args, limit]
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [_record(r) for r in rows]

    def get(self, reading_id: int) -> dict | None:
        """One reading by id, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM readings WHERE id = ?", (reading_id,)).fetchone()
        return _record(row) if row is not None else None

    def latest_value(self, origin: str | None = "live") -> dict | None:
        """The newest reading that counts as the value: plausible, or corrected by a user (whose text is then
        the value); of `origin` ("live": the camera), or any with None. None when there is none yet."""
        query = "SELECT * FROM readings WHERE (suspect IS NULL OR corrected_text IS NOT NULL)"
        args: list = []
        if origin is not None:
            query, args = query + " AND origin = ?", [origin]
        with self._lock:
            row = self._db.execute(query + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return _record(row) if row is not None else None

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]

    def close(self) -> None:
        """Fold the WAL back into the database file and close it (idempotent)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # another process reading: the WAL is folded in later, nothing is lost
                log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)
            self._db.close()


# ---------------------------------------------------------------------------------------------- --repair

TABLES = ("readings", "examples", "outbox", "counters")  # what --repair copies, in this order


def repair(path: str | Path, stamp: str | None = None) -> dict:
    """Copy what is readable of a corrupt history into a new file at `path`; the old file is kept beside it.

    Each table is copied in rowid ranges of `REPAIR_BATCH`; a range SQLite cannot read is split in halves
    until the unreadable rows are found and left out. The new file is written beside the old one and renamed
    into place once complete; the old one (and its -wal, -shm) is renamed `<name>.corrupt-<stamp>`.

    Returns:
        {"kept": path of the old file, "copied": {table: rows}, "lost": {table: rowids that could not be read}}.

    Raises:
        HistoryError: no file there, or nothing of it can be read as SQLite.
    """
    path = Path(path)
    if not path.is_file():
        raise HistoryError(f"no readings history at {path} to repair")
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    partial = path.with_name(f".{path.name}.repairing")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    try:
        old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        names = {row[0] for row in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path} cannot be read as SQLite at all ({exc}); start a new history with "
                           f"--history") from exc
    new = ReadingStore(partial)
    copied, lost = {}, {}
    try:
        for table in TABLES:
            if table not in names:
                continue
            columns = [row[1] for row in new._db.execute(f"PRAGMA table_info({table})")]
            try:
                present = {row[1] for row in old.execute(f"PRAGMA table_info({table})")}
            except sqlite3.DatabaseError:
                present = set(columns)
            columns = [c for c in columns if c in present]
            copied[table], lost[table] = _copy_table(old, new._db, table, columns)
    finally:
        old.close()
        new.close()
    kept = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm", ""):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{kept}{suffix}")
    os.replace(partial, path)
    return {"kept": str(kept), "copied": copied, "lost": lost}


def _copy_table(old: sqlite3.Connection, new: sqlite3.Connection, table: str, columns: list[str]) -> tuple[int, int]:
    """(rows copied, rowids lost) of one table, range by range (see `repair`)."""
    listed = ", ".join(columns)
    insert = f"INSERT OR REPLACE INTO {table} ({listed}) VALUES ({', '.join('?' * len(columns))})"
    try:
        top = old.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = MAX_READING_ID  # the rightmost page is unreadable: search the whole id space (empty ranges are fast)
    ranges, copied, lost = [(1, min(top, REPAIR_BATCH))], 0, 0
    next_start = ranges[0][1] + 1
    new.execute("BEGIN")
    while ranges:
        low, high = ranges.pop()
        try:
            rows = old.execute(f"SELECT {listed} FROM {table} WHERE rowid BETWEEN ? AND ?", (low, high)).fetchall()
        except sqlite3.DatabaseError:
            if low == high:
                lost += 1
            else:
                middle = (low + high) // 2
                ranges += [(middle + 1, high), (low, middle)]
            rows = []
        new.executemany(insert, rows)
        copied += len(rows)
        if not ranges and next_start <= top:
            ranges.append((next_start, min(top, next_start + REPAIR_BATCH - 1)))
            next_start += REPAIR_BATCH
    new.execute("COMMIT")
    return copied, lost


def _record(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "time": row["time"], "text": row["text"], "digits": json.loads(row["digits"]),
            "source": row["source"], "origin": row["origin"], "model_sha256": row["model_sha256"],
            "suspect": row["suspect"], "corrected_text": row["corrected_text"],
            "corrected_time": row["corrected_time"]}


def value_of(record: dict) -> str:
    """The reading's value: the user's correction when there is one, else what was read."""
    return record["corrected_text"] if record.get("corrected_text") is not None else record["text"]


_CORRECTION = re.compile(r"^\d+( \d+)*$")


def parse_correction(text: str) -> str:
    """A correction as stored: digits, numbers separated by single spaces (runs of white space are folded).

    Raises:
        ValueError: anything else, with an example.
    """
    text = str(text)
    if len(text) > MAX_CORRECTION_CHARS:
        raise ValueError(f"correction of {len(text)} characters: at most {MAX_CORRECTION_CHARS} (the numbers a "
                         f"reading shows, e.g. 4509 or 12 07)")
    folded = " ".join(text.split())
    if not _CORRECTION.match(folded) or not folded.isascii():
        raise ValueError(f"correction {text!r}: give the numbers as they really read, digits only, numbers "
                         f"separated by a space (e.g. 4509 or 12 07)")
    return folded


def labels_for(count: int, shape: tuple[int, int], read: str, corrected: str) -> list | None:
    """What a correction labels `count` kept crops of `shape` with, or None when they cannot be labelled one to one.

    Number regions: the corrected numbers (strings, leading zeros kept) when the reading had `count` numbers and
    the correction has as many. Digit crops (before schema 3): the corrected digits (integers) when there are
    `count` of them.
    """
    if shape == DIGIT_SHAPE:
        digits = corrected.replace(" ", "")
        return [int(c) for c in digits] if len(digits) == count else None
    numbers = corrected.split()
    return numbers if len(numbers) == count == len(read.split()) else None


def shape_name(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def parse_shape(name: str) -> tuple[int, int]:
    """"32x256" -> (32, 256): the examples' crop_shape column.

    Raises:
        ValueError: not one of the shapes a history holds.
    """
    shapes = {shape_name(s): s for s in (REGION_SHAPE, DIGIT_SHAPE)}
    if name not in shapes:
        raise ValueError(f"examples crop shape {name!r}: a history holds {' or '.join(shapes)} crops")
    return shapes[name]


def pack_crops(crops: np.ndarray, shape: tuple[int, int] = REGION_SHAPE) -> bytes:
    """(N, H, W) uint8 of `shape` -> zlib bytes (ink bright on black: a 32x256 region packs to about 1-2 KB).

    Raises:
        ValueError: another shape or dtype, saying which was expected.
    """
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 3 or crops.shape[1:] != tuple(shape):
        raise ValueError(f"crops must be (N, {shape[0]}, {shape[1]}) uint8 (`Reading.crops`: one recognizer input "
                         f"per number region), got {crops.shape} {crops.dtype}")
    return zlib.compress(np.ascontiguousarray(crops).tobytes(), 6)


def unpack_crops(blob: bytes, shape: tuple[int, int] = REGION_SHAPE) -> np.ndarray:
    """zlib bytes -> (N, H, W) uint8 of `shape`.

    Raises:
        ValueError: the bytes are not whole crops of that shape.
    """
    flat = np.frombuffer(zlib.decompress(blob), np.uint8)
    if flat.size % (shape[0] * shape[1]):
        raise ValueError(f"{flat.size} bytes of examples are not whole {shape_name(shape)} crops")
    return flat.reshape(-1, *shape).copy()


# ---------------------------------------------------------------------------------------------- digitlite history

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None, utc_default: bool = False) -> str:
    """'15m', '2h', '7d' (ago), or an ISO 8601 date or time (local time unless it has an offset; UTC with
    `utc_default`, as the web API takes it) -> ISO UTC.

    Raises:
        ValueError: neither form, with examples of both.
    """
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text)
    if match:
        back = timedelta(days=MAX_SINCE_DAYS)
        with contextlib.suppress(OverflowError):
            back = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        if back >= timedelta(days=MAX_SINCE_DAYS):
            raise ValueError(f"--since {text!r} goes back too far: at most {MAX_SINCE_DAYS} days "
                             f"({MAX_SINCE_DAYS}d); give no --since for everything")
        moment = now - back
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"--since {text!r}: give a duration back from now (90s, 15m, 2h, 7d, 1w) or an ISO "
                             f"date or time (2026-11-21, 2026-11-21T08:30, 2026-11-21T08:30+01:00)") from None
        if moment.tzinfo is None:  # a time without an offset: this machine's local time, or UTC for the API
            moment = moment.replace(tzinfo=UTC) if utc_default else moment.astimezone()
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


CSV_COLUMNS = ("id", "time", "text", "corrected_text", "suspect", "source", "origin", "model_sha256", "digits")


def write_records(records: list[dict], form: str, out=sys.stdout) -> None:
    """Print readings as "text" (one line each), "csv" (header, digits as JSON) or "json" (one object a line)."""
    if form == "csv":
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "digits": json.dumps(r["digits"])})
    elif form == "json":
        for r in records:
            out.write(json.dumps(r) + "\n")
    else:
        for r in records:
            low = min((d["confidence"] for d in r["digits"]), default=0.0)
            marks = (f"  corrected to {r['corrected_text']}" if r.get("corrected_text") is not None else "") + \
                    (f"  SUSPECT: {r['suspect']}" if r.get("suspect") else "")
            out.write(f"#{r['id']}  {r['time']}  {r['text']:<16}  [{len(r['digits'])} digits, lowest confidence "
                      f"{low:.0%}]  {r['origin']}: {r['source']}{marks}\n")
