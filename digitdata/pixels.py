"""The pixel convention of the model input, defined once for every stage.

x = pixel * scale + offset, float32, shape (N, 28, 28, 1), white digit on black like MNIST. Training saves
it with the run (`config.json`), conversion copies it into models/manifest.json, and the edge app reads it
from there (`edge_app.runtime.PixelConvention`).

    python -c "from digitdata.pixels import PIXELS; print(PIXELS)"
"""

from __future__ import annotations

import numpy as np

PIXELS = {"scale": 1 / 255, "offset": 0.0, "polarity": "white-on-black", "height": 28, "width": 28,
          "layout": "NHWC", "dtype": "float32"}


def to_model_input(images_u8: np.ndarray, pixels: dict = PIXELS) -> np.ndarray:
    """uint8 digits (N, 28, 28), white on black -> float32 model input (N, 28, 28, 1) in `pixels`' convention."""
    return (np.asarray(images_u8).astype(np.float32) * pixels["scale"] + pixels["offset"])[..., None]
