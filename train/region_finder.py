"""The region finder: the detector's small fully convolutional network with one head, a "number here" map.

The trunk is the digit detector's (train/detector.py: a MobileNet-like encoder to stride 32, whose receptive
field covers a digit filling the input, and a light pyramid decoder back to stride 4); the head is one
sigmoid map of number lines (digitdata/regions.py). Training may start from a released detector's weights:
its trunk already tells digits from letters and paper, which makes the new head cheap to learn on a CPU.

    python -c "from train.region_finder import build_region_finder; build_region_finder().summary()"
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from train.detector import HEAT_PRIOR, INPUT_SHAPE, _separable, trunk

DICE_WEIGHT = 1.0  # dice loss relative to binary cross-entropy (DBNet's pairing: BCE for pixels, dice for shapes)


def build_region_finder(width: int = 16, input_shape: tuple = INPUT_SHAPE) -> keras.Model:
    """The region finder for a (256, 320, 1) grey input in [0, 1]; outputs `region` (64, 80, 1)."""
    inputs = keras.Input(input_shape, name="image")
    x = trunk(inputs, width)
    prior = float(np.log(HEAT_PRIOR / (1 - HEAT_PRIOR)))
    region = layers.Conv2D(1, 1, activation="sigmoid", name="region",
                           bias_initializer=keras.initializers.Constant(prior))(_separable(x, int(1.5 * width)))
    return keras.Model(inputs, region, name="region_finder")


def start_from(model: keras.Model, detector_path: str | Path) -> int:
    """Copy a detector's weights into `model` wherever type and shapes agree: the trunk layer by layer in build
    order, then the head from the detector's first-built head (its heatmap branch); returns the layers copied."""
    source = keras.models.load_model(detector_path, compile=False)
    pairs = list(zip(model.layers, source.layers, strict=False))
    split = next((i for i, (a, b) in enumerate(pairs) if not _same(a, b)), len(pairs))
    spare = list(source.layers[split:])
    copied = 0
    for mine, theirs in pairs[:split]:
        if mine.get_weights():
            mine.set_weights(theirs.get_weights())
            copied += 1
    for mine in model.layers[split:]:
        if not mine.get_weights():
            continue
        match = [t for t in spare if _same(mine, t)]
        if match:  # the earliest built of its kind: Keras numbers a class's layers in build order
            theirs = min(match, key=lambda t: int(t.name.rsplit("_", 1)[1]) if t.name.rsplit("_", 1)[-1].isdigit()
                         else 10**9)
            mine.set_weights(theirs.get_weights())
            spare.remove(theirs)
            copied += 1
    return copied


def _same(a, b) -> bool:
    return type(a) is type(b) and [w.shape for w in a.get_weights()] == [w.shape for w in b.get_weights()]


def region_loss(y_true, y_pred):
    """Binary cross-entropy plus dice on the map; y_true holds the target and a weight (0: ignore)."""
    target, weight = y_true[..., :1], y_true[..., 1:2]
    p = ops.clip(y_pred, 1e-6, 1 - 1e-6)
    bce = -(target * ops.log(p) + (1 - target) * ops.log(1 - p)) * weight
    bce = ops.sum(bce) / ops.maximum(ops.sum(weight), 1.0)
    inter = ops.sum(p * target * weight)
    dice = 1 - (2 * inter + 1) / (ops.sum(p * weight) + ops.sum(target * weight) + 1)
    return bce + DICE_WEIGHT * dice
