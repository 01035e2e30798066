"""Model bundles on a device (issue 23): a bundle is one file with a sha256; a device installs it beside the others,
never over one, activates it atomically after a canary on its own corrected examples, rolls back, and always
starts with a complete, verified model, even when an install or an activation is killed at any step. The live
loop swaps in the activated reader between frames."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from bundle_support import (
    GOLDEN,
    MODELS,
    TRIO,
    device_config,
    make_corrected_history,
    make_key,
    make_worse_bundle,
)

from edge_app.config import MODEL_STORE_ENV, BundleLimits, LoopSettings
from edge_app.runtime.bundle import BundleError, open_bundle, pack_release, read_sidecar, sha256_bytes
from edge_app.store.history import ReadingStore
from edge_app.store.models import ModelStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    """The release's signing key (its .pub beside it), which the device trusts (`trusted`)."""
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(autouse=True)
def trusted(key, tmp_path, monkeypatch) -> Path:
    config = device_config(tmp_path / "device.toml", key)
    monkeypatch.setenv("DIGITLITE_CONFIG", str(config))
    return config


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, key) -> Path:
    """v1 and v2: the released int8 models as two signed bundles (same files, two versions, v2 made after v1)."""
    out = tmp_path_factory.mktemp("bundles")
    for version in ("v1", "v2"):
        pack_release(MODELS, out / f"{version}.bundle", version, sign=key)
    return out


@pytest.fixture
def store(tmp_path, monkeypatch) -> ModelStore:
    monkeypatch.setenv(MODEL_STORE_ENV, str(tmp_path / "store"))
    return ModelStore()


