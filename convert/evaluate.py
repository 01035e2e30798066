"""Accuracy of a .tflite model on the MNIST test set (or any labelled 28x28 digits: the gate's real digits),
through the LiteRT runtime the device uses.

Also the paired statistics between two models: per-class accuracy and its difference, the images where
they disagree, and an exact McNemar test on the paired correct/incorrect results.

    python -c "from convert.evaluate import evaluate; print(evaluate('models/digits_int8.tflite').accuracy)"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from digitdata.mnist import Mnist, load_mnist
from edge_app.runtime import DEFAULT_THREADS, Classifier, PixelConvention


@dataclass
class Evaluation:
    name: str
    predictions: np.ndarray  # (N,) predicted class
    probabilities: np.ndarray  # (N, 10)
    labels: np.ndarray  # (N,) true class

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    def per_class(self) -> list[float]:
        return [float(self.correct[self.labels == c].mean()) for c in range(10)]

    def confusion(self) -> np.ndarray:
        cm = np.zeros((10, 10), np.int64)
        np.add.at(cm, (self.labels, self.predictions), 1)
        return cm


def evaluate(model_path: str | Path, data: Mnist | None = None, threads: int = DEFAULT_THREADS,
             manifest_path: str | Path | None = None, pixels: dict | None = None) -> Evaluation:
    """Run every MNIST test image through `model_path` with LiteRT (pixels: a convention dict, else the
    manifest's)."""
    data = data or load_mnist()
    return evaluate_images(model_path, data.x_test, data.y_test, threads, manifest_path, pixels)


def evaluate_images(model_path: str | Path, images_u8: np.ndarray, labels: np.ndarray,
                    threads: int = DEFAULT_THREADS, manifest_path: str | Path | None = None,
                    pixels: dict | None = None) -> Evaluation:
    """Run labelled MNIST-style digits (N, 28, 28) uint8, white on black, through `model_path` with LiteRT."""
    clf = Classifier(model_path, threads=threads, manifest_path=manifest_path,
                     pixels=PixelConvention.from_dict(pixels) if pixels else None)
    probabilities = clf.probabilities(clf.pixels_to_input(images_u8))
    return Evaluation(Path(model_path).name, probabilities.argmax(axis=1), probabilities,
                      np.asarray(labels).astype(np.int64))


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact (binomial) McNemar test on paired results: is one model right more often than the other?

    b = images A gets right and B wrong, c = the reverse; under H0 (equal accuracy) b ~ Binomial(b + c, 1/2).
    """
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"a_right_b_wrong": b, "a_wrong_b_right": c, "p_value": p}


def paired(a: Evaluation, b: Evaluation) -> dict:
    """Everything that compares two evaluations of the same images."""
    disagree = np.flatnonzero(a.predictions != b.predictions)
    return {
        "a": a.name, "b": b.name, "images": int(len(a.predictions)),
        "accuracy": {a.name: a.accuracy, b.name: b.accuracy},
        "drop_points": round(100 * (a.accuracy - b.accuracy), 4),
        "per_class": {a.name: a.per_class(), b.name: b.per_class(),
                      "difference": [pa - pb for pa, pb in zip(a.per_class(), b.per_class(), strict=True)]},
        "disagreements": disagree.tolist(),
        "agreement": float(1 - len(disagree) / len(a.predictions)),
        "mcnemar": mcnemar_exact(a.correct, b.correct),
    }
