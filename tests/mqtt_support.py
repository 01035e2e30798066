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
        self.config.write_text(f"{user}{self.listeners()}persistence true\n"
                               f"persistence_location {folder}/\nlog_dest file {self.log_path}\n"
                               f"log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
        self.process: subprocess.Popen | None = None
        self.start()

    def listeners(self) -> str:
        """The configuration's listeners and who may connect: one plain port, anyone."""
        return f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"

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


# ---------------------------------------------------------------------------------------------- password and TLS


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and localhost and a client certificate, each signed by the CA
    (EC P-256, valid for a day), written as PEM files in `folder`: {"ca", "server_cert", "server_key",
    "client_cert", "client_key"}; and "other_ca", a CA that signed none of them."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool, usage=None, names=None):
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(stem: str, data: bytes) -> Path:
        path = folder / stem
        path.write_bytes(data)
        return path

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    files = {}
    for label in ("ca", "other_ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(f"digitlite test {label}", key, f"digitlite test {label}", key, ca=True)
        files[label] = write(f"{label}.pem", cert.public_bytes(serialization.Encoding.PEM))
        if label == "ca":
            ca_key = key
    for label, usage, names in (
            ("server", ExtendedKeyUsageOID.SERVER_AUTH,
             [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            ("client", ExtendedKeyUsageOID.CLIENT_AUTH, None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(f"digitlite test {label}", key, "digitlite test ca", ca_key, ca=False, usage=usage,
                           names=names)
        files[f"{label}_cert"] = write(f"{label}.pem", cert.public_bytes(serialization.Encoding.PEM))
        files[f"{label}_key"] = write(f"{label}.key", key_pem(key))
    return files


class SecureBroker(Broker):
    """Mosquitto as a careful installation runs it (Home Assistant's add-on among them): no anonymous clients, a
    password file, and TLS. `port`: plain MQTT with a password; `tls_port`: TLS with a password; `cert_port`: TLS
    that also requires a client certificate signed by the test CA (`pki`, made by `make_pki`)."""

    def __init__(self, folder: Path, users: dict[str, str]):
        passwd = shutil.which("mosquitto_passwd") or next(
            (p for p in ("/usr/bin/mosquitto_passwd",) if Path(p).exists()), None)
        if passwd is None:
            pytest.skip("Debian's mosquitto (mosquitto_passwd) is not installed (make system-deps installs it)")
        self.pki = make_pki(folder)
        self.password_file = folder / "passwd"
        for k, (user, password) in enumerate(users.items()):
            subprocess.run([passwd, "-b", *(["-c"] if k == 0 else []), str(self.password_file), user, password],
                           check=True, capture_output=True)
        self.password_file.chmod(0o600)
        self.tls_port, self.cert_port = free_port(), free_port()
        super().__init__(folder)

    def listeners(self) -> str:
        tls = (f"cafile {self.pki['ca']}\ncertfile {self.pki['server_cert']}\nkeyfile {self.pki['server_key']}\n")
        return (f"allow_anonymous false\npassword_file {self.password_file}\n"
                f"listener {self.port} 127.0.0.1\n"
                f"listener {self.tls_port} 127.0.0.1\n{tls}"
                f"listener {self.cert_port} 127.0.0.1\n{tls}require_certificate true\n")

    @property
    def tls_address(self) -> str:
        return f"127.0.0.1:{self.tls_port}"
