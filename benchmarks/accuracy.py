"""Accuracy of the reader on the host: `digitlite eval` (a folder of labelled photos) and `digitlite eval-scenes`
(the data engine's rendered scenes), each scored by `benchmarks.evaluation` and reported by
`benchmarks.eval_report`, with a peer reader beside it if asked (`--peer ppocr`). Host tools: they sit with the
speed measurements (accuracy and speed of the same reader, measured in one place), not in the device's
`edge_app`, which they only call.

    digitlite eval-scenes --count 200
    digitlite eval ../shared/datasets/real-photos --peer ppocr --out runs/eval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_app.cli import _parser, add_model_options, reader_from_args
from edge_app.config import ReaderOptions
from edge_app.wiring import MODEL_ERRORS, model_paths

MIX_NAMES = ("photo", "form", "hard", "distractors")  # digitdata.engine.MIXES (not imported here: it needs no MNIST)


# ---------------------------------------------------------------------------------------------- eval-scenes


def eval_scenes(readers: dict, count: int = 200, seed: int = 0, thumbnail=None, mix: str = "photo") -> list:
    """Every reader on `count` engine scenes of one mix written with MNIST *test* digits, scored by
    `benchmarks.evaluation`.

    A scene's kind is the main condition it was made for (tight, small, frame, ...; "no-digit" where nothing
    is written); each picture is rendered, read and dropped in turn (only the misses' thumbnails are kept).
    """
    from benchmarks.evaluation import Sample, evaluate
    from digitdata.engine import MIXES, scenes
    from digitdata.mnist import load_mnist

    mnist = load_mnist()
    samples = (Sample(f"scene {i}", scene.text, scene.kind, lambda f=scene.image_bgr: f)
               for i, scene in zip(range(count), scenes(seed, mnist.x_test, mnist.y_test, MIXES[mix]), strict=False))
    return evaluate(samples, readers, thumbnail, total=count)


def stress_grid(readers: dict, count: int, seed: int, strokes=None, heights=None, digit_counts=None) -> dict:
    """The reader on every cell of the stress grid (`digitdata.engine.stress_cell`: pen width x digit height x
    digits; by default `engine.GRID_*`), `count` scenes a cell written with MNIST *test* digits; exact rate per
    cell and reader."""
    from benchmarks.evaluation import Sample, evaluate
    from digitdata.engine import GRID_DIGITS, GRID_HEIGHTS, GRID_STROKES, scenes, stress_cell
    from digitdata.mnist import load_mnist

    strokes, heights = strokes or GRID_STROKES, heights or GRID_HEIGHTS
    digit_counts = digit_counts or GRID_DIGITS
    mnist = load_mnist()
    cells = []
    for k, (stroke, height, digits) in enumerate((s, h, d) for d in digit_counts for h in heights
                                                 for s in strokes):
        stream = scenes(seed + k, mnist.x_test, mnist.y_test, stress_cell(stroke, height, digits))
        samples = (Sample(f"cell {k} scene {i}", scene.text, "grid", lambda f=scene.image_bgr: f)
                   for i, scene in zip(range(count), stream, strict=False))
        results = evaluate(samples, readers, None, total=count)
        cells.append({"stroke": stroke, "height_px": height, "digits": f"{digits[0]}-{digits[1]}",
                      "scenes": len(results),
                      "exact": {r: sum(item.exact(r) for item in results) / max(len(results), 1) for r in readers}})
    return {"cells": cells, "strokes": list(strokes), "heights_px": list(heights),
            "digits": [f"{lo}-{hi}" for lo, hi in digit_counts], "scenes_per_cell": count, "seed": seed}


def grid_markdown(grid: dict, reader: str = "digitlite") -> str:
    """One table per digit count: rows digit height, columns stroke width, exact rate."""
    out = [f"Stress grid, {grid['scenes_per_cell']} scenes a cell (seed {grid['seed']}), exact rate of {reader}; "
           f"the weakest cell: {min(c['exact'][reader] for c in grid['cells']):.1%}\n"]
    for digits in grid["digits"]:
        out.append(f"\n| **{digits} digits** | " + " | ".join(f"stroke {s:.1%}" for s in grid["strokes"]) + " |")
        out.append("|---" * (len(grid["strokes"]) + 1) + "|")
        for h in grid["heights_px"]:
            row = [c for c in grid["cells"] if c["digits"] == digits and c["height_px"] == h]
            out.append(f"| {h} px | " + " | ".join(f"{c['exact'][reader]:.1%}" for c in row) + " |")
    return "\n".join(out) + "\n"


def grid_picture(grid: dict, reader: str = "digitlite"):
    """A heat map (BGR uint8) of the grid: red below 90 %, green at 100 %; one panel per digit count."""
    import cv2
    import numpy as np

    cell, pad = 64, 90
    panels = []
    for digits in grid["digits"]:
        h = pad + cell * len(grid["heights_px"])
        panel = np.full((h, pad + cell * len(grid["strokes"]), 3), 255, np.uint8)
        cv2.putText(panel, f"{digits} digits", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        for j, s in enumerate(grid["strokes"]):
            cv2.putText(panel, f"{s:.1%}", (pad + j * cell + 4, pad - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        for i, height in enumerate(grid["heights_px"]):
            cv2.putText(panel, f"{height}px", (4, pad + i * cell + 36), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
            for j, s in enumerate(grid["strokes"]):
                c = next(c for c in grid["cells"] if c["digits"] == digits and c["height_px"] == height
                         and c["stroke"] == s)
                v = c["exact"][reader]
                t = float(np.clip((v - 0.9) / 0.1, 0, 1))
                colour = (60, int(80 + 150 * t), int(220 * (1 - t) + 30))
                x0, y0 = pad + j * cell, pad + i * cell
                cv2.rectangle(panel, (x0, y0), (x0 + cell - 2, y0 + cell - 2), colour, -1)
                cv2.putText(panel, f"{100 * v:.0f}", (x0 + 14, y0 + 38), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                            (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(panel)
    return np.hstack(panels)


def eval_scenes_main(argv: list[str]) -> int:
    parser = _parser("eval-scenes", "Accuracy and speed of the reader on camera-like synthetic scenes: the "
                                    "report of `digitlite eval`, with each scene's number as the truth.")
    parser.add_argument("--count", type=int, default=200, help="scenes to render and read")
    parser.add_argument("--seed", type=int, default=0, help="scene generator seed")
    parser.add_argument("--mix", choices=sorted(MIX_NAMES), default="photo",
                        help="the data engine's mix: photo (what people photograph), form (labels, lines, cells), "
                             "hard (small digits, long rows, three lines), distractors (no digit at all)")
    parser.add_argument("--grid", action="store_true",
                        help="the stress grid instead of a mix: stroke width x digit height x digits, --count "
                             "scenes a cell; a table and a heat map")
    parser.add_argument("--grid-strokes", type=float, nargs="+", default=None, metavar="FRACTION",
                        help="only these stroke widths, in digit heights (default: digitdata.engine.GRID_STROKES)")
    parser.add_argument("--grid-heights", type=int, nargs="+", default=None, metavar="PX",
                        help="only these digit heights in px (default: digitdata.engine.GRID_HEIGHTS)")
    parser.add_argument("--grid-digits", nargs="+", default=None, metavar="LO-HI",
                        help="only these digit counts, e.g. 1-1 3-6 (default: digitdata.engine.GRID_DIGITS)")
    _add_eval_options(parser)
    add_model_options(parser)
    args = parser.parse_args(argv)
    if args.count < 1:
        print("digitlite eval-scenes: --count must be at least 1", file=sys.stderr)
        return 2
    if args.grid:
        return _grid_main(args)
    meta = {"command": " ".join(["digitlite eval-scenes", *argv]), "scenes": args.count, "seed": args.seed,
            "mix": args.mix, "source": f"digitdata.engine mix {args.mix}, MNIST test digits, seed {args.seed}"}
    return _evaluate_and_report("eval-scenes", args, meta, lambda readers, thumbnail: eval_scenes(
        readers, args.count, args.seed, thumbnail, args.mix))


def _grid_main(args) -> int:
    import cv2

    from benchmarks.evaluation import from_reader
    from digitdata.atomic import write_bytes, write_json, write_text

    try:
        readers = {"digitlite": from_reader(reader_from_args(args))}
    except MODEL_ERRORS as exc:
        print(f"digitlite eval-scenes: {exc}", file=sys.stderr)
        return 2
    digits = [tuple(int(n) for n in d.split("-", 1)) if "-" in d else (int(d), int(d)) for d in args.grid_digits or []]
    grid = stress_grid(readers, args.count, args.seed, args.grid_strokes, args.grid_heights, digits or None)
    table = grid_markdown(grid)
    if args.out is not None:
        write_json(args.out / "grid.json", grid)
        write_text(args.out / "grid.md", table)
        write_bytes(args.out / "grid.png", cv2.imencode(".png", grid_picture(grid))[1].tobytes())
    print(json.dumps(grid) if args.json else table)
    return 0


# ---------------------------------------------------------------------------------------------- eval

PEERS = {"ppocr": "benchmarks.ppocr_peer:PPOCRPeer",  # --peer name -> its adapter, imported only when asked for
         "ppocr-best": "benchmarks.ppocr_peer:ppocr_best"}


def _add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peer", choices=sorted(PEERS), default=None,
                        help="also read every image with this peer and report both (needs the bench extra)")
    parser.add_argument("--out", type=Path, default=None, help="write report.json, report.md and misses.png here")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON, not the summary")


def _evaluate_and_report(prog: str, args, meta: dict, run) -> int:
    """Build the readers (ours, and the peer if asked), `run(readers, thumbnail)`, report. Returns the exit code."""
    import importlib

    from benchmarks import eval_report
    from benchmarks.evaluation import from_reader

    try:
        readers = {"digitlite": from_reader(reader_from_args(args))}
    except MODEL_ERRORS as exc:
        print(f"digitlite {prog}: {exc}", file=sys.stderr)
        return 2
    paths = model_paths(ReaderOptions(regions=args.regions, recognizer=args.recognizer))
    about = {"digitlite": f"reader: {paths['regions'].name} + {paths['recognizer'].name}, "
                          f"{args.threads} interpreter thread(s)"}
    if args.peer:
        module, name = PEERS[args.peer].split(":")
        try:
            peer = getattr(importlib.import_module(module), name)()
        except ImportError as exc:
            print(f"digitlite {prog}: {exc}", file=sys.stderr)
            return 3
        readers[args.peer], about[args.peer] = peer.predict, peer.description
    results = run(readers, eval_report.thumbnail)
    report = eval_report.build_report(results, about, meta)
    if args.out is not None:
        eval_report.write_report(args.out, report, results)
    print(json.dumps(report) if args.json else eval_report.summary_text(report, args.out))
    return 0


def eval_main(argv: list[str]) -> int:
    parser = _parser("eval", "Accuracy and speed on a folder of labelled images: labels.csv (file,label[,kind]; "
                             "labels are digit strings, leading zeros count, spaces between numbers on different "
                             "lines, empty for an image with no number) beside the images or an images/ "
                             "folder. Exact-number and per-digit accuracy, overall and per kind, time per image, "
                             "and a contact sheet of the misses.")
    parser.add_argument("folder", type=Path, help="the folder with labels.csv (else truth.csv) and the images")
    parser.add_argument("--labels", type=Path, default=None,
                        help="the labels file; None: FOLDER/labels.csv, else FOLDER/truth.csv")
    _add_eval_options(parser)
    add_model_options(parser)
    args = parser.parse_args(argv)
    from benchmarks.evaluation import LabelsError, evaluate, labelled_samples
    from edge_app.read.images import read_image

    try:
        labels, samples = labelled_samples(args.folder, read_image, args.labels)
    except (LabelsError, OSError) as exc:
        print(f"digitlite eval: {exc}", file=sys.stderr)
        return 2
    meta = {"command": " ".join(["digitlite eval", *argv]), "folder": str(args.folder), "labels": str(labels)}
    return _evaluate_and_report("eval", args, meta,
                                lambda readers, thumbnail: evaluate(samples, readers, thumbnail))
