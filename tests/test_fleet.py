"""Fleet updates over MQTT (issue 23.5), with a real Mosquitto and real processes: one command on the host serves
and announces a bundle; two devices that follow the fleet fetch, verify and canary it on their own corrections;
the one with no corrections activates it, the one whose corrections it reads worse refuses it, each says so on
its own topic, and a `digitlite run` on the activating device loads the new models without a restart. A second
announcement, of a bundle that reads the corrections as well, is activated by both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_support import MODELS, device_config, make_corrected_history, make_key, make_worse_bundle
from mqtt_support import Broker, free_port
from waiting import WAIT_S, wait_for

from edge_app.config import MODEL_STORE_ENV
from edge_app.fleet import FleetAgent, outcome_topic
from edge_app.runtime.bundle import pack_release
from edge_app.store.models import ModelStore

REPO = Path(__file__).resolve().parents[1]
PREFIX = "plant/fleet"


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    """The host's signing key; every device here trusts its .pub (`trusted`)."""
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(autouse=True)
def trusted(key, tmp_path, monkeypatch) -> Path:
    config = device_config(tmp_path / "device.toml", key)
    monkeypatch.setenv("DIGITLITE_CONFIG", str(config))
    return config


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    yield broker
    broker.stop()


def device_env(store: Path) -> dict:
    return {**os.environ, MODEL_STORE_ENV: str(store), "PYTHONUNBUFFERED": "1"}


def start_follower(broker, name: str, store: Path, history: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "digitlite", "models", "follow", "--broker", broker.address, "--prefix", PREFIX,
         "--device", name, "--history", str(history), "--max-updates", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=device_env(store), cwd=REPO)
    wait_for(lambda: "following" in (process.stdout.readline() or "") or process.poll() is not None,
             f"{name} to follow the fleet")
    assert process.poll() is None, process.stderr.read()
    return process


