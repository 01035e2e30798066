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
import ssl
import sys
import threading
import time
from dataclasses import dataclass

from edge_app.config import MQTT_AUTH_ENV, MqttAuth, MqttSettings
from edge_app.live.sink import Frame, Sink

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883


def new_client(client_id: str, settings: MqttSettings = MqttSettings(),  # noqa: B008
               auth: MqttAuth = MqttAuth()):  # noqa: B008
    """A paho-mqtt client (MQTT v3.1.1, callback API 2) that reconnects with the waits of `settings` and
    connects as `auth` says (paho's `username_pw_set`, and `tls_set`: the broker's certificate and name checked
    against `ca_file`, else the system's CAs); paho is imported only here, when MQTT is used.

    Raises:
        ImportError: paho-mqtt is not installed, with the extra that brings it.
        ValueError: a TLS file that is not a PEM certificate or key (named, with the key that sets it).
    """
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise ImportError("MQTT (--mqtt, digitlite models announce and follow) needs paho-mqtt: "
                          "pip install 'digitlite[edge]'") from exc
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
    if auth.username:
        client.username_pw_set(auth.username, auth.password)
    if auth.uses_tls:
        try:
            client.tls_set(ca_certs=_str(auth.ca_file), certfile=_str(auth.cert_file), keyfile=_str(auth.key_file))
        except ssl.SSLError as exc:  # a file that is not PEM, a key that does not match its certificate
            raise ValueError(f"MQTT TLS files ca_file={auth.ca_file}, cert_file={auth.cert_file}, key_file="
                             f"{auth.key_file} cannot be used ({exc}): each must be PEM, the key the certificate's "
                             f"(fix them in [mqtt] of the configuration file)") from exc
    return client


def _str(path) -> str | None:
    return None if path is None else str(path)


# The reason codes paho gives a v3.1.1 CONNACK 4 and 5 (bad user name or password; not authorized, also what
# Mosquitto answers an anonymous client when allow_anonymous is false).
AUTH_REFUSALS = (134, 135)


def refusal(host: str, port: int, reason_code, auth: MqttAuth) -> str:
    """Why the broker refused the device (a CONNACK that failed), and what to change."""
    if getattr(reason_code, "value", None) in AUTH_REFUSALS:
        return (f"the MQTT broker {host}:{port} refused the device's credentials ({reason_code}; "
                f"{auth.describe()}): set username and password in [mqtt] of the configuration file, or "
                f"${MQTT_AUTH_ENV['username']} and ${MQTT_AUTH_ENV['password']}, to an account the broker knows "
                f"(Home Assistant's Mosquitto add-on: a Home Assistant user, or one of the add-on's logins)")
    return f"the MQTT broker {host}:{port} refused the connection ({reason_code}; {auth.describe()})"


def connect_failure(host: str, port: int, exc: BaseException, auth: MqttAuth) -> str:
    """Why a connection attempt failed before the broker could answer (unreachable, TLS), and what to change."""
    if isinstance(exc, ssl.SSLError):
        return (f"TLS with the MQTT broker {host}:{port} failed ({exc}): ca_file must name the CA that signed "
                f"the broker's certificate, and the broker's address the name or IP address in that certificate; "
                f"a plain (non-TLS) port does not speak TLS ({auth.describe()})")
    hint = " Is this the broker's TLS port (often 8883)?" if auth.uses_tls else ""
    return f"cannot reach the MQTT broker {host}:{port} ({exc}); is it running, and is the address right?{hint}"


