"""Issue 20, storage faults and the live loop's edges: a full disk (a real tmpfs) is said on every reading not stored,
which is held and stored in order once space returns (3); a corrupt history is refused at open with how to
repair it, and `digitlite history --repair` keeps what is readable (3, 4); large ids, `--since` and corrections
are exit 2 with the reason (5, 10); an ROI outside the frame stops the loop at its first frame, and skipped frames
count towards --max-frames (7).

    .venv/bin/pytest -m reliability tests/test_reliability_history.py
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.store.history import MAX_READING_ID, HistoryError, HistoryWriteError, ReadingStore

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
DIGITS = [{"digit": 1, "confidence": 0.9, "box": [0, 0, 4, 4]}, {"digit": 2, "confidence": 0.9, "box": [4, 0, 4, 4]}]


def digitlite(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlite", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def add(store: ReadingStore, text: str = "12") -> dict:
    region = RNG.integers(0, 255, (1, 32, 256), np.uint8)  # one number: one 32x256 region
    return store.add({"text": text, "digits": DIGITS}, "test", "sha", crops=region, frame_jpeg=RNG.bytes(3000))


# ---------------------------------------------------------------------------------------------- 3: full disk


def test_a_full_disk_is_a_write_error_and_nothing_is_half_stored(full_disk):
    store = ReadingStore(full_disk.folder / "readings.db")
    add(store)
    full_disk.fill()
    with pytest.raises(HistoryWriteError, match="cannot store readings .*full"):
        add(store)
    assert store.last_error and store.count() == 1
    full_disk.free()
    assert add(store)["id"] == 2 and store.last_error is None
    store.close()


class FreeingPages:
    """Pages of numbers, each held for `repeat` frames; the disk is freed once `free_at` pages have been shown."""

    name = "pages"

    def __init__(self, pages, disk, free_at: int, repeat: int = 3):
        self.frames = [(k, page) for k, page in enumerate(pages) for _ in range(repeat)]
        self.disk, self.free_at = disk, free_at

    def read(self):
        if not self.frames:
            return None
        k, page = self.frames.pop(0)
        if k == self.free_at:
            self.disk.free()
        return page.copy()

    def close(self):
        pass


def test_run_on_a_full_disk_says_so_on_every_reading_and_stores_them_when_space_returns(full_disk):
    from fakes import ScriptedReader

    from edge_app.live.loop import LiveLoop, LoopSettings
    from edge_app.outputs.local import JsonLines

    texts = ["35", "47", "60", "81", "92"]
    pages = {t: np.full((96, 128, 3), 30 * k, np.uint8) for k, t in enumerate(texts)}
    store = ReadingStore(full_disk.folder / "readings.db")
    add(store, "10")
    full_disk.fill()
    lines: list[dict] = []
    loop = LiveLoop(FreeingPages(list(pages.values()), full_disk, free_at=3),
                    ScriptedReader(pages), store, [JsonLines(lambda line: lines.append(json.loads(line)))],
                    LoopSettings(stable_frames=2, retry_s=0.0), source_name="pages")
    assert loop.run() == 0
    assert [line["text"] for line in lines] == texts
    unstored = [line for line in lines if line["id"] is None]
    assert [line["text"] for line in unstored] == texts[:3]  # the disk was full for the first three
    assert all(line["stored"] is False and "not stored" in line["warning"] and "full" in line["warning"]
               for line in unstored)
    assert [r["text"] for r in store.since()] == ["10", *texts]  # every reading stored, in order
    assert loop.status.unstored == 0 and loop.status.history_error is None and loop.status.readings == 5
    held = store.examples_of(store.since()[-1]["id"])  # a held reading is stored with its regions, once space returns
    assert held is not None and held["crops"].shape == (1, 32, 256) and held["frame_jpeg"]
    store.close()


@pytest.fixture
def read_only_history(tmp_path):
    """A history of one reading that cannot be written: on a tmpfs remounted read-only (as root, where permission
    bits do not stop writes), else the file and its folder made read-only."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = os.geteuid() == 0
    if mounted and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
                                  capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    path = folder / "readings.db"
    store = ReadingStore(path)
    add(store, "10")
    store.close()
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
    else:
        path.chmod(0o444)
        folder.chmod(0o555)
    try:
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        else:
            folder.chmod(0o755)


