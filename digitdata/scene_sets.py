"""Sets of engine scenes as detector inputs: rendered in parallel, cached, the same on every machine.

Training scenes are written with MNIST *training* digits outside the classifier's validation split; the
validation scenes (early stopping, and the release gate's fixed set) with the digits of that split. Test
digits are never used here: they are for `digitlite eval-scenes`.

Scenes are rendered in parallel, each from its own seed (`[seed, index]`), so a set is the same whatever
the number of worker processes; a rendered set is cached as one .npz keyed by its recipe.

    python -m digitdata.scene_sets --count 64 --seed 0   # renders (or loads) a set and prints its summary
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from digitdata import crops, engine, frames, heatmap
from digitdata.mnist import Mnist, cache_dir, find_mnist

VALIDATION_DIGITS = 5000  # training images held out, as for the classifier (same split, same seed)
SPLIT_SEED = 42
CHUNK = 250  # scenes per worker task (and per cache file)
BOX_JITTER = 0.08  # of the digit height: how far a detector's box may sit from the truth (crops are made so)
CROP_MIN_HEIGHT_PX = 18  # digits shorter than this in the picture make no classifier training crops


@dataclass
class SceneSet:
    """Rendered scenes as detector inputs, with every digit's box in input pixels."""

    inputs: np.ndarray  # (N, H, W) uint8: `frames.detector_input` of each scene
    boxes: np.ndarray  # (M, 4) float32 x, y, w, h in input pixels, all scenes one after another
    first_box: np.ndarray  # (N + 1,) int64: scene i's boxes are boxes[first_box[i]:first_box[i + 1]]
    texts: list[str]
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.inputs)

    def boxes_of(self, i: int) -> np.ndarray:
        return self.boxes[self.first_box[i]:self.first_box[i + 1]]


def digit_split(data: Mnist, part: str) -> tuple[np.ndarray, np.ndarray]:
    """The digits a set may use: "train" (outside the validation split), "validation" or "test"."""
    if part == "test":
        return data.x_test, data.y_test
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data.y_train))
    idx = order[:VALIDATION_DIGITS] if part == "validation" else order[VALIDATION_DIGITS:]
    return data.x_train[idx], data.y_train[idx]


def _render_chunk(task: tuple) -> dict:
    seed, start, count, part, data_dir, cfg_dict, size = task
    images, labels = digit_split(find_mnist(data_dir), part)
    cfg = engine.EngineConfig(**cfg_dict)
    inputs, boxes, counts, texts, kinds = [], [], [], [], []
    for i in range(start, start + count):
        scene = engine.render(np.random.default_rng([seed, i]), images, labels, cfg)
        x, lb = frames.detector_input(scene.image_bgr, size)
        inputs.append(x)
        b = lb.to_input(np.asarray(scene.boxes, np.float32))
        boxes.append(b)
        counts.append(len(b))
        texts.append(scene.text)
        kinds.append(scene.kind)
    return {"inputs": np.stack(inputs), "boxes": np.concatenate(boxes), "counts": np.asarray(counts),
            "texts": np.array(texts), "kinds": np.array(kinds)}


def _crops_chunk(task: tuple) -> dict:
    seed, start, count, part, data_dir, cfg_dict, _ = task
    images, labels = digit_split(find_mnist(data_dir), part)
    cfg = engine.EngineConfig(**cfg_dict)
    crops_out, labels_out, heights = [], [], []
    for i in range(start, start + count):
        rng = np.random.default_rng([seed, i])
        scene = engine.render(rng, images, labels, cfg)
        gray = frames.to_gray(scene.image_bgr)
        dark = crops.ink_is_dark(gray)
        for (x, y, w, h), digit in zip(scene.boxes, scene.digits, strict=True):
            dx, dy, dw, dh = rng.normal(0, BOX_JITTER, 4) * h
            crops_out.append(crops.digit_crop(gray, (x + dx, y + dy, max(1.0, w + dw), max(1.0, h + dh)), dark))
            labels_out.append(digit)
            heights.append(h)
    return {"crops": np.stack(crops_out), "labels": np.asarray(labels_out, np.uint8),
            "heights": np.asarray(heights, np.float32)}


