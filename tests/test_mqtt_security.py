"""Issue 32, MQTT with credentials and TLS: a device publishes its readings and Home Assistant discovery to a real
Mosquitto that refuses anonymous clients (a password file, as Home Assistant's Mosquitto add-on does) over TLS
with a CA the test makes; wrong credentials are one clear error while the readings wait in the outbox; fleet
updates connect the same way; `digitlite doctor` says whether the broker accepts the device. The credentials
come from the configuration file or the environment, never from the command line (`ps` shows it).

    .venv/bin/pytest tests/test_mqtt_security.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mqtt_support import SecureBroker
from waiting import WAIT_S, wait_for

from edge_app import config as settings
from edge_app import doctor
from edge_app.config import ConfigError, MqttAuth, load_mqtt_auth, parse_run_config
from edge_app.store.history import ReadingStore

REPO = Path(__file__).resolve().parents[1]
GOLDEN_SCENES = str(REPO / "tests" / "data" / "golden" / "scene_0*.jpg")
USERS = {"meter": "s3cret-meter", "homeassistant": "s3cret-ha"}


@pytest.fixture
def broker(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = SecureBroker(folder, USERS)
    yield broker
    broker.stop()


@pytest.fixture(autouse=True)
def _no_credentials_from_outside(monkeypatch):
    """Only what a test gives: no $DIGITLITE_MQTT_* and no /etc/digitlite.toml of this machine."""
    for name in settings.MQTT_AUTH_ENV.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(settings.CONFIG_ENV, raising=False)
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", Path("/nonexistent/digitlite.toml"))


def device_config(folder: Path, broker: SecureBroker, password: str = USERS["meter"], **extra: str) -> Path:
    """A device's configuration file: the TLS port, user "meter", the test CA; `extra` adds [mqtt] keys."""
    lines = [f'broker = "{broker.tls_address}"', 'topic = "meters/water"', 'device_name = "water meter"',
             'username = "meter"', f'password = "{password}"', f'ca_file = "{broker.pki["ca"]}"',
             *(f'{key} = "{value}"' for key, value in extra.items())]
    path = folder / "digitlite.toml"
    path.write_text('source = "synthetic"\n[mqtt]\n' + "\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


class Listener:
    """Home Assistant's side: a client with its own login on the broker, keeping every message it gets."""

    def __init__(self, broker: SecureBroker, *filters: str):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.username_pw_set("homeassistant", USERS["homeassistant"])
        self.client.tls_set(ca_certs=str(broker.pki["ca"]))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", broker.tls_port)
        self.client.subscribe([(f, 1) for f in filters])
        self.client.loop_start()
        assert subscribed.wait(WAIT_S), "the test's Home Assistant client could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def on(self, prefix: str) -> dict[str, bytes]:
        with self._lock:
            return {t: p for t, p in self.messages if t.startswith(prefix)}

    def readings(self, topic: str) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_device(config: Path, history: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlite", "run", "--config", str(config), "--source", GOLDEN_SCENES,
                           "--headless", "--stable-frames", "1", "--history", str(history)],
                          cwd=REPO, capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------------------------------------- the device


def test_a_device_publishes_readings_and_discovery_over_tls_to_a_broker_that_needs_a_password(broker, tmp_path):
    seen = Listener(broker, "meters/water", "homeassistant/#")
    result = run_device(device_config(tmp_path, broker), tmp_path / "readings.db")
    assert result.returncode == 0, result.stderr
    stored = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert stored, result.stdout

    readings = wait_for(lambda: len(seen.readings("meters/water")) >= len(stored) and seen.readings("meters/water"),
                        "every reading at the broker")
    configs = wait_for(lambda: len(seen.on("homeassistant/")) == 4 and seen.on("homeassistant/"),
                       "the four Home Assistant discovery configs")
    seen.close()
    assert [r["text"] for r in readings[:len(stored)]] == [line["text"] for line in stored]
    assert {json.loads(p)["state_topic"] for p in configs.values()} <= {"meters/water/state", "meters/water/model"}
    # The broker saw user "meter" on its TLS port, and refused no one.
    log = broker.log()
    assert f"on port {broker.tls_port}" in log and "u'meter'" in log, log
    assert "not authorised" not in log, log
    assert ReadingStore(tmp_path / "readings.db").outbox_size() == 0, "every reading acknowledged"


def test_wrong_credentials_are_one_clear_error_and_the_readings_wait_in_the_outbox(broker, tmp_path):
    # The environment wins over the file: a wrong $DIGITLITE_MQTT_PASSWORD is the one used.
    result = run_device(device_config(tmp_path, broker), tmp_path / "readings.db",
                        env={"DIGITLITE_MQTT_PASSWORD": "n0t-the-password"})
    assert result.returncode == 0, result.stderr  # the device keeps reading
    refusals = [line for line in result.stderr.splitlines() if "refused the device's credentials" in line]
    assert len(refusals) == 1, result.stderr  # said once, not at every retry
    assert "user 'meter'" in refusals[0] and "DIGITLITE_MQTT_PASSWORD" in refusals[0] and "[mqtt]" in refusals[0]
    assert "n0t-the-password" not in result.stderr and USERS["meter"] not in result.stderr, "never a password"
    stored = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert stored and ReadingStore(tmp_path / "readings.db").outbox_size() == len(stored)
    assert "not authorised" in broker.log()


def test_a_broker_whose_certificate_the_device_does_not_trust_is_a_tls_error(broker, tmp_path):
    config = device_config(tmp_path, broker)
    config.write_text(config.read_text().replace(str(broker.pki["ca"]), str(broker.pki["other_ca"])))
    result = run_device(config, tmp_path / "readings.db")
    assert result.returncode == 0, result.stderr
    assert "TLS with the MQTT broker" in result.stderr and "CERTIFICATE_VERIFY_FAILED" in result.stderr, result.stderr
    assert result.stderr.count("TLS with the MQTT broker") == 1, result.stderr


def test_fleet_updates_follow_with_the_same_credentials(broker, tmp_path):
    from edge_app.fleet import FleetAgent

    auth = load_mqtt_auth(device_config(tmp_path, broker, cert_file=broker.pki["client_cert"],
                                        key_file=broker.pki["client_key"]))
    agent = FleetAgent(f"127.0.0.1:{broker.cert_port}", "kitchen", auth=auth)  # TLS with a client certificate
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: "as digitlite-follow-kitchen" in broker.log(), "the follower connected")
    finally:
        agent.stop()
        thread.join(WAIT_S)
    log = broker.log()
    line = next(line for line in log.splitlines() if "as digitlite-follow-kitchen" in line)
    assert f"on port {broker.cert_port}" in log and "u'meter'" in line, log


