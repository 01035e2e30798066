"""The number recognizer: a small convolutional network with a CTC head that reads a region as a digit string.

CRNN-style without the recurrence (LiteRT runs convolutions fast and quantizes them well): a VGG-like
stack takes the (32, 256) grey region down to one row of 64 columns, 1-D convolutions with a growing
dilation give each column the context of its neighbours (about two digits either side), and a softmax per
column over the ten digits and the blank ("no digit here"), decoded greedily (`digitdata/ctc.py`).

    python -c "from train.recognizer import build_recognizer; build_recognizer().summary()"
"""

from __future__ import annotations

import keras
from keras import layers, ops

from digitdata.ctc import BLANK
from digitdata.lines import INPUT_HEIGHT, INPUT_WIDTH, MAX_DIGITS

INPUT_SHAPE = (INPUT_HEIGHT, INPUT_WIDTH, 1)  # grey, ink bright on 0, scaled to [0, 1]
COLUMNS = INPUT_WIDTH // 4  # output columns: one per 4 input px
CLASSES = BLANK + 1
BN_MOMENTUM = 0.9


def _conv(x, filters: int, kernel=3, dilation: int = 1):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, dilation_rate=dilation)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.ReLU(6.0)(x)


def build_recognizer(width: int = 16, dropout: float = 0.2) -> keras.Model:
    """The recognizer for (32, 256, 1) inputs; outputs per-column probabilities (64, 11).

    `width` scales every layer (16: about 180 k parameters, about 60 M multiply-adds per region).
    """
    w = width
    inputs = keras.Input(INPUT_SHAPE, name="region")
    x = _conv(inputs, w)  # 32 x 256
    x = layers.MaxPooling2D(2)(x)  # 16 x 128
    x = _conv(x, 2 * w)
    x = layers.MaxPooling2D(2)(x)  # 8 x 64: the output's column pitch from here on
    x = _conv(x, 4 * w)
    x = _conv(x, 4 * w)
    x = layers.MaxPooling2D((2, 1))(x)  # 4 x 64
    x = _conv(x, 6 * w)
    x = _conv(x, 6 * w)
    x = layers.MaxPooling2D((2, 1))(x)  # 2 x 64
    x = layers.Conv2D(8 * w, (2, 1), padding="valid", use_bias=False)(x)  # 1 x 64: each column's features
    x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))
    for dilation in (1, 2, 4):  # context along the row (kernel 3 in width, rows stay 1)
        y = _conv(x, 8 * w, (1, 3), dilation=(1, dilation))
        x = layers.Add()([x, y])
    x = layers.Dropout(dropout)(x)
    x = layers.Conv2D(CLASSES, 1, name="logits")(x)
    x = layers.Reshape((COLUMNS, CLASSES))(x)
    probs = layers.Softmax(name="probs")(x)
    return keras.Model(inputs, probs, name="number_recognizer")


def ctc_loss(y_true, y_pred):
    """CTC loss per region; y_true is (B, 1 + MAX_DIGITS): the digit count, then the digits (padded)."""
    length = ops.cast(y_true[:, 0], "int32")
    labels = ops.cast(y_true[:, 1:], "int32")
    batch = ops.shape(y_pred)[0]
    log_probs = ops.log(ops.clip(y_pred, 1e-7, 1.0))
    return ops.ctc_loss(labels, log_probs, length, ops.full((batch,), COLUMNS, dtype="int32"), mask_index=BLANK)


def encode_texts(texts: list[str]):
    """Targets (N, 1 + MAX_DIGITS) float32 for `ctc_loss`."""
    import numpy as np

    y = np.zeros((len(texts), 1 + MAX_DIGITS), np.float32)
    for i, t in enumerate(texts):
        y[i, 0] = len(t)
        y[i, 1:1 + len(t)] = [int(c) for c in t]
    return y
