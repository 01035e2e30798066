"""The region finder run's settings in one place, with their units; no TensorFlow (argument errors come fast).

    python -c "from train.region_config import RegionConfig; print(RegionConfig())"
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class RegionConfig:
    photo_scenes: int = 4000  # training scenes per mix of the data engine (digitdata.engine.MIXES) ...
    form_scenes: int = 2000
    hard_scenes: int = 2500
    distractors_scenes: int = 1500
    validation_scenes: int = 200  # ... and per mix in the fixed validation set (held-out training digits)
    epochs: int = 3  # the trunk starts from the released detector's weights
    batch_size: int = 16
    learning_rate: float = 1e-3  # peak of warm-up + cosine decay (AdamW)
    weight_decay: float = 1e-4
    width: int = 16  # the network's width multiplier (as the detector's, so its weights fit)
    threshold: float = 0.5  # map value that counts as "number here" (evaluation and the device)
    start_from: str = "models/detector.keras"  # weights to start from ("" for none)
    invert_p: float = 0.05  # share of pictures flipped to bright ink on dark, on top of the engine's
    seed: int = 0  # training scenes and shuffling
    validation_seed: int = 1_000_000  # never a training seed
    patience: int = 2  # epochs without validation improvement before stopping

    @property
    def mixes(self) -> dict[str, int]:
        return {"photo": self.photo_scenes, "form": self.form_scenes, "hard": self.hard_scenes,
                "distractors": self.distractors_scenes}

    def validate(self) -> RegionConfig:
        for name in ("validation_scenes", "epochs", "batch_size", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if sum(self.mixes.values()) < 1 or min(self.mixes.values()) < 0:
            raise ValueError(f"scenes per mix must be >= 0 and not all 0, got {self.mixes}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"--threshold must be in (0, 1), got {self.threshold}")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> RegionConfig:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown region finder config keys {unknown}; valid keys are {sorted(valid)}")
        return cls(**data)
