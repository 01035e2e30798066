"""What a benchmark ran on: machine, CPU model, board model string, CPU governor, library versions, git commit.

Every record carries this so that a figure is never read without knowing where it came from.

    python -m benchmarks.machine           # prints this machine's description as JSON
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Distributions whose versions change benchmark figures (absent ones are recorded as null).
LIBRARIES = ("numpy", "ai-edge-litert", "tflite-runtime", "tensorflow-cpu", "tensorflow", "keras", "onnxruntime",
             "onnx", "tf2onnx", "opencv-python-headless", "opencv-python")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # "Raspberry Pi 4 Model B Rev 1.4" on a Pi
GOVERNOR_FILES = "/sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor"


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC", "Cortex-A72" boards report only a part number, so the board)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def board_model() -> str | None:
    """The board's model string from the device tree (Raspberry Pi and most ARM boards), else None."""
    try:
        return DEVICE_TREE_MODEL.read_bytes().rstrip(b"\0").decode(errors="replace").strip() or None
    except OSError:
        return None


def cpu_governors() -> list[str]:
    """The cpufreq governor of each CPU that exposes one (empty on VMs and containers without cpufreq)."""
    governors = []
    for cpu in range(os.cpu_count() or 1):
        try:
            governors.append(Path(GOVERNOR_FILES.format(cpu)).read_text().strip())
        except OSError:
            continue
    return governors


def governor_warning(governors: list[str]) -> str | None:
    """A warning when the CPU frequency may change under the benchmark, or None when it is pinned."""
    if not governors:
        return ("CPU governor unknown (no cpufreq here): figures may vary with the host's frequency scaling; "
                "on a Raspberry Pi set it with `echo performance | sudo tee "
                "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor`.")
    slow = sorted({g for g in governors if g != "performance"})
    if slow:
        return (f"CPU governor is {', '.join(slow)}, not 'performance': the clock ramps during the run and "
                f"latencies are higher and noisier. Fix: echo performance | sudo tee "
                f"/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor")
    return None


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def git_commit(repo: Path = REPO) -> dict:
    """{"commit": sha or None, "dirty": bool or None}; read-only git queries."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def describe() -> dict:
    """This machine, for a benchmark record."""
    governors = cpu_governors()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": {
            "hostname": platform.node(),
            "arch": platform.machine(),
            "os": f"{platform.system()} {platform.release()}",
            "cpu_model": cpu_model(),
            "board": board_model(),
            "cpus": os.cpu_count(),
            "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            # Other work on the machine inflates absolute times; the same-run ratios are meant to survive it.
            "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "governors": sorted(set(governors)),
            "governor_warning": governor_warning(governors),
        },
        "versions": library_versions(),
    }


if __name__ == "__main__":
    print(json.dumps(describe(), indent=2))
    sys.exit(0)
