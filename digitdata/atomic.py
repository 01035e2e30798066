"""Atomic outputs: a file is either the old one or the whole new one, never half-written, and the rename is
itself on disk before the write returns (the folder is synced), so a power cut keeps whichever one it was.

    python -c "from digitdata.atomic import write_json; write_json('x.json', {'a': 1})"
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; released files must be readable
    try:
        yield tmp_path
        os.replace(tmp_path, path)
        sync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def sync_dir(folder: str | Path) -> None:
    """Flush a folder's entries to disk, so that a rename or a new file inside it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` in place and flush it to disk (for a file no one reads before it is complete: a
    temporary file, a staging folder's)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` atomically, flushed to disk before the rename (a power cut leaves old or new)."""
    with atomic_path(path) as tmp:
        write_synced(tmp, data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
