"""The reports' classical baselines: an RBF SVM, k-NN and a random forest (scikit-learn), run like the networks.

This module owns fitting them, choosing k-NN's k, and saving and loading the fitted models. They use the
networks' split (`train.split`: the same 5,000 training images held out for validation, the same `--subset`)
and pixel scaling (`digitdata.pixels`), and the same run report (`train.report`: accuracy, per-class
precision/recall/F1, confusion matrix, misclassified grid). Their settings are `train.config.ClassicalParams`.
They are never converted to .tflite (see benchmarks/architectures.md), and nothing here imports TensorFlow.

A run folder holds model.skops, config.json (settings, train time, model size), report.md, report.json,
confusion.png and misclassified.png.

Why .skops: the skops format stores the fitted arrays as .npy files and the object tree as JSON, and loading
rebuilds only types on an allow-list instead of running pickle's arbitrary code (joblib files are pickles).
One type needs a word: skops does not trust `sklearn.tree._tree.Tree` (the forest's trees), because
scikit-learn follows its node indices without bounds checks, so a crafted file could read out of bounds
when predicting. `load_model(path, own_file=True)` trusts it: pass that only for a file this project wrote.

    digitlite train --arch knn --out runs/knn
    digitlite architectures --only classical --out runs/classical   # the three, rows in benchmarks/architectures.md
"""

from __future__ import annotations

import platform
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sklearn
import skops.io
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from digitdata import mnist as mnist_data
from digitdata.atomic import atomic_path, write_json
from digitdata.pixels import PIXELS
from train.config import CLASSICAL, ClassicalParams, TrainConfig
from train.split import split

MODEL_FILE = "model.skops"
FOREST_TREE_TYPE = "sklearn.tree._tree.Tree"  # the one type skops leaves untrusted in our files (see above)


@dataclass
class ClassicalResult:
    out: Path
    arch: str
    test_accuracy: float
    val_accuracy: float | None  # None when --validation 0 (SVM and forest only; k-NN needs it)
    stored_numbers: int  # what the fitted model keeps to predict; see stored_numbers()
    model_bytes: int  # model.skops on disk
    train_seconds: float
    train_images: int
    setting: str  # e.g. "PCA 50 + RBF, C 5", "k 3", "100 trees, seed 42"

    def summary(self) -> str:
        val = f", validation {self.val_accuracy:.2%}" if self.val_accuracy is not None else ""
        return (f"{self.arch} ({self.setting}): test accuracy {self.test_accuracy:.4%}{val}, fitted on "
                f"{self.train_images:,} images in {self.train_seconds:.0f} s, {self.stored_numbers:,} stored numbers, "
                f"{MODEL_FILE} {self.model_bytes / 1e6:.1f} MB -> {self.out}")


