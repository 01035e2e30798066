"""The reader measured per stage on the data engine's mixes: finding, reading, and the two together.

For each mix (MNIST *test* digits, a seed of your choice), every scene is read three ways:
  * finding: the region finder's lines against the true number lines (precision and recall at IoU 0.5 of
    their upright boxes; for `distractors`, the share of pages where nothing was found);
  * reading: the recognizer on the *true* line regions, cut as the reader cuts its own (exact strings);
  * end to end: `DigitReader.read` (exact, whitespace removed; for `distractors`: nothing read).
So a miss is known to be a finding or a reading error. Writes a markdown table (and JSON with --out).

    python -m benchmarks.stages --count 300 --seed 20261204
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

MIXES = ("photo", "form", "hard", "distractors")


def stage_scores(reader, mix: str, count: int, seed: int) -> dict:
    """Per-stage figures of `reader` on `count` scenes of `mix`."""
    from digitdata import engine, regions
    from digitdata.crops import ink_is_dark
    from digitdata.frames import as_gray_uint8
    from digitdata.mnist import load_mnist

    m = load_mnist()
    tp = fp = fn = 0
    lines_right = lines_total = 0
    exact = quiet_found = 0
    for _, scene in zip(range(count), engine.scenes(seed, m.x_test, m.y_test, engine.MIXES[mix]), strict=False):
        gray = as_gray_uint8(scene.image_bgr)
        found = reader.find(gray)
        truth = regions.true_line_boxes(np.asarray(scene.boxes, np.float32).reshape(-1, 4), scene.text)
        a, b, c = regions.match([r.box() for r in found], truth)
        tp, fp, fn = tp + a, fp + b, fn + c
        quiet_found += not found
        dark = ink_is_dark(gray)
        for line_boxes, text in zip(regions.split_lines(np.asarray(scene.boxes, np.float32), scene.text),
                                    scene.text.split(), strict=True):
            r = regions.Region(*regions.line_rect(line_boxes), 1.0)
            lines_right += reader._read_region(gray, r, dark)[0] == text
            lines_total += 1
        exact += "".join(reader.read(scene.image_bgr).text.split()) == "".join(scene.text.split())
    out = {"mix": mix, "scenes": count, "seed": seed, "end_to_end_exact": exact / count}
    if lines_total:
        out.update({"finding_precision": tp / max(tp + fp, 1), "finding_recall": tp / max(tp + fn, 1),
                    "reading_true_regions": lines_right / lines_total, "lines": lines_total})
    else:
        out["nothing_found"] = quiet_found / count
    return out


def markdown(rows: list[dict], command: str) -> str:
    out = [f"Command: `{command}` (MNIST test digits; finding at IoU 0.5 of upright line boxes)", "",
           "| mix | scenes | lines | finding precision | finding recall | reading (true regions) | end to end |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "lines" in r:
            out.append(f"| {r['mix']} | {r['scenes']} | {r['lines']} | {r['finding_precision']:.1%} | "
                       f"{r['finding_recall']:.1%} | {r['reading_true_regions']:.1%} | {r['end_to_end_exact']:.1%} |")
        else:
            out.append(f"| {r['mix']} | {r['scenes']} | 0 | nothing found on {r['nothing_found']:.1%} | - | - | "
                       f"nothing read on {r['end_to_end_exact']:.1%} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="scenes per mix")
    parser.add_argument("--seed", type=int, default=20261204, help="scene seed (pick one nobody tuned on)")
    parser.add_argument("--mix", nargs="*", choices=MIXES, default=list(MIXES))
    parser.add_argument("--regions", type=Path, default=None, help="region finder .tflite (default: released)")
    parser.add_argument("--recognizer", type=Path, default=None, help="recognizer .tflite (default: released)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write stages.md and stages.json here (README splices benchmarks/stages.md)")
    args = parser.parse_args(argv)
    from edge_app.runtime import DEFAULT_RECOGNIZER, DEFAULT_REGIONS
    from edge_app.wiring import make_reader

    reader = make_reader(regions=args.regions or DEFAULT_REGIONS, recognizer=args.recognizer or DEFAULT_RECOGNIZER,
                         allow_unverified=args.regions is not None or args.recognizer is not None)
    rows = [stage_scores(reader, mix, args.count, args.seed) for mix in args.mix]
    text = markdown(rows, "python -m benchmarks.stages " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    if args.out:
        from digitdata.atomic import write_json, write_text

        args.out.mkdir(parents=True, exist_ok=True)
        write_text(args.out / "stages.md", text)
        write_json(args.out / "stages.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
