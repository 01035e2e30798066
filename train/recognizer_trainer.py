"""One recognizer training run: render the regions, fit with checkpoints, evaluate, write the run folder.

A run folder (`--out runs/NAME`) ends up holding model.keras, config.json, history.json, curves.png and
report.md/report.json (exact-string accuracy on the fixed validation regions, overall and per kind; the
share of regions with no digit read as nothing; held-out MNIST digits read one at a time), each written
atomically; `checkpoint/` lets `--resume` continue an interrupted run (Keras' BackupAndRestore, every epoch).

With `--extra DIR...` (a device's corrections, `digitlite corrections export`: number regions labelled with
their strings, split by `train.split.extra_regions`) every 5th row (frame) is held out and the rest join the
rendered regions, repeated to weigh up to 5 % of the training set; report.md, report.json and
held_out.json give the exact-string accuracy on the held-out regions before (the starting model: `--init`, else
a new one) and after training.

    digitlite train-recognizer --lines 4000 --epochs 1 --out runs/recognizer-quick
    digitlite train-recognizer --extra runs/field/corrections --init runs/recognizer/model.keras --out runs/rec-field
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from digitdata import ctc, lines
from digitdata.atomic import write_json
from digitdata.lines import mnist_inputs, reading_scores
from digitdata.mnist import cache_dir, find_mnist
from digitdata.progress import progress
from digitdata.scene_sets import digit_split, real_digits_in_training
from train.recognizer import build_recognizer, ctc_loss, encode_texts
from train.recognizer_config import RecognizerConfig
from train.split import EXTRA_HELD_EVERY, EXTRA_SHARE, extra_regions, skipped_markdown

CHUNK = 5000  # regions per worker task (and per cache file)
RECOGNIZER_PIXELS = {"scale": 1 / 255, "offset": 0.0, "polarity": "ink bright on 0", "layout": "NHWC",
                     "dtype": "float32", "preprocessing": "digitdata.lines.line_input"}


def _render_chunk(task: tuple) -> dict:
    seed, start, count, part, data_dir = task
    images, labels = digit_split(find_mnist(data_dir), part)
    x, texts, kinds = lines.render_inputs(seed, count, images, labels, offset=start)
    return {"inputs": x, "texts": np.array(texts), "kinds": np.array(kinds)}


def render_lines(count: int, seed: int, part: str, data_dir=None, cache: bool = True) -> tuple[np.ndarray, list, list]:
    """`count` recognizer inputs from `seed` with the `part` digits, rendered in parallel or loaded from the
    cache; region i always comes from the seed [seed, i], whatever the number of workers."""
    recipe = {"what": "lines", "seed": seed, "part": part, "config": asdict(lines.LineConfig()),
              "size": [lines.INPUT_HEIGHT, lines.INPUT_WIDTH], "version": 4,
              "real_digits": real_digits_in_training() if part == "train" else 0}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir().parent / "lines"
    starts = list(range(0, count, CHUNK))
    paths = [folder / f"lines-{part}-{seed}-{s}-{min(CHUNK, count - s)}-{key}.npz" for s in starts]
    missing = [i for i, p in enumerate(paths) if not (cache and p.is_file())]
    parts: dict[int, dict] = {}
    if missing:
        data_dir = str(find_mnist(data_dir).directory) if data_dir is None else str(data_dir)
        tasks = [(seed, starts[i], min(CHUNK, count - starts[i]), part, data_dir) for i in missing]
        workers = min(len(tasks), os.cpu_count() or 1)
        with ProcessPoolExecutor(workers) as pool:
            made = progress(pool.map(_render_chunk, tasks), f"rendering {part} number lines (seed {seed})",
                            total=sum(task[2] for task in tasks), unit="lines", size=lambda a: len(a["texts"]))
            for i, arrays in zip(missing, made, strict=True):
                parts[i] = arrays
                if cache:
                    folder.mkdir(parents=True, exist_ok=True)
                    tmp = paths[i].with_suffix(".tmp.npz")
                    np.savez(tmp, **arrays)
                    os.replace(tmp, paths[i])
    for i, p in enumerate(paths):
        if i not in parts:
            with np.load(p) as z:
                parts[i] = {k: z[k] for k in z.files}
    ordered = [parts[i] for i in range(len(paths))]
    return (np.concatenate([p["inputs"] for p in ordered]), [str(t) for p in ordered for t in p["texts"]],
            [str(k) for p in ordered for k in p["kinds"]])


def predict_texts(model, inputs_u8: np.ndarray, batch_size: int = 256) -> list[str]:
    """The Keras model's greedy readings of uint8 inputs (N, H, W)."""
    out = []
    for s in range(0, len(inputs_u8), batch_size):
        p = np.asarray(model(inputs_u8[s:s + batch_size, ..., None].astype(np.float32) / 255.0, training=False))
        out += ctc.greedy_batch(p)
    return out


