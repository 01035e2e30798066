"""Figures shared by the training and conversion reports: curves, confusion matrices, digit grids, EDA.

Every figure is saved atomically as PNG with matplotlib's non-interactive backend. Needs matplotlib (the
`[train]` extra): train and convert import this module, the device never does.

    python -c "import numpy as np; from digitdata import plots; plots.digit_grid(np.zeros((4, 28, 28)), '12', 'g.png')"
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and devices

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from digitdata.atomic import atomic_path  # noqa: E402


def save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def curves(history: dict[str, list[float]], path: str | Path, title: str = "",
           metrics: Sequence[str] = ("accuracy", "loss")) -> None:
    """Each metric per epoch (one panel each), training vs validation."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                ax.plot(epochs, history[key], marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save(fig, path)


def confusion_axes(ax, cm: np.ndarray, title: str) -> None:
    ax.imshow(np.log1p(cm), cmap="Blues")
    for (i, j), n in np.ndenumerate(cm):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)


def confusion(cms: Sequence[np.ndarray], titles: Sequence[str], path: str | Path) -> None:
    """One or more confusion matrices side by side."""
    fig, axes = plt.subplots(1, len(cms), figsize=(5 * len(cms), 4.8), squeeze=False)
    for ax, cm, title in zip(axes[0], cms, titles, strict=True):
        confusion_axes(ax, cm, title)
    save(fig, path)


def digit_grid(images: np.ndarray, captions: Sequence[str], path: str | Path, cols: int = 8,
               title: str = "") -> None:
    """A grid of 28x28 digits, each with a caption (e.g. 'true 4 / pred 9')."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(max(cols * 1.6, 6), rows * 1.9 + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(np.asarray(images[k]).reshape(28, 28), cmap="gray", vmin=0, vmax=255)
            ax.set_title(captions[k], fontsize=7)
    if n == 0:
        axes[0, 0].text(0, 0.5, "none", fontsize=12)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, path)


def per_class_bars(values: dict[str, Sequence[float]], path: str | Path, ylabel: str = "accuracy") -> None:
    """Grouped bars per class, one series per model."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(1, len(values))
    for k, (label, series) in enumerate(values.items()):
        ax.bar(np.arange(10) + k * width, series, width, label=label)
    low = min(min(s) for s in values.values())
    ax.set_ylim(max(0.0, low - 0.01), 1.0)
    ax.set_xticks(np.arange(10) + width * (len(values) - 1) / 2, [str(c) for c in range(10)])
    ax.set_xlabel("class")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save(fig, path)


def eda(x_train: np.ndarray, y_train: np.ndarray, y_test: np.ndarray, path: str | Path) -> None:
    """Class counts (train and test) and the mean image of each class."""
    fig = plt.figure(figsize=(11, 4.2))
    ax = fig.add_subplot(2, 1, 1)
    ax.bar(np.arange(10) - 0.2, np.bincount(y_train, minlength=10), 0.4, label="train")
    ax.bar(np.arange(10) + 0.2, np.bincount(y_test, minlength=10), 0.4, label="test")
    ax.set_xticks(range(10))
    ax.set_title("images per class")
    ax.legend()
    for c in range(10):
        sub = fig.add_subplot(2, 10, 11 + c)
        sub.imshow(x_train[y_train == c].mean(axis=0), cmap="gray")
        sub.set_title(f"mean {c}", fontsize=8)
        sub.axis("off")
    save(fig, path)
