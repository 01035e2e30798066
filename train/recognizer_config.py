"""The recognizer run's settings in one place, with their units; no TensorFlow (argument errors come fast).

    python -c "from train.recognizer_config import RecognizerConfig; print(RecognizerConfig())"
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class RecognizerConfig:
    lines: int = 120_000  # training regions (MNIST training digits outside the validation split)
    validation_lines: int = 3000  # the fixed validation set (the held-out training digits), seed below
    epochs: int = 4  # about 60 min alone on a 2-core x86 (width 12); stops early when validation stalls
    batch_size: int = 64
    learning_rate: float = 2e-3  # peak of warm-up + cosine decay (AdamW)
    weight_decay: float = 1e-4
    width: int = 12  # the network's width multiplier (see train.recognizer.build_recognizer)
    dropout: float = 0.2
    seed: int = 0  # training regions and shuffling
    validation_seed: int = 1_000_000  # never a training seed
    patience: int = 3  # epochs without validation improvement before stopping
    real_share: float = 0.08  # share of the training regions that are real cheque amounts (orand-car-a's training
    #                           part, `digitdata.realsets`), each copy varied; 0 = none, or when the set is absent

    def validate(self) -> RecognizerConfig:
        for name in ("lines", "validation_lines", "epochs", "batch_size", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.real_share < 0.5:
            raise ValueError(f"--real-share must be in [0, 0.5), got {self.real_share}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> RecognizerConfig:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown recognizer config keys {unknown}; valid keys are {sorted(valid)}")
        return cls(**data)
