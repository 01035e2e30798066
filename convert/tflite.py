"""Keras model -> .tflite bytes: float32, full-integer int8, and the optional float16 / dynamic-range variants.

The int8 model has int8 weights and activations and int8 input and output tensors (LiteRT's current
convention; uint8 is the legacy one). Its quantization parameters come out of calibration on a
class-balanced sample of *training* images and are read back from the model, never assumed.

    python -c "import keras; from convert.tflite import convert_variant; ..."
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from digitdata.pixels import to_model_input
from digitlite import load_tensorflow, native_lines_off

VARIANTS = ("float32", "int8", "float16", "dynamic")
DEFAULT_VARIANTS = ("float32", "int8")
FILE_NAMES = {v: f"digits_{v}.tflite" for v in VARIANTS}


def calibration_sample(x_train_u8: np.ndarray, y_train: np.ndarray, size: int = 500, seed: int = 0) -> np.ndarray:
    """`size` training images, the same number from each class (remainder spread over the first classes)."""
    if size < 10:
        raise ValueError(f"--calibration-size must be at least 10 (one per class), got {size}")
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(10):
        per_class = size // 10 + (1 if c < size % 10 else 0)
        picks.append(rng.choice(np.flatnonzero(y_train == c), per_class, replace=False))
    idx = rng.permutation(np.concatenate(picks))
    return to_model_input(x_train_u8[idx])


def convert_variant(model, variant: str, calibration: np.ndarray | None = None) -> bytes:
    """Convert a Keras model to one .tflite variant (see VARIANTS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    tf = load_tensorflow()  # here, not at import: `digitlite check` and `convert --help` never load it

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float activations
    elif variant == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("int8 conversion needs calibration images")

        def representative():
            for i in range(len(calibration)):
                yield [calibration[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # Keras prints the exported signature (dozens of TensorSpec lines) while converting and the quantizer its
    # settings ("fully_quantize: 0, ..."): off the terminal unless --log-level debug. The converter also warns
    # that the int8 input has no statistics: the representative dataset above calibrates it.
    with contextlib.redirect_stdout(io.StringIO()), native_lines_off(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return converter.convert()
