"""edge_app never imports TensorFlow or Keras, directly or through train/convert: the device has neither."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

IMPORT_ALL = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import edge_app
    failed = {}
    for info in pkgutil.walk_packages(edge_app.__path__, "edge_app."):
        if info.name.endswith("__main__"):  # runs the CLI; covered by the command tests below
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an optional dependency (picamera2, fastapi) may be absent
            failed[info.name] = str(exc)
    import train.mnist  # the synthetic scenes read MNIST through it: numpy only
    """
)
REPORT = textwrap.dedent(
    """
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
    modules = sorted(m for m in sys.modules if m.startswith("edge_app"))
    print(json.dumps({"heavy": heavy, "modules": modules, "failed": failed}))
    """
)


def _probe(extra: str = "") -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", IMPORT_ALL + extra + REPORT], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_every_edge_app_module_pulls_in_no_tensorflow():
    result = _probe()
    assert result["heavy"] == [], f"edge_app imported {result['heavy']}"
    assert "edge_app.runtime" in result["modules"]
    assert len(result["modules"]) >= 3, result
    # Every module must import with the [edge] extra alone; optional hardware/web deps are lazy.
    assert not {k: v for k, v in result["failed"].items() if "tensorflow" in v or "keras" in v}


@pytest.mark.parametrize("command", ["read", "run", "eval-scenes", "eval", "doctor"])
def test_edge_commands_help_without_tensorflow(command):
    extra = textwrap.dedent(
        f"""
        import digitlite
        try:
            digitlite.main(["{command}", "--help"])
        except SystemExit:
            pass
        """
    )
    result = _probe(extra)
    assert result["heavy"] == [], f"`digitlite {command}` imported {result['heavy']}"


def test_runtime_classifies_without_tensorflow(repo):
    model = repo / "models" / "digits_int8.tflite"
    if not model.exists():
        pytest.skip("no released model yet")
    extra = textwrap.dedent(
        f"""
        import numpy as np
        from edge_app.runtime import Classifier
        from train.mnist import load_mnist
        clf = Classifier({str(model)!r})
        data = load_mnist()
        labels, _ = clf.predict(clf.pixels_to_input(data.x_test[:200]))
        assert (labels == data.y_test[:200]).mean() > 0.95
        """
    )
    result = _probe(extra)
    assert result["heavy"] == [], result["heavy"]
