"""Home Assistant MQTT discovery (issue 14), end to end through a real Mosquitto: `digitlite run --mqtt` publishes
retained discovery configs under the configurable prefix, availability (online; offline on a clean stop, and as
the last will when the process is killed) and a retained state whose templates give the value, confidence and
time; a suspect reading is never the state.

The payloads are checked against Home Assistant's documented schema (integrations/mqtt "Discovery messages",
integrations/sensor.mqtt "Configuration variables"), and each value_template is rendered with Jinja2, the
template engine Home Assistant renders them with, on the state message the device really sent.

    .venv/bin/pytest tests/test_homeassistant.py
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from datetime import datetime

import pytest
from mqtt_support import Broker
from waiting import WAIT_S, wait_for

from edge_app.outputs.homeassistant import node_id
from edge_app.store.history import ReadingStore, value_of

ID = re.compile(r"^[a-zA-Z0-9_-]+$")  # "must only consist of characters from the character class [a-zA-Z0-9_-]"
SENSOR_DEVICE_CLASSES = {None, "timestamp", "date", "duration", "enum"}  # the ones a text-like reading could use


def check_sensor_config(topic: str, config: dict, prefix: str) -> None:
    """Home Assistant's documented rules for an MQTT sensor discovered by a single-component config message."""
    parts = topic.split("/")
    # <discovery_prefix>/<component>/[<node_id>/]<object_id>/config
    assert topic.startswith(prefix + "/") and parts[-1] == "config", topic
    middle = parts[len(prefix.split("/")):-1]
    assert middle[0] == "sensor" and len(middle) in (2, 3), topic
    assert all(ID.match(p) for p in middle[1:]), f"node_id/object_id outside [a-zA-Z0-9_-]: {topic}"
    assert isinstance(config, dict)
    assert isinstance(config.get("state_topic"), str) and config["state_topic"], "state_topic is required"
    assert "#" not in config["state_topic"] and "+" not in config["state_topic"]
    assert config.get("unique_id") and middle[-1] == config["unique_id"], "object_id = unique_id (best practice)"
    device = config.get("device")
    assert isinstance(device, dict), "device ties the sensors into the device registry"
    assert device.get("identifiers") or device.get("connections"), "device needs identifiers or connections"
    assert isinstance(device.get("identifiers", []), list | str)
    assert "availability" not in config or "availability_topic" not in config, "never both"
    assert isinstance(config.get("availability_topic"), str)
    assert config.get("payload_available", "online") == "online"
    assert config.get("payload_not_available", "offline") == "offline"
    assert config.get("device_class") in SENSOR_DEVICE_CLASSES
    assert config.get("entity_category") in (None, "diagnostic"), "a sensor's category must be diagnostic"
    if "origin" in config:
        assert config["origin"].get("name"), "origin needs a name"
    assert "platform" not in config, "platform is only for device-based discovery messages"


