"""Issue 13, case 10: `read`, `run`, `serve` and `check` compare the model with its manifest entry and refuse a
mismatch (or, except `check`, a model with no entry) unless --allow-unverified; thread counts are validated
before anything loads; a killed `convert` leaves staging folders that the next one removes and git ignores.

    .venv/bin/pytest -m reliability tests/test_model_integrity.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.runtime import (
    MAX_THREADS,
    Classifier,
    UnverifiedModelError,
    check_threads,
    model_integrity,
    verify_model,
)

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "tests" / "data" / "golden" / "scene_02.jpg"


def digitlite(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlite", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def swapped(tmp_path) -> Path:
    """The released float32 model under the int8 model's name, beside the release's manifest: a valid model that
    is not the file the manifest describes (a copy from another release, a file replaced by hand)."""
    shutil.copy(REPO / "models" / "manifest.json", tmp_path / "manifest.json")
    shutil.copy(REPO / "models" / "digits_float32.tflite", tmp_path / "digits_int8.tflite")
    return tmp_path / "digits_int8.tflite"


@pytest.fixture
def unlisted(tmp_path) -> Path:
    """A user's own model: a valid .tflite with no manifest beside it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(REPO / "models" / "digits_int8.tflite", folder / "my_model.tflite")
    return folder / "my_model.tflite"


# ---------------------------------------------------------------------------------------------- the function


def test_integrity_states_of_a_model_file(swapped, unlisted):
    released = REPO / "models" / "digits_int8.tflite"
    assert verify_model(released).verified
    assert model_integrity(swapped).status == "mismatch"
    assert model_integrity(unlisted).status == "no manifest"
    (unlisted.parent / "manifest.json").write_text(json.dumps({"models": {}}))
    assert model_integrity(unlisted).status == "no entry"
    with pytest.raises(UnverifiedModelError, match="differs from the one"):
        verify_model(swapped)
    assert verify_model(swapped, allow_unverified=True).status == "mismatch"
    with pytest.raises(UnverifiedModelError, match="--allow-unverified"):
        Classifier(swapped, require_verified=True)
    assert Classifier(swapped).integrity.sha256 != Classifier(released).integrity.sha256


# ---------------------------------------------------------------------------------------------- the commands


def test_read_refuses_a_model_that_differs_from_its_manifest(swapped):
    refused = digitlite("read", str(SCENE), "--model", str(swapped))
    assert refused.returncode == 2 and "differs from the one" in refused.stderr
    assert "--allow-unverified" in refused.stderr
    assert refused.stdout == "" and "Traceback" not in refused.stderr
    allowed = digitlite("read", str(SCENE), "--model", str(swapped), "--allow-unverified", "--json")
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["text"] == "499684", allowed.stderr


def test_read_refuses_a_model_with_no_manifest_unless_allowed(unlisted):
    refused = digitlite("read", str(SCENE), "--model", str(unlisted))
    assert refused.returncode == 2 and "no manifest.json beside it" in refused.stderr
    allowed = digitlite("read", str(SCENE), "--model", str(unlisted), "--allow-unverified", "--json")
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["text"] == "499684", allowed.stderr


def test_run_and_serve_refuse_a_model_that_differs_from_its_manifest(swapped, tmp_path):
    run = digitlite("run", "--source", str(SCENE), "--headless", "--model", str(swapped), "--history",
                    str(tmp_path / "readings.db"))
    assert run.returncode == 2 and "differs from the one" in run.stderr and run.stdout == ""
    pytest.importorskip("fastapi", reason="the [web] extra is not installed")
    serve = digitlite("serve", "--port", "0", "--model", str(swapped), "--history", str(tmp_path / "readings.db"))
    assert serve.returncode == 2 and "differs from the one" in serve.stderr  # as `read` and `run`


def test_check_fails_a_model_that_differs_from_its_manifest(swapped, mnist_dir):
    # Accurate enough to pass every accuracy check: only the sha256 says it is not the released file.
    failed = digitlite("check", str(swapped), "--json")
    assert failed.returncode == 4, failed.stderr
    report = json.loads(failed.stdout)
    assert report["sha256_matches"] is False and report["accuracy"] > 0.99
    assert "differs from the one" in failed.stderr
    allowed = digitlite("check", str(swapped), "--allow-unverified")
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("command", ["read", "run", "serve", "eval-scenes"])
@pytest.mark.parametrize("threads", ["100000", "0", "-1", "two"])
def test_thread_counts_are_validated_before_anything_loads(command, threads):
    result = digitlite(command, *([str(SCENE)] if command == "read" else []), "--threads", threads)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "--threads" in result.stderr and "Traceback" not in result.stderr


def test_check_threads():
    assert check_threads(1) == 1 and check_threads(MAX_THREADS) == MAX_THREADS
    for bad in (0, MAX_THREADS + 1, 100_000, True, 2.5, "2"):
        with pytest.raises(ValueError, match="interpreter threads"):
            check_threads(bad)


# ---------------------------------------------------------------------------------------------- staging


def test_the_next_convert_removes_what_a_killed_one_left(tmp_path):
    from convert.release import ModelLoadError, convert_and_release

    out = tmp_path / "models"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that is gone
    left = [tmp_path / ".models.staging-abc123", tmp_path / f".models.staging-{dead.pid}-x1y2"]
    running = tmp_path / f".models.staging-{os.getppid()}-busy"  # a conversion still running: kept
    other = tmp_path / ".other.staging-abc"  # another output folder's: not ours to remove
    for folder in [*left, running, other]:
        folder.mkdir()
        (folder / "digits_int8.tflite").write_bytes(b"half-written")
    with pytest.raises(ModelLoadError):
        convert_and_release(tmp_path / "missing.keras", out)
    assert [p.exists() for p in left] == [False, False]
    assert running.exists() and other.exists()


def test_staging_folders_are_ignored_by_git():
    name = ".models.staging-12345-abcd/digits_int8.tflite"
    result = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", name], capture_output=True,
                            text=True)
    if result.returncode == 128:
        pytest.skip(f"not a git checkout: {result.stderr.strip()}")
    assert result.returncode == 0 and name in result.stdout
