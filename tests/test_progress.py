"""Progress of long steps (issue 35 item 9): a tqdm bar on a terminal, one line per step in a log, never a failure
where tqdm is not installed (a device)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from digitdata.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_a_step_writes_one_line_saying_what_and_how_much(capsys):
    assert list(progress(range(1234), "rendering training scenes", unit="scenes")) == list(range(1234))
    assert capsys.readouterr().err == "rendering training scenes: 1,234 scenes\n"
    assert sum(progress((n for n in range(5)), "counting")) == 10  # no len: the step is named alone
    assert capsys.readouterr().err == "counting\n"


def test_on_a_terminal_a_step_shows_a_bar_counting_units(monkeypatch):
    pytest.importorskip("tqdm")
    from digitdata import progress as module

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bars = []
    monkeypatch.setattr(module, "_bar", lambda *args, bar=module._bar: bars.append(bar(*args)) or bars[-1])
    chunks = [list(range(250)), list(range(250)), list(range(100))]  # a set rendered in chunks of scenes
    got = list(progress(chunks, "rendering validation scenes", total=600, unit="scenes", size=len))
    assert got == chunks
    (bar,) = bars
    assert (bar.n, bar.total, bar.unit, bar.desc) == (600, 600, "scenes", "rendering validation scenes")
    shown = terminal.getvalue()
    assert "rendering validation scenes:   0%|" in shown and "/600" in shown, shown
    assert "rendering validation scenes: 600 scenes\n" not in shown, "a bar, not the log line"


def test_without_tqdm_a_terminal_gets_the_line_and_the_step_goes_on(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError: a device's [edge] install
    assert list(progress([1, 2, 3], "reading with digitlite", unit="images")) == [1, 2, 3]
    assert terminal.getvalue() == "reading with digitlite: 3 images\n"


def test_eval_says_how_many_images_it_reads(capsys):
    from benchmarks.evaluation import Sample, evaluate

    samples = (Sample(f"img{i}", "7", "", lambda: np.zeros((4, 4, 3), np.uint8)) for i in range(3))
    results = evaluate(samples, {"ours": lambda frame: ("7", [])}, total=3)
    assert [item.exact("ours") for item in results] == [True] * 3
    assert capsys.readouterr().err == "reading with ours: 3 images\n"
