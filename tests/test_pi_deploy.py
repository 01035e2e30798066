"""Raspberry Pi deployment files: the systemd unit, the installer, and the pure parts of the aarch64 check.

The emulated check itself runs with `make pi-check` (tools/pi_check.py), not here.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tools import pi_check

DEPLOY = Path(__file__).resolve().parents[1] / "edge_app" / "deploy"
UNIT = DEPLOY / "digitlite.service"
INSTALLER = DEPLOY / "install-pi.sh"

# ---------------------------------------------------------------------------------------------- systemd unit


def read_unit(path: Path = UNIT) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(path)
    return unit


def test_unit_has_the_required_settings():
    unit = read_unit()
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    assert service["ExecStart"].endswith("digitlite run --headless --config /etc/digitlite.toml")
    expected = {"Restart": "on-failure", "User": "digitlite", "SupplementaryGroups": "video",
                "StandardOutput": "journal", "StandardError": "journal", "NoNewPrivileges": "yes",
                "ProtectSystem": "strict", "ProtectHome": "yes", "CapabilityBoundingSet": ""}
    for key, value in expected.items():
        assert service.get(key) == value, f"[Service] {key}={service.get(key)!r}, expected {value!r}"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # `systemctl reload digitlite` loads an activated model bundle between frames (SIGHUP), from the service's store.
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "DIGITLITE_MODEL_STORE=/var/lib/digitlite/models" in service["Environment"].split()
    # Start-rate limits are [Unit] settings; systemd ignores them in [Service].
    assert "StartLimitIntervalSec" in unit["Unit"] and "StartLimitIntervalSec" not in service
    # LiteRT reads /proc/cpuinfo: hiding it would break the interpreter.
    assert "ProcSubset" not in service


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_clean(tmp_path):
    # verify checks that the executables exist; point them at one that does.
    text = UNIT.read_text().replace("/opt/digitlite/venv/bin/digitlite", "/bin/true")
    unit = tmp_path / "digitlite.service"
    unit.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr  # warnings count as failures


# ---------------------------------------------------------------------------------------------- installer


def test_installer_is_valid_bash():
    subprocess.run(["bash", "-n", str(INSTALLER)], check=True)


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed (make system-deps)")
def test_installer_passes_shellcheck():
    proc = subprocess.run(["shellcheck", str(INSTALLER)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALLER), "--dry-run", *args], capture_output=True, text=True,
                          timeout=60)


def test_installer_dry_run_lists_every_step(tmp_path):
    for name in ("digits_int8.tflite", "manifest.json"):
        (tmp_path / name).write_bytes(b"x")
    proc = dry_run("--models", str(tmp_path), "--config", str(tmp_path / "digitlite.toml"), "--prefix", "/opt/dl")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    steps = ["apt-get install -y --no-install-recommends python3-venv",
             "python3 -m venv --system-site-packages /opt/dl/venv",
             "pip install --quiet --upgrade " + str(DEPLOY.parents[1]) + "[edge]",
             "--groups video", "install -m 0644 " + str(tmp_path / "digits_int8.tflite"),
             "systemctl enable digitlite.service", "systemctl restart digitlite.service",
             "digitlite doctor --config " + str(tmp_path / "digitlite.toml")]
    for step in steps:
        assert step in out, f"step {step!r} missing from the dry run:\n{out}"
    assert "s|^# model = |model = |" in out  # the configuration names the models given with --models
    assert not (tmp_path / "digitlite.toml").exists()  # a dry run changes nothing


def test_installer_without_models_uses_the_ones_in_the_package(tmp_path):
    proc = dry_run("--config", str(tmp_path / "digitlite.toml"), "--prefix", "/opt/dl")
    assert proc.returncode == 0, proc.stderr
    assert "/opt/dl/models" not in proc.stdout and ".tflite" not in proc.stdout
    assert "model = " not in proc.stdout  # the example's model line stays commented out: the packaged model


def test_installer_pypi_source_and_no_start(tmp_path):
    for name in ("digits_int8.tflite", "manifest.json"):
        (tmp_path / name).write_bytes(b"x")
    proc = dry_run("--from-pypi", "--no-start", "--models", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "pip install --quiet --upgrade digitlite[edge]" in proc.stdout
    assert "systemctl restart" not in proc.stdout


def test_installer_errors_name_the_problem(tmp_path):
    proc = dry_run("--models", str(tmp_path))
    assert proc.returncode != 0
    assert f"{tmp_path}/digits_int8.tflite not found" in proc.stderr and "--models DIR" in proc.stderr
    proc = dry_run("--model", str(tmp_path))
    assert proc.returncode != 0 and "unknown option '--model'" in proc.stderr


# ---------------------------------------------------------------------------------------------- pi_check parts


def test_wheel_platforms_cover_manylinux_2_17_to_2_36():
    args = pi_check.platform_args()
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert platforms[0] == "manylinux_2_17_aarch64" and platforms[-1] == "manylinux_2_36_aarch64"
    assert "manylinux_2_27_aarch64" in platforms and len(platforms) == 20  # ai-edge-litert's current tag
    assert args[args.index("--python-version") + 1] == "3.11"


def test_apt_mirror_reads_deb822_and_one_line_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITLITE_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert pi_check.apt_mirror("bookworm", tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert pi_check.apt_mirror("bookworm", tmp_path) == "http://other.example/debian"
    (tmp_path / "sources.list").write_text("")
    assert pi_check.apt_mirror("bookworm", tmp_path) == pi_check.FALLBACK_MIRROR


def test_board_files_replace_the_proc_symlink(tmp_path):
    (tmp_path / "proc").symlink_to("/proc")  # as debootstrap leaves it
    pi_check.write_board_files(tmp_path, "cortex-a72")
    cpuinfo = (tmp_path / "proc" / "cpuinfo").read_text()
    assert not (tmp_path / "proc").is_symlink()
    assert "CPU part\t: 0xd08" in cpuinfo and "Raspberry Pi 4 Model B" in cpuinfo
    assert (tmp_path / "proc" / "device-tree" / "model").read_bytes().endswith(b"\x00")
    pi_check.write_board_files(tmp_path, "cortex-a76")
    assert "0xd0b" in (tmp_path / "proc" / "cpuinfo").read_text()


def test_fixed_batch_is_deterministic_uint8():
    a, description = pi_check.fixed_batch(16)
    b, _ = pi_check.fixed_batch(16)
    assert a.dtype == np.uint8 and a.shape == (16, 28, 28) and description
    np.testing.assert_array_equal(a, b)


def test_compare_raw_counts_steps():
    host = {"outputs": {"x": [[-128, 127], [0, 5]]}}
    same = pi_check.compare_raw(host, {"outputs": {"x": [[-128, 127], [0, 5]]}})
    assert same["x"]["max_abs_diff"] == 0 and same["x"]["elements_differ"] == 0
    off = pi_check.compare_raw(host, {"outputs": {"x": [[-127, 127], [0, 8]]}})
    assert off["x"]["max_abs_diff"] == 3 and off["x"]["elements_differ"] == 2
    assert "error" in pi_check.compare_raw(host, {"outputs": {"x": [[1, 2]]}})["x"]


def test_compare_json_tolerates_one_step_and_ignores_timing():
    step = 1 / 256
    a = {"images": [{"numbers": ["42"], "confidence": 0.990, "latency_ms": 3.0}]}
    b = {"images": [{"numbers": ["42"], "confidence": 0.990 + step, "latency_ms": 90.0}]}
    assert pi_check.compare_json(a, b, step + 1e-6) == []
    c = {"images": [{"numbers": ["47"], "confidence": 0.990, "latency_ms": 3.0}]}
    diffs = pi_check.compare_json(a, c, step)
    assert diffs == ["$.images[0].numbers[0]: '42' on x86, '47' on aarch64"]
    d = {"images": [{"numbers": ["42"], "confidence": 0.9, "latency_ms": 3.0}]}
    assert pi_check.compare_json(a, d, step)[0].startswith("$.images[0].confidence")
    assert pi_check.max_float_diff(a, b) == pytest.approx(step)


def test_pi_check_refuses_bad_cpus(capsys):
    with pytest.raises(SystemExit):
        pi_check.main(["--cpus", "cortex-a53"])
    assert "valid cores are cortex-a72, cortex-a76" in capsys.readouterr().err
