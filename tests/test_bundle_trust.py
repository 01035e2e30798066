"""Only trusted models, a store that cannot be filled or bricked (issue 32): a device takes a bundle only when a key
its configuration trusts signed it, and from a fleet only a newer one, fetched over http(s); an attacker's bundle
(unsigned, signed by an unknown key, changed after signing, older, a sparse tar bomb, a local URL) changes nothing
and leaves nothing in the store; an active bundle that cannot load falls back loudly; the store keeps a few
bundles and checks the disk first; the announcer counts one outcome per known device, and the example broker ACL
keeps each device to its own topic; `models list` shows gate figures only from signed bundles.

    .venv/bin/python -m pytest -q tests/test_bundle_trust.py
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import tracemalloc
from pathlib import Path

import cv2
import pytest
from bundle_support import GOLDEN, MODELS, TRIO, device_config, make_key
from mqtt_support import Broker
from waiting import WAIT_S, wait_for

from edge_app.config import MODEL_STORE_ENV, BundleLimits, MqttAuth
from edge_app.fleet import BundleServer, FleetAgent, announce
from edge_app.runtime.bundle import BundleError, Trust, open_bundle, pack_release, read_sidecar, sha256_bytes
from edge_app.store.models import DownloadError, ModelStore

REPO = Path(__file__).resolve().parents[1]
PREFIX = "digitlite/fleet"
ACL = REPO / "edge_app" / "deploy" / "mosquitto-fleet.acl"


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    return make_key(tmp_path_factory.mktemp("key"), "release")


@pytest.fixture(scope="module")
def stranger(tmp_path_factory) -> Path:
    """A key no device here trusts."""
    return make_key(tmp_path_factory.mktemp("stranger"), "stranger")


@pytest.fixture(autouse=True)
def device(key, tmp_path, monkeypatch) -> Path:
    """This device: its own store, a configuration that trusts `key` only."""
    monkeypatch.setenv(MODEL_STORE_ENV, str(tmp_path / "store"))
    config = device_config(tmp_path / "device.toml", key)
    monkeypatch.setenv("DIGITLITE_CONFIG", str(config))
    return config


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def _write_bundle(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(f"{sha256_bytes(data)}  {path.name}\n")
    return path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, key, stranger) -> Path:
    """v1 and v2 (made after it), signed; `unsigned`; `stranger` (signed by an untrusted key); `tampered` (v2 with
    its version and gate figures changed after it was signed); `forged` (unsigned, claiming a perfect gate)."""
    out = tmp_path_factory.mktemp("bundles")
    for version in ("v1", "v2"):
        pack_release(MODELS, out / f"{version}.bundle", version, sign=key)
    pack_release(MODELS, out / "unsigned.bundle", "unsigned")
    pack_release(MODELS, out / "stranger.bundle", "stranger", sign=stranger)
    members = _members(out / "v2.bundle")
    info = json.loads(members["bundle.json"])
    info["version"] = "tampered"
    info["gate"]["recognizer"]["figures"]["exact"] = 1.0
    _write_bundle(out / "tampered.bundle", _tar({**members, "bundle.json": json.dumps(info).encode()}))
    members = _members(out / "unsigned.bundle")
    info = json.loads(members["bundle.json"])
    info["version"] = "forged"
    info["gate"]["recognizer"]["figures"]["exact"] = 1.0
    _write_bundle(out / "forged.bundle", _tar({**members, "bundle.json": json.dumps(info).encode()}))
    return out


def digitlite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlite", *args], capture_output=True, text=True,
                          env=dict(os.environ), cwd=REPO, timeout=300)


def stored(store: ModelStore) -> list[str]:
    """Every entry of the store's bundle folder, hidden ones included (a staging folder left would count)."""
    return sorted(p.name for p in store.bundles.iterdir()) if store.bundles.is_dir() else []


def announcement(server: BundleServer, path: Path, version: str) -> bytes:
    return json.dumps({"version": version, "url": server.url, "sha256": read_sidecar(path),
                       "announced": "2026-12-06T00:00:00+00:00"}).encode()


# ---------------------------------------------------------------------------------------------- 1: signatures


def test_a_bundle_no_trusted_key_signed_is_refused_and_leaves_nothing(bundles):
    for name, why in (("unsigned", "it is not signed"), ("stranger", "which this device does not trust"),
                      ("tampered", "changed after it was signed")):
        done = digitlite("models", "install", str(bundles / f"{name}.bundle"), "--activate")
        assert done.returncode == 2 and why in done.stderr, (name, done.stderr)
        assert "trusted_keys" in done.stderr  # says how to fix it
    store = ModelStore()
    assert stored(store) == [] and store.pointer()["version"] is None
    # The trusted key's bundle goes in; the listing names its signer.
    done = digitlite("models", "install", str(bundles / "v1.bundle"))
    assert done.returncode == 0 and "signed by release (" in done.stdout, done.stderr


