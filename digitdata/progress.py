"""Progress of the long steps: a bar on a terminal, one line per step in a log.

Rendering thousands of scenes or number lines, reading thousands of images (`digitlite eval`, `eval-scenes`) and
the conversion gate take minutes; without a sign a user cannot tell a slow start from a hang. On a terminal each
step shows a tqdm bar (tqdm is in the `train` and `bench` extras, where these steps run); where stderr is not a
terminal (a log file, CI, journald), or tqdm is not installed (a device's `[edge]` install), the step writes
one line to stderr when it starts, saying what it does and how much of it. Progress never makes a step fail.

    python -c "from digitdata.progress import progress; sum(progress(range(10**7), 'counting', unit='numbers'))"
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _bar(what: str, total: int | None, unit: str):
    """A tqdm bar on stderr, or None where stderr is not a terminal or tqdm is not installed."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # a device's [edge] install: the line instead
        return None
    return tqdm(total=total, desc=what, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)


def progress(items: Iterable[T], what: str, total: int | None = None, unit: str = "it",
             size: Callable[[T], int] | None = None) -> Iterator[T]:
    """`items`, one by one, with the progress of the step `what` shown (module docstring).

    Args:
        items: the step's work; an item counts as done when the next one is asked for (or the loop ends).
        what: what the step does, e.g. "rendering training scenes".
        total: how many `unit`s in all; by default `len(items)` where it has one.
        unit: what is counted, e.g. "scenes", "images".
        size: the `unit`s one item stands for (a chunk of 250 scenes), else 1.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    bar = _bar(what, total, unit)
    if bar is None:
        print(f"{what}: {total:,} {unit}" if total is not None else what, file=sys.stderr, flush=True)
        yield from items
        return
    try:
        for item in items:
            yield item
            bar.update(size(item) if size else 1)
    finally:
        bar.close()
