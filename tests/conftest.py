"""Shared fixtures: the real MNIST (the shared copy in CI, else the user's usual search) and the repo root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist"

# Tests never download: point the loader at the shared copy when nobody chose a folder.
if not os.environ.get("DIGITLITE_MNIST_DIR") and SHARED_MNIST.is_dir():
    os.environ["DIGITLITE_MNIST_DIR"] = str(SHARED_MNIST)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = os.environ.get("DIGITLITE_MNIST_DIR")
    if not path:
        pytest.fail("set DIGITLITE_MNIST_DIR to a folder with the four MNIST IDX files (tests never download)")
    return Path(path)


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from train.mnist import find_mnist

    return find_mnist(mnist_dir)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
