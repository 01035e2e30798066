"""Training defaults in one place.

A run's resolved config is saved beside its model (`config.json`); `train --config FILE` reads one back
(a run's config.json or the best config `digitlite tune` writes), and command-line flags win over it.

    python -c "from train.config import TrainConfig; print(TrainConfig())"
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# The architectures `train/models.py` builds, by name (here so that a bad --arch is refused before Keras loads).
ARCHITECTURES = ("logistic", "dense", "basic-cnn", "dropout-cnn", "mobilenet")
# The reports' classical baselines (scikit-learn, train/classical.py): fitted, reported and tabled like the networks,
# never converted to .tflite. `digitlite architectures` fits them after the networks (`--only classical`: these alone).
CLASSICAL = ("svm", "knn", "random-forest")
# The model `--extra` fine-tunes when no --init is given: the released Keras model of this checkout.
RELEASED_MODEL = Path(__file__).resolve().parents[1] / "models" / "digits.keras"
# The flags of fine-tuning on labelled sets, which `digitlite architectures` does not take.
EXTRA_FLAGS = ("extra", "extra_weight", "extra_held_out", "init", "real", "real_weight", "styled")
# Real single-digit sets whose training part `--real` adds (digitdata.realsets; their held-out part only judges).
REAL_DIGIT_SETS = ("nsysu-digits",)


@dataclass
class TrainConfig:
    arch: str = "dropout-cnn"  # logistic | dense | basic-cnn | dropout-cnn | mobilenet | svm | knn | random-forest
    epochs: int = 15  # the schedule decays to zero at the last epoch; early stopping may end sooner
    batch_size: int = 128
    learning_rate: float = 3e-3  # peak of the one-cycle schedule (Adam)
    weight_decay: float = 1e-4  # AdamW; small, the net is already small
    filters: int = 0  # conv width (0 = the architecture's default: dropout-cnn 16, then 2x, 3x; basic-cnn 32)
    units: int = 0  # dense units (0 = the architecture's default: none for dropout-cnn, basic-cnn 64, dense 128)
    dropout: float = 0.2  # before the classifier (dropout-cnn); the net is small, augmentation does the rest
    augment: bool = True  # small rotations, shifts, zoom, as the reports used
    rotation_deg: float = 10.0
    shift: float = 0.1  # fraction of the image
    zoom: float = 0.1  # +- fraction
    validation: int = 5000  # images held out of the *training* set for early stopping; the test set chooses nothing
    patience: int = 6  # epochs without validation improvement before stopping
    seed: int = 42
    subset: int = 0  # train on the first N training images only (0 = all); for quick runs and tests
    weights: str = "none"  # mobilenet only: "imagenet" tries Keras' ImageNet weights, else from scratch
    extra: list[str] = field(default_factory=list)  # labelled sets (`digitlite corrections export`) to learn too
    extra_weight: int = 20  # times each extra digit is seen per epoch: a few hundred corrections among 55,000 MNIST
    extra_held_out: float = 0.25  # share of the extra rows (frames) held out of training, for the before/after report
    init: str = ""  # Keras model to start from ("" : a new one; with --extra, the released models/digits.keras)
    real: list[str] = field(default_factory=list)  # real digit sets whose training part joins (REAL_DIGIT_SETS)
    real_weight: int = 8  # times each real training digit is seen per epoch (1,406 nsysu digits among 55,000)
    styled: int = 0  # MNIST training digits redrawn in other hands (digitdata.handwriting), drawn once per run

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a config JSON (a run's config.json, or `tune`'s best config); unknown keys are errors."""
        data = json.loads(Path(path).read_text())
        data = data.get("train", data)  # a run's config.json nests the training config under "train"
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}; valid keys are {sorted(valid)}")
        return cls(**data)

    def validate(self) -> TrainConfig:
        if self.arch == "all":
            raise ValueError("--arch all is its own command: `digitlite architectures` trains every architecture "
                             "the same way, the classical baselines included (same flags, e.g. --epochs 3 --out "
                             "runs/all)")
        if self.arch == "classical":
            raise ValueError("--arch classical: `digitlite architectures --only classical` fits svm, knn and "
                             "random-forest and puts their rows in benchmarks/architectures.md; `digitlite train "
                             "--arch svm|knn|random-forest` fits one")
        if self.arch not in (*ARCHITECTURES, *CLASSICAL):
            raise ValueError(f"unknown --arch {self.arch!r}; valid: {', '.join((*ARCHITECTURES, *CLASSICAL))}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.validation < 0:
            raise ValueError(f"--validation must be >= 0, got {self.validation}")
        if self.weights not in ("none", "imagenet"):
            raise ValueError(f"--weights must be 'none' or 'imagenet', got {self.weights!r}")
        if (self.extra or self.init) and self.arch in CLASSICAL:
            raise ValueError(f"--extra and --init fine-tune a network; --arch {self.arch} is fitted from scratch")
        for folder in self.extra:
            if not (Path(folder) / "labels.csv").is_file():
                raise ValueError(f"--extra {folder}: no labels.csv there; give a folder written by `digitlite "
                                 f"corrections export DIR`")
        for name in self.real:
            if name not in REAL_DIGIT_SETS:
                raise ValueError(f"--real {name}: valid real digit sets are {', '.join(REAL_DIGIT_SETS)}")
        if self.real_weight < 1:
            raise ValueError(f"--real-weight must be at least 1, got {self.real_weight}")
        if self.styled < 0:
            raise ValueError(f"--styled must be >= 0, got {self.styled}")
        if self.extra_weight < 1:
            raise ValueError(f"--extra-weight must be at least 1, got {self.extra_weight}")
        if not 0 <= self.extra_held_out < 1:
            raise ValueError(f"--extra-held-out must be in [0, 1), got {self.extra_held_out}")
        start = self.start_model()
        if start is not None and not start.is_file():
            raise ValueError(f"--init {start}: no such Keras model" + ("" if self.init else " (--extra fine-tunes "
                             "the released models/digits.keras; give --init MODEL.keras)"))
        return self

    def start_model(self) -> Path | None:
        """The Keras model training starts from: --init, else with --extra the released model; None: a new one."""
        if self.init:
            return Path(self.init)
        return RELEASED_MODEL if self.extra else None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassicalParams:
    """The classical baselines' settings (train/classical.py); saved in each run's config.json.

    They share TrainConfig's arch, seed, validation and subset (the same split as the networks); the
    networks' optimiser and augmentation settings do not apply to them.
    """

    svm_pca_components: int = 50  # the RBF SVM sees the first 50 principal components of the 784 pixels (see below)
    svm_c: float = 5.0  # RBF SVM regularisation: fixed, not searched (scikit-learn's default is 1.0)
    svm_gamma: str = "scale"  # RBF width: 1 / (components * variance of the input), scikit-learn's default
    svm_cache_mb: int = 1000  # libsvm's kernel cache in MB: speed only, not the result
    knn_candidates: tuple[int, ...] = (1, 3, 5, 7, 9)  # k tried on the validation split; best kept (tie: smaller)
    forest_trees: int = 100  # random forest size (scikit-learn's default); seeded with TrainConfig.seed
    jobs: int = 2  # processes for k-NN distances and forest trees; the results do not depend on it
    # Why PCA for the SVM: libsvm is single-threaded and each kernel evaluation costs the input width. Measured on
    # this 2-core machine on the first 10,000 training images: 1.3 s on 50 components against 13.2 s on the 784
    # pixels, validation accuracy 97.3 % against 96.6 %. The 50 components keep 82.5 % of the pixel variance.

    def to_dict(self) -> dict:
        return {**asdict(self), "knn_candidates": list(self.knn_candidates)}