def test_a_fleet_announcement_must_be_signed_and_newer_and_rollback_stays_local(bundles, tmp_path):
    store = ModelStore()
    for version in ("v1", "v2"):
        store.install(store.fetch(str(bundles / f"{version}.bundle")))
        store.activate(version)
    agent = FleetAgent("127.0.0.1:1", "desk", PREFIX, store, tmp_path / "none.db")
    for name, why in (("v1", "is not newer than the active bundle v2"), ("unsigned", "it is not signed"),
                      ("stranger", "which this device does not trust"), ("tampered", "changed after it was signed")):
        server = BundleServer(bundles / f"{name}.bundle")
        try:
            done = agent.handle(announcement(server, bundles / f"{name}.bundle", name))
        finally:
            server.close()
        assert done["outcome"] == "refused" and why in done["reason"], (name, done)
        assert stored(store) == ["v1", "v2"] and store.pointer()["version"] == "v2", name
    # The canary refuses too: a bundle taken in a lab (allow_unsigned) is not activated on a device that is not one.
    lab = ModelStore(trust=Trust((), allow_unsigned=True))
    lab.install(lab.fetch(str(bundles / "unsigned.bundle")))
    from edge_app.canary import update

    with pytest.raises(BundleError, match="it is not signed"):
        update(ModelStore(), "unsigned", tmp_path / "none.db", force=True)
    assert store.pointer()["version"] == "v2"
    # The user's own rollback on the device stays allowed: back to v1, older than v2.
    assert digitlite("models", "rollback").returncode == 0
    assert ModelStore().pointer()["version"] == "v1"


def test_a_lab_that_allows_unsigned_bundles_takes_them_loudly(bundles, caplog, tmp_path):
    lab = ModelStore(trust=Trust((), allow_unsigned=True))
    with caplog.at_level(logging.WARNING, logger="edge_app.runtime.bundle"):
        assert lab.install(lab.fetch(str(bundles / "unsigned.bundle")))
    assert "allow_unsigned = true" in caplog.text and "bundle unsigned is taken" in caplog.text
    config = device_config(tmp_path / "lab.toml", allow_unsigned=True)
    done = digitlite("models", "install", str(bundles / "stranger.bundle"), "--config", str(config))
    assert done.returncode == 0 and "signed by not trusted (key" in done.stdout, done.stderr
    assert "allow_unsigned" in done.stderr


# ---------------------------------------------------------------------------------------------- 3: tar bombs


