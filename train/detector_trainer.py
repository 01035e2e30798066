"""One detector training run: render the scenes, fit with checkpoints, evaluate, write the run folder.

A run folder (`--out runs/NAME`) ends up holding model.keras, config.json, history.json, curves.png and
report.md/report.json (precision and recall at IoU 0.5 on the fixed validation scenes, overall and per
kind of scene), each written atomically; `checkpoint/` lets `--resume` continue an interrupted run.

    digitlite train-detector --scenes 2000 --epochs 2 --out runs/detector-quick
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from digitdata import engine, heatmap, scene_sets
from train.detector import box_loss, build_detector, focal_loss
from train.detector_config import DetectorConfig

WHOLE_SHARE = 0.9  # a digit with at least this share of its box inside the input is whole; less (a hasty
# crop that cut it) is neither digit nor background

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
    """Shuffled batches of (input, {heat, box}) from a rendered scene set, whole inputs only.

    Training on cheaper windows of the inputs was tried and dropped: a detector that learned small digits
    from windows centred on them found 16 % of the digits in whole 640x480 frames (against 79 % for one
    trained on whole inputs; development runs of 2026-12-01): the position in the window is a cue it learns.
    """

    def __init__(self, scene_set: scene_sets.SceneSet, batch_size: int, seed: int, invert_p: float = 0.0,
                 shuffle: bool = True):
        self.scene_set, self.batch_size, self.invert_p, self.shuffle = scene_set, batch_size, invert_p, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(scene_set)) if shuffle else np.arange(len(scene_set))

    def __len__(self) -> int:
        return int(np.ceil(len(self.scene_set) / self.batch_size))

    def __getitem__(self, i: int):
        idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
        x = self.scene_set.inputs[idx].astype(np.float32) / 255.0
        if self.invert_p:
            flip = self.rng.random(len(idx)) < self.invert_p
            x[flip] = 1.0 - x[flip]
        heat, box = targets([self.scene_set.boxes_of(int(k)) for k in idx], x.shape[1:])
        return x[..., None], {"heat": heat, "box": box}

    def epoch(self):
        """One pass over the set (then a new shuffle)."""
        for i in range(len(self)):
            yield self[i]
        if self.shuffle:
            self.order = self.rng.permutation(len(self.scene_set))

    def dataset(self):
        """A tf.data pipeline over `epoch()`."""
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
    from train.trainer import checkpoint_of, finish_run, seed_everything

    cfg.validate()
    out = Path(out)
    checkpoint = checkpoint_of(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    started = time.perf_counter()
    train_set = scene_sets.render_set(cfg.scenes, cfg.seed, "train", data_dir)
    val_set = scene_sets.render_set(cfg.validation_scenes, cfg.validation_seed, "validation", data_dir)
    render_seconds = time.perf_counter() - started

    model = build_detector(cfg.width)
    batches = Batches(train_set, cfg.batch_size, cfg.seed, cfg.invert_p)
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
    finish_run(out, model, scores, _report_markdown(scores, cfg, model.count_params()), {
        "task": "detector", "detector": asdict(cfg), "engine": asdict(engine.EngineConfig()),
        "pixels": DETECTOR_PIXELS}, checkpoint, "digit detector", ("heat_loss", "box_loss", "loss"), render_seconds,
        train_seconds, command)
    return scores
