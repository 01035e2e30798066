"""A whole mark sheet read to CSV (`digitlite read SHEET --table out.csv`, issue 34): time per sheet and cells right.

Sheets are rendered once before timing (`digitdata.sheets`: MNIST *test* digits in a ruled table of 15 rows of
8-9 marks, a printed header row and name column, skewed and in perspective, saved as JPEG files); each timed call
is what the command does for one file after it has loaded its models: decode the file, find and rectify the table,
read every cell, write the CSV atomically (`edge_app.cli.read_table_file`). After untimed warm-up calls, every
sheet is read `--runs` times; the figures are percentiles over all of them. Cells are scored against the sheets'
truth: a mark read exactly, a printed header or name cell as "text not read", an empty cell empty; a cell marked
unsure ("37?") is counted apart.

One core: the process pins itself with `os.sched_setaffinity` before importing numpy or OpenCV, and the
interpreter runs one thread.

    python -m benchmarks.table --cores 1 --sheets 10 --seed 51206 --out runs/table
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from digitlite import HelpFormatter

SHEETS = 10  # distinct sheets rendered
RUNS = 3  # timed reads of each sheet
WARMUP = 3  # untimed reads first
SEED = 51206
ROWS, MARKS = (14, 15), (8, 9)  # a whole class's sheet: 15-16 rows with the header, 9-10 columns with the names
TARGET_S = 1.0  # s per sheet on one core (issue 34)


def run_table(sheets: int = SHEETS, runs: int = RUNS, warmup: int = WARMUP, seed: int = SEED,
              threads: int = 1) -> dict:
    """Time whole sheets read to CSV and score their cells.

    Returns:
        {"sheets", "runs", "cells", "sheet_ms": summary, "stages_ms": {stage: summary}, "cells_right",
         "marks_right", "text_kept", "empty_kept", "unsure", "wrong": [a few cells, named], "peak_rss_mib"}.
    """
    import csv

    import cv2
    import numpy as np

    from benchmarks.timing import peak_rss_mib, summarize
    from digitdata.mnist import load_mnist
    from digitdata.sheets import SheetConfig, render_sheet
    from edge_app.cli import read_table_file
    from edge_app.read.table import TEXT_MARK, TableReader
    from edge_app.wiring import make_reader

    cv2.setNumThreads(len(os.sched_getaffinity(0)))
    mnist = load_mnist()
    rng = np.random.default_rng(seed)
    drawn = [render_sheet(rng, mnist.x_test, mnist.y_test, SheetConfig(rows=ROWS, marks=MARKS))
             for _ in range(max(1, sheets))]
    tables = TableReader(make_reader(threads=threads))
    with tempfile.TemporaryDirectory(prefix="digitlite-table-bench-") as folder:
        files = []
        for i, sheet in enumerate(drawn):
            files.append(Path(folder) / f"sheet{i:02d}.jpg")
            cv2.imwrite(str(files[-1]), sheet.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        out = Path(folder) / "out.csv"
        for i in range(warmup):
            read_table_file(files[i % len(files)], tables, out)
        sheet_ns, stage_ns, results = [], {}, []
        for _ in range(max(1, runs)):
            for i, path in enumerate(files):
                start = time.perf_counter_ns()
                result = read_table_file(path, tables, out)
                sheet_ns.append(time.perf_counter_ns() - start)
                if "error" in result:
                    raise ValueError(f"sheet {i} ({drawn[i].params}): {result['error']}")
                for stage, ms in result["stage_ms"].items():
                    stage_ns.setdefault(stage, []).append(int(ms * 1e6))
                with open(out, newline="") as f:
                    results.append((i, list(csv.reader(f))))
    scores = _score([(drawn[i], values) for i, values in results[:len(drawn)]], TEXT_MARK)
    return {"sheets": len(drawn), "runs": max(1, runs), "seed": seed, "threads": threads,
            "cpus": sorted(os.sched_getaffinity(0)),
            "picture_px": [list(s.image_bgr.shape[1::-1]) for s in drawn[:3]],
            "cells_per_sheet": scores.pop("cells") / len(drawn),
            "sheet_ms": summarize(sheet_ns, unit="ms"),
            "stages_ms": {stage: summarize(ns, unit="ms") for stage, ns in stage_ns.items()},
            **scores, "peak_rss_mib": peak_rss_mib()}


def _score(read: list, text_mark: str) -> dict:
    """Shares of cells right per kind, over (sheet, CSV rows) pairs; the wrong cells named (the first 20)."""
    right = {"mark": [0, 0], "text": [0, 0], "empty": [0, 0]}
    unsure, wrong = 0, []
    for i, (sheet, values) in enumerate(read):
        if (len(values), len(values[0]) if values else 0) != (len(sheet.cells), len(sheet.cells[0])):
            wrong.append(f"sheet {i}: read {len(values)} rows, drawn {len(sheet.cells)}x{len(sheet.cells[0])}")
            for kinds in sheet.kinds:
                for kind in kinds:
                    right["text" if kind in ("header", "name") else kind][1] += 1
            continue
        for r, (cells, kinds) in enumerate(zip(sheet.cells, sheet.kinds, strict=True)):
            for c, (truth, kind) in enumerate(zip(cells, kinds, strict=True)):
                group = "text" if kind in ("header", "name") else kind
                want = text_mark if group == "text" else truth
                got = values[r][c]
                right[group][1] += 1
                right[group][0] += got == want
                unsure += got.endswith("?")
                if got != want:
                    wrong.append(f"sheet {i} row {r} col {c}: {truth or kind!r} read {got!r}")
    cells = sum(n for _, n in right.values())
    return {"cells": cells, "cells_right": sum(k for k, _ in right.values()) / max(1, cells),
            "marks_right": right["mark"][0] / max(1, right["mark"][1]),
            "text_kept": right["text"][0] / max(1, right["text"][1]),
            "empty_kept": right["empty"][0] / max(1, right["empty"][1]),
            "unsure": unsure / max(1, cells), "wrong": wrong[:20]}


STAGES = {"decode_and_write": "decode the file, write the CSV", "find": "find and rectify the table",
          "read": "read the cells", "total": "the table reader in all"}


def markdown(result: dict, command: str, machine: dict) -> str:
    s = result["sheet_ms"]
    verdict = "meets" if s["p90_ms"] <= TARGET_S * 1e3 else "misses"
    m, git = machine["machine"], machine["git"]
    rows = [f"Command: `{command}` (MNIST test digits; {result['sheets']} sheets of {result['cells_per_sheet']:.0f} "
            f"cells, each read {result['runs']} times; CPUs {result['cpus']}, {result['threads']} interpreter thread)",
            "",
            f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, load average {m['load_average_1_5_15min']} (1, 5, 15 min); "
            f"commit {(git['commit'] or 'unknown')[:7]}{' with changes' if git['dirty'] else ''}; "
            f"{machine['date'][:10]}.",
            "",
            "| per sheet | p50 | p90 | p99 | mean |", "|---|---:|---:|---:|---:|",
            f"| decode, find, read every cell, write the CSV | {s['p50_ms']:.0f} ms | {s['p90_ms']:.0f} ms | "
            f"{s['p99_ms']:.0f} ms | {s['mean_ms']:.0f} ms |"]
    for stage, t in result["stages_ms"].items():
        rows.append(f"| {STAGES.get(stage, stage)} | {t['p50_ms']:.0f} ms | {t['p90_ms']:.0f} ms | "
                    f"{t['p99_ms']:.0f} ms | {t['mean_ms']:.0f} ms |")
    rows += ["", f"p90 {verdict} the target of {TARGET_S:g} s per sheet on one core.", "",
             "| cells right | marks read exactly | printed cells kept as text | empty cells empty | marked unsure |",
             "|---:|---:|---:|---:|---:|",
             f"| {result['cells_right']:.1%} | {result['marks_right']:.1%} | {result['text_kept']:.1%} | "
             f"{result['empty_kept']:.1%} | {result['unsure']:.1%} |"]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.table", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--cores", type=int, default=1, help="pin to this many CPUs (0: all allowed)")
    parser.add_argument("--sheets", type=int, default=SHEETS, help="distinct sheets rendered")
    parser.add_argument("--runs", type=int, default=RUNS, help="timed reads of each sheet")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed reads first")
    parser.add_argument("--seed", type=int, default=SEED, help="sheet seed (pick one nobody tuned on)")
    parser.add_argument("--out", type=Path, default=None, help="write table.md and table.json (with the machine) here")
    args = parser.parse_args(argv)
    from benchmarks.pipeline import pin_cores

    pin_cores(args.cores or None)  # before numpy/OpenCV start their thread pools
    from benchmarks.machine import describe

    result = run_table(args.sheets, args.runs, args.warmup, args.seed)
    machine = describe()
    text = markdown(result, "python -m benchmarks.table " + " ".join(argv if argv is not None else sys.argv[1:]),
                    machine)
    print(text)
    if args.out:
        from digitdata.atomic import write_json, write_text

        args.out.mkdir(parents=True, exist_ok=True)
        write_text(args.out / "table.md", text)
        write_json(args.out / "table.json", {**machine, "table": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