@pytest.mark.parametrize("tar_format", ["gnu", "pax"])
def test_a_sparse_tar_bomb_is_refused_from_its_headers(bundles, tmp_path, tar_format):
    """A few KB of archive declaring a 100 MiB member (GNU tar --sparse): refused before any member is read."""
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    folder = tmp_path / "members"
    folder.mkdir()
    for name, content in _members(bundles / "v1.bundle").items():
        (folder / name).write_bytes(content)
    with open(folder / "golden-bomb.png", "wb") as f:  # a hole, then one byte: sparse on disk
        f.truncate(100 * 2**20)
        f.seek(100 * 2**20 - 1)
        f.write(b"x")
    bomb = tmp_path / "bomb.bundle"
    subprocess.run(["tar", "--sparse", f"--format={tar_format}", "-cf", str(bomb), "-C", str(folder),
                    "golden-bomb.png", *sorted(p.name for p in folder.iterdir() if p.name != "golden-bomb.png")],
                   check=True)
    assert bomb.stat().st_size < 2**20
    _write_bundle(bomb, bomb.read_bytes())
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match="sparse"):
            open_bundle(bomb.read_bytes(), read_sidecar(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak:,} bytes were allocated to refuse it"
    done = digitlite("models", "install", str(bomb), "--activate")
    assert done.returncode == 2 and "sparse" in done.stderr, done.stderr
    assert stored(ModelStore()) == []


def test_member_sizes_and_the_total_are_bounded_before_a_member_is_read(bundles):
    data = (bundles / "v1.bundle").read_bytes()
    digest = sha256_bytes(data)
    with pytest.raises(BundleError, match="would unpack to 243,336 bytes, more than 200,000"):
        open_bundle(data, digest, BundleLimits(max_member_bytes=200_000))
    with pytest.raises(BundleError, match="would unpack to more than 300,000 bytes"):
        open_bundle(data, digest, BundleLimits(max_unpacked_bytes=300_000))


# ---------------------------------------------------------------------------------------------- 4: URLs


def _handled_within(agent: FleetAgent, payload: bytes, seconds: float = 20.0) -> dict:
    """agent.handle(payload), which must return within `seconds` (a FIFO once blocked it for good)."""
    result = []
    worker = threading.Thread(target=lambda: result.append(agent.handle(payload)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"handling {payload!r} did not return within {seconds:g} s"
    return result[0]


def test_an_announced_url_is_fetched_only_over_http_and_errors_name_no_local_thing(tmp_path):
    import http.server

    fifo = tmp_path / "announced.fifo"
    os.mkfifo(fifo)

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "file:///dev/zero")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = ModelStore()
    agent = FleetAgent("127.0.0.1:1", "desk", PREFIX, store, tmp_path / "none.db")
    try:
        for url in (str(fifo), "/dev/zero", "file:///dev/zero", "ftp://127.0.0.1/b.bundle",
                    f"http://127.0.0.1:{server.server_port}/b.bundle", "http://127.0.0.1:9/b.bundle"):
            payload = json.dumps({"version": "v9", "url": url, "sha256": "0" * 64, "announced": "t"}).encode()
            done = _handled_within(agent, payload)
            assert done["outcome"] == "failed" and "cannot download" in done["reason"], (url, done)
            for secret in ("/dev/zero", str(tmp_path), "fifo", "127.0.0.1", str(server.server_port)):
                assert secret not in done["reason"], (url, done["reason"])
    finally:
        server.shutdown()
        server.server_close()
    assert stored(store) == [] and store.pointer()["version"] is None
    # `models install` of a local path takes a regular file only: a FIFO or a device is refused at once.
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(DownloadError, match="not a regular file"):
            store.fetch(str(path), "0" * 64)


# ---------------------------------------------------------------------------------------------- 5: fallback


@pytest.fixture(scope="module")
def broken(tmp_path_factory, key) -> Path:
    """A bundle whose every file checks (sha256, manifest, signature) but whose recognizer is the digit classifier:
    it cannot be loaded as a recognizer."""
    release = tmp_path_factory.mktemp("broken")
    for name in (*TRIO, "manifest.json"):
        shutil.copy(MODELS / name, release / name)
    shutil.copy(MODELS / TRIO[0], release / TRIO[2])
    manifest = json.loads((release / "manifest.json").read_text())
    manifest["models"][TRIO[2]]["sha256"] = sha256_bytes((release / TRIO[2]).read_bytes())
    (release / "manifest.json").write_text(json.dumps(manifest))
    pack_release(release, release / "broken.bundle", "broken", sign=key)
    return release / "broken.bundle"


def test_an_active_bundle_that_cannot_load_falls_back_loudly(bundles, broken, tmp_path, monkeypatch):
    from edge_app.wiring import make_reader

    store = ModelStore()
    for path in (bundles / "v1.bundle", broken):
        bundle = store.fetch(str(path))
        store.install(bundle)
        store.activate(bundle.version)  # the canary skipped, as `--force` does
    reader = make_reader()
    assert reader.bundle == "v1" and "bundle broken cannot be loaded" in reader.fallback
    assert reader.read(cv2.imread(str(GOLDEN / "scene_02.jpg"))).text == "499684"
    done = digitlite("read", str(GOLDEN / "scene_02.jpg"), "--json")  # exited 2 before
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1])["text"] == "499684", done.stderr
    assert "bundle broken cannot be loaded" in done.stderr and "using bundle v1" in done.stderr

    pytest.importorskip("fastapi")
    from web_support import make_state, request, running_server

    with running_server(make_state(reader.classifier, reader=reader)) as server:
        health = request(server, "GET", "/api/health").json()
    assert health["status"] == "degraded"
    assert health["models"]["bundle"] == "broken" and health["models"]["loaded"] == "v1"
    assert "cannot be loaded" in health["models"]["fallback"]
    assert health["models"]["signer"]["name"] == "release"

    # With no bundle before it: the packaged models.
    monkeypatch.setenv(MODEL_STORE_ENV, str(tmp_path / "second-store"))
    alone = ModelStore()
    alone.install(alone.fetch(str(broken)))
    alone.activate("broken")
    reader = make_reader()
    assert reader.bundle is None and reader.fallback.endswith("using the packaged models")