def _report_markdown(scores: dict, cfg: RecognizerConfig, params: int) -> str:
    out = [f"# Number recognizer: {params:,} parameters", "",
           f"Validation: {cfg.validation_lines} rendered regions (seed {cfg.validation_seed}, held-out training "
           f"digits), greedy CTC decoding.", "",
           f"**Exact strings {scores['exact']:.2%}** on regions with digits; regions with no digit read as "
           f"nothing: **{scores['nothing_read']:.2%}**; held-out MNIST digits one at a time: "
           f"**{scores['mnist_single']:.2%}** ({scores['mnist_count']}).", "",
           "| kind | regions | exact |", "|---|---:|---:|"]
    out += [f"| {k} | {v['regions']} | {v['exact']:.2%} |" for k, v in scores["per_kind"].items()]
    return "\n".join(out) + "\n"


def _exact(model, x_u8: np.ndarray, texts: list[str]) -> dict:
    read = predict_texts(model, x_u8)
    return {"exact": float(np.mean([r == t for r, t in zip(read, texts, strict=True)])), "read": read}


def _extra_markdown(held: dict) -> str:
    return (f"**Held-out extra regions** ({held['regions']} regions from {held['rows']} of the {held['rows_all']} "
            f"rows of {', '.join(held['folders'])}, never trained on; {held['train_regions']} others trained on, "
            f"{held['repeats']} times each): exact strings **{held['before']['exact']:.2%}** before "
            f"({held['start']}) -> **{held['after']['exact']:.2%}** after.\n")


