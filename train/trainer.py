"""One training run: augmentation, fit with checkpoints, and the run's artifacts (the split: train/split.py).

A run folder (`--out runs/NAME`) ends up holding model.keras, config.json, history.json, curves.png,
confusion.png, report.md, report.json and misclassified.png, each written atomically. With `--extra` (a device's
corrections) the run fine-tunes a trained model (`--init`, default the released one) on MNIST plus them, and
held_out.json and report.md add the accuracy on their held-out share before and after, per class. While training,
`checkpoint/` holds the state of the last finished epoch so that `--resume` continues an interrupted run.

    digitlite train --epochs 2 --subset 5000 --out runs/quick
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from digitdata import mnist as mnist_data
from digitdata.atomic import atomic_path, write_json
from digitdata.handwriting import StyleParams
from digitdata.pixels import PIXELS, to_model_input
from train.config import TrainConfig
from train.models import build_model
from train.split import extra_split, skipped_markdown, split


class RunExistsError(FileExistsError):
    """The output folder holds an interrupted run and --resume was not given."""


@dataclass
class RunResult:
    out: Path
    test_accuracy: float
    params: int
    train_seconds: float
    epochs_run: int
    weights: str  # what the model started from: "scratch", "imagenet", or "fine-tuned from <file>"
    held_out: dict | None = None  # with --extra: accuracy on the held-out extra digits before and after
    real_held: dict | None = None  # with --real: accuracy on each set's held-out part before and after


def augmenter(cfg: TrainConfig) -> keras.Sequential:
    """Small rotations, shifts and zoom, filling with black (the paper of an MNIST digit)."""
    return keras.Sequential(
        [
            keras.layers.RandomRotation(cfg.rotation_deg / 360, fill_mode="constant", seed=cfg.seed),
            keras.layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="constant", seed=cfg.seed + 1),
            keras.layers.RandomZoom(cfg.zoom, fill_mode="constant", seed=cfg.seed + 2),
        ],
        name="augment",
    )


def dataset(x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
    if cfg.augment:
        aug = augmenter(cfg)
        ds = ds.map(lambda a, b: (aug(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def compile_model(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> None:
    # One-cycle-like schedule: linear warm-up (one epoch, at most a tenth of training), then cosine decay to zero.
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(steps_per_epoch, total // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate / 10, decay_steps=total - warmup, alpha=0.0,
        warmup_target=cfg.learning_rate, warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _build(cfg: TrainConfig) -> tuple[keras.Model, str]:
    hyper = {"filters": cfg.filters or None, "units": cfg.units or None, "dropout": cfg.dropout}
    if cfg.arch == "mobilenet" and cfg.weights == "imagenet":
        try:
            return build_model("mobilenet", weights="imagenet"), "imagenet"
        except Exception as exc:  # noqa: BLE001  (any download/IO failure means: train from scratch)
            print(f"mobilenet: ImageNet weights unavailable ({exc.__class__.__name__}: {exc}); "
                  f"training from scratch", file=sys.stderr)
    return build_model(cfg.arch, **hyper), "scratch"


def held_out_scores(model, x_u8: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, per-class accuracy and errors of `model` on uint8 (N, 28, 28) digits."""
    predicted = model.predict(to_model_input(x_u8), batch_size=500, verbose=0).argmax(axis=1) if len(y) else y
    per_class = {str(c): (float((predicted[y == c] == c).mean()), int((y == c).sum())) for c in range(10)
                 if (y == c).any()}
    accuracy = float((predicted == y).mean()) if len(y) else float("nan")
    return {"accuracy": accuracy, "errors": int((predicted != y).sum()),
            "per_class": {c: {"accuracy": a, "support": n} for c, (a, n) in per_class.items()}}


def real_held_before(model, cfg: TrainConfig, start: Path | None) -> dict | None:
    """With --real: each set's held-out part (never trained on) and the starting model's scores on it; the
    images ride along as "x", "y" until the run measures the trained model."""
    if not cfg.real:
        return None
    from digitdata import realsets

    out = {}
    for name in cfg.real:
        part = realsets.digits(name, "held")
        out[name] = {**part.record(), "start": str(start.name if start else "a new model"),
                     "before": held_out_scores(model, part.x, part.y), "x": part.x, "y": part.y}
    return out


def _per_class_rows(before: dict, after: dict) -> list[str]:
    """A Markdown table of accuracy per class, before and after, with each class's support."""
    return ["| class | before | after | support |", "|---|---|---|---|"] + [
        f"| {c} | {before['per_class'][c]['accuracy']:.2%} | {row['accuracy']:.2%} | {row['support']} |"
        for c, row in after["per_class"].items()]


def real_held_markdown(r: dict) -> str:
    """The report's section on a real set's held-out part: overall and per class, before and after."""
    before, after = r["before"], r["after"]
    lines = [f"**{r['set']}, held-out part** ({r['images']} digits; {r['split']}; never trained on): "
             f"**{before['accuracy']:.2%}** before ({r['start']}) -> **{after['accuracy']:.2%}** after "
             f"({before['errors']} -> {after['errors']} errors). Keras model; the release gate measures the "
             f".tflite files (`digitlite convert`).", "",
             *_per_class_rows(before, after)]
    return "\n".join(lines)