# ---------------------------------------------------------------------------------------------- doctor


def mqtt_check(config: Path, monkeypatch=None, **env: str) -> doctor.Check:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    broker = settings.load_run_config(config)["mqtt"]
    return doctor.check_mqtt(broker, str(config))


def test_doctor_says_whether_the_broker_accepts_the_device(broker, tmp_path, monkeypatch, capsys):
    config = device_config(tmp_path, broker)
    checks = doctor.run_checks(config=str(config))
    check = next(c for c in checks if c.name == "mqtt")
    assert check.status == "ok" and "accepts this device" in check.detail and "user 'meter'" in check.detail

    refused = mqtt_check(config, monkeypatch, DIGITLITE_MQTT_PASSWORD="n0t-the-password")
    assert refused.status == "warn" and "refused the device's credentials" in refused.detail, refused
    assert "n0t-the-password" not in refused.detail
    monkeypatch.delenv("DIGITLITE_MQTT_PASSWORD")

    config.chmod(0o644)  # the password readable by every user of the device
    exposed = mqtt_check(config)
    assert exposed.status == "warn" and "every user can read it" in exposed.detail and "chmod 0640" in exposed.fix
    config.chmod(0o600)

    needs_cert = config.read_text().replace(broker.tls_address, f"127.0.0.1:{broker.cert_port}")
    config.write_text(needs_cert)
    without = mqtt_check(config)
    assert without.status == "warn" and "client certificate" in without.detail, without
    with_cert = mqtt_check(config, monkeypatch, DIGITLITE_MQTT_CERT_FILE=str(broker.pki["client_cert"]),
                           DIGITLITE_MQTT_KEY_FILE=str(broker.pki["client_key"]))
    assert with_cert.status == "ok", with_cert

    from edge_app.cli import doctor_main

    monkeypatch.setenv("DIGITLITE_MQTT_CA_FILE", str(tmp_path / "missing.pem"))
    assert doctor_main(["--config", str(config), "--json"]) == 1  # `digitlite run` would refuse it: a failure
    report = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert report["mqtt"]["status"] == "fail" and "missing.pem" in report["mqtt"]["detail"]