# ---------------------------------------------------------------------------------------------- 6: pruning


def test_the_store_keeps_a_few_bundles_and_checks_the_disk_first(bundles, key, tmp_path):
    for k in range(1, 6):
        pack_release(MODELS, tmp_path / f"p{k}.bundle", f"p{k}", sign=key)
    store = ModelStore(limits=BundleLimits(keep_bundles=3))
    for k in range(1, 6):
        store.install(store.fetch(str(tmp_path / f"p{k}.bundle")))
        if k <= 2:
            store.activate(f"p{k}")
    # Kept: the active p2, the newest p5, p1 to roll back to; p3 and p4 removed, nothing half-removed left.
    assert stored(store) == ["p1", "p2", "p5"]
    assert store.rollback()["version"] == "p1"
    # A bundle that was refused is removed; the active one never is.
    assert store.discard("p5") is True and store.discard("p1") is False
    assert stored(store) == ["p1", "p2"]
    # The disk is checked before anything is written.
    full = ModelStore(limits=BundleLimits(min_free_bytes=2**62))
    with pytest.raises(BundleError, match="bytes free"):
        full.install(full.fetch(str(bundles / "v1.bundle")))
    assert stored(store) == ["p1", "p2"]


# ---------------------------------------------------------------------------------------------- 8: outcomes


class Spoofer:
    """A client on the broker that answers every announcement with outcomes it has no right to give (an unknown
    device's, another device's name on kitchen's topic), then with kitchen's, twice; each says who sent it."""

    def __init__(self, broker: Broker, auth: tuple[str, str] | None = None, real: str = "kitchen"):
        import paho.mqtt.client as mqtt

        self.real, self.sender = real, auth[0] if auth else "anonymous"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"spoofer-{self.sender}")
        if auth:
            self.client.username_pw_set(*auth)
        subscribed = threading.Event()
        self.client.on_connect = lambda client, *args: client.subscribe(f"{PREFIX}/bundle", qos=1)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._answer
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S)

    def _answer(self, client, userdata, message) -> None:
        if not message.payload:
            return
        announced = json.loads(message.payload)["announced"]

        def outcome(device: str, topic_device: str) -> None:
            body = {"device": device, "version": "v1", "outcome": "activated", "reason": f"from {self.sender}",
                    "announced": announced}
            client.publish(f"{PREFIX}/devices/{topic_device}/update", json.dumps(body), qos=1)

        outcome("mallory", "mallory")  # a device the announcer does not know
        outcome("hall", self.real)  # another device's name on this topic
        outcome(self.real, self.real)
        outcome(self.real, self.real)  # the same device again

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_announce_counts_one_outcome_per_known_device_from_its_own_topic(bundles, tmp_path):
    broker = Broker(tmp_path)
    spoofer = Spoofer(broker)
    try:
        outcomes = announce(bundles / "v1.bundle", "http://host/v1.bundle", broker.address, PREFIX, expect=2,
                            timeout_s=4, devices=["kitchen", "hall"])
    finally:
        spoofer.close()
        broker.stop()
    assert [o["device"] for o in outcomes] == ["kitchen"]


class AclBroker(Broker):
    """Mosquitto with a password file and the example fleet ACL (edge_app/deploy/mosquitto-fleet.acl)."""

    def __init__(self, folder: Path, users: dict[str, str]):
        passwd = shutil.which("mosquitto_passwd")
        if passwd is None:
            pytest.skip("Debian's mosquitto (mosquitto_passwd) is not installed (make system-deps installs it)")
        self.password_file = folder / "passwd"
        for k, (user, password) in enumerate(users.items()):
            subprocess.run([passwd, "-b", *(["-c"] if k == 0 else []), str(self.password_file), user, password],
                           check=True, capture_output=True)
        super().__init__(folder)

    def listeners(self) -> str:
        return (f"allow_anonymous false\npassword_file {self.password_file}\nacl_file {ACL}\n"
                f"listener {self.port} 127.0.0.1\n")


