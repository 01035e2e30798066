"""What the wheel installs: every package of the checkout, the released models as edge_app/models, the board
CSVs, and nothing host-only. (`make wheel-check` builds the real wheel and reads photos with it.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

from edge_app import runtime
from edge_app.runtime import integrity

REPO = Path(__file__).resolve().parents[1]
HOST_ONLY = ("tests", "tools")  # never installed
DATA = {"edge_app.models", "edge_app.web.static", "benchmarks.boards"}  # folders of data files, no Python


def setuptools_config() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_of_the_checkout_is_listed():
    tops = [d for d in REPO.iterdir() if (d / "__init__.py").is_file() and d.name not in HOST_ONLY]
    found = {".".join(p.parent.relative_to(REPO).parts) for top in tops for p in top.rglob("__init__.py")}
    listed = set(setuptools_config()["packages"])
    assert found | DATA == listed, f"not listed: {found - listed}; listed, not found: {listed - found}"


def test_models_folder_is_installed_as_edge_app_models_without_the_keras_model():
    config = setuptools_config()
    assert config["package-dir"]["edge_app.models"] == "models"
    patterns = config["package-data"]["edge_app.models"]
    assert patterns == ["*.tflite", "manifest.json"]
    shipped = {p.name for pattern in patterns for p in (REPO / "models").glob(pattern)}
    assert {"digits_int8.tflite", "digits_float32.tflite", "manifest.json"} <= shipped
    assert not any(name.endswith((".keras", ".png", ".md")) for name in shipped)
    assert config["package-data"]["benchmarks.boards"] == ["*.csv"]


def test_host_tooling_and_test_doubles_are_not_in_the_device_package():
    assert not (REPO / "edge_app" / "deploy" / "pi_check.py").exists()
    assert "FakeCamera" not in (REPO / "edge_app" / "live" / "sources.py").read_text()
    # Accuracy evaluation (eval, eval-scenes, the PP-OCR peer) is host work: it lives in benchmarks/.
    device_modules = {p.stem for p in (REPO / "edge_app").rglob("*.py")}
    assert not device_modules & {"evaluation", "eval_report", "ppocr_peer", "accuracy"}, device_modules


def test_models_dir_is_the_installed_folder_in_a_wheel_else_the_checkouts(tmp_path, monkeypatch):
    assert runtime.models_dir() == REPO / "models"  # this checkout
    assert runtime.DEFAULT_MODEL == REPO / "models" / "digits_int8.tflite"
    site = tmp_path / "site-packages" / "edge_app"
    (site / "models").mkdir(parents=True)
    monkeypatch.setattr(integrity, "__file__", str(site / "runtime" / "integrity.py"))
    assert runtime.models_dir() == site / "models"  # an installed wheel
