"""edge_app.web.uploads: the declared content type is checked; drawings become MNIST-style crops. (The decoder
itself, shared with `digitlite read`, is tested in test_images.py.)

    .venv/bin/pytest tests/test_web_uploads.py
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_app.web.uploads import UploadError, check_content_type, drawing_to_crop


def test_accepted_content_types_and_helpful_refusals():
    assert check_content_type("image/png") == "image/png"
    assert check_content_type("IMAGE/JPEG; charset=binary") == "image/jpeg"
    assert check_content_type("image/jpg") == "image/jpeg"
    for bad, hint in [("text/plain", "image/jpeg"), ("image/heic", "Most Compatible"), (None, "type=image/jpeg"),
                      ("application/octet-stream", "type=image/jpeg")]:
        with pytest.raises(UploadError) as info:
            check_content_type(bad)
        assert info.value.status == 415 and hint in info.value.message, (bad, info.value.message)


def test_drawing_becomes_the_same_crop_as_mnist_in_either_polarity(mnist):
    digit = mnist.x_test[0]  # a 7, white on black
    big = cv2.resize(digit, (280, 280), interpolation=cv2.INTER_LINEAR)
    dark_on_light = cv2.cvtColor(255 - big, cv2.COLOR_GRAY2BGR)
    light_on_dark = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    crop_a, crop_b = drawing_to_crop(dark_on_light), drawing_to_crop(light_on_dark)
    assert crop_a.shape == (28, 28) and crop_a.dtype == np.uint8
    assert np.abs(crop_a.astype(int) - crop_b.astype(int)).mean() < 2
    # Centred by centre of mass like MNIST: ink is inside the 28x28 with a margin.
    assert crop_a[:2].max() == 0 and crop_a[-2:].max() == 0 and crop_a[:, :2].max() == 0