def held_out_markdown(held: dict) -> str:
    """The report's section on the held-out extra digits: overall and per class, before and after."""
    before, after = held["before"], held["after"]
    lines = [f"**Held-out extra digits** ({held['digits']} digits from {held['rows']} of the {held['rows_all']} rows "
             f"of {', '.join(held['folders'])}, never trained on): **{before['accuracy']:.2%}** before "
             f"({held['start']}) -> **{after['accuracy']:.2%}** after "
             f"({before['errors']} -> {after['errors']} errors).", "",
             *_per_class_rows(before, after)]
    return "\n".join(lines)


def checkpoint_of(out: Path, resume: bool) -> Path:
    """The run folder's checkpoint folder.

    Raises:
        RunExistsError: an interrupted run is there and `resume` is False.
    """
    checkpoint = out / "checkpoint"
    if checkpoint.exists() and not resume:
        raise RunExistsError(f"{out} holds an interrupted run ({checkpoint}); pass --resume to continue it, "
                             f"or choose another --out.")
    return checkpoint


def compile_for_run(model, loss, learning_rate: float, weight_decay: float, steps_per_epoch: int, epochs: int,
                    alpha: float = 0.02) -> None:
    """AdamW with a warm-up (a tenth of the run, at most an epoch) then cosine decay, gradients clipped; the
    recipe of every scene- and line-trained model."""
    total = epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total // 10)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate / 10, max(1, total - warmup), alpha=alpha,
                                                      warmup_target=learning_rate, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay, clipnorm=5.0), loss=loss)


def run_callbacks(out: Path, checkpoint: Path, resume: bool, patience: int) -> list:
    """Resumable (a checkpoint each epoch), logged to history.csv, stopped early on the validation loss, and the
    latest epoch's model kept as last.keras to look at while the run goes on."""
    return [
        keras.callbacks.BackupAndRestore(str(checkpoint), delete_checkpoint=True),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=resume),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(str(out / "last.keras")),
    ]


def finish_run(out: Path, model, scores: dict, report_md: str, config: dict, checkpoint: Path, title: str,
               metrics: tuple[str, ...], render_seconds: float, train_seconds: float, command: str | None,
               start: Path | None = None) -> None:
    """A scene- or line-trained run's folder, each file written atomically: model.keras, history.json,
    report.json and report.md, curves.png, and config.json (`config` plus what every run records, with the
    `lineage` of the model it started from, `start`); then the checkpoint and last.keras go (the run is
    complete)."""
    import shutil

    from digitdata import plots
    from digitdata.atomic import atomic_path, write_json, write_text

    history = read_history(out / "history.csv")
    with atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    write_json(out / "history.json", history)
    write_json(out / "report.json", scores)
    write_text(out / "report.md", report_md)
    plots.curves(history, out / "curves.png", title=title, metrics=metrics)
    write_json(out / "config.json", {
        **config, "params": int(model.count_params()), "epochs_run": len(history.get("epoch", [])),
        "render_seconds": round(render_seconds, 1), "train_seconds": round(train_seconds, 1), "validation": scores,
        "command": command or " ".join(sys.argv), "versions": versions(),
        "lineage": lineage(Path(start) if start else None) + [{"command": command or " ".join(sys.argv),
                                                               "train_seconds": round(train_seconds, 1)}],
    })
    shutil.rmtree(checkpoint, ignore_errors=True)
    (out / "last.keras").unlink(missing_ok=True)


def lineage(start: Path | None) -> list[dict]:
    """The runs that made the model training starts from, oldest first: each one's command and training time,
    read from the config saved beside it (`<stem>.train.json` or the run's config.json); [] for a new model.
    A fine-tune of a fine-tune is reproducible from this list alone."""
    if start is None:
        return []
    for candidate in (start.with_suffix(".train.json"), start.parent / "config.json"):
        if candidate.is_file():
            previous = json.loads(candidate.read_text())
            if "lineage" in previous:
                return previous["lineage"]
            return [{"command": previous.get("command"), "train_seconds": previous.get("train_seconds")}]
    return [{"command": None, "train_seconds": None, "model": str(start)}]


def versions() -> dict:
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__}


