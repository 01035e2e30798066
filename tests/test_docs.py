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
