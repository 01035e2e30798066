"""The data split every trained model sees: a seeded hold-out of validation images from MNIST's *training* set.

The networks (`train.trainer`, `train.tune`) and the classical baselines (`train.classical`) take the same
training and validation images from here, so that every row of benchmarks/architectures.md is fitted and chosen
on the same data. No TensorFlow: the classical baselines fit without importing it.

    python -c "from digitdata.mnist import find_mnist; from train.config import TrainConfig; \
from train.split import split; print([a.shape for a in split(find_mnist(), TrainConfig())])"
"""

from __future__ import annotations

import numpy as np

from digitdata.mnist import Mnist
from digitdata.pixels import to_model_input
from train.config import TrainConfig


def split(data: Mnist, cfg: TrainConfig, data_dir=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val) from the training set only, shuffled with the run's seed.

    Args:
        data: MNIST, verified.
        cfg: `seed` shuffles, the first `validation` images of the shuffle are held out, and `subset` (when not 0)
            keeps that many of the rest for training. With `reader_crops`, the digits of that many engine
            scenes, cropped the way the reader crops them (training digits outside the validation split),
            join the training images.
        data_dir: where MNIST is, for rendering those scenes (default: the usual search).

    Returns:
        Model input in the pixel convention (N, 28, 28, 1) float32 and int64 labels, training then validation.
    """
    order = np.random.default_rng(cfg.seed).permutation(len(data.y_train))
    val_idx, train_idx = order[: cfg.validation], order[cfg.validation :]
    if cfg.subset:
        train_idx = train_idx[: cfg.subset]
    x, y = data.x_train[train_idx], data.y_train[train_idx]
    if cfg.reader_crops:
        from digitdata.scene_sets import SPLIT_SEED, VALIDATION_DIGITS, render_crops

        if (cfg.seed, cfg.validation) != (SPLIT_SEED, VALIDATION_DIGITS):
            raise ValueError(f"--reader-crops needs the scenes' validation split (--seed {SPLIT_SEED} "
                             f"--validation {VALIDATION_DIGITS}) so that no validation digit is drawn in them")
        crops, labels = render_crops(cfg.reader_crops, cfg.seed, "train", data_dir)
        x, y = np.concatenate([x, crops]), np.concatenate([y, labels])
    return (to_model_input(x), y.astype(np.int64),
            to_model_input(data.x_train[val_idx]), data.y_train[val_idx].astype(np.int64))
