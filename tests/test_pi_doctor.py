"""`digitlite doctor`: reports what this machine has, and exits 1 with a clear list when the model or the runtime
is missing. Runs the real runtime on the released int8 model."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app import doctor
from edge_app.cli import doctor_main

REPO = Path(__file__).resolve().parents[1]
RELEASED = REPO / "models" / "digits_int8.tflite"


@pytest.fixture
def model(tmp_path) -> Path:
    """A copy of the released int8 model with a manifest whose sha256 matches."""
    if not RELEASED.is_file():
        pytest.skip(f"{RELEASED} not converted yet (digitlite convert)")
    copy = tmp_path / "models" / RELEASED.name
    copy.parent.mkdir()
    shutil.copy2(RELEASED, copy)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    (copy.parent / "manifest.json").write_text(json.dumps({"models": {copy.name: {"sha256": digest}}}))
    return copy


def run_doctor(capsys, *argv: str) -> tuple[int, dict]:
    code = doctor_main(["--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def by_name(report: dict) -> dict:
    return {c["name"]: c for c in report["checks"]}


def test_reports_this_machine(capsys, model, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLITE_CONFIG", "")
    monkeypatch.setattr(doctor.settings, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    code, report = run_doctor(capsys, "--model", str(model), "--threads", "2")
    checks = by_name(report)
    assert code == 0 and report["ok"], report
    assert list(checks) == ["python", "runtime", "cpu", "board", "config", "camera", "model", "regions", "recognizer",
                           "bundle", "mqtt", "inference"]
    assert checks["mqtt"]["status"] == "info"  # no broker configured
    assert checks["bundle"]["data"]["bundle"] is None  # no bundle installed: the packaged models
    assert checks["regions"]["status"] == checks["recognizer"]["status"] == "ok", checks
    assert checks["python"]["data"]["version"] == platform.python_version()
    assert checks["runtime"]["status"] == "ok" and checks["runtime"]["data"]["name"] in doctor.runtime.RUNTIMES
    assert checks["runtime"]["data"]["version"] not in ("", "?")
    assert checks["cpu"]["data"]["arch"] == platform.machine()
    assert checks["model"]["status"] == "ok" and "matches the manifest" in checks["model"]["detail"]
    inference = checks["inference"]
    assert inference["status"] == "ok" and inference["data"]["threads"] == 2
    assert inference["data"]["input"] == "int8"


def test_text_report_fails_on_the_configured_camera(capsys, model):
    example = REPO / "edge_app" / "deploy" / "digitlite.toml"  # source = "picamera": no camera here
    assert doctor_main(["--model", str(model), "--config", str(example)]) == 1
    out = capsys.readouterr().out
    assert "[ ok ] runtime" in out and "[ ok ] model" in out and "[FAIL] camera" in out
    assert "1 problem(s) stop `digitlite run`:\n  - camera: no camera found (configured source: picamera)" in out


def test_missing_model_fails_with_a_clear_list(capsys, tmp_path):
    missing = tmp_path / "nowhere" / "digits_int8.tflite"
    code = doctor_main(["--model", str(missing)])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 problem(s) stop `digitlite run`:" in out
    assert f"  - model: model file {missing} not found" in out
    assert "-> reinstall digitlite to restore the model installed with it" in out


def test_model_that_does_not_match_its_manifest_fails(capsys, model):
    (model.parent / "manifest.json").write_text(json.dumps({"models": {model.name: {"sha256": "0" * 64}}}))
    code, report = run_doctor(capsys, "--model", str(model))
    check = by_name(report)["model"]
    assert code == 1 and check["status"] == "fail"
    assert "does not match the manifest" in check["detail"] and "copy digits_int8.tflite" in check["fix"]


def test_model_without_manifest_fails_unless_the_configuration_allows_it(capsys, model, tmp_path):
    (model.parent / "manifest.json").unlink()
    code, report = run_doctor(capsys, "--model", str(model))
    check = by_name(report)["model"]
    assert code == 1 and check["status"] == "fail" and "refuses it" in check["detail"]  # as `digitlite run` does
    config = tmp_path / "digitlite.toml"
    config.write_text("allow_unverified = true\n")
    code, report = run_doctor(capsys, "--model", str(model), "--config", str(config))
    assert code == 0 and by_name(report)["model"]["status"] == "warn"


def test_invalid_config_fails_and_names_the_key(capsys, model, tmp_path):
    config = tmp_path / "digitlite.toml"
    config.write_text("treads = 2\n")
    code, report = run_doctor(capsys, "--model", str(model), "--config", str(config))
    check = by_name(report)["config"]
    assert code == 1 and check["status"] == "fail" and "Did you mean 'threads'" in check["detail"]


def test_config_sets_model_and_threads(capsys, model, tmp_path):
    config = tmp_path / "digitlite.toml"
    config.write_text(f'model = "{model}"\nthreads = 1\nsource = "synthetic"\n')
    code, report = run_doctor(capsys, "--config", str(config))
    checks = by_name(report)
    assert code == 0 and checks["inference"]["data"]["threads"] == 1
    assert checks["model"]["data"]["path"] == str(model)


HIDE_RUNTIMES = """
import sys
for name in ("ai_edge_litert", "tflite_runtime"):
    sys.modules[name] = None  # import raises ImportError: as if not installed