def train(cfg: TrainConfig, out: str | Path, data_dir: str | Path | None = None, resume: bool = False,
          verbose: int | str = "auto", command: str | None = None, report: bool = True,
          callbacks: list | None = None) -> RunResult:
    """Train `cfg` into the run folder `out`.

    Args:
        cfg: the training configuration (validated here).
        out: the run folder; its `checkpoint/` makes the run resumable.
        data_dir: where MNIST is (default: the usual search, see digitdata.mnist.find_mnist).
        resume: continue from `out/checkpoint` (required when one exists).
        verbose: Keras' progress output: 0 none, 1 a progress bar, 2 one line per epoch; "auto" is 1 on a
            terminal and 2 otherwise (a log file gets one line per epoch, not thousands of bar redraws).
        command: the command line to record in config.json.
        report: write the evaluation report and figures (tests turn it off for speed).
        callbacks: extra Keras callbacks, run after the checkpointing ones.

    Raises:
        ValueError: bad configuration. RunExistsError: an interrupted run is there and resume is False.
        digitdata.mnist.MnistError: MNIST not found or not valid.
    """
    cfg.validate()
    out = Path(out)
    checkpoint = checkpoint_of(out, resume)
    if resume and not checkpoint.exists():
        raise FileNotFoundError(f"--resume: no checkpoint in {out}; start the run without --resume.")
    data = mnist_data.find_mnist(data_dir)
    out.mkdir(parents=True, exist_ok=True)

    seed_everything(cfg.seed)
    x_train, y_train, x_val, y_val = split(data, cfg)
    start = cfg.start_model()
    if start is not None and not resume:
        model, weights = keras.saving.load_model(start), f"fine-tuned from {start.name}"
    else:
        model, weights = _build(cfg)
    extra = extra_split(cfg) if cfg.extra else None
    held = None
    if extra is not None and len(extra.y_held):
        held = {"folders": list(cfg.extra), "rows": extra.rows_held, "rows_all": extra.rows_held + extra.rows_train,
                "digits": int(len(extra.y_held)), "train_digits": int(len(extra.y_train)),
                "weight": cfg.extra_weight, "start": str(start.name if start else "a new model"),
                "skipped": extra.skipped,
                "before": held_out_scores(model, extra.x_held, extra.y_held)}
    real_held = real_held_before(model, cfg, start)
    steps = int(np.ceil(len(x_train) / cfg.batch_size))
    compile_model(model, cfg, steps)
    validation = (x_val, y_val) if len(x_val) else None
    monitor = "val_loss" if validation else "loss"
    run_callbacks = [
        keras.callbacks.BackupAndRestore(str(checkpoint), delete_checkpoint=True),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=resume),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.patience, restore_best_weights=True),
        *(callbacks or []),
    ]
    started = time.perf_counter()
    model.fit(dataset(x_train, y_train, cfg), epochs=cfg.epochs, validation_data=validation, shuffle=False,
              callbacks=run_callbacks, verbose=progress_verbosity(verbose))  # the dataset shuffles itself
    train_seconds = time.perf_counter() - started

    history = read_history(out / "history.csv")
    with atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    write_json(out / "history.json", history)

    notes = []
    if held is not None:
        held["after"] = held_out_scores(model, extra.x_held, extra.y_held)
        write_json(out / "held_out.json", held)
        notes.append(held_out_markdown(held))
    for r in (real_held or {}).values():
        r["after"] = held_out_scores(model, r.pop("x"), r.pop("y"))
        notes.append(real_held_markdown(r))
    if real_held:
        write_json(out / "real_held.json", real_held)
    if held is None and extra is not None:
        notes.append(f"Extra digits: {len(extra.y_train)} trained on, none held out (--extra-held-out "
                     f"{cfg.extra_held_out} of {extra.rows_train} rows).")
    if extra is not None and extra.skipped:
        notes.append(skipped_markdown(extra.skipped).strip())
    test_accuracy = float("nan")
    if report:
        from train.report import write_run_report

        test_accuracy = write_run_report(model, data, out, history, title=f"{cfg.arch} ({weights})", notes=notes)
    previous = json.loads((out / "config.json").read_text()) if resume and (out / "config.json").exists() else {}
    write_json(out / "config.json", {
        "train": cfg.to_dict(),
        "pixels": PIXELS,
        "weights": weights,
        "params": int(model.count_params()),
        "epochs_run": len(history.get("epoch", [])),
        "train_seconds": round(train_seconds + previous.get("train_seconds", 0.0), 1),
        "test_accuracy": test_accuracy,
        "held_out_extra": held,
        "real_held": real_held,
        "lineage": lineage(start) + [{"command": command or " ".join(sys.argv),
                                      "train_seconds": round(train_seconds + previous.get("train_seconds", 0.0), 1)}],
        "styles": StyleParams().to_dict() if cfg.styled else None,
        "mnist_test_sha256": mnist_data.FILES["test_images"][1],
        "command": command or " ".join(sys.argv),
        "versions": versions(),
    })
    shutil.rmtree(checkpoint, ignore_errors=True)  # the run finished: nothing left to resume
    return RunResult(out, test_accuracy, int(model.count_params()), train_seconds,
                     len(history.get("epoch", [])), weights, held, real_held)


def progress_verbosity(verbose: int | str) -> int:
    """Keras' `verbose` for `fit`: "auto" becomes a progress bar on a terminal, one line per epoch otherwise."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def read_history(csv_path: Path) -> dict[str, list[float]]:
    """Keras' CSVLogger file as {metric: [value per epoch]} (it survives --resume, fit's History does not)."""
    import csv

    if not csv_path.exists():
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(r[key]) for r in rows] for key in (rows[0].keys() if rows else [])}
