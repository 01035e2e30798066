"""Issue 13, the live loop: nothing lost, nothing hangs. A real Mosquitto stopped and restarted mid-run (4), a broker
that never acknowledges (4), SIGTERM and SIGINT with a video, the history and MQTT open (5), `run --web` with every
option (6), a camera lost for good waits out its backoff (8), the web's stable reading is never empty (6).

Every `digitlite run` here is a real process; the waits are generous and nothing asserts a speed.

    .venv/bin/pytest -m reliability tests/test_reliability_live.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import FakeCamera
from mqtt_support import Broker, Subscriber
from waiting import WAIT_S, wait_for

pytestmark = pytest.mark.reliability

TOPIC = "digitlite/reliability"


class Run:
    """`digitlite run ...` in a process, its JSON lines collected as they are printed."""

    def __init__(self, *args: str):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "digitlite", "run", "--headless", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[dict] = []
        self.err = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errs = threading.Thread(target=self._read_err, daemon=True)
        self._errs.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def _read_err(self) -> None:
        for line in self.process.stderr:
            self.err += line

    def ids(self) -> list[int]:
        return [line["id"] for line in self.lines]

    def wait_lines(self, n: int, what: str) -> None:
        wait_for(lambda: len(self.lines) >= n or self.process.poll() is not None, what)
        assert len(self.lines) >= n, f"the run ended with {len(self.lines)} readings: {self.err}"

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self) -> int:
        """The exit code, once the process has ended (it must end by itself: no kill here)."""
        try:
            code = self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"`digitlite run` did not end within {WAIT_S} s")
        self._reader.join(WAIT_S)
        self._errs.join(WAIT_S)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def runs():
    started: list[Run] = []

    def start(*args: str) -> Run:
        started.append(Run(*args))
        return started[-1]

    yield start
    for run in started:
        run.kill()


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    yield broker
    broker.stop()


@pytest.fixture
def subscriber(broker):
    subscriber = Subscriber(broker, TOPIC)
    yield subscriber
    subscriber.close()


def outbox(db: Path) -> list[int]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT reading_id FROM outbox ORDER BY reading_id")]


def stored_ids(db: Path) -> list[int]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM readings ORDER BY id")]


def assert_all_arrived_in_order(subscriber: Subscriber, printed: list[int]) -> None:
    wait_for(lambda: set(printed) <= set(subscriber.ids()), "every printed reading to reach the subscriber")
    ids = subscriber.ids()  # first arrivals; QoS 1 may repeat one, never lose one
    assert ids == sorted(ids), f"readings arrived out of order: {ids}"
    assert [i for i in ids if i in set(printed)] == printed


# ---------------------------------------------------------------------------------------------- 4: MQTT


def test_broker_stopped_and_restarted_mid_run_loses_nothing(broker, subscriber, runs, tmp_path, mnist_dir):
    db = tmp_path / "readings.db"
    run = runs("--source", "synthetic", "--mqtt", broker.address, "--topic", TOPIC, "--history", str(db))
    run.wait_lines(2, "two readings while the broker is up")
    wait_for(lambda: len(subscriber.ids()) >= 2, "the first readings to arrive")
    broker.stop()
    seen = len(run.lines)
    run.wait_lines(seen + 3, "three readings while the broker is away (the loop keeps reading)")
    broker.start()
    run.wait_lines(len(run.lines) + 2, "two more readings after the broker is back")
    printed_so_far = run.ids()
    wait_for(lambda: set(printed_so_far) <= set(subscriber.ids()), "the outbox to be delivered after the outage")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err
    assert "Traceback" not in run.err
    printed = run.ids()
    assert printed == stored_ids(db), "every printed reading is in the history, under the id it carries"
    assert_all_arrived_in_order(subscriber, printed)
    assert outbox(db) == [], "acknowledged readings leave the outbox"
    assert "lost the MQTT broker" in run.err


def test_a_broker_that_never_acknowledges_stalls_nothing(broker, subscriber, runs, tmp_path, mnist_dir):
    db = tmp_path / "readings.db"
    first = runs("--source", "synthetic", "--mqtt", broker.address, "--topic", TOPIC, "--history", str(db))
    first.wait_lines(1, "a first reading")
    wait_for(lambda: len(subscriber.ids()) >= 1, "the first reading to arrive")
    broker.pause()  # connections stay open; nothing is acknowledged
    try:
        seen = len(first.lines)
        first.wait_lines(seen + 4, "four readings while the broker hangs (the loop must not wait for it)")
        first.signal(signal.SIGINT)  # Ctrl-C must not hang in the MQTT client
        assert first.wait() == 0, first.err
    finally:
        broker.resume()
    assert "Traceback" not in first.err
    waiting = outbox(db)
    assert waiting, "readings the hung broker never acknowledged stay in the outbox"
    # The next run publishes what the last one could not, before its own readings, in order.
    second = runs("--source", "synthetic", "--max-frames", "70", "--mqtt", broker.address, "--topic", TOPIC,
                  "--history", str(db))
    assert second.wait() == 0, second.err
    assert_all_arrived_in_order(subscriber, first.ids() + second.ids())
    assert outbox(db) == []


# ---------------------------------------------------------------------------------------------- 5: signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_cleanly_video_playable_history_flushed_mqtt_disconnected(sig, broker, subscriber, runs,
                                                                                tmp_path, mnist_dir):
    db, video = tmp_path / "readings.db", tmp_path / "run.mp4"
    run = runs("--source", "synthetic", "--save", str(video), "--mqtt", broker.address, "--topic", TOPIC,
               "--history", str(db))
    run.wait_lines(2, "two readings")
    run.signal(sig)
    assert run.wait() == 0, run.err
    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = capture.read()
    assert frames > 0 and ok and first.shape == (480, 640, 3), f"{video}: {frames} frames, first read {ok}"
    assert not list(tmp_path.glob(".run.partial*")), "the partial video was renamed into place"
    assert stored_ids(db) == run.ids() and run.ids(), "every printed reading is in the history"
    assert_all_arrived_in_order(subscriber, run.ids())
    clients = [c for c in re.findall(r"New client connected from \S+ as (\S+) ", broker.log())
               if c != subscriber.client_id]
    assert len(clients) == 1, broker.log()
    wait_for(lambda: f"Client {clients[0]} disconnected." in broker.log(),
             "the broker to log a clean MQTT disconnect (not a dropped connection)")


# ---------------------------------------------------------------------------------------------- 6: one loop


def test_run_web_honours_save_max_frames_mqtt_and_history(broker, subscriber, runs, tmp_path, mnist_dir):
    pytest.importorskip("fastapi", reason="the [web] extra is not installed")
    db, video = tmp_path / "readings.db", tmp_path / "web.mp4"
    run = runs("--web", "--port", "0", "--source", "synthetic", "--max-frames", "150", "--save", str(video),
               "--mqtt", broker.address, "--topic", TOPIC, "--history", str(db))
    url = wait_for(lambda: re.search(r"http://127\.0\.0\.1:(\d+)/", run.err), "the web page's address on stderr")
    port = url.group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=WAIT_S) as reply:
        health = json.loads(reply.read())
    assert health["live"]["source"] == "synthetic"
    assert run.wait() == 0, run.err  # --max-frames ends it: it does not serve forever
    assert int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) == 150
    assert run.ids() and stored_ids(db) == run.ids()
    assert_all_arrived_in_order(subscriber, run.ids())


class BlankThenPage:
    """A camera looking at a blank sheet for `blank` frames, then at a page with a number, then blank again."""

    def __init__(self, page: np.ndarray, blank: int = 8):
        self.page, self.blank_frames, self.served = page, blank, 0
        self.blank = np.full_like(page, 255)

    def read(self):
        self.served += 1
        phase = (self.served // self.blank_frames) % 2
        return (self.page if phase else self.blank).copy()

    def close(self):
        pass


def test_web_stable_reading_is_never_empty(mnist):
    pytest.importorskip("fastapi", reason="the [web] extra is not installed")
    from web_support import clear_examples, make_state, model_path, number_page, request, running_server

    from edge_app.runtime import Classifier

    classifier = Classifier(model_path())
    page = number_page(clear_examples(mnist, classifier), "35", size=(320, 240))
    state = make_state(classifier, feed_source=BlankThenPage(page), stable_frames=2, max_fps=50)
    seen = []
    with running_server(state) as server:
        def watch():
            seen.append(request(server, "GET", "/api/latest").json()["stable"])
            return len([s for s in seen if s is None]) >= 2 and any(s and s["text"] == "35" for s in seen)

        wait_for(watch, "the page to show the number and then nothing, twice")
    assert all(s is None or s["text"] == "35" for s in seen), f"stable readings shown: {seen}"


# ---------------------------------------------------------------------------------------------- 8: lost camera


def test_a_lost_camera_is_given_its_whole_backoff_before_the_loop_gives_up(repo):
    from edge_app.live.sources import LatestFrame, SourceLost

    frame = cv2.imread(str(repo / "tests" / "data" / "golden" / "scene_02.jpg"))
    camera = FakeCamera([frame] * 2, fail_at=2, recover_after=None)
    # The frame timeout (0.2 s) is far shorter than the backoff (0.3 + 0.6 + 1.2 s): the loop must wait it out.
    source = LatestFrame(camera, retries=3, backoff_s=0.3, frame_timeout_s=0.2)
    try:
        with pytest.raises(SourceLost) as lost:
            while source.read() is not None:
                pass
    finally:
        source.close()
    assert "did not come back after 3 attempts" in str(lost.value), str(lost.value)
    assert camera.reopens == 3