def digitlite(*args: str, env_store: Path, check: bool = False) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, MODEL_STORE_ENV: str(env_store)}
    return subprocess.run([sys.executable, "-m", "digitlite", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, check=check, timeout=300)


# ---------------------------------------------------------------------------------------------- the file


def test_a_bundle_carries_the_three_models_their_manifest_and_gate_figures(bundles):
    data = (bundles / "v1.bundle").read_bytes()
    digest = read_sidecar(bundles / "v1.bundle")
    assert digest == sha256_bytes(data)
    bundle = open_bundle(data, digest)
    assert bundle.version == "v1"
    assert set(bundle.files) == {*TRIO, "manifest.json", "signature.json"}
    for name in TRIO:
        assert bundle.files[name] == (MODELS / name).read_bytes()
    assert bundle.info["roles"] == {"model": TRIO[0], "regions": TRIO[1], "recognizer": TRIO[2]}
    released = json.loads((MODELS / "manifest.json").read_text())["models"]
    assert bundle.info["gate"]["recognizer"]["figures"] == released[TRIO[2]]["figures"]
    assert bundle.info["gate"]["model"]["accuracy"]["overall"] == released[TRIO[0]]["accuracy"]["overall"]


def _tar(members: dict[str, bytes], kinds: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            if kinds and name in kinds:
                info.type, info.size, info.linkname = kinds[name], 0, "/etc/passwd"
                tar.addfile(info)
            else:
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_a_bundle_that_is_not_what_it_says_is_refused_before_anything_is_written(bundles, store):
    data = (bundles / "v1.bundle").read_bytes()
    digest = sha256_bytes(data)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    with pytest.raises(BundleError, match="corrupt, truncated or another one"):
        open_bundle(bytes(flipped), digest)
    with pytest.raises(BundleError, match="corrupt, truncated"):
        open_bundle(data[: len(data) // 2], digest)
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(data))}
    originals = {name: tarfile.open(fileobj=io.BytesIO(data)).extractfile(name).read() for name in members}
    hostile = {
        "a path": _tar({**originals, "../evil.tflite": b"x"}),
        "a link": _tar({**originals, "link": b""}, {"link": tarfile.SYMTYPE}),
        "a member too many": _tar({**originals, **{f"extra{i}": b"x" for i in range(20)}}),
        "a model changed inside": _tar({**originals, TRIO[2]: originals[TRIO[0]]}),
        "not a tar at all": b"\x00" * 2048 + b"garbage",
    }
    for case, content in hostile.items():
        with pytest.raises(BundleError):
            open_bundle(content, sha256_bytes(content))
            pytest.fail(f"{case} was accepted")
    with pytest.raises(BundleError, match="more than"):
        open_bundle(data, digest, BundleLimits(max_bytes=1000))
    assert not store.root.exists()


def test_install_needs_the_sha256_and_says_where_to_find_it(bundles, store, tmp_path):
    lone = tmp_path / "lone.bundle"
    shutil.copy(bundles / "v1.bundle", lone)
    with pytest.raises(BundleError, match="pass --sha256"):
        store.fetch(str(lone))
    with pytest.raises(BundleError, match="not the 000000000000"):
        store.fetch(str(lone), "0" * 64)
    assert store.fetch(str(lone), read_sidecar(bundles / "v1.bundle")).version == "v1"


def test_install_puts_a_bundle_beside_the_others_and_never_over_one(bundles, store, tmp_path, key):
    assert store.install(store.fetch(str(bundles / "v1.bundle"))) is True
    assert store.install(store.fetch(str(bundles / "v1.bundle"))) is False  # the same files: nothing to do
    assert store.install(store.fetch(str(bundles / "v2.bundle"))) is True
    assert [b["version"] for b in store.installed()] == ["v1", "v2"]
    assert all(not b["active"] for b in store.installed())
    # Another bundle that calls itself v1 is refused; the installed v1 is untouched.
    release = tmp_path / "other"
    release.mkdir()
    for name in (*TRIO, "manifest.json"):
        shutil.copy(MODELS / name, release / name)
    manifest = json.loads((release / "manifest.json").read_text())
    manifest["models"][TRIO[0]]["accuracy"]["overall"] = 0.5  # different figures, so a different bundle.json
    (release / "manifest.json").write_text(json.dumps(manifest))
    pack_release(release, tmp_path / "fake-v1.bundle", "v1", sign=key)
    with pytest.raises(BundleError, match="never written over"):
        store.install(store.fetch(str(tmp_path / "fake-v1.bundle")))
    assert store.paths("v1")["recognizer"].read_bytes() == (MODELS / TRIO[2]).read_bytes()


def test_activate_and_rollback_switch_what_the_reader_loads(bundles, store):
    from edge_app.config import ReaderOptions
    from edge_app.runtime import DEFAULT_RECOGNIZER
    from edge_app.wiring import model_paths

    for version in ("v1", "v2"):
        store.install(store.fetch(str(bundles / f"{version}.bundle")))
    assert model_paths(ReaderOptions())["recognizer"] == DEFAULT_RECOGNIZER  # nothing active: the packaged one
    store.activate("v1")
    store.activate("v2")
    assert model_paths(ReaderOptions())["recognizer"] == store.bundles / "v2" / TRIO[2]
    assert model_paths(ReaderOptions(recognizer="mine.tflite"))["recognizer"] == Path("mine.tflite")
    assert store.rollback()["version"] == "v1"
    assert model_paths(ReaderOptions())["regions"] == store.bundles / "v1" / TRIO[1]
    assert store.rollback()["version"] is None
    assert model_paths(ReaderOptions())["recognizer"] == DEFAULT_RECOGNIZER
    with pytest.raises(BundleError, match="nothing to roll back"):
        store.rollback()


def test_a_damaged_active_bundle_falls_back_to_the_one_before(bundles, store):
    for version in ("v1", "v2"):
        store.install(store.fetch(str(bundles / f"{version}.bundle")))
        store.activate(version)
    target = store.bundles / "v2" / TRIO[2]
    target.write_bytes(target.read_bytes()[:1000])  # a truncated file (a bad SD card)
    assert store.active_paths() == ("v1", store.paths("v1"))
    (store.root / "active.json").write_text("{not json")
    assert store.active_paths() == (None, None)  # the packaged models


# ---------------------------------------------------------------------------------------------- kill -9

KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from edge_app.store.models import ModelStore
    bundle_path, kill_at = sys.argv[1], int(sys.argv[2])
    steps = []
    def step(name):
        steps.append(name)
        if len(steps) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    store = ModelStore()
    store.install(store.fetch(bundle_path), step)
    store.activate("v2", step)
    print(len(steps))
    """
)


STEPS = 9  # five files written (three models, the manifest, the signature), staged, installed, pointer written,
#           activated


@pytest.mark.parametrize("kill_at", range(1, STEPS + 2))
def test_a_device_killed_at_any_step_of_an_install_starts_with_a_complete_verified_model(bundles, kill_at, tmp_path,
                                                                                         monkeypatch):
    """v1 is active; installing and activating v2 is killed (SIGKILL) at step `kill_at` (STEPS + 1: not killed).
    The next start finds v1 until the pointer's rename, v2 from then on, each complete and verified."""
    import os

    from edge_app.wiring import make_reader

    root = tmp_path / "store"
    monkeypatch.setenv(MODEL_STORE_ENV, str(root))
    first = ModelStore(root)
    first.install(first.fetch(str(bundles / "v1.bundle")))
    first.activate("v1")
    done = subprocess.run([sys.executable, "-c", KILLED, str(bundles / "v2.bundle"), str(kill_at)],
                          capture_output=True, text=True, env=dict(os.environ), cwd=REPO, timeout=120)
    if kill_at > STEPS:
        assert done.returncode == 0 and int(done.stdout.split()[-1]) == STEPS, done.stderr
    else:
        assert done.returncode == -signal.SIGKILL, done.stderr

    store = ModelStore(root)
    version, paths = store.active_paths()
    assert version == ("v2" if kill_at >= STEPS else "v1")
    reader = make_reader()  # what `digitlite run` loads at the next start
    assert reader.recognizer.path == paths["recognizer"]
    assert reader.read(cv2.imread(str(GOLDEN / "scene_02.jpg"))).text == "499684"
    store.remove_leftovers()
    assert not list(root.rglob(".staging-*")) and not list(root.glob(".active.json.*"))
    if kill_at > 7:  # v2 was installed whole before the kill: installing it again changes nothing
        assert store.install(store.fetch(str(bundles / "v2.bundle"))) is False


# ---------------------------------------------------------------------------------------------- the canary


@pytest.fixture(scope="module")
def worse_bundle(tmp_path_factory, key) -> Path:
    return make_worse_bundle(tmp_path_factory.mktemp("worse"), key=key)


@pytest.fixture(scope="module")
def corrected_history(tmp_path_factory) -> Path:
    return make_corrected_history(tmp_path_factory.mktemp("history") / "readings.db")


@pytest.mark.slow
def test_the_canary_refuses_a_bundle_that_reads_the_devices_corrections_worse(
        bundles, worse_bundle, corrected_history, tmp_path):
    store = tmp_path / "store"
    refused = digitlite("models", "install", str(worse_bundle), "--activate", "--history", str(corrected_history),
                        env_store=store)
    assert refused.returncode == 4, refused.stderr  # a gate refused: digitlite.EXIT_REFUSED
    assert "reads this device's corrections worse" in refused.stdout
    figures = refused.stdout.split("worse: ")[1]
    assert "0/" in figures.split(" against ")[0] and "frames 0/6" in figures, figures
    assert "refused" in refused.stderr
    assert json.loads(digitlite("models", "list", "--json", env_store=store).stdout)["active"] is None

    good = digitlite("models", "install", str(bundles / "v1.bundle"), "--activate", "--history",
                     str(corrected_history), env_store=store)
    assert good.returncode == 0, good.stderr
    assert "as well or better" in good.stdout
    assert json.loads(digitlite("models", "list", "--json", env_store=store).stdout)["active"] == "v1"

    assert "it is removed again" in refused.stderr  # a refused bundle takes no room in the store
    forced = digitlite("models", "install", str(worse_bundle), "--activate", "--force", env_store=store)
    assert forced.returncode == 0 and "the canary is skipped" in forced.stdout
    back = digitlite("models", "rollback", env_store=store)
    assert back.returncode == 0 and "active: v1" in back.stdout


@pytest.mark.slow
def test_a_bundle_that_reads_its_own_golden_images_worse_is_refused_even_without_corrections(tmp_path, key):
    release = tmp_path / "worse"
    release.mkdir()
    make_worse_bundle(release)
    pack_release(release, tmp_path / "worse-golden.bundle", "worse-golden", GOLDEN, sign=key)
    pack_release(MODELS, tmp_path / "good-golden.bundle", "good-golden", GOLDEN, sign=key)
    bundle = open_bundle((tmp_path / "good-golden.bundle").read_bytes(), read_sidecar(tmp_path / "good-golden.bundle"))
    assert len(bundle.golden()) == 18 and ("scene_02.jpg", (GOLDEN / "scene_02.jpg").read_bytes(), "499684") in \
        bundle.golden()
    store = tmp_path / "store"
    refused = digitlite("models", "install", str(tmp_path / "worse-golden.bundle"), "--activate", "--history",
                        str(tmp_path / "none.db"), env_store=store)
    assert refused.returncode == 4, refused.stderr  # a gate refused: digitlite.EXIT_REFUSED
    # The blank recognizer reads only the golden page with no number right (as nothing).
    assert "reads its own golden images worse than the models in use: 1/18 exact (regions 0/0, frames 1/18) " \
           "against 17/18" in refused.stdout
    good = digitlite("models", "install", str(tmp_path / "good-golden.bundle"), "--activate", "--history",
                     str(tmp_path / "none.db"), env_store=store)
    assert good.returncode == 0, good.stderr
    assert "nothing to judge by; its golden images: 17/18 exact" in good.stdout  # scene_01: the known miss


def test_a_device_without_corrections_lets_a_bundle_through_and_says_so(bundles, tmp_path):
    done = digitlite("models", "install", str(bundles / "v1.bundle"), "--activate", "--history",
                     str(tmp_path / "none.db"), env_store=tmp_path / "store")
    assert done.returncode == 0, done.stderr
    assert "no corrected examples on this device yet" in done.stdout
    assert not (tmp_path / "none.db").exists()


# ---------------------------------------------------------------------------------------------- the live loop


def test_the_live_loop_swaps_in_a_reloaded_reader_between_frames(tmp_path):
    from fakes import ScriptedReader

    from edge_app.live.loop import LiveLoop, reload_on_sighup

    pages = {text: np.full((60, 80, 3), 50 * k, np.uint8) for k, text in enumerate(("11", "22", "33"))}
    order = [pages["11"]] * 2 + [pages["22"]] * 2 + [pages["33"]] * 2
    old, new = ScriptedReader(pages, sha256="a" * 64), ScriptedReader(pages, sha256="b" * 64)

    class Frames:
        name, served = "frames", 0

        def read(self):
            if self.served == 2:  # after the first reading, the device is told to load its new bundle
                with reload_on_sighup(loop.request_reload):
                    signal.raise_signal(signal.SIGHUP)
            if self.served >= len(order):
                return None
            self.served += 1
            return order[self.served - 1]

        def close(self):
            pass

    history = ReadingStore(tmp_path / "readings.db")
    loop = LiveLoop(Frames(), old, history, [], LoopSettings(stable_frames=2), model_sha256="a" * 64,
                    reload=lambda: new)
    assert loop.run() == 0
    records = history.since()
    assert [(r["text"], r["model_sha256"][0]) for r in records] == [("11", "a"), ("22", "b"), ("33", "b")]
    assert loop.status.model_switches == 1 and loop.status.model_sha256 == "b" * 64
    assert (old.reads, new.reads) == (3, 3)  # the reload lands between frames: nothing read twice or skipped

    def broken():
        raise BundleError("bundle damaged")

    loop2 = LiveLoop(Frames(), new, history, [], LoopSettings(stable_frames=2), reload=broken)
    loop = loop2
    assert loop2.run() == 0
    assert loop2.status.model_error == "BundleError: bundle damaged" and loop2.reader is new
    history.close()


# ---------------------------------------------------------------------------------------------- the host


@pytest.mark.slow
def test_convert_writes_its_release_as_a_bundle(tmp_path, mnist_dir, key):
    """`digitlite convert ... --bundle`: the classifier converted and gated into a release folder that holds the
    reader's models, then the three as one bundle with the new gate figures."""
    out = tmp_path / "release"
    out.mkdir()
    released = json.loads((MODELS / "manifest.json").read_text())["models"]
    for name in TRIO[1:]:
        shutil.copy(MODELS / name, out / name)
    (out / "manifest.json").write_text(json.dumps({"schema": 1, "models": {n: released[n] for n in TRIO[1:]}}))
    done = digitlite("convert", str(MODELS / "digits.keras"), "--out", str(out), "--bundle",
                     str(tmp_path / "c1.bundle"), "--bundle-version", "c1", "--sign", str(key),
                     env_store=tmp_path / "store")
    assert done.returncode == 0, done.stderr
    assert "bundle c1 written" in done.stdout
    bundle = open_bundle((tmp_path / "c1.bundle").read_bytes(), read_sidecar(tmp_path / "c1.bundle"))
    assert ModelStore(tmp_path / "store").verify(bundle).name == "test-release"  # signed with the trusted key
    assert bundle.files[TRIO[0]] == (out / TRIO[0]).read_bytes()
    assert bundle.info["gate"]["model"]["accuracy"]["overall"] > 0.99


def test_the_live_loop_loads_a_newly_activated_bundle_on_its_own_and_tells_its_outputs(tmp_path):
    """No signal needed: the loop looks at the store's active bundle between frames (`digitlite models activate`
    in another process, the fleet agent) and tells each output which models read from then on."""
    from fakes import ScriptedReader

    from edge_app.live.loop import LiveLoop
    from edge_app.live.sink import Sink

    pages = {"5": np.full((40, 40, 3), 9, np.uint8)}
    old, new = ScriptedReader(pages, sha256="a" * 64), ScriptedReader(pages, sha256="b" * 64)
    new.bundle = "v2"
    active = {"version": None}

    class Frames:
        name, served = "frames", 0

        def read(self):
            self.served += 1
            if self.served == 3:
                active["version"] = "v2"  # activated elsewhere while the loop runs
            return pages["5"] if self.served <= 6 else None

        def close(self):
            pass

    class Models(Sink):
        seen: list = []

        def on_model(self, model):
            self.seen.append((model["bundle"], model["recognizer_sha256"][0]))

    loop = LiveLoop(Frames(), old, ReadingStore(":memory:"), [Models()], LoopSettings(stable_frames=1, model_check_s=0),
                    model_sha256="a" * 64, reload=lambda: new, watch=lambda: active["version"])
    assert loop.run() == 0
    assert Models.seen == [(None, "a"), ("v2", "b")]
    assert (old.reads, new.reads) == (3, 3)


def test_doctor_checks_the_models_of_the_active_bundle(bundles, store, capsys, monkeypatch, tmp_path):
    from edge_app.cli import doctor_main

    store.install(store.fetch(str(bundles / "v1.bundle")))  # DIGITLITE_CONFIG: `trusted`, no other key
    store.activate("v1")
    store.record_update("v1", "activated", "test")
    doctor_main(["--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["recognizer"]["data"]["path"] == str(store.bundles / "v1" / TRIO[2])
    assert checks["recognizer"]["status"] == "ok" and checks["model"]["status"] == "ok"
    assert checks["bundle"]["detail"].startswith("model bundle v1") and "v1 activated" in checks["bundle"]["detail"]