def connect_checked(client, host: str, port: int, auth: MqttAuth = MqttAuth(),  # noqa: B008
                    settings: MqttSettings = MqttSettings()) -> None:  # noqa: B008
    """Connect `client` (from `new_client`) and start its network loop once the broker has accepted it, waiting
    at most `settings.check_s` for the answer. Sets the client's on_connect and on_disconnect.

    Raises:
        ConnectionError: unreachable, TLS failed, the credentials refused, or no answer in time; the message
            says which and what to change. The client is stopped.
    """
    answered, outcome = threading.Event(), {}

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        outcome.setdefault("refused", reason_code if reason_code.is_failure else None)
        answered.set()

    def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
        outcome.setdefault("closed", reason_code)
        answered.set()

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    try:
        client.connect(host, port, keepalive=settings.keepalive_s)
    except OSError as exc:  # ssl.SSLError included
        raise ConnectionError(connect_failure(host, port, exc, auth)) from exc
    client.loop_start()
    problem = None
    if not answered.wait(settings.check_s):
        problem = (f"the MQTT broker {host}:{port} did not answer within {settings.check_s:g} s ({auth.describe()}): "
                   f"is it an MQTT port, and {'a TLS' if auth.uses_tls else 'a plain (non-TLS)'} one?")
    elif outcome.get("refused") is not None:
        problem = refusal(host, port, outcome["refused"], auth)
    elif "refused" not in outcome:
        needs = ("; it may require a client certificate (cert_file and key_file in [mqtt])"
                 if auth.uses_tls and not auth.cert_file else
                 "; if it is a TLS port, set ca_file (or tls = true) in [mqtt]" if not auth.uses_tls else "")
        problem = f"the MQTT broker {host}:{port} closed the connection before accepting it ({auth.describe()}){needs}"
    if problem is not None:
        client.disconnect()
        client.loop_stop()
        raise ConnectionError(problem)


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
        auth: the credentials and TLS files the client connects with (`edge_app.config.load_mqtt_auth`).

    Raises:
        ImportError: paho-mqtt is not installed.
        ValueError: a malformed broker address or topic, TLS files that cannot be used.
    """

    def __init__(self, store, broker: str, topic: str, client_id: str | None = None,
                 settings: MqttSettings = MqttSettings(), presence: Presence | None = None, device: str | None = None,
                 auth: MqttAuth = MqttAuth()):  # noqa: B008
        self.store, self.topic, self.settings, self.auth = store, check_topic(topic), settings, auth
        self._said: str | None = None  # the last connection problem logged (each is logged once, not every retry)
        self.host, self.port = parse_broker(broker)
        self.device = device or socket.gethostname()
        self.published = 0  # readings acknowledged by the broker in this run
        self._inflight: dict[int, int] = {}  # message id -> reading id; only the publisher thread touches it
        self._last_handed = 0  # the newest reading id handed to the client
        self._acks: collections.deque[tuple[int, bool]] = collections.deque()  # (mid, refused) from the network thread
        self._wake, self._stop = threading.Event(), threading.Event()
        self._drain_until: float | None = None  # set by close(): publish what is left until then, then stop
        self._was_connected = False
        self._accepted = False  # the broker accepted the present connection (a refused one is not "lost")
        self.presence = presence
        self._retained: dict[str, bytes] = {}  # topic -> payload, sent on every connect and when changed
        self._unsent: set[str] = set()  # retained topics to (re)send
        self._retained_lock = threading.Lock()
        self.client_id = client_id or f"digitlite-{self.device}-{os.getpid()}"
        client = new_client(self.client_id, settings, auth)
        import paho.mqtt.client as mqtt  # its result codes (new_client checked that it imports)

        self._mqtt = mqtt
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
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
            self._say(refusal(self.host, self.port, reason_code, self.auth) + "; retrying in the background, "
                      "readings wait in the outbox")
            return
        log.info("connected to the MQTT broker %s:%d as %s", self.host, self.port, self.auth.describe())
        self._said = None
        self._was_connected = self._accepted = True
        with self._retained_lock:
            self._unsent = set(self._retained)  # a new session: every retained message again
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError:` around the attempt, so the exception is the one in hand. A
        # broker not up yet is only the warning of `_run` (a device may boot before its server); TLS that fails
        # will not mend by itself: an error, at once.
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError):
            self._say(connect_failure(self.host, self.port, exc, self.auth) + " Retrying in the background; "
                      "readings wait in the outbox.")

    def _say(self, problem: str) -> None:
        """Log a connection problem once, not at every retry (a wrong password would fill the journal)."""
        if problem != self._said:
            self._said = problem
            log.error("%s", problem)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        accepted, self._accepted = self._accepted, False
        if accepted and not self._stop.is_set():
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