def train_recognizer(cfg: RecognizerConfig, out: str | Path, data_dir=None, resume: bool = False,
                     verbose: int | str | None = None, command: str | None = None,
                     extra: list[str | Path] | None = None, init: str | Path | None = None) -> dict:
    """Train the recognizer into the run folder `out`; returns the validation scores.

    Args:
        extra: labelled sets of number regions (`digitlite corrections export`) to learn from as well; their
            held-out share is measured before and after ("held_out_extra" in the scores and report).
        init: a Keras recognizer to start from instead of a new one (e.g. a previous run's model.keras).
    """
    from train.trainer import checkpoint_of, compile_for_run, finish_run, run_callbacks

    cfg.validate()
    out = Path(out)
    if init is not None and not Path(init).is_file():
        raise FileNotFoundError(f"--init {init}: no such Keras model; give a recognizer run's model.keras")
    checkpoint = checkpoint_of(out, resume)
    extra_set = extra_regions(extra, cfg.lines) if extra else None
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    started = time.perf_counter()
    x_train, t_train, _ = render_lines(cfg.lines, cfg.seed, "train", data_dir)
    x_val, t_val, k_val = render_lines(cfg.validation_lines, cfg.validation_seed, "validation", data_dir)
    render_seconds = time.perf_counter() - started
    if extra_set is not None and extra_set.repeats:
        x_train = np.concatenate([x_train, np.repeat(extra_set.x_train, extra_set.repeats, axis=0)])
        t_train = t_train + [t for t in extra_set.t_train for _ in range(extra_set.repeats)]
    real = _real_amounts(cfg, len(x_train))
    if real is not None:
        x_train = np.concatenate([x_train, real["x_train"]])
        t_train = t_train + real.pop("t_train")
        real.pop("x_train")

    model = (keras.saving.load_model(init, compile=False) if init is not None
             else build_recognizer(cfg.width, cfg.dropout))
    held = None
    if extra_set is not None:
        held = {"folders": [str(f) for f in extra], "rows": extra_set.rows_held,
                "rows_all": extra_set.rows_held + extra_set.rows_train, "regions": len(extra_set.t_held),
                "train_regions": len(extra_set.t_train), "repeats": extra_set.repeats,
                "training_set": len(x_train), "start": Path(init).name if init is not None else "a new model",
                "texts": extra_set.t_held, "skipped": extra_set.skipped,
                "before": _exact(model, extra_set.x_held, extra_set.t_held) if extra_set.t_held else None}
    if real is not None:
        real["before"] = _exact(model, real["x_held"], real["t_held"])
    steps = int(np.ceil(len(x_train) / cfg.batch_size))
    compile_for_run(model, ctc_loss, cfg.learning_rate, cfg.weight_decay, steps, cfg.epochs)
    callbacks = run_callbacks(out, checkpoint, resume, cfg.patience)
    started = time.perf_counter()
    model.fit(_Regions(x_train, encode_texts(t_train), cfg.batch_size, cfg.seed),
              validation_data=(x_val[..., None].astype(np.float32) / 255.0, encode_texts(t_val)),
              batch_size=cfg.batch_size, epochs=cfg.epochs, callbacks=callbacks,
              verbose=verbose if verbose is not None else ("auto" if sys.stdout.isatty() else 2))
    train_seconds = time.perf_counter() - started

    scores = reading_scores(predict_texts(model, x_val), t_val, k_val)
    images, labels = digit_split(find_mnist(data_dir), "validation")
    singles = predict_texts(model, mnist_inputs(images))
    scores["mnist_single"] = float(np.mean([r == str(int(y)) for r, y in zip(singles, labels, strict=True)]))
    scores["mnist_count"] = len(labels)
    report = _report_markdown(scores, cfg, model.count_params())
    if real is not None:
        real["after"] = _exact(model, real.pop("x_held"), real.pop("t_held"))
        scores["held_out_real"] = real
        report += (f"\n**Held-out real cheque amounts** (orand-car-a, {real['held']} amounts, "
                   f"`digitdata.realsets`; {real['train']} training amounts x {real['copies']} copies): exact "
                   f"{real['before']['exact']:.2%} before, {real['after']['exact']:.2%} after.\n")
    if held is not None:
        if held["before"] is not None:
            held["after"] = _exact(model, extra_set.x_held, extra_set.t_held)
            write_json(out / "held_out.json", held)
            report += "\n" + _extra_markdown(held)
        else:
            report += (f"\nExtra regions: {held['train_regions']} trained on ({held['repeats']} times each), none "
                       f"held out ({held['rows_all']} row: at least 2 are needed to hold one out).\n")
        report += skipped_markdown(extra_set.skipped)
        scores["held_out_extra"] = held
    finish_run(out, model, scores, report, {
        "task": "recognizer", "recognizer": asdict(cfg), "lines": asdict(lines.LineConfig()),
        "extra": {"folders": [str(f) for f in extra or []], "share": EXTRA_SHARE, "held_every": EXTRA_HELD_EVERY,
                  "init": str(init) if init is not None else None},
        "pixels": RECOGNIZER_PIXELS}, checkpoint, "number recognizer", ("loss",), render_seconds, train_seconds,
        command, start=init)
    return scores


def _real_amounts(cfg: RecognizerConfig, rendered: int) -> dict | None:
    """orand-car-a's training part as varied copies weighing `cfg.real_share` of the training regions, and its
    held-out part to measure before and after; None when the share is 0 or the set is not there."""
    from digitdata import realsets

    if cfg.real_share <= 0:
        return None
    try:
        amounts = realsets.orand().part("train")
    except FileNotFoundError as exc:
        print(f"real cheque amounts not used: {exc}", file=sys.stderr)
        return None
    copies = max(1, round(cfg.real_share * rendered / (1 - cfg.real_share) / max(len(amounts), 1)))
    x_train, t_train = realsets.amount_inputs("train", copies, cfg.seed)
    x_held, t_held = realsets.amount_inputs("held")
    return {"train": len(amounts), "held": len(t_held), "copies": copies, "x_train": x_train, "t_train": t_train,
            "x_held": x_held, "t_held": t_held}


class _Regions(keras.utils.PyDataset):
    """Shuffled batches of (input in [0, 1], CTC target); a new order every epoch."""

    def __init__(self, x_u8: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
        super().__init__()
        self.x, self.y, self.batch_size = x_u8, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x_u8))

    def __len__(self) -> int:
        return int(np.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, i: int):
        idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
        return self.x[idx, ..., None].astype(np.float32) / 255.0, self.y[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))