class KerasLikeScores:
    """A fitted classifier seen through the one call `train.report` makes of a Keras model.

    `predict(x)` takes the networks' input (N, 28, 28, 1) and returns per-class scores (N, 10) whose argmax
    is the classifier's own prediction: vote fractions (k-NN), mean tree probabilities (forest), or the
    one-vs-rest decision values (SVM, with break_ties so that predict is their argmax). The report's ROC AUC
    only ranks the scores, so they need not be probabilities.
    """

    def __init__(self, model):
        self.model = model

    def predict(self, x: np.ndarray, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        flat = flatten(x)
        if hasattr(self.model, "decision_function"):
            return self.model.decision_function(flat)
        return self.model.predict_proba(flat)


def flatten(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28, 1) network input -> (N, 784): the same pixels, one row per image."""
    return x.reshape(len(x), -1)


def validate(cfg: TrainConfig, params: ClassicalParams, resume: bool = False) -> None:
    """Raise ValueError, naming the flag and a fix, for settings the classical fits cannot use."""
    if cfg.arch not in CLASSICAL:
        raise ValueError(f"unknown classical --arch {cfg.arch!r}; valid: {', '.join(CLASSICAL)}")
    if resume:
        raise ValueError(f"--resume: --arch {cfg.arch} is fitted in one go and keeps no checkpoint; run it without "
                         f"--resume")
    if cfg.subset < 0 or cfg.validation < 0:
        raise ValueError(f"--subset and --validation must be >= 0, got {cfg.subset} and {cfg.validation}")
    if cfg.arch == "knn" and cfg.validation < 1:
        raise ValueError(f"--arch knn chooses k on the validation split, so --validation must be at least 1 "
                         f"(got {cfg.validation}; the default is {TrainConfig().validation})")
    if cfg.arch == "svm" and 0 < cfg.subset < params.svm_pca_components:
        raise ValueError(f"--subset {cfg.subset} is smaller than the SVM's {params.svm_pca_components} PCA "
                         f"components: use at least {params.svm_pca_components} training images")


def choose_k(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             candidates: tuple[int, ...], jobs: int) -> tuple[int, dict[int, float]]:
    """k with the best validation accuracy (the smaller on a tie) and the accuracy of each candidate.

    One neighbour search for the largest k; each smaller k votes with its nearest part of it, as
    KNeighborsClassifier(k) would (uniform weights, a tied vote goes to the smaller class).
    """
    usable = sorted(k for k in candidates if k <= len(x_train))
    if not usable:
        raise ValueError(f"k-NN: no candidate k in {list(candidates)} fits {len(x_train)} training images; "
                         f"use a larger --subset")
    search = KNeighborsClassifier(n_neighbors=usable[-1], algorithm="brute", n_jobs=jobs).fit(x_train, y_train)
    nearest_labels = y_train[search.kneighbors(x_val, return_distance=False)]  # (n_val, k_max), nearest first
    accuracy = {}
    for k in usable:
        votes = np.stack([(nearest_labels[:, :k] == c).sum(axis=1) for c in range(10)], axis=1)
        accuracy[k] = float((votes.argmax(axis=1) == y_val).mean())
    best = max(usable, key=lambda k: (accuracy[k], -k))
    return best, accuracy


def build(arch: str, params: ClassicalParams, seed: int, k: int = 1):
    """An unfitted scikit-learn estimator for `arch`."""
    if arch == "svm":
        return make_pipeline(PCA(params.svm_pca_components, random_state=seed),
                             SVC(C=params.svm_c, kernel="rbf", gamma=params.svm_gamma, break_ties=True,
                                 cache_size=params.svm_cache_mb))
    if arch == "knn":
        return KNeighborsClassifier(n_neighbors=k, algorithm="brute", n_jobs=params.jobs)
    return RandomForestClassifier(n_estimators=params.forest_trees, random_state=seed, n_jobs=params.jobs)


def stored_numbers(model) -> int:
    """How many numbers the fitted model keeps in order to predict (the classical 'parameter count').

    SVM: the PCA mean and basis, the support vectors, their dual coefficients and the intercepts. k-NN: every
    training image and its label. Forest: per tree node a feature, a threshold, two children and 10 class values.
    """
    if hasattr(model, "named_steps"):
        pca, svc = model.named_steps["pca"], model.named_steps["svc"]
        return int(pca.mean_.size + pca.components_.size + svc.support_vectors_.size + svc.dual_coef_.size
                   + svc.intercept_.size)
    if isinstance(model, KNeighborsClassifier):
        return int(model.n_samples_fit_ * (model.n_features_in_ + 1))
    return int(sum(tree.tree_.node_count * (4 + tree.tree_.n_classes[0]) for tree in model.estimators_))


def setting(arch: str, params: ClassicalParams, seed: int, k: int) -> str:
    if arch == "svm":
        return f"PCA {params.svm_pca_components} + RBF, C {params.svm_c:g}"
    if arch == "knn":
        return f"k {k}"
    return f"{params.forest_trees} trees, seed {seed}"


def save_model(model, path: str | Path) -> int:
    """Write `model` as .skops (deflated: MNIST's zero pixels compress well) atomically; return its bytes."""
    with atomic_path(path) as tmp:
        skops.io.dump(model, tmp, compression=zipfile.ZIP_DEFLATED)
    return Path(path).stat().st_size


def load_model(path: str | Path, own_file: bool = False):
    """Load a .skops model without unpickling.

    Args:
        path: a model.skops written by `save_model`.
        own_file: also trust `sklearn.tree._tree.Tree` (random forests). Only for a file this project wrote:
            a crafted tree can make scikit-learn read out of bounds (see the module docstring).

    Raises:
        ValueError: the file holds types outside skops' allow-list (and, without own_file, a forest).
    """
    trusted = [FOREST_TREE_TYPE] if own_file else None
    untrusted = [t for t in skops.io.get_untrusted_types(file=path) if t not in (trusted or [])]
    if untrusted:
        hint = " (a random forest: pass own_file=True if this project wrote the file)" \
            if untrusted == [FOREST_TREE_TYPE] else ""
        raise ValueError(f"{path}: refusing to load untrusted types {untrusted}{hint}")
    return skops.io.load(path, trusted=trusted)


def fit_classical(cfg: TrainConfig, out: str | Path, data_dir: str | Path | None = None, resume: bool = False,
                  command: str | None = None, params: ClassicalParams | None = None,
                  report: bool = True) -> ClassicalResult:
    """Fit `cfg.arch` (svm, knn or random-forest) on the networks' split and write its run folder `out`.

    Args:
        cfg: arch, seed, validation and subset are used; the networks' optimiser settings do not apply.
        out: the run folder (model.skops, config.json and, with report, the report files).
        data_dir: where MNIST is (default: the usual search, see digitdata.mnist.find_mnist).
        resume: refused: a classical fit has no checkpoints to resume from.
        command: the command line to record in config.json.
        params: the classical settings (default ClassicalParams()).
        report: write the run report on the 10,000 test images (tests may turn it off and measure themselves).

    Raises:
        ValueError: bad settings or --resume. digitdata.mnist.MnistError: MNIST not found or not valid.
    """
    params = params or ClassicalParams()
    validate(cfg, params, resume)
    data = mnist_data.find_mnist(data_dir)
    x_train, y_train, x_val, y_val = (a if a.ndim == 1 else flatten(a) for a in split(data, cfg))

    started = time.perf_counter()
    k, k_accuracy = (choose_k(x_train, y_train, x_val, y_val, params.knn_candidates, params.jobs)
                     if cfg.arch == "knn" else (1, {}))
    model = build(cfg.arch, params, cfg.seed, k).fit(x_train, y_train)
    train_seconds = time.perf_counter() - started  # for k-NN, choosing k is part of fitting it

    out = Path(out)
    model_bytes = save_model(model, out / MODEL_FILE)
    val_accuracy = float((model.predict(x_val) == y_val).mean()) if len(y_val) else None
    label = setting(cfg.arch, params, cfg.seed, k)
    test_accuracy = float("nan")
    if report:
        from train.report import write_run_report

        notes = [f"Fitted on {len(y_train):,} training images in {train_seconds:.1f} s (2-core CPU); "
                 f"{MODEL_FILE} is {model_bytes:,} bytes; {stored_numbers(model):,} stored numbers."]
        if val_accuracy is not None:
            notes.append(f"Validation accuracy ({len(y_val):,} held-out training images): {val_accuracy:.4%}.")
        if k_accuracy:
            tried = ", ".join(f"k {c}: {a:.2%}" for c, a in k_accuracy.items())
            notes.append(f"k chosen on the validation split: {tried}; kept k {k} (the fit time is this search: "
                         f"storing the images takes none).")
        test_accuracy = write_run_report(KerasLikeScores(model), data, out, {}, title=f"{cfg.arch} ({label})",
                                         notes=notes)
    result = ClassicalResult(out, cfg.arch, test_accuracy, val_accuracy, stored_numbers(model), model_bytes,
                             train_seconds, len(y_train), label)
    write_json(out / "config.json", {
        "train": {name: getattr(cfg, name) for name in ("arch", "seed", "validation", "subset")},
        "classical": params.to_dict(),
        "pixels": PIXELS,
        "setting": label,
        "k_validation_accuracy": {str(c): a for c, a in k_accuracy.items()},
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "train_images": len(y_train),
        "train_seconds": round(train_seconds, 1),
        "stored_numbers": result.stored_numbers,
        "model_file": MODEL_FILE,
        "model_bytes": model_bytes,
        "mnist_test_sha256": mnist_data.FILES["test_images"][1],
        "command": command or " ".join(sys.argv),
        "versions": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                     "skops": skops.__version__, "numpy": np.__version__},
    })
    return result