def test_run_on_a_history_read_only_at_start_keeps_reading_with_the_history_off(read_only_history):
    """Issue 32, case 7: `run` exited 2 here, where docs/device.md says it keeps reading."""
    from edge_app.config import LiveOptions
    from edge_app.wiring import open_history

    before = read_only_history.read_bytes()
    result = digitlite("run", "--source", "synthetic", "--headless", "--max-frames", "40",
                       "--history", str(read_only_history))
    assert result.returncode == 0, result.stderr
    readings = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert readings and all(r["text"] for r in readings), result.stdout
    said = [line for line in result.stderr.splitlines() if line.startswith("ERROR") and "history OFF" in line]
    assert len(said) == 1 and str(read_only_history) in said[0] and "read-only" in said[0], result.stderr
    assert "--history" in said[0] and "lost when it ends" in said[0]
    assert read_only_history.read_bytes() == before  # nothing written

    history, off = open_history(LiveOptions(history=read_only_history))  # what /api/health reports as in_memory
    assert str(history.path) == ":memory:" and off == said[0].split(": ", 1)[1]
    history.close()


# ---------------------------------------------------------------------------------------------- 3, 4: corrupt


@pytest.fixture
def corrupt_history(tmp_path) -> Path:
    """A history of 60 readings with examples, two of the examples table's leaf pages overwritten."""
    path = tmp_path / "readings.db"
    store = ReadingStore(path)
    for _ in range(60):
        add(store)
    store.close()
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = [row[0] for row in db.execute("SELECT pageno FROM dbstat WHERE name = 'examples' AND pagetype = 'leaf'")]
    db.close()
    assert len(pages) >= 2
    with open(path, "r+b") as f:
        for page in pages[:2]:
            f.seek((page - 1) * page_size)
            f.write(b"\xa5" * page_size)
    return path


def test_a_corrupt_history_is_refused_at_open_naming_the_file_and_the_repair(corrupt_history):
    with pytest.raises(HistoryError) as error:
        ReadingStore(corrupt_history)
    message = str(error.value)
    assert str(corrupt_history) in message and "is corrupt" in message and "digitlite history --repair" in message
    result = digitlite("correct", "3", "7", "--db", str(corrupt_history))
    assert result.returncode == 2 and "is corrupt" in result.stderr and "Traceback" not in result.stderr
    served = digitlite("serve", "--port", "0", "--history", str(corrupt_history))
    assert served.returncode == 2 and "is corrupt" in served.stderr and "Traceback" not in served.stderr


def test_history_repair_keeps_what_is_readable_and_the_old_file(corrupt_history):
    result = digitlite("history", "--repair", "--db", str(corrupt_history))
    assert result.returncode == 0, result.stderr
    assert "copied 60 readings" in result.stdout and "unreadable rows left out" in result.stdout
    kept = list(corrupt_history.parent.glob("readings.db.corrupt-*"))
    assert [p.name for p in kept if not p.name.endswith(("-wal", "-shm"))], kept
    store = ReadingStore(corrupt_history)
    assert store.count() == 60
    kept_examples = sum(store.examples_of(i) is not None for i in range(1, 61))
    assert 0 < kept_examples < 60  # the readable examples were kept, the unreadable ones left out
    record = store.correct(60, "7 7")
    assert record["corrected_text"] == "7 7"
    store.close()
    assert digitlite("correct", "59", "7", "--db", str(corrupt_history)).returncode == 0


# ---------------------------------------------------------------------------------------------- 5, 10: numbers


@pytest.mark.parametrize(("args", "message"), [
    (("history", "--since", "99999999d"), "goes back too far"),
    (("history", "--since", "1e400d"), "give a duration"),
    (("correct", str(MAX_READING_ID + 1), "7"), "out of range"),
    (("correct", "0", "7"), "out of range"),
    (("correct", "1", "1" * 100_000), "at most 200"),
])
def test_large_numbers_are_exit_2_with_the_reason(tmp_path, args, message):
    db = tmp_path / "readings.db"
    store = ReadingStore(db)
    add(store)
    store.close()
    result = digitlite(*args, "--db", str(db))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    store = ReadingStore(db)
    assert store.get(1)["corrected_text"] is None  # nothing was changed
    store.close()


# ---------------------------------------------------------------------------------------------- 7: ROI, skips


def test_an_roi_outside_the_frame_stops_run_at_its_first_frame(tmp_path):
    result = digitlite("run", "--source", "synthetic", "--max-frames", "30", "--roi", "5000,5000,10,10", "--headless",
                       "--history", str(tmp_path / "r.db"))
    assert result.returncode == 2 and "--roi 5000,5000,10,10" in result.stderr and "outside" in result.stderr


class Thin:
    """A camera that only ever delivers frames too thin to read."""

    name = "thin"

    def read(self):
        return np.zeros((1, 5000, 3), np.uint8)

    def close(self):
        pass


def test_skipped_frames_count_towards_max_frames():
    from fakes import ScriptedReader

    from edge_app.live.loop import LiveLoop

    loop = LiveLoop(Thin(), ScriptedReader({}), ReadingStore(":memory:"), max_frames=5)
    assert loop.run() == 0
    assert (loop.status.frames, loop.status.skipped) == (0, 5) and "too thin" in loop.status.error
