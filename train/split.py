"""The data split every trained model sees: a seeded hold-out of validation images from MNIST's *training* set.

The networks (`train.trainer`, `train.tune`) and the classical baselines (`train.classical`) take the same
training and validation images from here, so that every row of benchmarks/architectures.md is fitted and chosen
on the same data. With `--extra`, the labelled digits of those folders (a device's corrections,
`digitdata.labelled`) join the training images, repeated `extra_weight` times, except a seeded held-out share of
their rows (`extra_split`) that the run report measures the model on before and after. No TensorFlow: the
classical baselines fit without importing it.

    python -c "from digitdata.mnist import find_mnist; from train.config import TrainConfig; \
from train.split import split; print([a.shape for a in split(find_mnist(), TrainConfig())])"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitdata.labelled import read_digits
from digitdata.mnist import Mnist
from digitdata.pixels import to_model_input
from train.config import TrainConfig


def split(data: Mnist, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val) from the training set only, shuffled with the run's seed.

    Args:
        data: MNIST, verified.
        cfg: `seed` shuffles, the first `validation` images of the shuffle are held out, and `subset` (when not 0)
            keeps that many of the rest for training. With `extra`, the training share of those folders' labelled
            digits joins the training images, each `extra_weight` times (the augmentation varies every copy).

    Returns:
        Model input in the pixel convention (N, 28, 28, 1) float32 and int64 labels, training then validation.
    """
    order = np.random.default_rng(cfg.seed).permutation(len(data.y_train))
    val_idx, train_idx = order[: cfg.validation], order[cfg.validation :]
    if cfg.subset:
        train_idx = train_idx[: cfg.subset]
    x, y = data.x_train[train_idx], data.y_train[train_idx]
    if cfg.extra:
        extra = extra_split(cfg)
        x = np.concatenate([x, np.repeat(extra.x_train, cfg.extra_weight, axis=0)])
        y = np.concatenate([y, np.repeat(extra.y_train, cfg.extra_weight)])
    return (to_model_input(x), y.astype(np.int64),
            to_model_input(data.x_train[val_idx]), data.y_train[val_idx].astype(np.int64))


@dataclass
class ExtraSplit:
    """The extra labelled digits, split by row (frame) into training and held-out, as uint8 (N, 28, 28)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_held: np.ndarray
    y_held: np.ndarray
    rows_train: int
    rows_held: int
    skipped: list[str]


def extra_split(cfg: TrainConfig) -> ExtraSplit:
    """The digits of `cfg.extra`, a seeded `extra_held_out` share of their rows held out (at least one row when
    there are two or more): all the digits of a frame fall on the same side, so none is judged on a sibling
    crop it was trained with.

    Raises:
        FileNotFoundError, ValueError: a folder without labels.csv, a malformed one, or no digits at all.
    """
    digits = read_digits(cfg.extra)
    if len(digits) == 0:
        raise ValueError(f"--extra {' '.join(cfg.extra)}: no labelled 28x28 digits there ({len(digits.skipped)} rows "
                         f"skipped; first: {digits.skipped[:1]})")
    rows = np.unique(digits.groups)
    held_count = round(len(rows) * cfg.extra_held_out)
    if cfg.extra_held_out > 0 and len(rows) >= 2:
        held_count = min(max(held_count, 1), len(rows) - 1)
    held_rows = np.random.default_rng(cfg.seed).permutation(rows)[:held_count]
    held = np.isin(digits.groups, held_rows)
    return ExtraSplit(digits.images[~held], digits.labels[~held], digits.images[held], digits.labels[held],
                      len(rows) - held_count, held_count, digits.skipped)