import digitlite
code = digitlite.main(["doctor", *sys.argv[1:]])
sys.exit(3 if "tensorflow" in sys.modules else code)  # TensorFlow is only used when already imported
"""


def test_missing_runtime_fails_with_a_clear_list(tmp_path):
    proc = subprocess.run([sys.executable, "-c", HIDE_RUNTIMES, "--model", str(tmp_path / "absent.tflite")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 problem(s) stop `digitlite run`:" in proc.stdout
    assert "  - runtime: no LiteRT runtime found" in proc.stdout
    assert "pip install 'digitlite[edge]'" in proc.stdout
    assert "  - model: model file" in proc.stdout


NO_TENSORFLOW = """
import sys
import digitlite
code = digitlite.main(["doctor", "--json", *sys.argv[1:]])
sys.exit(3 if "tensorflow" in sys.modules else code)
"""


def test_doctor_never_imports_tensorflow(model):
    proc = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, "--model", str(model)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode} (3 = TensorFlow imported)\n{proc.stderr}"


def test_board_model_from_the_device_tree(tmp_path, monkeypatch):
    tree = tmp_path / "model"
    tree.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    monkeypatch.setattr(doctor, "DEVICE_TREE_MODEL", tree)
    assert doctor.check_board().detail == "Raspberry Pi 5 Model B Rev 1.0"
    monkeypatch.setattr(doctor, "DEVICE_TREE_MODEL", tmp_path / "absent")
    assert doctor.check_board().status == "info"


def test_configured_camera_that_is_missing_fails(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "list_picamera2_cameras", lambda: (None, "picamera2 is not installed"))
    monkeypatch.setattr(doctor, "list_v4l2_devices", lambda: [])
    for name in ("picamera", "picamera2"):  # the name the examples use, and the library's, an accepted alias
        check = doctor.check_cameras(name, on_pi=False)
        assert check.status == "fail" and "sudo apt install python3-picamera2" in check.fix, name
    check = doctor.check_cameras("0", on_pi=False)
    assert check.status == "fail" and "/dev/video0" in check.fix
    assert doctor.check_cameras("synthetic", on_pi=False).status == "warn"
    assert doctor.check_cameras(None, on_pi=False).status == "warn"


def test_usb_webcam_counts_and_pi_isp_nodes_do_not(monkeypatch):
    monkeypatch.setattr(doctor, "list_picamera2_cameras", lambda: ([], ""))
    monkeypatch.setattr(doctor, "list_v4l2_devices", lambda: [
        {"device": "/dev/video0", "name": "HD Webcam", "driver": "uvcvideo", "capture": True},
        {"device": "/dev/video1", "name": "HD Webcam", "driver": "uvcvideo", "capture": False},
        {"device": "/dev/video10", "name": "bcm2835-codec-decode", "driver": "bcm2835-codec", "capture": True},
    ])
    check = doctor.check_cameras("0", on_pi=False)
    assert check.status == "ok" and check.detail.startswith("/dev/video0: HD Webcam (uvcvideo)")
    assert "video10" not in check.detail


def test_v4l2_listing_reports_unopenable_nodes(tmp_path):
    (tmp_path / "video0").mkdir()
    (tmp_path / "video0" / "name").write_text("cam\n")
    devices = doctor.list_v4l2_devices(tmp_path)
    assert devices[0]["device"] == "/dev/video0" and devices[0]["name"] == "cam"
    if not Path("/dev/video0").exists():
        assert "error" in devices[0]


def test_without_a_model_or_configuration_doctor_checks_the_installed_model(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLITE_CONFIG", "")
    monkeypatch.setattr(doctor.settings, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    code, report = run_doctor(capsys)
    checks = by_name(report)
    assert checks["model"]["data"]["path"] == str(doctor.runtime.DEFAULT_MODEL)
    assert checks["model"]["status"] == "ok" and checks["inference"]["status"] == "ok", report
    assert checks["inference"]["data"]["threads"] == doctor.runtime.DEFAULT_THREADS