def test_doctor_gives_up_on_a_silent_broker_within_its_bound(tmp_path):
    import socket
    import time

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        check = doctor.check_mqtt(f"127.0.0.1:{silent.getsockname()[1]}", None)
    assert check.status == "warn" and "did not answer within" in check.detail, check
    assert time.monotonic() - started < settings.MqttSettings().check_s + 5


# ---------------------------------------------------------------------------------------------- where they come from


def test_credentials_come_from_the_file_or_the_environment_never_the_command_line(tmp_path, monkeypatch):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = tmp_path / "digitlite.toml"
    config.write_text('[mqtt]\nbroker = "ha.local:8883"\nusername = "meter"\npassword = "from-file"\n'
                      'ca_file = "ca.pem"\n')
    # The run options never hold them: `digitlite config` does not print the password.
    assert parse_run_config(config.read_text()) == {"mqtt": "ha.local:8883"}
    auth = load_mqtt_auth(config)
    assert (auth.username, auth.password, auth.ca_file, auth.uses_tls) == ("meter", "from-file", ca, True)
    assert "from-file" not in repr(auth) and "from-file" not in auth.describe()
    monkeypatch.setenv("DIGITLITE_MQTT_PASSWORD", "from-env")
    assert load_mqtt_auth(config).password == "from-env"

    from edge_app import cli

    parsers = [cli._run_parser(), cli._serve_parser()]
    words = ("user", "password", "cert", "ca-file", "key-file")
    flags = [flag for parser in parsers for action in parser._actions for flag in action.option_strings]
    assert not [flag for flag in flags if any(w in flag for w in words)], flags


@pytest.mark.parametrize("env, text, words", [
    ({"DIGITLITE_MQTT_PASSWORD": ""}, "", "$DIGITLITE_MQTT_PASSWORD is set but empty"),
    ({"DIGITLITE_MQTT_TLS": "maybe"}, "", "expected true or false"),
    ({}, 'password = "p"', "without a user name"),
    ({}, 'username = "u"\nkey_file = "k.pem"', "without cert_file"),
    ({}, 'username = "u"\nca_file = "missing.pem"', "missing.pem not found"),
    ({}, "password = 7", "'mqtt.password' must be a string"),
    ({}, 'pasword = "p"', "Did you mean 'mqtt.password'"),
])
def test_unusable_credentials_say_what_was_received_and_how_to_fix_it(tmp_path, monkeypatch, env, text, words):
    config = tmp_path / "digitlite.toml"
    config.write_text(f'[mqtt]\nbroker = "b"\n{text}\n')
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises((ConfigError, FileNotFoundError)) as error:
        load_mqtt_auth(config)
    assert words in str(error.value)


def test_run_refuses_unusable_credentials_before_it_starts(tmp_path):
    config = tmp_path / "digitlite.toml"
    config.write_text('[mqtt]\nbroker = "127.0.0.1:1"\nusername = "meter"\nca_file = "missing.pem"\n')
    result = subprocess.run([sys.executable, "-m", "digitlite", "run", "--config", str(config), "--source",
                             "synthetic", "--headless", "--max-frames", "1", "--history", str(tmp_path / "r.db")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "missing.pem not found" in result.stderr, result.stderr


def test_an_anonymous_default_changes_nothing():
    assert MqttAuth().describe() == "no user name (anonymous), without TLS" and not MqttAuth().uses_tls