def render(template: str, payload: bytes) -> str:
    """A value_template rendered as Home Assistant does for MQTT: `value` and `value_json` from the payload."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment().from_string(template).render(
        value=payload.decode(), value_json=json.loads(payload)).strip()


class Retained:
    """A subscriber to some topic filters that keeps every message: (topic, payload, retain flag)."""

    def __init__(self, broker: Broker, *filters: str):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe([(f, 1) for f in filters])
        self.client.loop_start()
        assert subscribed.wait(WAIT_S), "the test subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def last(self, topic: str) -> bytes | None:
        with self._lock:
            payloads = [p for t, p, _ in self.messages if t == topic]
        return payloads[-1] if payloads else None

    def on(self, prefix: str) -> dict[str, tuple[bytes, bool]]:
        with self._lock:
            return {t: (p, r) for t, p, r in self.messages if t.startswith(prefix)}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    yield broker
    broker.stop()


def test_run_with_mqtt_announces_the_device_to_home_assistant(broker, repo, tmp_path):
    db = tmp_path / "readings.db"
    result = subprocess.run(
        [sys.executable, "-m", "digitlite", "run", "--source", str(repo / "tests" / "data" / "golden" / "scene_0*.jpg"),
         "--headless", "--stable-frames", "1", "--mqtt", broker.address, "--topic", "meters/water",
         "--device-name", "water meter", "--history", str(db), "--expect", "increasing"],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr

    # A subscriber that comes later (Home Assistant starting after the device) gets everything: it is retained.
    seen = Retained(broker, "homeassistant/#", "meters/water/#")
    node = node_id("digitlite_water meter")
    configs = wait_for(lambda: len(seen.on("homeassistant/")) == 4 and seen.on("homeassistant/"),
                       "the four retained discovery configs")
    state = wait_for(lambda: seen.on("meters/water/state"), "the retained state")["meters/water/state"]
    model = wait_for(lambda: seen.on("meters/water/model"), "the retained model")["meters/water/model"]
    availability = wait_for(lambda: seen.last("meters/water/availability"), "the retained availability")
    seen.close()

    assert sorted(configs) == [f"homeassistant/sensor/{node}/{node}_{key}/config"
                               for key in ("confidence", "last_reading", "model", "reading")]
    assert all(retained for _, retained in configs.values()) and state[1]
    parsed = {topic.split("/")[-2].removeprefix(node + "_"): json.loads(p) for topic, (p, _) in configs.items()}
    for topic, (payload, _) in configs.items():
        check_sensor_config(topic, json.loads(payload), "homeassistant")
    assert {c["device"]["name"] for c in parsed.values()} == {"digitlite water meter"}
    assert len({json.dumps(c["device"]["identifiers"]) for c in parsed.values()}) == 1, "one device"
    assert {c["availability_topic"] for c in parsed.values()} == {"meters/water/availability"}
    assert availability == b"offline", "a clean stop says offline (a clean disconnect sends no last will)"

    # The state, through each sensor's template: the last plausible reading (the suspects were not the value).
    store = ReadingStore(db, create=False)
    value = store.latest_value()
    assert [r["text"] for r in store.since() if r["suspect"]] == ["69", "100", "1", "13", "22"]  # scene_01: missed
    store.close()
    assert value_of(value) == "499684"
    rendered = {key: render(config["value_template"], state[0]) for key, config in parsed.items() if key != "model"}
    # The Model sensor reads its own retained topic: no bundle is active here, so the packaged models.
    assert parsed["model"]["state_topic"] == "meters/water/model" and model[1]
    assert render(parsed["model"]["value_template"], model[0]) == "packaged"
    assert json.loads(model[0])["recognizer_sha256"] == value["model_sha256"]
    assert rendered["reading"] == "499684"
    lowest = min(d["confidence"] for d in value["digits"])
    assert float(rendered["confidence"]) == pytest.approx(100 * lowest, abs=0.05) and 0 < lowest <= 1
    assert parsed["confidence"]["unit_of_measurement"] == "%"
    assert parsed["last_reading"]["device_class"] == "timestamp"
    moment = datetime.fromisoformat(rendered["last_reading"])
    assert moment.tzinfo is not None and rendered["last_reading"] == value["time"], "a timestamp needs its offset"


def test_a_killed_device_goes_offline_by_its_last_will_under_a_custom_prefix(broker, tmp_path):
    seen = Retained(broker, "ha-test/#", "desk/#")
    process = subprocess.Popen(
        [sys.executable, "-m", "digitlite", "run", "--source", "synthetic", "--headless", "--mqtt", broker.address,
         "--topic", "desk", "--ha-prefix", "ha-test", "--history", str(tmp_path / "readings.db")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: seen.last("desk/availability") == b"online", "the device to say it is online")
        wait_for(lambda: len(seen.on("ha-test/sensor/")) == 4, "discovery under the custom prefix")
        for topic, (payload, _) in seen.on("ha-test/").items():
            check_sensor_config(topic, json.loads(payload), "ha-test")
        wait_for(lambda: seen.last("desk/state"), "a first state")
        process.send_signal(signal.SIGKILL)  # a power cut: no chance to say goodbye
        process.wait(WAIT_S)
        wait_for(lambda: seen.last("desk/availability") == b"offline", "the broker to publish the last will")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT_S)
        seen.close()
