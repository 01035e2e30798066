"""Splices generated tables into the documents (README.md, docs/*.md) between `<!-- BEGIN path -->` and
`<!-- END path -->` markers.

Every full results table comes from a file a command wrote (benchmarks/latest.md from `digitlite bench`,
benchmarks/architectures.md from `digitlite architectures`, models/conversion.md from `digitlite convert`);
this copies them in, so no document holds a hand-typed copy of a table.

    python -m benchmarks.readme            # make readme
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"(<!-- BEGIN (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- END (?P=path) -->)", re.S)


def splice(readme: str, root: Path = REPO) -> str:
    """README text with each marked block replaced by the current content of the file it names."""
    def replace(match: re.Match) -> str:
        source = root / match["path"]
        if not source.is_file():
            raise FileNotFoundError(f"README block names {match['path']}, which does not exist; run the command "
                                    f"that generates it first")
        body = re.sub(r"<!--.*?-->\n?", "", source.read_text()).strip()
        body = re.sub(r"\A# .*\n+", "", body) + "\n"  # the file's own title; README has its headings
        return match.group(1) + body + match.group(4)

    return MARKER.sub(replace, readme)


def documents(root: Path = REPO) -> list[Path]:
    """The Markdown documents that may hold generated blocks: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    from digitdata.atomic import write_text

    for path in documents():
        try:
            text = splice(path.read_text())
        except FileNotFoundError as exc:
            print(f"readme: {path.relative_to(REPO)}: {exc}", file=sys.stderr)
            return 1
        write_text(path, text)
        print(f"{path.relative_to(REPO)}: {len(MARKER.findall(text))} generated blocks refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
