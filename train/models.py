"""The architectures: ours (`dropout-cnn`) and the ones the reports we start from compared it with.

One builder per architecture, each a few lines; `build_model(arch, **hyper)` picks one by name.

    python -c "from train.models import build_model; build_model('dropout-cnn').summary()"
"""

from __future__ import annotations

import keras
from keras import layers

from train.config import ARCHITECTURES as ARCH_NAMES

INPUT_SHAPE = (28, 28, 1)  # MNIST: one grey channel, see digitdata.pixels.PIXELS for the value convention
NUM_CLASSES = 10
BN_MOMENTUM = 0.9  # Keras' 0.99 leaves the moving statistics far off after short runs (val 67 % after epoch 1)


def logistic() -> keras.Model:
    """Multinomial logistic regression on raw pixels: the floor every model must clear."""
    return keras.Sequential(
        [keras.Input(INPUT_SHAPE), layers.Flatten(), layers.Dense(NUM_CLASSES, activation="softmax")],
        name="logistic",
    )


def dense(units: int = 128) -> keras.Model:
    """The reports' dense baseline: Flatten -> Dense -> softmax (reported 97.6 %)."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Flatten(),
            layers.Dense(units, activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="dense",
    )


def basic_cnn(filters: int = 32, units: int = 64) -> keras.Model:
    """The reports' basic CNN: Conv -> MaxPool -> Flatten -> Dense (reported 98.2 %)."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(filters, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(units, activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="basic_cnn",
    )


def _conv_bn(x, filters: int):
    # The bias is redundant before batch norm; BN folds into the conv when converting to .tflite.
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.ReLU()(x)


def dropout_cnn(filters: int = 16, units: int = 0, dropout: float = 0.2) -> keras.Model:
    """Ours: three blocks of two 3x3 convs (filters, 2x, 3x) with batch norm, global pooling, dropout, softmax.

    With filters=16 it has 52,090 parameters and its int8 .tflite is about 60 KB. Dropout sits before the
    classifier only: between conv layers it would shift the variance batch norm learned. `units` > 0 adds
    a dense layer before the classifier.
    """
    inputs = keras.Input(INPUT_SHAPE)
    x = inputs
    for width in (filters, 2 * filters, 3 * filters):  # 28x28, 14x14, 7x7
        x = _conv_bn(x, width)
        x = _conv_bn(x, width)
        if width != 3 * filters:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    if units:
        x = layers.Dense(units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="dropout_cnn")


def mobilenet(alpha: float = 0.5, weights: str | None = None) -> keras.Model:
    """MobileNet-style depthwise-separable net.

    From scratch (weights=None): MobileNetV1 blocks sized for 28x28. With weights="imagenet": Keras'
    MobileNetV2 (ImageNet weights, downloaded by Keras) on the digit upscaled to 96x96 RGB, as the report
    did; the caller falls back to scratch when the download fails.
    """
    inputs = keras.Input(INPUT_SHAPE)
    if weights == "imagenet":
        x = layers.Resizing(96, 96)(inputs)
        x = layers.Concatenate()([x, x, x])
        x = layers.Rescaling(2.0, offset=-1.0)(x)  # MobileNetV2 expects [-1, 1]
        base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights="imagenet",
                                              alpha=0.35)
        x = layers.GlobalAveragePooling2D()(base(x))
    else:
        x = _conv_bn(inputs, int(32 * alpha))
        for filters, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
            x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
            x = layers.ReLU()(x)
            x = layers.Conv2D(int(filters * alpha), 1, use_bias=False)(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
            x = layers.ReLU()(x)
        x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mobilenet")


# name -> builder, in the order of train.config.ARCHITECTURES (the names are checked there, before Keras loads)
ARCHITECTURES = dict(zip(ARCH_NAMES, (logistic, dense, basic_cnn, dropout_cnn, mobilenet), strict=True))


def build_model(arch: str, **hyper) -> keras.Model:
    """Build `arch` with the hyperparameters it accepts (others are ignored)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
    builder = ARCHITECTURES[arch]
    accepted = builder.__code__.co_varnames[: builder.__code__.co_argcount]
    return builder(**{k: v for k, v in hyper.items() if k in accepted and v is not None})
