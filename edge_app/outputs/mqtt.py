"""Publishing stable readings to an MQTT broker from the history's outbox, so that a fleet reports to one place
and no reading is lost while the broker is away.

`OutboxPublisher` owns the MQTT client (paho-mqtt, imported only when `--mqtt` is used) and one thread that
publishes the readings queued in the history's outbox (`edge_app.store.history.ReadingStore`), oldest first, with
QoS 1. A reading leaves the outbox only when the broker acknowledges it (PUBACK): readings made while the
broker is away wait there and are delivered, in order, when it returns; a reading may arrive twice (QoS 1 is
at least once), none is lost while the outbox holds it. The client connects and reconnects in the background
with doubling waits; the frame loop only calls `wake()`, which never blocks, and `close()` returns within a
bounded time whatever the broker does (a broker that never acknowledges included). Messages are JSON: the
stored reading (id, time, text, numbers, digits, source, origin, model_sha256) and the device's name; the id
lets a consumer drop the rare duplicate.

Beside the outbox, the publisher keeps a few retained messages (`set_retained`: Home Assistant's discovery
configs and state, `edge_app.outputs.homeassistant`), sent again on every connect and whenever they change, and with a
`Presence` topic it announces itself: "online" (retained) once connected, "offline" as the last will the broker
publishes if the device vanishes (power cut, network lost), and "offline" itself on a clean close (a clean
disconnect suppresses the will).

    digitlite run --source synthetic --headless --mqtt 127.0.0.1:1883 --topic digitlite/desk
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from edge_app.config import MqttSettings
from edge_app.live.sink import Frame, Sink

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883


def new_client(client_id: str, settings: MqttSettings = MqttSettings()):  # noqa: B008
    """A paho-mqtt client (MQTT v3.1.1, callback API 2) that reconnects with the waits of `settings`; paho is
    imported only here, when MQTT is used.

    Raises:
        ImportError: paho-mqtt is not installed, with the extra that brings it.
    """
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise ImportError("MQTT (--mqtt, digitlite models announce and follow) needs paho-mqtt: "
                          "pip install 'digitlite[edge]'") from exc
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
    return client


@dataclass(frozen=True)
class Presence:
    """The availability topic and its payloads (Home Assistant's defaults: online, offline)."""

    topic: str
    online: str = "online"
    offline: str = "offline"


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


def check_topic(topic: str) -> str:
    if not topic or any(ch in topic for ch in "#+"):
        raise ValueError(f"--topic {topic!r}: give a concrete topic (no wildcards), e.g. digitlite/kitchen")
    return topic


def message(record: dict, device: str) -> bytes:
    """The JSON payload of one stored reading."""
    return json.dumps({**record, "numbers": record["text"].split(), "device": device}).encode()


class OutboxPublisher:
    """Publishes the outbox of `store` to `broker` in a background thread; `wake()` after each new reading.

    Args:
        store: the readings history whose outbox is published (`edge_app.store.history.ReadingStore`).
        broker: "host[:port]".
        topic: the topic every reading is published on.
        client_id: MQTT client id; default: digitlite-<host name>-<process id>.
        settings: keepalive, reconnect backoff, window and shutdown bounds.
        presence: an availability topic: "online" once connected, "offline" as the last will and on close.
        device: the device's name in each message (default: the host name).

    Raises:
        ImportError: paho-mqtt is not installed.
        ValueError: a malformed broker address or topic.
    """

    def __init__(self, store, broker: str, topic: str, client_id: str | None = None,
                 settings: MqttSettings = MqttSettings(), presence: Presence | None = None, device: str | None = None):
        self.store, self.topic, self.settings = store, check_topic(topic), settings
        self.host, self.port = parse_broker(broker)
        self.device = device or socket.gethostname()
        self.published = 0  # readings acknowledged by the broker in this run
        self._inflight: dict[int, int] = {}  # message id -> reading id; only the publisher thread touches it
        self._last_handed = 0  # the newest reading id handed to the client
        self._acks: collections.deque[tuple[int, bool]] = collections.deque()  # (mid, refused) from the network thread
        self._wake, self._stop = threading.Event(), threading.Event()
        self._drain_until: float | None = None  # set by close(): publish what is left until then, then stop
        self._was_connected = False
        self.presence = presence
        self._retained: dict[str, bytes] = {}  # topic -> payload, sent on every connect and when changed
        self._unsent: set[str] = set()  # retained topics to (re)send
        self._retained_lock = threading.Lock()
        self.client_id = client_id or f"digitlite-{self.device}-{os.getpid()}"
        client = new_client(self.client_id, settings)
        import paho.mqtt.client as mqtt  # its result codes (new_client checked that it imports)

        self._mqtt = mqtt
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.max_inflight_messages_set(settings.inflight)
        client.max_queued_messages_set(settings.inflight)  # the outbox, not the client, holds the backlog
        if presence is not None:
            # Set before connecting: the broker keeps it and publishes it if this client vanishes.
            client.will_set(check_topic(presence.topic), presence.offline, qos=1, retain=True)
        self._client = client
        # connect_async: the network thread connects, and keeps retrying with backoff; a broker that is not
        # up yet (a device booting before its server) is not an error, only a warning in the log.
        if presence is not None:
            self.set_retained(presence.topic, presence.online)
        client.connect_async(self.host, self.port, keepalive=settings.keepalive_s)
        client.loop_start()
        self._thread = threading.Thread(target=self._run, name="digitlite-mqtt", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("the MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        log.info("connected to the MQTT broker %s:%d", self.host, self.port)
        self._was_connected = True
        with self._retained_lock:
            self._unsent = set(self._retained)  # a new session: every retained message again
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._stop.is_set():
            log.warning("lost the MQTT broker %s:%d (%s); reconnecting in the background, readings wait in the "
                        "outbox", self.host, self.port, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # Called with paho's message lock held: only record the acknowledgement (no lock of ours here).
        self._acks.append((mid, bool(getattr(reason_code, "is_failure", False))))
        self._wake.set()

    # ------------------------------------------------------------------ the publisher thread
    def wake(self) -> None:
        """A reading was queued: publish it soon. Never blocks (what the frame loop calls)."""
        self._wake.set()

    def set_retained(self, topic: str, payload: str | bytes) -> None:
        """Keep `payload` retained on `topic`: sent now if connected, and again on every reconnect. Never
        blocks; safe from any thread."""
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        with self._retained_lock:
            if self._retained.get(topic) == data and topic not in self._unsent:
                return
            self._retained.pop(topic, None)  # re-inserted last: sent after the messages set before it
            self._retained[topic] = data
            self._unsent.add(topic)
        self._wake.set()

    def _send_retained(self) -> None:
        """Retained messages waiting, in the order they were set (discovery configs before states)."""
        if not self._client.is_connected():
            return
        with self._retained_lock:
            waiting = [(t, p) for t, p in self._retained.items() if t in self._unsent]
        for topic, payload in waiting:
            info = self._client.publish(topic, payload, qos=1, retain=True)
            if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                return  # not connected after all, or the client's queue is full: tried again on the next wake
            with self._retained_lock:
                if self._retained.get(topic) == payload:
                    self._unsent.discard(topic)

    def _settle_acks(self) -> None:
        while self._acks:
            mid, refused = self._acks.popleft()
            reading_id = self._inflight.pop(mid, None)
            if reading_id is None:
                continue
            if refused:  # MQTT 5 only; QoS 1 on 3.1.1 is always accepted
                log.warning("the MQTT broker refused reading #%d; it is not retried", reading_id)
            else:
                self.published += 1
            self.store.delivered(reading_id)

    def _hand_over(self) -> None:
        """Publish the next outbox readings while the window has room and the client is connected."""
        room = self.settings.inflight - len(self._inflight)
        if room <= 0 or not self._client.is_connected():
            return
        for record in self.store.pending(self._last_handed, room):
            info = self._client.publish(self.topic, message(record, self.device), qos=1)
            if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
                return  # the client's queue is full: the outbox keeps it, tried again on the next wake
            # NO_CONN: the client keeps the message and sends it when it reconnects, in order.
            self._inflight[info.mid] = record["id"]
            self._last_handed = record["id"]

    def _drained(self) -> bool:
        """close() was called, and the outbox is sent or its time is up."""
        if self._drain_until is None:
            return False
        return time.monotonic() > self._drain_until or (not self._inflight and self.store.outbox_size() == 0)

    def _run(self) -> None:
        warned_at = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.settings.idle_s if self._drain_until is None else 0.02)
            self._wake.clear()
            try:
                self._settle_acks()
                if self._drained():
                    return
                self._send_retained()
                self._hand_over()
            except Exception as exc:  # a database error: log it, the outbox keeps the readings
                log.error("MQTT publisher: %s: %s", type(exc).__name__, exc)
            if not self._was_connected and time.monotonic() - warned_at > 5 * self.settings.reconnect_min_s:
                warned_at = float("inf")  # once: the broker has not been reachable since the start
                log.warning("cannot reach the MQTT broker %s:%d yet; retrying in the background (readings wait in "
                            "the outbox). Is it running, and is the address right?", self.host, self.port)

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def close(self) -> None:
        """Publish what the outbox holds for up to drain_s, say "offline" (with a presence topic), then disconnect;
        returns within about drain_s + 2 x close_s (3 x with a presence topic) whatever the broker does
        (unreachable, or never acknowledging).

        Readings not yet acknowledged stay in the outbox and are published by the next run.
        """
        self._drain_until = time.monotonic() + self.settings.drain_s
        self._wake.set()
        self._thread.join(self.settings.drain_s + self.settings.close_s)
        self._stop.set()
        if self.presence is not None and self._client.is_connected():
            # A clean disconnect cancels the will: say "offline" ourselves, and give it a moment to be acknowledged.
            info = self._client.publish(self.presence.topic, self.presence.offline, qos=1, retain=True)
            with contextlib.suppress(Exception):  # not connected after all: the will was already published
                info.wait_for_publish(self.settings.close_s)
        self._client.disconnect()
        # paho's loop_stop() joins its network thread without a timeout, and that thread waits until a stalled
        # socket drains; bound the wait here and abandon the (daemon) thread past it.
        stopper = threading.Thread(target=self._client.loop_stop, name="digitlite-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(self.settings.close_s)
        if stopper.is_alive():
            log.warning("the MQTT client did not stop within %.0f s; leaving it (unacknowledged readings stay in "
                        "the outbox)", self.settings.close_s)


class MqttOutbox(Sink):
    """Stable readings go to the history's outbox (the loop puts them there); this wakes the publisher."""

    name = "MQTT"
    uses_outbox = True

    def __init__(self, publisher):
        self.publisher = publisher  # edge_app.outputs.mqtt.OutboxPublisher

    def on_reading(self, record: dict, frame: Frame) -> None:
        self.publisher.wake()

    def close(self) -> None:
        self.publisher.close()
