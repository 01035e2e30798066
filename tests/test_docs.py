"""The documents a newcomer reads: README.md and docs/*.md link only to files that exist, and every generated
table in them is the current content of the file its command wrote (`make readme` leaves them unchanged)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.readme import MARKER, documents, splice

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize("doc", documents(REPO), ids=lambda p: p.name)
def test_relative_links_point_at_files_that_exist(doc):
    missing = [target for target in LINK.findall(doc.read_text())
               if not (doc.parent / target[0]).exists()]
    assert not missing, f"{doc.relative_to(REPO)} links to missing files: {missing}"


@pytest.mark.parametrize("doc", documents(REPO), ids=lambda p: p.name)
def test_generated_tables_are_current(doc):
    text = doc.read_text()
    assert splice(text, REPO) == text, f"{doc.relative_to(REPO)} is out of date: run `make readme`"


def test_readme_is_a_guide_and_the_tables_live_in_docs():
    readme = (REPO / "README.md").read_text()
    assert readme.startswith("# digitlite\n\n```sh\nmake demo")
    assert not MARKER.search(readme), "full tables belong in docs/results.md"
    assert MARKER.search((REPO / "docs" / "results.md").read_text())


def test_splice_replaces_a_block_with_its_file(tmp_path):
    (tmp_path / "t.md").write_text("<!-- generated -->\n# Title\n\n| a |\n")
    doc = "before\n<!-- BEGIN t.md -->\nold\n<!-- END t.md -->\nafter\n"
    assert splice(doc, tmp_path) == "before\n<!-- BEGIN t.md -->\n| a |\n<!-- END t.md -->\nafter\n"
    with pytest.raises(FileNotFoundError, match="gone.md"):
        splice("<!-- BEGIN gone.md -->\n<!-- END gone.md -->", tmp_path)


# ---------------------------------------------------------------------------------------------- names in the docs

PACKAGES = ("digitdata", "train", "convert", "edge_app", "benchmarks", "tools", "tests")
CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
COMMAND_IN_TEXT = re.compile(r"`(?:python -m )?digitlite ([a-z][\w-]*)")
COMMAND_IN_BLOCK = re.compile(r"^\s*(?:sudo\s+)?digitlite ([a-z][\w-]*)", re.M)
MODULE_PATH = re.compile(rf"(?<![\w/.])((?:{'|'.join(PACKAGES)})/[\w/-]*\.py)(?:: `?(\w+))?")
DOTTED_NAME = re.compile(rf"(?<![\w/.])((?:{'|'.join(PACKAGES[:-1])})(?:\.[A-Za-z_]\w*)+)")
LATENCY_LIST = re.compile(r"`(latency_ms|stage_ms)`:\s+([a-z_]+(?:,\s+[a-z_]+)*)\)")


def _all_docs() -> dict[str, str]:
    return {doc.relative_to(REPO).as_posix(): doc.read_text() for doc in documents(REPO)}


def _top_level_names(path: Path) -> set[str]:
    """What a module defines or imports at its top level (functions, classes, constants, names imported)."""
    import ast

    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def _module_file(dotted: str) -> Path | None:
    base = REPO.joinpath(*dotted.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def test_every_command_the_docs_name_is_a_digitlite_subcommand():
    """Issue 35 item 7: `digitlite X` in README.md and docs/*.md, in the text or a shell block, is in the registry."""
    import digitlite

    unknown = {}
    for name, text in _all_docs().items():
        named = set(COMMAND_IN_TEXT.findall(text))
        named |= {c for block in CODE_BLOCK.findall(text) for c in COMMAND_IN_BLOCK.findall(block)}
        if missing := sorted(named - set(digitlite.COMMANDS)):
            unknown[name] = missing
    assert not unknown, f"commands named in the docs that `digitlite --help` does not list: {unknown}"


def test_every_module_path_and_name_the_docs_give_exists():
    """`edge_app/read/pipeline.py`, `digitdata/crops.py: digit_to_mnist`, `edge_app.config.TableSettings`, `python -m
    benchmarks.stages`: each file is there, each name defined in it (read statically: nothing is imported)."""
    wrong = []
    for name, text in _all_docs().items():
        for path, attribute in MODULE_PATH.findall(text):
            if not (REPO / path).is_file():
                wrong.append(f"{name}: {path} is not a file")
            elif attribute and attribute not in _top_level_names(REPO / path):
                wrong.append(f"{name}: {path} defines no {attribute}")
        for dotted in DOTTED_NAME.findall(text):
            parts = dotted.split(".")
            # The longest prefix that is a module; the next part, if any, must be defined in it.
            depth = next((k for k in range(len(parts), 0, -1) if _module_file(".".join(parts[:k]))), 0)
            module = _module_file(".".join(parts[:depth])) if depth else None
            if module is None:
                wrong.append(f"{name}: {dotted} names no module")
            elif depth < len(parts) and parts[depth] not in _top_level_names(module):
                wrong.append(f"{name}: {'.'.join(parts[:depth])} defines no {parts[depth]}")
    assert not wrong, "\n".join(wrong)


def test_the_latency_keys_the_docs_list_are_the_ones_the_commands_print(tmp_path):
    """`read --json`'s `stage_ms` and `run`'s `latency_ms`, as docs/device.md lists them, are the keys printed."""
    import json
    import subprocess
    import sys

    from edge_app.cli import read_file
    from edge_app.config import ReaderOptions
    from edge_app.wiring import reader_from

    scene = REPO / "tests" / "data" / "golden" / "scene_02.jpg"
    printed = {"stage_ms": list(read_file(scene, reader_from(ReaderOptions()))["stage_ms"])}
    run = subprocess.run([sys.executable, "-m", "digitlite", "run", "--source", str(scene), "--headless",
                          "--stable-frames", "1", "--max-frames", "1", "--history", str(tmp_path / "r.db")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    printed["latency_ms"] = list(json.loads(run.stdout.splitlines()[0])["latency_ms"])
    listed = [(name, key, re.split(r",\s+", keys)) for name, text in _all_docs().items()
              for key, keys in LATENCY_LIST.findall(text)]
    assert {key for _, key, _ in listed} == set(printed), listed
    for name, key, keys in listed:
        assert keys == printed[key], f"{name} lists {key} as {keys}; the command prints {printed[key]}"
