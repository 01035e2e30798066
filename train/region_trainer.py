"""One region finder training run: render the mixes' scenes, fit with checkpoints, evaluate, write the run folder.

A run folder (`--out runs/NAME`) ends up holding model.keras, config.json, history.json, curves.png and
report.md/report.json (precision and recall of number lines at IoU 0.5 on the fixed validation scenes,
overall and per mix), each written atomically; `checkpoint/` lets `--resume` continue an interrupted run.

    digitlite train-regions --photo-scenes 500 --form-scenes 0 --hard-scenes 0 --distractors-scenes 0 \
        --epochs 1 --out runs/regions-quick
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from digitdata import engine, regions, scene_sets
from digitdata.regions import all_scores
from digitdata.scene_sets import mix_sets
from train.region_config import RegionConfig
from train.region_finder import build_region_finder, region_loss, start_from

REGION_PIXELS = {"scale": 1 / 255, "offset": 0.0, "polarity": "as photographed", "layout": "NHWC",
                 "dtype": "float32", "preprocessing": "digitdata.frames.detector_input"}


def targets(scene_set: scene_sets.SceneSet, idx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(B, rows, cols, 2) targets: the number-line map and a weight of 1."""
    grid = (shape[0] // regions.STRIDE, shape[1] // regions.STRIDE)
    maps = [regions.encode(regions.split_lines(scene_set.boxes_of(int(i)), scene_set.texts[int(i)]), grid)
            for i in idx]
    m = np.stack(maps)[..., None]
    return np.concatenate([m, np.ones_like(m)], axis=-1)


class _Batches(keras.utils.PyDataset):
    def __init__(self, sets: list[scene_sets.SceneSet], batch_size: int, seed: int, invert_p: float = 0.0,
                 shuffle: bool = True):
        super().__init__()
        self.sets, self.batch_size, self.invert_p, self.shuffle = sets, batch_size, invert_p, shuffle
        self.index = np.array([(s, i) for s, ss in enumerate(sets) for i in range(len(ss))], np.int64)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.index)) if shuffle else np.arange(len(self.index))

    def __len__(self) -> int:
        return int(np.ceil(len(self.index) / self.batch_size))

    def __getitem__(self, i: int):
        picked = self.index[self.order[i * self.batch_size:(i + 1) * self.batch_size]]
        xs, ys = [], []
        for s in np.unique(picked[:, 0]):
            idx = picked[picked[:, 0] == s, 1]
            xs.append(self.sets[s].inputs[idx])
            ys.append(targets(self.sets[s], idx, self.sets[s].inputs.shape[1:]))
        x = np.concatenate(xs).astype(np.float32) / 255.0
        if self.invert_p:
            flip = self.rng.random(len(x)) < self.invert_p
            x[flip] = 1.0 - x[flip]
        return x[..., None], np.concatenate(ys)

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.index))


def predict_maps(model, inputs_u8: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The Keras model's maps (N, rows, cols) for uint8 inputs (N, H, W)."""
    out = []
    for s in range(0, len(inputs_u8), batch_size):
        out.append(np.asarray(model(inputs_u8[s:s + batch_size, ..., None].astype(np.float32) / 255.0,
                                    training=False))[..., 0])
    return np.concatenate(out)


def _report_markdown(scores: dict, cfg: RegionConfig, params: int) -> str:
    out = [f"# Region finder: {params:,} parameters", "",
           f"Validation: {cfg.validation_scenes} engine scenes per mix (seed {cfg.validation_seed}, held-out "
           f"training digits); a number line is found when a region's upright box meets its box at IoU >= 0.5.",
           "", f"**Precision {scores['precision']:.2%}, recall {scores['recall']:.2%}** (mixes with digits).", "",
           "| mix | scenes | lines | precision | recall | digit-free scenes with nothing found |",
           "|---|---:|---:|---:|---:|---:|"]
    for mix, s in scores["per_mix"].items():
        quiet = "-" if s["digit_free_quiet"] is None else f"{s['digit_free_quiet']:.2%}"
        out.append(f"| {mix} | {s['scenes']} | {s['lines']} | {s['precision']:.2%} | {s['recall']:.2%} | {quiet} |")
    return "\n".join(out) + "\n"


def train_regions(cfg: RegionConfig, out: str | Path, data_dir=None, resume: bool = False,
                  verbose: int | str | None = None, command: str | None = None) -> dict:
    """Train the region finder into the run folder `out`; returns the validation scores."""
    from train.trainer import checkpoint_of, compile_for_run, finish_run, run_callbacks

    cfg.validate()
    out = Path(out)
    checkpoint = checkpoint_of(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    started = time.perf_counter()
    train_sets = mix_sets(cfg.mixes, cfg.seed, "train", data_dir)
    val_sets = mix_sets({m: cfg.validation_scenes for m in cfg.mixes}, cfg.validation_seed, "validation", data_dir)
    render_seconds = time.perf_counter() - started

    model = build_region_finder(cfg.width)
    copied = start_from(model, cfg.start_from) if cfg.start_from else 0
    batches = _Batches(list(train_sets.values()), cfg.batch_size, cfg.seed, cfg.invert_p)
    compile_for_run(model, region_loss, cfg.learning_rate, cfg.weight_decay, len(batches), cfg.epochs)
    callbacks = run_callbacks(out, checkpoint, resume, cfg.patience)
    started = time.perf_counter()
    model.fit(batches, validation_data=_Batches(list(val_sets.values()), cfg.batch_size, 0, shuffle=False),
              epochs=cfg.epochs, callbacks=callbacks,
              verbose=verbose if verbose is not None else ("auto" if sys.stdout.isatty() else 2))
    train_seconds = time.perf_counter() - started

    scores = all_scores({m: predict_maps(model, s.inputs) for m, s in val_sets.items()}, val_sets, cfg.threshold)
    finish_run(out, model, scores, _report_markdown(scores, cfg, model.count_params()), {
        "task": "regions", "regions": asdict(cfg), "engine_mixes": {m: asdict(engine.MIXES[m]) for m in cfg.mixes},
        "pixels": REGION_PIXELS, "layers_from_detector": copied}, checkpoint, "region finder", ("loss",),
        render_seconds, train_seconds, command, start=cfg.start_from or None)
    return scores