def _chunks(render, name: str, count: int, seed: int, part: str, data_dir, cfg: engine.EngineConfig,
            size: tuple[int, int], workers: int | None, cache: bool) -> list[dict]:
    """`render` over CHUNK-scene slices, in parallel; each slice cached on its own, so a larger set reuses
    a smaller one's scenes (scene i always comes from the seed [seed, i])."""
    recipe = {"what": name, "seed": seed, "part": part, "engine": asdict(cfg), "size": list(size),
              "stride": heatmap.STRIDE, "jitter": BOX_JITTER, "version": 3}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir().parent / "scenes"
    paths = [folder / f"{name}-{part}-{seed}-{start}-{min(CHUNK, count - start)}-{key}.npz"
             for start in range(0, count, CHUNK)]
    missing = [i for i, path in enumerate(paths) if not (cache and path.is_file())]
    fresh: dict[int, dict] = {}
    if missing:
        data_dir = str(find_mnist(data_dir).directory) if data_dir is None else str(data_dir)
        tasks = [(seed, i * CHUNK, min(CHUNK, count - i * CHUNK), part, data_dir, asdict(cfg), size) for i in missing]
        workers = workers or min(len(tasks), os.cpu_count() or 1)
        with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
            results = pool.map(render, tasks) if pool else map(render, tasks)
            for i, arrays in zip(missing, results, strict=True):  # each slice is kept as soon as it is made
                fresh[i] = arrays
                if cache:
                    folder.mkdir(parents=True, exist_ok=True)
                    tmp = paths[i].with_suffix(".tmp.npz")
                    np.savez(tmp, **arrays)
                    os.replace(tmp, paths[i])
    out = []
    for i, path in enumerate(paths):
        if i in fresh:
            out.append(fresh[i])
        else:
            with np.load(path) as z:
                out.append({k: z[k] for k in z.files})
    return out


def render_set(count: int, seed: int, part: str, data_dir: str | Path | None = None,
               cfg: engine.EngineConfig | None = None, size: tuple[int, int] = frames.DETECTOR_SIZE,
               workers: int | None = None, cache: bool = True) -> SceneSet:
    """`count` scenes from `seed` with the `part` digits, rendered in parallel (or loaded from the cache)."""
    parts = _chunks(_render_chunk, "detector", count, seed, part, data_dir, cfg or engine.EngineConfig(), size,
                    workers, cache)
    counts = np.concatenate([p["counts"] for p in parts])
    return SceneSet(np.concatenate([p["inputs"] for p in parts]), np.concatenate([p["boxes"] for p in parts]),
                    np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                    [str(t) for p in parts for t in p["texts"]], [str(k) for p in parts for k in p["kinds"]])


def render_crops(scenes: int, seed: int, part: str = "train", data_dir: str | Path | None = None,
                 cfg: engine.EngineConfig | None = None, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's view of the digits in `scenes` engine scenes: (N, 28, 28) uint8 crops made by the
    device's `digitdata.crops.digit_crop` from slightly misplaced boxes (as a detector gives), and labels.

    Digits shorter than CROP_MIN_HEIGHT_PX, and crops with no ink left, are left out: blurred and
    compressed that small they hold too little of the digit to teach anything but guessing. Cached like
    `render_set`. Training digits only unless `part` says otherwise.
    """
    parts = _chunks(_crops_chunk, "crops", scenes, seed, part, data_dir, cfg or engine.EngineConfig(),
                    frames.DETECTOR_SIZE, workers, True)
    crops_u8 = np.concatenate([p["crops"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts])
    keep = (np.concatenate([p["heights"] for p in parts]) >= CROP_MIN_HEIGHT_PX) & (crops_u8.max(axis=(1, 2)) > 0)
    return crops_u8[keep], labels[keep]


def detection_scores(heats: np.ndarray, boxes: np.ndarray, scene_set: SceneSet, threshold: float,
                     max_boxes: int, min_iou: float = 0.5) -> dict:
    """Precision and recall at `min_iou` over a scene set, overall and per kind, from the model's maps."""
    per_kind: dict[str, list[int]] = {}
    total = [0, 0, 0]
    exact = 0
    for i in range(len(scene_set)):
        found = heatmap.decode(heats[i], boxes[i], threshold, max_boxes)
        tp, fp, fn = heatmap.match(found.boxes, scene_set.boxes_of(i), min_iou)
        exact += fp == 0 and fn == 0
        for key in ("all", scene_set.kinds[i]):
            counts = per_kind.setdefault(key, [0, 0, 0, 0])
            counts[0] += tp
            counts[1] += fp
            counts[2] += fn
            counts[3] += 1
        total = [total[0] + tp, total[1] + fp, total[2] + fn]

    def pr(c):
        return {"precision": c[0] / max(c[0] + c[1], 1), "recall": c[0] / max(c[0] + c[2], 1), "scenes": c[3],
                "digits": c[0] + c[2]}

    return {"min_iou": min_iou, "threshold": threshold, **pr(per_kind["all"]),
            "scenes_all_found": exact / max(len(scene_set), 1),
            "per_kind": {k: pr(v) for k, v in sorted(per_kind.items()) if k != "all"}}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m digitdata.scene_sets",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", choices=["train", "validation", "test"], default="train")
    args = parser.parse_args(argv)
    s = render_set(args.count, args.seed, args.part)
    print(f"{len(s)} scenes, {len(s.boxes)} digits, input {s.inputs.shape[1:]}, kinds: "
          f"{ {k: s.kinds.count(k) for k in sorted(set(s.kinds))} }")
    return 0


if __name__ == "__main__":
    sys.exit(main())
