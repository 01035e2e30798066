"""The live loop: sources, a camera that disappears, stable readings, its sinks, MQTT through a real broker.

The broker, signal and outage cases of issue 13 are in test_reliability_live.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import cv2
import pytest
from fakes import FakeCamera
from mqtt_support import Broker

from edge_app.live.loop import LiveLoop, LoopSettings
from edge_app.live.sources import LatestFrame, SourceError, open_source
from edge_app.outputs.local import JsonLines, VideoFile
from edge_app.store.history import ReadingStore
from edge_app.wiring import make_reader


@pytest.fixture(scope="module")
def reader(repo):
    return make_reader(repo / "models" / "digits_int8.tflite")


def run_loop(source, reader, stable_frames: int = 1, sinks=(), history=None) -> tuple[int, list[str], LiveLoop]:
    """Run the live loop to its end with the JSON-lines sink; (exit code, lines printed, the loop)."""
    lines: list[str] = []
    loop = LiveLoop(source, reader, history or ReadingStore(":memory:"), [JsonLines(lines.append), *sinks],
                    LoopSettings(stable_frames=stable_frames), model_sha256=reader.classifier.integrity.sha256)
    code = loop.run()
    loop.close()
    return code, lines, loop


@pytest.fixture(scope="module")
def frames(repo):
    golden = repo / "tests" / "data" / "golden"
    return [cv2.imread(str(golden / name)) for name in ("scene_02.jpg", "scene_03.jpg")]


def test_camera_lost_for_good_retries_then_exits_cleanly(reader, frames, caplog):
    camera = FakeCamera([frames[0]] * 4, fail_at=4, recover_after=None)
    source = LatestFrame(camera, retries=3, backoff_s=0.01)
    code, lines, loop = run_loop(source, reader)
    assert code == 1
    assert camera.reopens == 3 and camera.closed
    assert "fake-camera disappeared and did not come back after 3 attempts" in loop.status.error
    assert sum("reopening, attempt" in r.getMessage() for r in caplog.records) == 3
    assert json.loads(lines[0])["text"] == "499684"  # what was read before the loss was reported


def test_camera_that_comes_back_keeps_running(reader, frames):
    camera = FakeCamera([frames[0]] * 3 + [frames[1]] * 3, fail_at=3, recover_after=2)
    source = LatestFrame(camera, retries=5, backoff_s=0.01)
    code, lines, _ = run_loop(source, reader)
    assert code == 0 and camera.reopens == 2 and source.reconnects == 1
    assert [json.loads(line)["text"] for line in lines] == ["499684", "69"]


def test_newest_frame_wins_when_reading_is_slow(frames):
    camera = FakeCamera([frames[0]] * 50)
    source = LatestFrame(camera)
    time.sleep(0.2)  # let the capture thread run ahead; this is not a timing assertion
    got = []
    while (frame := source.read()) is not None:
        got.append(frame)
    source.close()
    assert len(got) + source.dropped == 50 and source.dropped > 0


def test_absent_camera_names_the_source_and_what_to_try():
    with pytest.raises(SourceError, match="Unable to read from the camera at /dev/video9.*Try --source"):
        open_source("9")


def test_unknown_source_lists_what_is_valid(tmp_path):
    with pytest.raises(SourceError, match="Valid: picamera"):
        open_source(str(tmp_path / "nothing-here"))


def test_image_folder_source_and_stable_json(repo, reader):
    source = open_source(str(repo / "tests" / "data" / "golden"))
    history = ReadingStore(":memory:")
    code, lines, _ = run_loop(source, reader, history=history)
    assert code == 0
    texts = [json.loads(line)["text"] for line in lines]
    assert "271" in texts and "499684" in texts
    first = json.loads(lines[0])
    assert {"time", "text", "digits", "fps", "latency_ms"} <= set(first)
    assert {"capture", "find", "read", "total"} <= set(first["latency_ms"])
    # Each printed reading was committed to the history first, under the id it carries.
    stored = history.since()
    assert [r["text"] for r in stored] == texts and [r["id"] for r in stored] == [json.loads(x)["id"] for x in lines]
    assert all(r["model_sha256"] == reader.classifier.integrity.sha256 for r in stored)


def test_video_file_and_save(tmp_path, frames, reader):
    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, frames[0].shape[1::-1])
    for _ in range(6):
        writer.write(frames[0])
    writer.release()
    source = open_source(str(video))
    code, lines, _ = run_loop(source, reader, stable_frames=3, sinks=[VideoFile(tmp_path / "out.mp4")])
    assert code == 0
    assert [json.loads(line)["text"] for line in lines] == ["499684"]
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []  # renamed into place when closed


@pytest.fixture()
def broker(tmp_path):
    broker = Broker(tmp_path)
    yield broker
    broker.stop()


def test_mqtt_round_trip_through_a_real_broker(broker, repo, tmp_path):
    import paho.mqtt.client as mqtt

    received = []
    subscribed = threading.Event()
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscriber.on_message = lambda client, userdata, msg: received.append((msg.topic, json.loads(msg.payload)))
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.connect("127.0.0.1", broker.port)
    subscriber.subscribe("digitlite/test", qos=1)
    subscriber.loop_start()
    assert subscribed.wait(60), "the test subscriber could not subscribe"
    result = subprocess.run([sys.executable, "-m", "digitlite", "run", "--source",
                             str(repo / "tests" / "data" / "golden"), "--headless", "--stable-frames", "1",
                             "--mqtt", broker.address, "--topic", "digitlite/test",
                             "--history", str(tmp_path / "readings.db")],
                            capture_output=True, text=True, timeout=120)
    for _ in range(100):
        if len(received) >= len(result.stdout.splitlines()):
            break
        time.sleep(0.05)
    subscriber.loop_stop()
    subscriber.disconnect()
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line)["text"] for line in result.stdout.splitlines()]
    assert [msg["text"] for _, msg in received] == printed and "499684" in printed
    assert all(topic == "digitlite/test" and "device" in msg for topic, msg in received)


def test_a_bad_broker_address_is_a_clear_error(repo, tmp_path):
    result = subprocess.run([sys.executable, "-m", "digitlite", "run", "--source",
                             str(repo / "tests" / "data" / "golden"), "--headless", "--mqtt", "127.0.0.1:99999",
                             "--history", str(tmp_path / "readings.db")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "1-65535" in result.stderr and "Traceback" not in result.stderr


def test_synthetic_source_holds_each_scene_like_a_camera(mnist_dir):
    from edge_app.live.sources import Synthetic

    source = Synthetic(seed=0, frames=4, repeat=2, fps=None)
    got = [source.read() for _ in range(5)]
    assert got[0] is got[1] and got[2] is got[3] and got[1] is not got[2] and got[4] is None
    assert source.truth.isdigit()
