"""The data split every trained model sees: a seeded hold-out of validation images from MNIST's *training* set.

The networks (`train.trainer`, `train.tune`) and the classical baselines (`train.classical`) take the same
training and validation images from here, so that every row of benchmarks/architectures.md is fitted and chosen
on the same data. With `--extra`, the labelled digits of those folders (a device's corrections,
`digitdata.labelled`) join the training images, repeated `extra_weight` times, except a seeded held-out share of
their rows (`extra_split`) that the run report measures the model on before and after. Since reader v3 a
correction labels number regions, not digit crops: only the 28x28 crops of readings stored before it (or a folder
of hand-labelled 28x28 digits) are read there, and a folder of regions alone is refused with a pointer to
`digitlite train-recognizer --extra`, whose regions are split here too (`extra_regions`: every 5th row held out,
the rest repeated to weigh up to 5 % of the rendered regions). With `--real`, the *training* part of a real
single-digit set (`digitdata.realsets`: nsysu-digits outside its held-out semesters) joins too, each digit
`real_weight` times (every copy after the first elastically distorted); with `--styled N`, N MNIST training digits
redrawn in other hands (`digitdata.handwriting`). No TensorFlow: the classical baselines fit without importing it.

    python -c "from digitdata.mnist import find_mnist; from train.config import TrainConfig; \
from train.split import split; print([a.shape for a in split(find_mnist(), TrainConfig())])"
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from digitdata.labelled import read_digits, read_regions
from digitdata.lines import MAX_DIGITS
from digitdata.mnist import Mnist
from digitdata.pixels import to_model_input
from train.config import TrainConfig

EXTRA_SHARE = 0.05  # recognizer --extra: their copies are at most this share of the training set (each once at least)
EXTRA_HELD_EVERY = 5  # recognizer --extra: every 5th row (a frame's regions) is held out for the before/after report


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
    if cfg.styled:
        from digitdata.handwriting import variants

        styled_x, styled_y = variants(cfg.seed, data.x_train[train_idx], data.y_train[train_idx], cfg.styled)
        x, y = np.concatenate([x, styled_x]), np.concatenate([y, styled_y])
    if cfg.real:
        real_x, real_y = real_training_digits(cfg)
        x, y = np.concatenate([x, real_x]), np.concatenate([y, real_y])
    return (to_model_input(x), y.astype(np.int64),
            to_model_input(data.x_train[val_idx]), data.y_train[val_idx].astype(np.int64))


def real_training_digits(cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training parts of `cfg.real`, each digit `real_weight` times: the first copy as it is, every later one
    elastically distorted (p = 0.5, seeded), uint8 (N, 28, 28) and labels.

    Raises:
        FileNotFoundError: a set is not there (../shared/datasets, $DIGITLITE_DATASETS).
    """
    from digitdata import realsets
    from digitdata.handwriting import elastic

    rng = np.random.default_rng(cfg.seed + 1)
    xs, ys = [], []
    for name in cfg.real:
        part = realsets.digits(name, "train")
        for copy in range(cfg.real_weight):
            batch = part.x.copy()
            if copy:
                for i in np.flatnonzero(rng.random(len(batch)) < 0.5):
                    batch[i] = elastic(rng, batch[i])
            xs.append(batch)
            ys.append(part.y)
    return np.concatenate(xs), np.concatenate(ys)


REPORTED_SKIPS = 20  # skipped --extra rows listed by name in a training report (all are counted)


def skipped_markdown(skipped: list[str]) -> str:
    """The report's lines on the --extra rows left out, and why ("" when none was)."""
    if not skipped:
        return ""
    listed = "".join(f"- {line}\n" for line in skipped[:REPORTED_SKIPS])
    more = f"- ... and {len(skipped) - REPORTED_SKIPS} more\n" if len(skipped) > REPORTED_SKIPS else ""
    return f"\n**{len(skipped)} --extra rows left out** (not trained on, not held out):\n\n{listed}{more}"


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
        regions = len(read_regions(cfg.extra))
        if regions:
            raise ValueError(f"--extra {' '.join(cfg.extra)}: no labelled 28x28 digits there, but {regions} labelled "
                             f"number regions: since reader v3 a correction labels a number region and its string, "
                             f"which the recognizer learns from: `digitlite train-recognizer --extra "
                             f"{' '.join(cfg.extra)}`")
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


@dataclass
class ExtraRegions:
    """The extra labelled regions split by row (frame) into training and held-out, and how often the training
    ones are repeated."""

    x_train: np.ndarray  # (M, 32, 256) uint8
    t_train: list[str]
    x_held: np.ndarray
    t_held: list[str]
    rows_train: int
    rows_held: int
    repeats: int  # copies of each training region among the rendered ones
    skipped: list[str] = field(default_factory=list)


def extra_regions(folders: list[str | Path], rendered: int) -> ExtraRegions:
    """The labelled regions of `folders`: every `EXTRA_HELD_EVERY`th row held out (the last row when there are 2
    to 4), all the regions of a frame on the same side; the rest repeated so that their copies weigh up to
    `EXTRA_SHARE` of a training set with `rendered` rendered regions, once each at least. A region of more than
    `digitdata.MAX_DIGITS` digits is left out (listed in `skipped`).

    Raises:
        FileNotFoundError: a folder without labels.csv. ValueError: a malformed labels.csv, or no labelled region
            at all (saying so when the folders hold 28x28 digit crops for `digitlite train --extra` instead).
    """
    regions = read_regions(folders)
    named = " ".join(map(str, folders))
    long = [i for i, t in enumerate(regions.texts) if len(t) > MAX_DIGITS]
    if long:  # longer than the recognizer's targets hold: left out, and said
        keep = np.setdiff1d(np.arange(len(regions)), long)
        regions.skipped += [f"a region labelled {regions.texts[i]!r}: more than {MAX_DIGITS} digits"
                            for i in long]
        regions = replace(regions, images=regions.images[keep], texts=[regions.texts[i] for i in keep],
                          groups=regions.groups[keep])
    if len(regions) == 0:
        digits = len(read_digits(folders))
        hint = (f"; they hold {digits} labelled 28x28 digit crops (readings stored before reader v3), which "
                f"`digitlite train --extra {named}` learns from" if digits else "")
        raise ValueError(f"--extra {named}: no labelled number regions there ({len(regions.skipped)} rows skipped; "
                         f"first: {regions.skipped[:1]}){hint}")
    rows = np.unique(regions.groups)
    held_rows = rows[EXTRA_HELD_EVERY - 1::EXTRA_HELD_EVERY]
    if not len(held_rows) and len(rows) >= 2:
        held_rows = rows[-1:]
    held = np.isin(regions.groups, held_rows)
    texts = np.array(regions.texts, dtype=object)
    trained = int((~held).sum())
    repeats = max(1, int(EXTRA_SHARE * rendered / ((1 - EXTRA_SHARE) * trained))) if trained else 0
    return ExtraRegions(regions.images[~held], texts[~held].tolist(), regions.images[held], texts[held].tolist(),
                        len(rows) - len(held_rows), len(held_rows), repeats, regions.skipped)
