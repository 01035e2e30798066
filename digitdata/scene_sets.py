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

from digitdata import engine, frames, heatmap, realsets
from digitdata.mnist import Mnist, cache_dir, find_mnist
from digitdata.progress import progress

VALIDATION_DIGITS = 5000  # training images held out, as for the classifier (same split, same seed)
SPLIT_SEED = 42
CHUNK = 250  # scenes per worker task (and per cache file)


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
    """The digits a set may use: "train" (outside the validation split, with the real training digits of
    `realsets.real_digit_pool` when they are there), "validation" or "test"."""
    if part == "test":
        return data.x_test, data.y_test
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data.y_train))
    idx = order[:VALIDATION_DIGITS] if part == "validation" else order[VALIDATION_DIGITS:]
    if part == "validation":
        return data.x_train[idx], data.y_train[idx]
    real_x, real_y = realsets.real_digit_pool()
    return np.concatenate([data.x_train[idx], real_x]), np.concatenate([data.y_train[idx], real_y])


def real_digits_in_training() -> int:
    """How many real digits the "train" part adds (0 without ../shared): part of every training set's recipe."""
    return len(realsets.real_digit_pool()[1])


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


def _chunks(count: int, seed: int, part: str, data_dir, cfg: engine.EngineConfig,
            size: tuple[int, int], workers: int | None, cache: bool) -> list[dict]:
    """`_render_chunk` over CHUNK-scene slices, in parallel; each slice cached on its own, so a larger set reuses
    a smaller one's scenes (scene i always comes from the seed [seed, i])."""
    name = "detector"
    recipe = {"what": name, "seed": seed, "part": part, "engine": asdict(cfg), "size": list(size),
              "stride": heatmap.STRIDE, "version": 4,
              "real_digits": real_digits_in_training() if part == "train" else 0}
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
            results = progress(pool.map(_render_chunk, tasks) if pool else map(_render_chunk, tasks),
                               f"rendering {part} scenes (seed {seed})", total=sum(task[2] for task in tasks),
                               unit="scenes", size=lambda arrays: len(arrays["texts"]))
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
    parts = _chunks(count, seed, part, data_dir, cfg or engine.EngineConfig(), size, workers, cache)
    counts = np.concatenate([p["counts"] for p in parts])
    return SceneSet(np.concatenate([p["inputs"] for p in parts]), np.concatenate([p["boxes"] for p in parts]),
                    np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                    [str(t) for p in parts for t in p["texts"]], [str(k) for p in parts for k in p["kinds"]])


def mix_sets(counts: dict[str, int], seed: int, part: str, data_dir=None) -> dict[str, SceneSet]:
    """One scene set per mix of the data engine (each mix its own seed stream)."""
    return {mix: render_set(n, seed + k, part, data_dir, cfg=engine.MIXES[mix])
            for k, (mix, n) in enumerate(counts.items()) if n > 0}


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
