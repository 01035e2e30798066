"""A real Mosquitto broker a test can stop, restart and pause, and a subscriber that keeps its session across them.

Imported by the MQTT tests (pytest puts tests/ on sys.path); not a test module itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from waiting import WAIT_S, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """Debian's mosquitto on 127.0.0.1:<free port>, persistent (sessions and queued messages survive a restart,
    as on a real server), logging to a file in `folder`."""

    def __init__(self, folder: Path):
        binary = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
        if binary is None:
            pytest.skip("Debian's mosquitto is not installed (make system-deps installs it)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.log_path = folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"
        # As root, mosquitto drops to its own user, which cannot write into the test's private folder: stay root.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(f"{user}listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {folder}/\nlog_dest file {self.log_path}\n"
                               f"log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

        def accepting() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(accepting, f"mosquitto to listen on port {self.port}")

    def stop(self) -> None:
        """SIGTERM, as systemd stops it: mosquitto saves its sessions and queued messages, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            self.process.terminate()
            self.process.wait(WAIT_S)

    def pause(self) -> None:
        """SIGSTOP: the TCP connections stay open, nothing is acknowledged (a hung broker)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Subscriber:
    """A QoS 1 subscriber with a persistent session (clean_session=False), as a fleet's server runs one: what is
    published while it reconnects after a broker restart is queued for it by the broker."""

    def __init__(self, broker: Broker, topic: str, client_id: str = "digitlite-test-subscriber"):
        import paho.mqtt.client as mqtt

        self.client_id = client_id
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = lambda client, userdata, flags, rc, props: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S), "the test subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(json.loads(msg.payload))

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.messages)

    def ids(self) -> list[int]:
        """Reading ids in arrival order, duplicates removed (QoS 1 may deliver twice)."""
        return list(dict.fromkeys(m["id"] for m in self.received()))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
