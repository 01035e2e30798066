"""The digit detector: a small fully convolutional network that finds every handwritten digit in a picture.

CenterNet-style (see digitdata/heatmap.py): a MobileNet-like encoder down to stride 32 (its receptive field
covers a digit that fills the whole input), a light feature-pyramid decoder back to stride 4 (small and
touching digits keep separate peaks), and two heads: a digit-centre heatmap and box maps. Depthwise-separable
blocks with ReLU6 keep it small and make it quantize well to int8.

    python -c "from train.detector import build_detector; build_detector().summary()"
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from digitdata.frames import DETECTOR_SIZE

INPUT_SHAPE = (DETECTOR_SIZE[1], DETECTOR_SIZE[0], 1)  # (height, width, grey): see digitdata/frames.py
BN_MOMENTUM = 0.9
HEAT_PRIOR = 0.01  # initial heatmap probability everywhere (focal-loss practice: a stable start)
FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0  # CenterNet's penalty-reduced focal loss
BOX_WEIGHT = 1.0  # box L1 (offsets and log sizes, in cells) relative to the heatmap loss


def _bn_relu(x):
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.ReLU(6.0)(x)


def _separable(x, filters: int, stride: int = 1):
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and ReLU6; residual when shapes allow."""
    y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
    y = _bn_relu(y)
    y = layers.Conv2D(filters, 1, use_bias=False)(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM)(y)
    if stride == 1 and x.shape[-1] == filters:
        y = layers.Add()([x, y])
    return layers.ReLU(6.0)(y)


def _lateral(x, filters: int):
    return layers.BatchNormalization(momentum=BN_MOMENTUM)(layers.Conv2D(filters, 1, use_bias=False)(x))


def _upsample(x, size):
    """Nearest-neighbour x2: a Resizing layer for a fixed input shape (LiteRT's RESIZE_NEAREST_NEIGHBOR),
    UpSampling2D for a variable one; neither has weights. (An early graph ran slowly with UpSampling2D; for
    this one, both give the same int8 invoke time: 2.2 ms on one thread, measured 2026-12-02.)
    """
    if None in tuple(size):
        return layers.UpSampling2D(2, interpolation="nearest")(x)
    return layers.Resizing(int(size[0]), int(size[1]), interpolation="nearest")(x)


def trunk(inputs, width: int = 16):
    """The encoder down to stride 32 and the decoder back to stride 4: features (rows/4, cols/4, 1.5 width).

    The stem cuts the picture into 4x4 patches (a strided 4x4 convolution, as ConvNeXt does): everything
    after it runs at stride 4 or coarser, which is several times cheaper to train on a CPU than a stride-2
    stage with the same multiply-adds.
    """
    w = width
    x = _bn_relu(layers.Conv2D(int(1.5 * w), 4, strides=4, use_bias=False)(inputs))  # stride 4: 4x4 patches
    s4 = _separable(x, int(1.5 * w))
    x = _separable(s4, int(2.5 * w), 2)
    s8 = _separable(_separable(x, int(2.5 * w)), int(2.5 * w))  # stride 8
    x = _separable(s8, 4 * w, 2)
    s16 = _separable(_separable(x, 4 * w), 4 * w)  # stride 16
    x = _separable(s16, 6 * w, 2)
    x = _separable(_separable(x, 6 * w), 6 * w)  # stride 32: sees a digit as large as the input

    for skip, filters in ((s16, 3 * w), (s8, 2 * w), (s4, int(1.5 * w))):  # back up to stride 4
        x = _upsample(_lateral(x, filters), skip.shape[1:3])
        x = layers.ReLU(6.0)(layers.Add()([x, _lateral(skip, filters)]))
        x = _separable(x, filters)
    return x


def build_detector(width: int = 16, input_shape: tuple = INPUT_SHAPE) -> keras.Model:
    """The detector for a (256, 320, 1) grey input in [0, 1]; outputs `heat` (64, 80, 1), `box` (64, 80, 4).

    `width` scales every layer (16: about 70 k parameters, 41 M MACs).
    """
    w = width
    inputs = keras.Input(input_shape, name="image")
    x = trunk(inputs, w)
    prior = float(np.log(HEAT_PRIOR / (1 - HEAT_PRIOR)))
    heat = layers.Conv2D(1, 1, activation="sigmoid", name="heat",
                         bias_initializer=keras.initializers.Constant(prior))(_separable(x, int(1.5 * w)))
    box = layers.Conv2D(4, 1, name="box")(_separable(x, int(1.5 * w)))
    return keras.Model(inputs, {"heat": heat, "box": box}, name="digit_detector")


# ---------------------------------------------------------------------------------------------- losses


def focal_loss(y_true, y_pred):
    """CenterNet's focal loss on the heatmap, normalised by the number of digits in the batch.

    y_true holds the target heatmap and a weight (0 where a training crop cut a digit: neither digit nor
    background there).
    """
    target, weight = y_true[..., :1], y_true[..., 1:2]
    p = ops.clip(y_pred, 1e-4, 1 - 1e-4)
    positive = ops.cast(target >= 0.999, p.dtype) * weight
    pos = -ops.log(p) * (1 - p) ** FOCAL_ALPHA * positive
    neg = -ops.log(1 - p) * p**FOCAL_ALPHA * (1 - target) ** FOCAL_BETA * (1 - positive) * weight
    return (ops.sum(pos) + ops.sum(neg)) / ops.maximum(ops.sum(positive), 1.0)


def box_loss(y_true, y_pred):
    """L1 on the offsets and log sizes at digit centres (channel 0 of the target is the centre mask)."""
    mask = y_true[..., :1]
    return BOX_WEIGHT * ops.sum(ops.abs(y_true[..., 1:] - y_pred) * mask) / ops.maximum(ops.sum(mask), 1.0)
