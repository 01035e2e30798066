"""Steps the host checks share: run a command that names the step when it fails, build this checkout's
wheel from a clean copy of its files, read a command's JSON output.

    python -c "from pathlib import Path; from tools.steps import build_wheel; print(build_wheel(Path('/tmp/w')))"
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class CheckFailed(Exception):
    """A step of the check failed; the message says which step, what it saw and what to do."""


def run(cmd: list[str], what: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd`; on failure raise CheckFailed naming the step and showing the end of its output."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    except FileNotFoundError as exc:
        raise CheckFailed(f"{what}: {cmd[0]} not found ({exc}). Install the host packages: make system-deps "
                          f"(qemu-user-static, debootstrap; listed in .ci/apt-packages)") from exc
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"{what}: no result after {timeout:.0f} s: {' '.join(cmd[:6])} ...") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise CheckFailed(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:8])}"
                          f"{' ...' if len(cmd) > 8 else ''}\n{tail}")
    return proc


def source_files() -> list[str]:
    """The checkout's files as git sees them (tracked or not ignored); everything but .venv/.git otherwise."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard",
                              "-z"], capture_output=True, check=True).stdout.decode()
        files = [f for f in out.split("\0") if f and (REPO / f).is_file()]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = {".venv", ".git", "runs", "build", "dist", ".pytest_cache", ".ruff_cache"}
    return [str(p.relative_to(REPO)) for p in REPO.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def build_wheel(work: Path) -> Path:
    """The digitlite wheel built from a copy of the checkout's files in `work/src` (never from the checkout
    itself: setuptools' build/ folder there may hold files deleted since), into `work/dist`."""
    src, dist = work / "src", work / "dist"
    for name in source_files():  # models/ too: the wheel carries the released models
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    if not (src / "README.md").exists():
        # pyproject.toml names README.md as the long description; the checks do not depend on its text.
        (src / "README.md").write_text("digitlite\n")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
         "-w", str(dist), str(src)], "building the digitlite wheel from this checkout")
    wheels = sorted(dist.glob("digitlite-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"building the wheel left {len(wheels)} digitlite wheels in {dist}, expected one")
    return wheels[0]


def read_json(proc: subprocess.CompletedProcess, what: str) -> object:
    """One JSON document, or a list of them for JSON Lines output (`digitlite read --json`)."""
    try:
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        if len(lines) > 1 and all(line.lstrip().startswith("{") for line in lines):
            return [json.loads(line) for line in lines]
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise CheckFailed(f"{what}: output is not JSON ({exc}); first lines:\n"
                          + "\n".join(proc.stdout.splitlines()[:10])) from exc
