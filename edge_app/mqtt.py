"""Publishing stable readings to an MQTT broker, so that a fleet of devices reports to one place.

paho-mqtt is imported only when `--mqtt` is used. Messages are JSON (the reading, a timestamp and the
device name), published with QoS 1.

    digitlite run --source synthetic --headless --mqtt 127.0.0.1:1883 --topic digitlite/desk
"""

from __future__ import annotations

import json
import socket

DEFAULT_PORT = 1883
PUBLISH_TIMEOUT_S = 5.0


def parse_broker(text: str) -> tuple[str, int]:
    """'host[:port]' -> (host, port)."""
    host, _, port = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    host = host or text.strip()
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"--mqtt {text!r}: expected HOST or HOST:PORT, e.g. 127.0.0.1:1883") from None
    if not host or not 0 < number < 65536:
        raise ValueError(f"--mqtt {text!r}: expected HOST or HOST:PORT with a port in 1-65535")
    return host, number


class Publisher:
    """A connected MQTT client that publishes one JSON message per stable reading."""

    def __init__(self, broker: str, topic: str, client_id: str | None = None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise ImportError("--mqtt needs paho-mqtt: pip install 'digitlite[edge]'") from exc
        if not topic or any(ch in topic for ch in "#+"):
            raise ValueError(f"--topic {topic!r}: give a concrete topic (no wildcards), e.g. digitlite/kitchen")
        self.host, self.port = parse_broker(broker)
        self.topic = topic
        self.device = socket.gethostname()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "")
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the MQTT broker at {self.host}:{self.port} ({exc}); is it "
                                  f"running and reachable?") from exc
        self._client.loop_start()

    def publish(self, message: dict) -> None:
        info = self._client.publish(self.topic, json.dumps({**message, "device": self.device}), qos=1)
        info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
