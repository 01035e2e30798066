"""Writes the engine-made golden images: one per condition the reader must handle (MNIST *test* digits).

The truth is the engine's (the digits it drew), never a reading. Rerun only to add a condition; the
committed JPEGs are what the tests read.

    python tests/data/golden/make_golden.py [NAME.jpg ...]   # from the repository root; all cases by default
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from digitdata import engine  # noqa: E402
from digitdata.mnist import load_mnist  # noqa: E402

QUIET = dict(text_p=0.0, scribble_p=0.0, specks_p=0.0, show_through_p=0.0, underline_p=0.0, glare_p=0.0,
             hard_shadow_p=0.0, bright_ink_p=0.0, sticky_p=0.0, cells_p=0.0)
CASES = {  # name -> (engine settings, kind, what the scene must show, seed to start from)
    "tight_crop.jpg": (dict(QUIET, frame_share=0.0, tight_share=1.0), "crop", {"tight"}, 0),
    "marker_photo.jpg": (dict(QUIET, frame_share=0.0, tight_share=1.0, stroke=(0.2, 0.22)), "crop", {"marker"}, 12),
    "touching.jpg": (dict(QUIET, touching_p=1.0, single_share=0.0, long_share=0.0, second_line_p=0.0,
                          min_height_px=50.0), "frame", {"touching"}, 5),
    "tilted_row.jpg": (dict(QUIET, single_share=0.0, long_share=0.0, second_line_p=0.0, touching_p=0.0,
                            min_height_px=40.0), "frame", {"tilted"}, 0),
    "alone_on_page.jpg": (dict(QUIET, single_share=1.0, ruled_p=0.0, squared_p=0.0, dotted_p=0.0, cells_p=0.0,
                               desk_p=0.0, min_height_px=30.0), "frame", {"frame"}, 23),
    # A page with printed words, a scribble and lines and no digit (the right reading is nothing), and a
    # number beside a printed form label.
    "words_no_digit.jpg": (dict(digits=False, text_p=1.0, words_p=1.0, scribble_p=1.0, min_height_px=40.0,
                                single_share=0.0, second_line_p=0.0, bright_ink_p=0.0, sticky_p=0.0), "frame",
                           {"text", "scribble"}, 0),
    "label_and_number.jpg": (dict(QUIET, text_p=1.0, words_p=1.0, single_share=0.0, long_share=0.0, max_digits=3,
                                  second_line_p=0.0, touching_p=0.0, min_height_px=40.0), "frame", {"text"}, 0),
}
MARKER_PHOTO_SIDE = 1600  # px: the marker digit is shown as a large phone photo


def main(only: list[str]) -> int:
    """Writes the cases named in `only` (all when empty)."""
    m = load_mnist()
    rows = []
    for name, (settings, kind, must, seed) in CASES.items():
        if only and name not in only:
            continue
        cfg = dataclasses.replace(engine.EngineConfig(), **settings)
        for s in range(seed, seed + 500):
            scene = engine.render(np.random.default_rng([20261201, s]), m.x_test, m.y_test, cfg, kind)
            if must <= set(scene.conditions) and (name != "tilted_row.jpg" or abs(scene.params["tilt_deg"]) > 8) \
                    and (name != "label_and_number.jpg" or len(scene.text) >= 2):
                break
        image = scene.image_bgr
        if name == "marker_photo.jpg":
            f = MARKER_PHOTO_SIDE / max(image.shape[:2])
            image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(HERE / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        rows.append((name, "".join(scene.lines)))
        print(f"{name}: {scene.text!r} seed [20261201, {s}] conditions {scene.conditions}")
    truth = HERE / "truth.csv"
    with open(truth, newline="") as f:
        existing = [r for r in csv.DictReader(f) if r["file"] not in {name for name, _ in rows}]
    with open(truth, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "text"])
        writer.writerows([(r["file"], r["text"]) for r in existing] + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
