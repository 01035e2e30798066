"""The `[edge]`-only install, checked as a Raspberry Pi user gets it (`make wheel-check`, run by CI).

1. Build the wheel from this checkout and look inside: the released models (every models/*.tflite) and their
   manifest as edge_app/models, the board CSVs; not digits.keras, the PNG reports, tools/ or tests/.
2. Install it with only the `[edge]` extra into a clean virtualenv.
3. Prove TensorFlow is absent there: `import tensorflow` fails.
4. From a folder outside the checkout, with no model options: `digitlite read --json tests/data/golden/` must
   read every golden image as the checkout does (same code, the bundled models: the reader's known misses,
   listed in tests/golden_support.py, stay misses), and `digitlite doctor` must find the
   model installed with the package and its manifest.

    python -m tools.wheel_check            # make wheel-check
    python -m tools.wheel_check --keep     # keep the virtualenv and the wheel (printed at the end)
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from digitlite import HelpFormatter
from tools.steps import REPO, CheckFailed, build_wheel, read_json, run

GOLDEN = REPO / "tests" / "data" / "golden"
MUST_SHIP = ["edge_app/models/manifest.json", "benchmarks/boards/published.csv", "benchmarks/boards/reference.csv",
             "edge_app/web/static/index.html", "edge_app/deploy/install-pi.sh", "edge_app/deploy/digitlite.toml"]
MUST_SHIP += [f"edge_app/models/{p.name}" for p in sorted((REPO / "models").glob("*.tflite"))]
NEVER_SHIP = (".keras", ".png", "tools/", "tests/", "pi_check.py")


def log(message: str) -> None:
    print(f"wheel-check: {message}", flush=True)


def check_contents(wheel: Path) -> list[str]:
    """The wheel's file names, after checking what must and must not be in it."""
    names = zipfile.ZipFile(wheel).namelist()
    missing = [m for m in MUST_SHIP if m not in names]
    unwanted = [n for n in names if any(bad in n for bad in NEVER_SHIP)]
    if missing or unwanted:
        raise CheckFailed(f"{wheel.name}: missing {missing}; should not hold {unwanted}")
    return names


def golden_truth(folder: Path = GOLDEN) -> dict[str, str]:
    with open(folder / "truth.csv", newline="") as f:
        return {row["file"]: row["text"] for row in csv.DictReader(f)}


def texts(readings: object) -> dict[str, str]:
    """File name -> text read (or the error) from `digitlite read --json` output."""
    readings = readings if isinstance(readings, list) else [readings]
    return {Path(r["source"]).name: r.get("text", f"error: {r.get('error')}") for r in readings}


def compare_readings(got: dict[str, str], expected: dict[str, str], truth: dict[str, str]) -> list[str]:
    """One line per golden image the installed package reads differently from the checkout."""
    return [f"{name}: read {got.get(name, '(not read)')!r} installed, {text!r} in the checkout (truth {truth[name]!r})"
            for name, text in expected.items() if got.get(name) != text]


def check(work: Path) -> list[str]:
    """Every step; the summary lines. Raises CheckFailed naming the step that failed."""
    wheel = build_wheel(work)
    names = check_contents(wheel)
    models = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("edge_app/models/"))
    lines = [f"{wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB, {len(names)} files; models: {', '.join(models)}"]

    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], "creating a clean virtualenv")
    python, digitlite = venv / "bin" / "python", venv / "bin" / "digitlite"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{wheel}[edge]"],
        "pip install digitlite[edge] from the wheel", timeout=1800)
    installed = run([str(python), "-m", "pip", "list", "--format=freeze"], "pip list").stdout.split()
    lines.append(f"clean venv with [edge] only: {len(installed)} packages")

    tf = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, text=True)
    if tf.returncode == 0 or "ModuleNotFoundError" not in tf.stderr:
        raise CheckFailed(f"`import tensorflow` should fail in the [edge] venv; exit {tf.returncode}: {tf.stderr}")
    lines.append(f"import tensorflow: {tf.stderr.strip().splitlines()[-1]}")

    outside = work / "elsewhere"  # not the checkout: the model must come from the installed package
    outside.mkdir()
    # The models the wheel carries: no configuration file, no model bundle this machine's user has activated.
    env = {**os.environ, "DIGITLITE_CONFIG": "", "PYTHONPATH": "", "DIGITLITE_MODEL_STORE": str(work / "no-bundles")}
    truth = golden_truth()
    args = ["read", "--json", str(GOLDEN)]
    installed = run([str(digitlite), *args], "digitlite read (no model options)", cwd=outside, env=env)
    checkout = run([sys.executable, "-m", "digitlite", *args], "digitlite read (checkout)", cwd=REPO)
    got, expected = (texts(read_json(p, "digitlite read --json")) for p in (installed, checkout))
    wrong = compare_readings(got, expected, truth)
    if wrong:
        raise CheckFailed("digitlite read with the bundled models differs from the checkout:\n  " + "\n  ".join(wrong))
    right = sum(got.get(name) == text for name, text in truth.items())
    lines.append(f"digitlite read {GOLDEN.relative_to(REPO)}/ from {outside}: as the checkout; "
                 f"{right}/{len(truth)} as truth.csv says")

    doctor = run([str(digitlite), "doctor", "--json"], "digitlite doctor", cwd=outside, env=env)
    model = {c["name"]: c for c in read_json(doctor, "digitlite doctor --json")["checks"]}["model"]
    if model["status"] != "ok" or not model["data"]["path"].startswith(str(venv)):
        raise CheckFailed(f"digitlite doctor: the model check is not an installed model that matches its "
                          f"manifest: {model}")
    lines.append(f"digitlite doctor: model {model['detail']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.wheel_check", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (wheel, virtualenv)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="digitlite-wheel-check-"))
    try:
        for line in check(work):
            log(line)
    except CheckFailed as exc:
        print(f"wheel-check: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
