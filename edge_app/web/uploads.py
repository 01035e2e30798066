"""Uploads from the web: the declared content type checked, and a picture of one digit (a drawing on the page's
canvas, or a photo) turned into the classifier's MNIST-style crop.

The bytes themselves are decoded by `edge_app.read.images.decode_image`, the decoder `digitlite read` and the live
loop use too (size, pixel count, format and shape checked there, under `edge_app.read.images.UPLOAD_LIMITS`). This
module owns what is the web's own: which declared content types are accepted, the drawing canvas, and JPEG
encoding of what is sent back. Every refusal is an `UploadError` (an `ImageError`) carrying the HTTP status
the server answers with. No web framework here.
"""

from __future__ import annotations

import cv2
import numpy as np

from digitdata.crops import digit_to_mnist
from edge_app.read.images import ImageError

# Declared content types we accept (the formats the decoder may run on them: edge_app.read.images.UPLOAD_FORMATS).
ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif")


class UploadError(ImageError):
    """An upload the server refuses; `status` is the HTTP status to answer with (always 4xx)."""


def check_content_type(content_type: str | None) -> str:
    """The media type (lower case, parameters dropped) if it is one we decode; UploadError(415) otherwise."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == "image/jpg":  # a common mislabel of JPEG
        media_type = "image/jpeg"
    if media_type in ACCEPTED_TYPES:
        return media_type
    hint = ""
    if media_type in ("image/heic", "image/heif"):
        hint = " iPhones: Settings > Camera > Formats > Most Compatible saves JPEG."
    elif not media_type or media_type == "application/octet-stream":
        hint = " Send the file with its type, e.g. curl -F 'file=@photo.jpg;type=image/jpeg'."
    raise UploadError(415, f"content type {media_type or '(none)'!r} is not accepted; send one of "
                           f"{', '.join(ACCEPTED_TYPES)}.{hint}")


def drawing_to_crop(frame_bgr: np.ndarray) -> np.ndarray:
    """A picture of one digit (drawn on the canvas or photographed, either polarity) as an MNIST-style (28, 28)
    uint8 crop, by `digitdata.crops.digit_to_mnist`: the preparation the release gate measures the classifier
    with (polarity, paper level, contrast stretch, ink box to 20x20, centre of mass).

    Raises:
        UploadError: 422 when the picture holds no ink.
    """
    crop = digit_to_mnist(frame_bgr)
    if not crop.any():
        raise UploadError(422, "the drawing is blank: draw one digit, dark on light or light on dark.")
    return crop


def encode_jpeg(frame_bgr: np.ndarray, quality: int = 80, max_side: int | None = None) -> bytes:
    """JPEG bytes of a frame, optionally reduced to `max_side` first (for thumbnails sent back to phones)."""
    if max_side is not None and max(frame_bgr.shape[:2]) > max_side:
        h, w = frame_bgr.shape[:2]
        f = max_side / max(h, w)
        frame_bgr = cv2.resize(frame_bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode a frame of shape {frame_bgr.shape} as JPEG")
    return buf.tobytes()
