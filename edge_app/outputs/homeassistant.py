"""Home Assistant MQTT discovery: the device's readings appear in Home Assistant as sensors, with no YAML.

Owns what Home Assistant is told, following its MQTT discovery documentation (integrations/mqtt, "Discovery
messages"; integrations/sensor.mqtt, "Configuration variables"): for each of four sensors of one device, a
retained JSON config on `<prefix>/sensor/<node_id>/<object_id>/config` (ids of `[a-zA-Z0-9_-]` only, the
object id equal to the unique_id as the documentation advises), and one retained state message the first three
read with a `value_template`:

- "Reading": the value (the last plausible or user-corrected stable reading, `edge_app.store.history.value_of`);
- "Confidence": the lowest digit confidence of that reading, in %, a diagnostic;
- "Last reading": when it was read (device_class timestamp, ISO 8601 with its offset);
- "Model": the model bundle the reader uses ("packaged": the models installed with digitlite), a diagnostic with
  its own retained topic, `<topic>/model`, sent when the loop starts and when it loads a newly activated bundle.

Home Assistant advises separate sensors over attributes that change on every update, hence four. Every
config names the device (identifiers, name "digitlite <device>", software version), the origin, and the
availability topic that `edge_app.outputs.mqtt.OutboxPublisher` keeps ("online" once connected, "offline" as its last
will and on a clean close; "offline" too while the readings history cannot store readings, a full disk, and
"online" again with the first reading stored). `HomeAssistant` is the live loop's sink (`edge_app.live.sink.Sink`):
it sets the retained messages on the publisher, which resends them on every reconnect; a suspect reading is
never the state.

    digitlite run --source synthetic --headless --mqtt 127.0.0.1:1883 --topic digitlite/desk --ha-prefix homeassistant
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass

from edge_app.live.sink import Frame, Sink
from edge_app.outputs.mqtt import Presence
from edge_app.store.history import value_of

DEFAULT_PREFIX = "homeassistant"  # Home Assistant's default discovery prefix (changeable in its MQTT options)
_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")


def node_id(device: str) -> str:
    """A discovery id from a device name: only the characters Home Assistant allows, `[a-zA-Z0-9_-]`."""
    return _ID_CHARS.sub("_", device).strip("_") or "device"


def check_prefix(prefix: str) -> str:
    if not prefix or any(ch in prefix for ch in "#+") or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"--ha-prefix {prefix!r}: give Home Assistant's discovery prefix, a topic without "
                         f"wildcards or a leading/trailing slash (its default is {DEFAULT_PREFIX})")
    return prefix


@dataclass(frozen=True)
class Discovery:
    """The topics and names of one device's sensors.

    Args:
        topic: the device's readings topic (`--topic`); the state and availability topics are under it.
        device: the device's name (default: the host name).
        prefix: Home Assistant's discovery prefix.
        version: digitlite's version, shown as the device's software version.
    """

    topic: str
    device: str = ""
    prefix: str = DEFAULT_PREFIX
    version: str = "0"

    @property
    def name(self) -> str:
        return self.device or socket.gethostname()

    @property
    def node(self) -> str:
        return node_id(f"digitlite_{self.name}")

    @property
    def state_topic(self) -> str:
        return f"{self.topic}/state"

    @property
    def model_topic(self) -> str:
        return f"{self.topic}/model"

    @property
    def presence(self) -> Presence:
        return Presence(f"{self.topic}/availability")

    def configs(self) -> list[tuple[str, dict]]:
        """(config topic, payload) of each sensor."""
        device = {"identifiers": [self.node], "name": f"digitlite {self.name}", "manufacturer": "digitlite",
                  "model": "handwritten number reader", "sw_version": self.version}
        common = {"state_topic": self.state_topic, "availability_topic": self.presence.topic,
                  "payload_available": self.presence.online, "payload_not_available": self.presence.offline,
                  "device": device, "origin": {"name": "digitlite", "sw_version": self.version}}
        sensors = [
            ("reading", {"name": "Reading", "icon": "mdi:counter", "value_template": "{{ value_json.value }}"}),
            ("confidence", {"name": "Confidence", "unit_of_measurement": "%", "state_class": "measurement",
                            "entity_category": "diagnostic", "suggested_display_precision": 1,
                            "value_template": "{{ value_json.confidence }}"}),
            ("last_reading", {"name": "Last reading", "device_class": "timestamp",
                              "value_template": "{{ value_json.time }}"}),
            ("model", {"name": "Model", "icon": "mdi:package-variant", "entity_category": "diagnostic",
                       "state_topic": self.model_topic, "json_attributes_topic": self.model_topic,
                       "value_template": "{{ value_json.bundle }}"}),
        ]
        out = []
        for key, config in sensors:
            unique_id = f"{self.node}_{key}"
            out.append((f"{self.prefix}/sensor/{self.node}/{unique_id}/config",
                        {**common, **config, "unique_id": unique_id}))
        return out


def state(record: dict) -> dict:
    """The state message of a stored reading: value, confidence (lowest digit, %), time, id, digits."""
    confidence = min((d["confidence"] for d in record["digits"]), default=0.0)
    return {"value": value_of(record), "confidence": round(100 * confidence, 1), "time": record["time"],
            "id": record["id"], "digits": len(record["digits"]), "corrected": record.get("corrected_text") is not None}


class HomeAssistant(Sink):
    """Discovery configs and the state of the value, as retained messages of the MQTT publisher.

    Args:
        publisher: the `edge_app.outputs.mqtt.OutboxPublisher` (made with `discovery.presence`).
        discovery: the device's topics and names.
        history: the readings history, for the value already stored when the loop starts (and after a correction).
    """

    name = "Home Assistant"

    def __init__(self, publisher, discovery: Discovery, history):
        self.publisher, self.discovery, self.history = publisher, discovery, history
        for topic, config in discovery.configs():
            publisher.set_retained(topic, json.dumps(config))
        self.refresh()

    def refresh(self) -> None:
        """Publish the history's current value (if any) as the state."""
        record = self.history.latest_value()
        if record is not None:
            self.publisher.set_retained(self.discovery.state_topic, json.dumps(state(record)))

    def on_reading(self, record: dict, frame: Frame) -> None:
        presence = getattr(self.publisher, "presence", None)
        if presence is not None:  # a reading the history could not store (a full disk): the device is unavailable
            stored = record.get("stored", True)
            self.publisher.set_retained(presence.topic, presence.online if stored else presence.offline)
        if record.get("suspect") or record.get("id") is None:
            return  # a suspect reading is shown and stored, never the value; an unstored one is not the value
        self.publisher.set_retained(self.discovery.state_topic, json.dumps(state(record)))

    def on_model(self, model: dict) -> None:
        """The Model sensor: the active bundle's version ("packaged": the models installed with digitlite)."""
        payload = {"bundle": model.get("bundle") or "packaged", "recognizer_sha256": model.get("recognizer_sha256"),
                   "since": model.get("time")}
        self.publisher.set_retained(self.discovery.model_topic, json.dumps(payload))

    def on_correction(self, record: dict) -> None:
        self.refresh()  # a corrected reading may now be the value (or the value's text changed)
