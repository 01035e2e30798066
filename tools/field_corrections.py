"""A field user, simulated: the device reads camera-like scenes and the user corrects every misread in the history.

For README's worked example of issue 14, where no real device's corrections exist yet. Scenes are rendered by
the data engine (`digitdata.engine`, 640x480 camera frames) from MNIST *training* digits outside the training
split's validation hold-out (so `convert`'s gate on the test set and early stopping stay untouched by what is
learned). Each scene is read
by the released reader; each reading is stored in a readings history with its number regions (`Reading.crops`)
and frame, as the live loop stores it; each misread whose count of numbers is right is corrected with the
scene's truth through `ReadingStore.correct`, the call behind `digitlite correct` and the web view's button,
which labels each region with its number. Then `digitlite corrections export` and
`digitlite train-recognizer --extra` take over.

    python -m tools.field_corrections --scenes 6000 --history runs/field/readings.db
    digitlite corrections export runs/field/corrections --db runs/field/readings.db
    digitlite train-recognizer --extra runs/field/corrections --init runs/recognizer/model.keras --out runs/rec-field
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from digitdata import engine
from digitdata.mnist import find_mnist
from digitdata.scene_sets import digit_split
from digitlite import HelpFormatter
from edge_app.store.history import ReadingStore
from edge_app.wiring import make_reader


def simulate(history: Path, scenes: int, seed: int) -> dict:
    """Read `scenes` scenes into `history`, correct the misreads; counts of what happened."""
    images, labels = digit_split(find_mnist(), "train")
    reader = make_reader()
    store = ReadingStore(history)
    frames = engine.scenes(seed, images, labels, kind="frame")
    counts = {"scenes": scenes, "exact": 0, "corrected": 0, "labelled": 0, "wrong_count": 0}
    try:
        for _ in range(scenes):
            scene = next(frames)
            reading = reader.read(scene.image_bgr)
            ok, jpeg = cv2.imencode(".jpg", scene.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
            record = store.add(reading.to_dict(), "field simulation", reader.integrity.sha256,
                               crops=reading.crops, frame_jpeg=jpeg.tobytes())
            if reading.text == scene.text:
                counts["exact"] += 1
            elif scene.text and len(reading.numbers) == len(scene.text.split()):
                corrected = store.correct(record["id"], scene.text)  # what the user types in the web view
                counts["corrected"] += 1
                counts["labelled"] += corrected["examples"]["labelled"]
            else:
                counts["wrong_count"] += 1  # a number missed or one too many: left for a later reader to find
    finally:
        store.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--scenes", type=int, default=6000, help="scenes the device reads")
    parser.add_argument("--seed", type=int, default=14, help="scene seed")
    parser.add_argument("--history", type=Path, default=Path("runs/field/readings.db"), help="the readings history")
    args = parser.parse_args(argv)
    counts = simulate(args.history, args.scenes, args.seed)
    print(f"{counts['scenes']} scenes read into {args.history}: {counts['exact']} exact, {counts['corrected']} "
          f"misreads corrected by the user ({counts['labelled']} with their regions labelled), "
          f"{counts['wrong_count']} with a number missed or extra (not corrected)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
