"""The import rules, proved: the device package (`edge_app`) never imports TensorFlow, Keras or matplotlib, nor
the `train` and `convert` stages, not even lazily inside a function; and no stage imports another except as
the layering below allows (digitdata at the bottom, benchmarks at the top)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("digitdata", "train", "convert", "edge_app", "benchmarks", "digitlite", "tools")
# package -> the first-party modules it may import besides its own (a prefix allows its submodules too).
# `digitlite` is the command module: the help formatter, --log-level and the quiet TensorFlow import.
ALLOWED = {
    "digitdata": (),
    "train": ("digitdata", "digitlite"),
    "convert": ("digitdata", "digitlite", "edge_app.runtime"),
    "edge_app": ("digitdata", "digitlite"),
    "benchmarks": ("digitdata", "digitlite", "train", "convert", "edge_app"),
}
NEVER = {  # third-party packages a package must not import anywhere in its code
    "digitdata": ("tensorflow", "keras", "tf_keras"),
    "edge_app": ("tensorflow", "keras", "tf_keras", "matplotlib", "sklearn"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, at module level or inside functions; `from a import b`
    gives "a.b" (b may be a submodule)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_its_layer_allows(package):
    broken = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in FIRST_PARTY and top != package and not any(_within(module, a) for a in ALLOWED[package]):
                broken.append(f"{path.relative_to(REPO)}:{line} imports {module}")
            if top in NEVER.get(package, ()):
                broken.append(f"{path.relative_to(REPO)}:{line} imports {module} (never in {package})")
    assert not broken, "\n".join(broken)


def test_the_rules_catch_a_lazy_import(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    from train.trainer import train\n    import tensorflow as tf\n")
    assert imported_modules(tmp_path / "m.py") == [(2, "train.trainer.train"), (3, "tensorflow")]


# ---------------------------------------------------------------------------------------------- at run time

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
    import digitdata.mnist, digitdata.engine  # the synthetic source reads MNIST through them
    """
)
REPORT = textwrap.dedent(
    """
    banned = ("tensorflow", "keras", "tf_keras", "matplotlib", "train", "convert", "benchmarks")
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in banned)
    modules = sorted(m for m in sys.modules if m.startswith("edge_app"))
    print(json.dumps({"heavy": heavy, "modules": modules, "failed": failed}))
    """
)


def _probe(extra: str = "") -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", IMPORT_ALL + extra + REPORT], capture_output=True, text=True,
                         check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_every_edge_app_module_pulls_in_no_tensorflow_train_or_convert():
    result = _probe()
    assert result["heavy"] == [], f"edge_app imported {result['heavy']}"
    assert "edge_app.runtime" in result["modules"]
    assert len(result["modules"]) >= 3, result
    # Every module must import with the [edge] extra alone; optional hardware/web deps are lazy.
    assert not {k: v for k, v in result["failed"].items() if "tensorflow" in v or "keras" in v}


def _help_probe(command: str) -> dict:
    extra = textwrap.dedent(
        f"""
        import digitlite
        try:
            digitlite.main(["{command}", "--help"])
        except SystemExit:
            pass
        """
    )
    return _probe(extra)


@pytest.mark.parametrize("command", ["read", "run", "serve", "doctor", "history", "correct", "corrections", "models",
                                     "config"])
def test_edge_commands_help_without_tensorflow(command):
    heavy = _help_probe(command)["heavy"]
    assert heavy == [], f"`digitlite {command}` imported {heavy}"


@pytest.mark.parametrize("command", ["eval-scenes", "eval"])
def test_host_evaluation_needs_no_tensorflow_either(command):
    """`eval` and `eval-scenes` left the device package for benchmarks/, but still run where only the reader is."""
    heavy = _help_probe(command)["heavy"]
    assert not [m for m in heavy if m.split(".")[0] != "benchmarks"], f"`digitlite {command}` imported {heavy}"
    assert "benchmarks.accuracy" in heavy


def test_runtime_classifies_without_tensorflow(mnist_dir):
    extra = textwrap.dedent(
        """
        from digitdata.mnist import load_mnist
        from edge_app.runtime import Classifier
        clf = Classifier()  # the model installed with digitlite
        data = load_mnist()
        labels, _ = clf.predict(clf.pixels_to_input(data.x_test[:200]))
        assert (labels == data.y_test[:200]).mean() > 0.95
        """
    )
    result = _probe(extra)
    assert result["heavy"] == [], result["heavy"]