def test_the_example_acl_keeps_each_device_to_its_own_topic(bundles, tmp_path):
    """With the example ACL, a device's account writes only its own outcome: mallory's outcome on kitchen's topic
    and its fake announcement never arrive, kitchen's does; `announce` counts kitchen's own, once."""
    import paho.mqtt.client as mqtt

    users = {"digitlite-host": "host-pw", "kitchen": "kitchen-pw", "mallory": "mallory-pw"}
    broker = AclBroker(tmp_path, users)
    seen: list[tuple[str, bytes]] = []

    def client(user: str, *subscriptions: str):
        made = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"plain-{user}")
        made.username_pw_set(user, users[user])
        ready = threading.Event()

        def on_connect(c, *args):
            for topic in subscriptions:
                c.subscribe(topic, qos=1)
            if not subscriptions:
                ready.set()

        made.on_connect = on_connect
        made.on_subscribe = lambda *args: ready.set()
        made.on_message = lambda c, userdata, message: seen.append((message.topic, message.payload))
        made.connect("127.0.0.1", broker.port)
        made.loop_start()
        assert ready.wait(WAIT_S), f"{user} could not connect and subscribe"
        return made

    host = client("digitlite-host", f"{PREFIX}/devices/+/update")
    kitchen, mallory = client("kitchen", f"{PREFIX}/bundle"), client("mallory")
    try:
        for topic, body in ((f"{PREFIX}/devices/kitchen/update", b'{"reason": "from mallory"}'),
                            (f"{PREFIX}/bundle", b'{"version": "evil"}')):
            mallory.publish(topic, body, qos=1, retain=True).wait_for_publish(WAIT_S)
        kitchen.publish(f"{PREFIX}/devices/kitchen/update", b'{"reason": "sentinel"}', qos=1).wait_for_publish(WAIT_S)
        wait_for(lambda: any(b"sentinel" in body for _, body in seen), "kitchen's own outcome to arrive")
        assert not any(b"mallory" in body or b"evil" in body for _, body in seen), seen

        real, fake = Spoofer(broker, ("kitchen", users["kitchen"])), Spoofer(broker, ("mallory", users["mallory"]))
        try:
            outcomes = announce(bundles / "v1.bundle", "http://host/v1.bundle", broker.address, PREFIX, expect=1,
                                timeout_s=WAIT_S, devices=["kitchen"],
                                auth=MqttAuth(username="digitlite-host", password=users["digitlite-host"]))
        finally:
            real.close()
            fake.close()
    finally:
        for made in (host, kitchen, mallory):
            made.loop_stop()
            made.disconnect()
        broker.stop()
    assert [(o["device"], o["reason"]) for o in outcomes] == [("kitchen", "from kitchen")]


# ---------------------------------------------------------------------------------------------- 10: gate figures


def test_list_shows_gate_figures_only_from_signed_bundles(bundles, tmp_path):
    lab = ModelStore(trust=Trust((), allow_unsigned=True))
    for name in ("v1", "forged"):
        lab.install(lab.fetch(str(bundles / f"{name}.bundle")))
    listed = json.loads(digitlite("models", "list", "--json").stdout)["bundles"]
    by_version = {b["version"]: b for b in listed}
    assert by_version["v1"]["signer"]["name"] == "release" and by_version["v1"]["gate"]["recognizer"]["figures"]
    assert by_version["forged"]["signer"]["describe"] == "unsigned" and by_version["forged"]["gate"] is None
    text = digitlite("models", "list").stdout
    forged_line = next(line for line in text.splitlines() if "forged" in line)
    assert "100.0%" not in forged_line and "gate figures not shown" in forged_line, text
    assert "signed by release (" in next(line for line in text.splitlines() if " v1 " in line)
    # A key the device no longer trusts: its figures are not shown either.
    config = device_config(tmp_path / "other.toml")
    listed = json.loads(digitlite("models", "list", "--json", "--config", str(config)).stdout)["bundles"]
    assert all(b["gate"] is None for b in listed)


# ---------------------------------------------------------------------------------------------- the configuration


def test_the_trusted_keys_are_checked_where_they_are_read(bundles, tmp_path):
    from edge_app.config import ConfigError, parse_run_config, parse_trust

    with pytest.raises(ConfigError, match="Did you mean 'trusted_keys'"):
        parse_run_config('[models]\ntrusted_key = ["k.pub"]\n')  # `run` checks the table too
    with pytest.raises(ConfigError, match="must be a list of key files or keys"):
        parse_trust({"trusted_keys": "k.pub"})
    with pytest.raises(ConfigError, match="must be true or false"):
        parse_trust({"allow_unsigned": "yes"})
    missing = tmp_path / "missing.toml"
    missing.write_text('[models]\ntrusted_keys = ["absent.key.pub"]\n')
    done = digitlite("models", "install", str(bundles / "v1.bundle"), "--config", str(missing))
    assert done.returncode == 2 and "absent.key.pub cannot be read" in done.stderr, done.stderr
    assert stored(ModelStore()) == []
