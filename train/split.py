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


def split(data: Mnist, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val) from the training set only, shuffled with the run's seed.

    Args:
        data: MNIST, verified.
        cfg: `seed` shuffles, the first `validation` images of the shuffle are held out, and `subset` (when not 0)
            keeps that many of the rest for training.

    Returns:
        Model input in the pixel convention (N, 28, 28, 1) float32 and int64 labels, training then validation.
    """
    order = np.random.default_rng(cfg.seed).permutation(len(data.y_train))
    val_idx, train_idx = order[: cfg.validation], order[cfg.validation :]
    if cfg.subset:
        train_idx = train_idx[: cfg.subset]
    return (to_model_input(data.x_train[train_idx]), data.y_train[train_idx].astype(np.int64),
            to_model_input(data.x_train[val_idx]), data.y_train[val_idx].astype(np.int64))
