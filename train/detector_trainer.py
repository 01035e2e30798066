"""One detector training run: render the scenes, fit with checkpoints, evaluate, write the run folder.

A run folder (`--out runs/NAME`) ends up holding model.keras, config.json, history.json, curves.png and
report.md/report.json (precision and recall at IoU 0.5 on the fixed validation scenes, overall and per
kind of scene), each written atomically; `checkpoint/` lets `--resume` continue an interrupted run.

    digitlite train --arch detector --scenes 2000 --epochs 2 --out runs/detector-quick
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from digitdata import engine, heatmap, scene_sets
from digitdata.atomic import atomic_path, write_json, write_text
from train.detector import box_loss, build_detector, focal_loss
from train.detector_config import DetectorConfig

CROP = (128, 160)  # (height, width) px of the cheaper training windows (multiples of the 32 px stride)
WINDOW_DIGIT_PX = 64  # scenes whose tallest digit is at most this (input px) train as windows
WINDOW_ON_DIGIT_P = 0.75  # windows placed around a digit; the rest anywhere (backgrounds, distractors)
WHOLE_SHARE = 0.9  # a digit with at least this share of its box inside a window is whole; less is cut

DETECTOR_PIXELS = {"scale": 1 / 255, "offset": 0.0, "polarity": "as photographed", "layout": "NHWC",
                   "dtype": "float32", "preprocessing": "digitdata.frames.detector_input"}


def targets(boxes_per_image: list[np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Heat (B, rows, cols, 2: heatmap, weight) and box (B, rows, cols, 5) targets for inputs of `size` (h, w).

    A digit cut by the edge of a training crop is neither digit nor background: its box gets weight 0.
    """
    h, w = size
    grid = (h // heatmap.STRIDE, w // heatmap.STRIDE)
    heats, boxes = [], []
    for b in boxes_per_image:
        x0, y0 = np.clip(b[:, 0], 0, w), np.clip(b[:, 1], 0, h)
        x1, y1 = np.clip(b[:, 0] + b[:, 2], 0, w), np.clip(b[:, 1] + b[:, 3], 0, h)
        inside = (x1 - x0) * (y1 - y0) / np.maximum(b[:, 2] * b[:, 3], 1e-6)
        whole, cut = inside >= WHOLE_SHARE, (inside > 0) & (inside < WHOLE_SHARE)
        heat, box = heatmap.encode(b[whole], grid)
        weight = np.ones(grid, np.float32)
        for cx0, cy0, cx1, cy1 in zip(x0[cut], y0[cut], x1[cut], y1[cut], strict=True):
            s = heatmap.STRIDE
            weight[int(cy0 // s):int(np.ceil(cy1 / s)), int(cx0 // s):int(np.ceil(cx1 / s))] = 0.0
        heats.append(np.stack([heat, weight], axis=-1))
        boxes.append(box)
    return np.stack(heats), np.stack(boxes)


class Batches:
    """Shuffled batches of (input, {heat, box}) from a rendered scene set.

    Scenes whose digits all fit in a CROP window comfortably (tallest digit <= WINDOW_DIGIT_PX) train as
    random windows around their digits: four times cheaper on a CPU, so the detector sees many more small
    digits and backgrounds for the same time. Scenes with larger digits train whole, so a digit that fills
    the input is always seen whole. Each batch is one kind (sides are fixed within a batch).
    """

    def __init__(self, scene_set: scene_sets.SceneSet, batch_size: int, seed: int, invert_p: float = 0.0,
                 windows: bool = False, shuffle: bool = True):
        self.scene_set, self.batch_size, self.invert_p, self.shuffle = scene_set, batch_size, invert_p, shuffle
        self.rng = np.random.default_rng(seed)
        tallest = np.array([scene_set.boxes_of(i)[:, 3].max(initial=0) for i in range(len(scene_set))])
        small = tallest <= WINDOW_DIGIT_PX if windows else np.zeros(len(scene_set), bool)
        self.pools = [np.flatnonzero(~small), np.flatnonzero(small)]  # whole inputs, windows
        self._plan()

    def _plan(self) -> None:
        """The epoch's batches: (pool, indices), shuffled together."""
        batches = []
        for pool_id, pool in enumerate(self.pools):
            order = self.rng.permutation(pool) if self.shuffle else pool
            batches += [(pool_id, order[s:s + self.batch_size]) for s in range(0, len(order), self.batch_size)]
        self.batches = [batches[i] for i in self.rng.permutation(len(batches))] if self.shuffle else batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        pool_id, idx = self.batches[i]
        idx = np.sort(idx)
        x = self.scene_set.inputs[idx].astype(np.float32) / 255.0
        boxes = [self.scene_set.boxes_of(int(k)).copy() for k in idx]
        if pool_id == 1:
            x = np.stack([self._window(img, b) for img, b in zip(x, boxes, strict=True)])
        if self.invert_p:
            flip = self.rng.random(len(idx)) < self.invert_p
            x[flip] = 1.0 - x[flip]
        heat, box = targets(boxes, x.shape[1:])
        return x[..., None], {"heat": heat, "box": box}

    def _window(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """A CROP window of the image, mostly around a digit; `boxes` are moved into it (in place)."""
        ch, cw = CROP
        h, w = image.shape
        if len(boxes) and self.rng.random() < WINDOW_ON_DIGIT_P:
            x, y, bw, bh = boxes[self.rng.integers(len(boxes))]
            left = int(np.clip(x + bw / 2 - self.rng.uniform(0.2, 0.8) * cw, 0, w - cw))
            top = int(np.clip(y + bh / 2 - self.rng.uniform(0.2, 0.8) * ch, 0, h - ch))
        else:
            left, top = int(self.rng.integers(0, w - cw + 1)), int(self.rng.integers(0, h - ch + 1))
        left, top = left // heatmap.STRIDE * heatmap.STRIDE, top // heatmap.STRIDE * heatmap.STRIDE
        boxes[:, 0] -= left
        boxes[:, 1] -= top
        return image[top:top + ch, left:left + cw]

    def epoch(self):
        """One pass over the set (then a new shuffle)."""
        for i in range(len(self)):
            yield self[i]
        if self.shuffle:
            self._plan()

    def dataset(self):
        """A tf.data pipeline over `epoch()`; its sides may change from batch to batch (windows, whole inputs)."""
        import tensorflow as tf

        spec = tf.TensorSpec((None, None, None, 1), tf.float32)
        targets_spec = {"heat": tf.TensorSpec((None, None, None, 2), tf.float32),
                        "box": tf.TensorSpec((None, None, None, heatmap.BOX_CHANNELS), tf.float32)}
        data = tf.data.Dataset.from_generator(self.epoch, output_signature=(spec, targets_spec))
        return data.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(2)


def predict_maps(model, inputs_u8: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The Keras model's heat (N, rows, cols) and box (N, rows, cols, 4) maps for uint8 inputs (N, H, W)."""
    heats, boxes = [], []
    for s in range(0, len(inputs_u8), batch_size):
        out = model(inputs_u8[s:s + batch_size, ..., None].astype(np.float32) / 255.0, training=False)
        heats.append(np.asarray(out["heat"])[..., 0])
        boxes.append(np.asarray(out["box"]))
    return np.concatenate(heats), np.concatenate(boxes)


def _report_markdown(scores: dict, cfg: DetectorConfig, params: int) -> str:
    lines = [f"# Digit detector: {params:,} parameters",
             "", f"Validation: {cfg.validation_scenes} engine scenes (seed {cfg.validation_seed}, held-out "
                 f"training digits); a detection is a heatmap peak >= {cfg.threshold}, matched at IoU >= "
                 f"{scores['min_iou']}.", "",
             f"**Precision {scores['precision']:.2%}, recall {scores['recall']:.2%}**; scenes with every digit "
             f"found and nothing else: {scores['scenes_all_found']:.2%}.", "",
             "| kind | scenes | digits | precision | recall |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['scenes']} | {v['digits']} | {v['precision']:.2%} | {v['recall']:.2%} |"
              for k, v in scores["per_kind"].items()]
    return "\n".join(lines) + "\n"


def train_detector(cfg: DetectorConfig, out: str | Path, data_dir: str | Path | None = None, resume: bool = False,
                   verbose: int | str | None = None, command: str | None = None) -> dict:
    """Train the detector into the run folder `out`; returns the validation scores."""
    from train.trainer import RunExistsError, read_history, seed_everything, versions

    cfg.validate()
    out = Path(out)
    checkpoint = out / "checkpoint"
    if checkpoint.exists() and not resume:
        raise RunExistsError(f"{out} holds an interrupted run ({checkpoint}); pass --resume to continue it, "
                             f"or choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    started = time.perf_counter()
    train_set = scene_sets.render_set(cfg.scenes, cfg.seed, "train", data_dir)
    val_set = scene_sets.render_set(cfg.validation_scenes, cfg.validation_seed, "validation", data_dir)
    render_seconds = time.perf_counter() - started

    model = build_detector(cfg.width, input_shape=(None, None, 1))
    batches = Batches(train_set, cfg.batch_size, cfg.seed, cfg.invert_p, windows=cfg.windows)
    total = cfg.epochs * len(batches)
    warmup = min(len(batches), total // 10)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate / 10, total - warmup, alpha=0.0,
                                                      warmup_target=cfg.learning_rate, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, clipnorm=5.0),
                  loss={"heat": focal_loss, "box": box_loss})
    callbacks = [
        keras.callbacks.BackupAndRestore(str(checkpoint), delete_checkpoint=True),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=resume),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
    ]
    started = time.perf_counter()
    model.fit(batches.dataset(), validation_data=Batches(val_set, cfg.batch_size, 0, shuffle=False).dataset(),
              epochs=cfg.epochs,
              callbacks=callbacks, verbose=verbose if verbose is not None else ("auto" if sys.stdout.isatty() else 2))
    train_seconds = time.perf_counter() - started

    heats, boxes = predict_maps(model, val_set.inputs)
    scores = scene_sets.detection_scores(heats, boxes, val_set, cfg.threshold, cfg.max_boxes)
    history = read_history(out / "history.csv")
    released = build_detector(cfg.width)  # the fixed input shape the device runs
    released.set_weights(model.get_weights())
    with atomic_path(out / "model.keras") as tmp:
        released.save(tmp)
    write_json(out / "history.json", history)
    write_json(out / "report.json", scores)
    write_text(out / "report.md", _report_markdown(scores, cfg, model.count_params()))
    from digitdata import plots

    plots.curves(history, out / "curves.png", title="digit detector", metrics=("heat_loss", "box_loss", "loss"))
    write_json(out / "config.json", {
        "task": "detector", "detector": asdict(cfg), "engine": asdict(engine.EngineConfig()),
        "pixels": DETECTOR_PIXELS, "params": int(model.count_params()),
        "epochs_run": len(history.get("epoch", [])), "render_seconds": round(render_seconds, 1),
        "train_seconds": round(train_seconds, 1), "validation": scores,
        "command": command or " ".join(sys.argv), "versions": versions(),
    })
    import shutil

    shutil.rmtree(checkpoint, ignore_errors=True)
    return scores


def load_config(path: str | Path) -> DetectorConfig:
    data = json.loads(Path(path).read_text())
    return DetectorConfig.from_dict(data.get("detector", data))
