"""Model updates for a fleet over MQTT: a host announces a bundle, every device that follows fetches, verifies,
canaries and activates it on its own, and says what it did.

Topics, under a prefix (`--prefix`, default `digitlite/fleet`):

    <prefix>/bundle                       retained, from the host: {"version", "url", "sha256", "announced"}
    <prefix>/devices/<device>/update      retained, from each device: {"device", "version", "outcome", "reason",
                                          "canary", "announced", "time"}; outcome: activated, refused, failed,
                                          already active

A following device (`digitlite models follow`) fetches the bundle over http(s) only, takes it only when a key its
configuration trusts signed it and it is newer than the active one (nothing is written otherwise), installs it
beside its others and activates it only if it reads the device's own corrected examples at least as well
(`edge_app.canary.update`); a refused bundle is removed again. A running `digitlite run` or `serve` on the device
loads it between two frames (the loop watches the store). The host (`digitlite models announce`) serves the
bundle over HTTP, announces it and prints each device's outcome as it comes, one per known device; the broker's
ACL (`edge_app/deploy/mosquitto-fleet.acl`) keeps each device to its own outcome topic.

    digitlite models announce bundle.tar --broker broker:1883 --serve 0.0.0.0:8765 --devices kitchen,hall
    digitlite models follow --broker broker:1883 --device kitchen
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

from edge_app.canary import update
from edge_app.config import MqttAuth, MqttSettings
from edge_app.outputs.homeassistant import node_id
from edge_app.outputs.mqtt import check_topic, connect_checked, new_client, parse_broker, refusal
from edge_app.runtime.bundle import BundleError, open_bundle, read_sidecar
from edge_app.store.history import now_iso
from edge_app.store.models import DownloadError, ModelStore
from edge_app.wiring import MODEL_ERRORS

log = logging.getLogger(__name__)

PREFIX = "digitlite/fleet"
QOS = 1


def announcement_topic(prefix: str) -> str:
    return f"{check_topic(prefix)}/bundle"


def outcome_topic(prefix: str, device: str) -> str:
    return f"{check_topic(prefix)}/devices/{node_id(device)}/update"


# ---------------------------------------------------------------------------------------------- a device


class FleetAgent:
    """Follows `<prefix>/bundle` for one device: each announcement is handled in the caller's thread (`run`),
    one at a time, never in paho's network thread (a download and a canary take seconds).

    Args:
        broker: "host[:port]".
        device: this device's name (its outcome topic).
        prefix: the fleet's topic prefix.
        store: the device's model bundles.
        history_path: the readings history whose corrections the canary reads (None: the default).
        settings: reconnect waits and keepalive.
        auth: the broker's credentials and TLS files (`edge_app.config.load_mqtt_auth`).
    """

    def __init__(self, broker: str, device: str | None = None, prefix: str = PREFIX, store: ModelStore | None = None,
                 history_path: Path | None = None, settings: MqttSettings = MqttSettings(),  # noqa: B008
                 auth: MqttAuth = MqttAuth()):  # noqa: B008
        self.host, self.port = parse_broker(broker)
        self.device = device or socket.gethostname()
        self.prefix, self.store, self.history_path = prefix, store or ModelStore(), history_path
        self.topic, self.reply_topic = announcement_topic(prefix), outcome_topic(prefix, self.device)
        self.settings = settings
        self._inbox: queue.Queue[bytes] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self.auth = auth
        self._client = new_client(f"digitlite-follow-{node_id(self.device)}", settings, auth)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("%s", refusal(self.host, self.port, reason_code, self.auth))
            return
        log.info("following %s on %s:%d as %s", self.topic, self.host, self.port, self.device)
        client.subscribe(self.topic, qos=QOS)  # again on every connect: a new session has no subscriptions

    def _on_message(self, client, userdata, message) -> None:
        with contextlib.suppress(queue.Full):  # a flood of announcements: the ones already waiting are handled
            self._inbox.put_nowait(message.payload)

    def stop(self, reason: str = "") -> None:
        """Stop after the announcement in hand (safe in a signal handler)."""
        self._stop.set()

    def run(self, handled: Callable[[dict], None] | None = None, max_updates: int | None = None) -> int:
        """Connect (retrying in the background) and handle announcements until `stop()` or `max_updates`."""
        self._client.connect_async(self.host, self.port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()
        done = 0
        try:
            while not self._stop.is_set() and (max_updates is None or done < max_updates):
                try:
                    payload = self._inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                outcome = self.handle(payload)
                if outcome is None:
                    continue
                info = self._client.publish(self.reply_topic, json.dumps(outcome), qos=QOS, retain=True)
                with contextlib.suppress(Exception):
                    info.wait_for_publish(timeout=self.settings.close_s)
                log.info("update %s: %s (%s)", outcome["version"], outcome["outcome"], outcome["reason"])
                if handled is not None:
                    handled(outcome)
                done += 1
        finally:
            self._client.disconnect()
            self._client.loop_stop()
        return 0

    def handle(self, payload: bytes) -> dict | None:
        """Fetch, verify, install, canary and activate one announced bundle; its outcome (None: nothing to say,
        an empty retained message that clears the announcement)."""
        if not payload:
            return None
        try:
            announced = json.loads(payload)
            version, url, sha256 = announced["version"], announced["url"], announced["sha256"]
            if not all(isinstance(v, str) for v in (version, url, sha256)):
                raise TypeError("version, url and sha256 must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            return self._outcome({}, "failed", f"not an announcement: {exc!r}")
        if self.store.pointer()["version"] == version:
            return self._outcome(announced, "already active", f"bundle {version} is the active one")
        bundle = self._take(announced)
        if isinstance(bundle, dict):
            return bundle
        fresh = False
        try:
            fresh = self.store.install(bundle)
            done = update(self.store, version, self.history_path)
        except (*MODEL_ERRORS, OSError) as exc:
            log.error("update %s failed on this device: %s", version, exc)
            return self._refused(announced, "failed", f"the bundle could not be installed or loaded on this device "
                                                      f"({type(exc).__name__}; the device's log says why)", fresh)
        if done["outcome"] == "refused" and fresh:
            self.store.discard(version)  # a refused bundle takes no room: the store keeps only what it may load
        return self._outcome(announced, done["outcome"], done["reason"], done["canary"])

    def _take(self, announced: dict):
        """The announced bundle, fetched over http(s) and checked in memory: its sha256 and members, its signer
        (a key this device trusts), and that it is newer than the active one; else the outcome saying why, in
        words that name no local path or internal address (the outcome is published)."""
        version = announced["version"]
        try:
            bundle = self.store.fetch(announced["url"], announced["sha256"], remote_only=True)
            if bundle.version != version:
                raise BundleError(f"the announcement says version {version}, the bundle is {bundle.version}")
            self.store.verify(bundle)
            self.store.check_newer(bundle)
        except DownloadError as exc:
            log.error("update %s: %s", version, exc)
            return self._refused(announced, "failed", "cannot download the announced bundle: it must be an http(s) "
                                                      "URL this device can reach, within the size and time limits "
                                                      "(the device's log says why)")
        except BundleError as exc:  # about the bundle itself: what it holds, who signed it, its age
            return self._refused(announced, "refused", str(exc))
        except (ValueError, OSError) as exc:  # the device's own configuration or keys cannot be used
            log.error("update %s: %s", version, exc)
            return self._refused(announced, "failed", "this device's trusted keys cannot be read (the device's log "
                                                      "says why)")
        return bundle

    def _refused(self, announced: dict, outcome: str, reason: str, installed: bool = False) -> dict:
        """The outcome of a bundle not taken, kept for the page; a bundle this update installed is removed."""
        if installed:
            self.store.discard(announced["version"])
        self.store.record_update(announced["version"], outcome, reason)
        return self._outcome(announced, outcome, reason)

    def _outcome(self, announced: dict, outcome: str, reason: str, canary: dict | None = None) -> dict:
        return {"device": self.device, "version": announced.get("version"), "outcome": outcome, "reason": reason,
                "canary": canary, "announced": announced.get("announced"), "time": now_iso()}


# ---------------------------------------------------------------------------------------------- the host


class BundleServer:
    """Serves one bundle file and its sha256 over HTTP (GET /<name>, /<name>.sha256), in a thread."""

    def __init__(self, bundle: Path, host: str = "127.0.0.1", port: int = 0):
        files = {f"/{bundle.name}": bundle.read_bytes(), f"/{bundle.name}.sha256": f"{read_sidecar(bundle)}\n".encode()}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
                log.debug("bundle server: " + format, *args)

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host if host != '0.0.0.0' else socket.gethostname()}:{self._server.server_port}" \
                   f"/{bundle.name}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="digitlite-bundle", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def announce(bundle_path: Path, url: str, broker: str, prefix: str = PREFIX, expect: int = 0, timeout_s: float = 60.0,
             on_outcome: Callable[[dict], None] | None = None, settings: MqttSettings = MqttSettings(),  # noqa: B008
             auth: MqttAuth = MqttAuth(), devices: Collection[str] | None = None) -> list[dict]:  # noqa: B008
    """Publish the bundle at `url` (retained, so devices that connect later take it too) and collect the outcomes
    devices publish for this announcement until `expect` of them have answered or `timeout_s` has passed.

    An outcome counts once per device, read from that device's own topic and naming that device, and only from
    `devices` (the fleet's names; None: any). That no one else writes a device's topic is the broker's part: an
    ACL that lets each device's user write only its own topic (`edge_app/deploy/mosquitto-fleet.acl`).

    Raises:
        BundleError: the bundle file does not check against its sha256 (nothing is announced).
        ConnectionError: the broker cannot be reached, or refuses `auth` (the credentials and TLS files).
    """
    sha256 = read_sidecar(bundle_path)
    bundle = open_bundle(bundle_path.read_bytes(), sha256)
    if bundle.signature is None:
        log.warning("bundle %s is not signed: devices refuse it unless their configuration sets allow_unsigned "
                    "(sign it: digitlite models pack ... --sign KEY)", bundle.version)
    announced = {"version": bundle.version, "url": url, "sha256": sha256, "announced": now_iso()}
    host, port = parse_broker(broker)
    answered: dict[str, dict] = {}  # by device topic: a device that answers twice (or a replay) counts once
    arrived = threading.Condition()
    known = None if devices is None else {node_id(d) for d in devices}

    def on_message(client, userdata, message):
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            outcome, topic_device = json.loads(message.payload), message.topic.split("/")[-2]
            if outcome.get("announced") != announced["announced"]:
                return  # a device's outcome of an earlier announcement (retained)
            if not counts(outcome, topic_device):
                log.warning("an outcome on %s is not counted: it names another device, its device has answered "
                            "already, or it is not one of --devices", message.topic)
                return
            with arrived:
                answered[topic_device] = outcome
                arrived.notify_all()
            if on_outcome is not None:
                on_outcome(outcome)

    def counts(outcome: dict, topic_device: str) -> bool:
        return (node_id(str(outcome.get("device"))) == topic_device and topic_device not in answered
                and (known is None or topic_device in known))

    client = new_client(f"digitlite-announce-{socket.gethostname()}-{time.monotonic_ns()}", settings, auth)
    client.on_message = on_message
    connect_checked(client, host, port, auth, settings)  # ConnectionError: unreachable, TLS, refused credentials
    try:
        client.subscribe(f"{check_topic(prefix)}/devices/+/update", qos=QOS)
        client.publish(announcement_topic(prefix), json.dumps(announced), qos=QOS, retain=True).wait_for_publish(
            timeout=settings.close_s)
        deadline = time.monotonic() + timeout_s
        with arrived:
            while len(answered) < expect and time.monotonic() < deadline:
                arrived.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()
    with arrived:
        return list(answered.values())