@pytest.mark.slow
def test_one_command_on_the_host_updates_one_device_and_is_refused_by_the_other(broker, tmp_path, mnist_dir, key):
    bundle = make_worse_bundle(tmp_path, key=key)
    good = pack_release(MODELS, tmp_path / "good.bundle", "good", sign=key)
    fresh_store, careful_store = tmp_path / "fresh-store", tmp_path / "careful-store"
    careful_history = make_corrected_history(tmp_path / "careful.db")
    # The fresh device runs its live loop meanwhile: it must pick up the bundle its follower activates.
    port = free_port()
    run = subprocess.Popen(
        [sys.executable, "-m", "digitlite", "run", "--source", "synthetic", "--headless", "--max-fps", "5",
         "--history", str(tmp_path / "fresh-run.db"), "--web", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=device_env(fresh_store), cwd=REPO)
    wait_for(lambda: _live_fps(port) or run.poll() is not None, "the live loop to run")  # its page says so
    assert run.poll() is None, _stderr_so_far(run, tmp_path)
    followers = [start_follower(broker, "fresh", fresh_store, tmp_path / "fresh.db"),
                 start_follower(broker, "careful", careful_store, careful_history)]
    try:
        host = subprocess.run(
            [sys.executable, "-m", "digitlite", "models", "announce", str(bundle), "--broker", broker.address,
             "--prefix", PREFIX, "--serve", "127.0.0.1:0", "--devices", "fresh,careful", "--timeout", str(WAIT_S * 2)],
            capture_output=True, text=True, cwd=REPO, timeout=WAIT_S * 3)
        assert host.returncode == 0, host.stdout + host.stderr
        assert "fresh: activated (no corrected examples on this device yet" in host.stdout
        assert "careful: refused (the new bundle reads this device's corrections worse" in host.stdout
        assert "2 device(s) answered: 1 activated, 1 refused" in host.stdout or \
            "2 device(s) answered: 1 refused, 1 activated" in host.stdout
        wait_for(lambda: "(None -> worse): loading them" in _stderr_so_far(run, tmp_path),
                 "the live loop to load the activated bundle")
        assert ModelStore(fresh_store).pointer()["version"] == "worse"
        assert ModelStore(careful_store).pointer()["version"] is None  # still the packaged models
        careful = ModelStore(careful_store).last_update()
        assert careful["outcome"] == "refused" and "frames 0/6" in careful["reason"]
        assert ModelStore(careful_store).installed() == []  # refused: removed again, it takes no room

        second = subprocess.run(
            [sys.executable, "-m", "digitlite", "models", "announce", str(tmp_path / "good.bundle"), "--broker",
             broker.address, "--prefix", PREFIX, "--serve", "127.0.0.1:0", "--devices", "fresh,careful",
             "--timeout", str(WAIT_S * 2)], capture_output=True, text=True, cwd=REPO, timeout=WAIT_S * 3)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "2 device(s) answered: 2 activated" in second.stdout
        assert "careful: activated (the new bundle reads this device's corrections as well or better" in second.stdout
        for process in followers:
            assert process.wait(WAIT_S) == 0
        outcomes = {json.loads(p.stdout.read().strip().splitlines()[-1])["device"]: p for p in followers}
        assert set(outcomes) == {"fresh", "careful"}
    finally:
        for process in followers:
            if process.poll() is None:
                process.kill()

    assert {ModelStore(s).pointer()["version"] for s in (fresh_store, careful_store)} == {good.version}
    assert ModelStore(fresh_store).pointer()["previous"] == ["worse"]  # `digitlite models rollback` goes there
    # The running loop on the fresh device loads each activated bundle between frames, without a restart.
    try:
        wait_for(lambda: "(worse -> good): loading them" in _stderr_so_far(run, tmp_path),
                 "the live loop to load the second bundle")
        assert run.poll() is None, "the live loop runs on through both updates"
    finally:
        run.terminate()
        run.wait(WAIT_S)


def _live_fps(port: int) -> float | None:
    """The live loop's frame rate from its web page's /api/health (None until it runs)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
            return json.loads(response.read()).get("fps")
    except OSError:
        return None


def _stderr_so_far(process: subprocess.Popen, tmp_path: Path) -> str:
    """What the live loop has logged so far (read without blocking: the pipe is drained into a file)."""
    import fcntl

    fd = process.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    log = tmp_path / "run.log"
    try:
        chunk = process.stderr.read() or ""
    except (BlockingIOError, TypeError):
        chunk = ""
    with open(log, "a") as f:
        f.write(chunk)
    return log.read_text()


def test_a_device_says_why_it_could_not_take_an_announced_bundle(broker, tmp_path, monkeypatch):
    """A bad announcement, an unreachable URL and a bundle whose sha256 differs: each an outcome, nothing active."""
    monkeypatch.setenv(MODEL_STORE_ENV, str(tmp_path / "store"))
    agent = FleetAgent(broker.address, "desk", PREFIX, ModelStore(), tmp_path / "none.db")
    assert agent.handle(b"") is None  # a cleared retained announcement
    assert agent.handle(b"{not json")["outcome"] == "failed"
    gone = agent.handle(json.dumps({"version": "v9", "url": "http://127.0.0.1:9/v9.bundle",
                                    "sha256": "0" * 64, "announced": "t"}).encode())
    assert gone["outcome"] == "failed" and "cannot download" in gone["reason"] and gone["announced"] == "t"
    assert "127.0.0.1" not in gone["reason"]  # the published outcome names no internal address
    assert ModelStore().pointer()["version"] is None
    assert ModelStore().last_update()["outcome"] == "failed"
    assert outcome_topic(PREFIX, "desk 2") == "plant/fleet/devices/desk_2/update"


def test_a_download_is_bounded_in_bytes_and_in_time(tmp_path, monkeypatch):
    """A server that sends too much, or trickles its bytes, is cut off with a clear error; nothing is installed."""
    import http.server
    import threading
    import time

    from edge_app.config import BundleLimits
    from edge_app.runtime.bundle import BundleError

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            if self.path.startswith("/big"):
                self.wfile.write(b"x" * 5000)
            else:
                for _ in range(50):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        store = ModelStore(tmp_path / "store", BundleLimits(max_bytes=1000, download_total_s=0.5))
        with pytest.raises(BundleError, match="more than 1,000 bytes"):
            store.fetch(f"{base}/big.bundle", "0" * 64)
        with pytest.raises(BundleError, match="took more than 0.5 s"):
            store.fetch(f"{base}/slow.bundle", "0" * 64)
        assert not (tmp_path / "store").exists()
    finally:
        server.shutdown()
        server.server_close()
