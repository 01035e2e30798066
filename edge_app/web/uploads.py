"""Untrusted image bytes from the web: checked, then decoded into frames; a drawing into an MNIST-style crop.

This module owns the upload limits and the one decoder the web view uses. An upload is refused, with a
message saying what was received and what is accepted, when its declared content type is not an image type
we decode, when it is larger than `max_bytes`, when its header declares more than `max_pixels` (checked
before any pixel is decoded, so a decompression bomb never reaches memory), or when it does not decode.
Every refusal is an `UploadError` carrying the HTTP status the server answers with. No web framework here.

    python -m edge_app.web.uploads photo.jpg       # prints what the server would do with this file
"""

from __future__ import annotations

import io
import sys
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from digitdata.crops import mnist_style

# ---------------------------------------------------------------------------------------------- defaults
MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # a phone JPEG is 2-8 MB; the body is held in memory while decoding
MAX_UPLOAD_PIXELS = 50_000_000  # header width x height; a 48 MP phone photo fits, a decompression bomb does not
WORK_SIDE = 2048  # px: decoded images are reduced to this long side (detection runs at 1024 anyway)
# Declared content types we accept, and the Pillow formats the bytes must turn out to be.
ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif")
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")  # the only decoders Pillow may try on an upload
OPENED_FORMATS = (*ACCEPTED_FORMATS, "MPO")  # MPO: the multi-picture JPEG some phones write; opened as JPEG


class UploadError(ValueError):
    """An upload the server refuses; `status` is the HTTP status to answer with (always 4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_UPLOAD_PIXELS
    work_side: int = WORK_SIDE


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


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


def check_size(n_bytes: int, limits: UploadLimits) -> None:
    if n_bytes == 0:
        raise UploadError(400, "the upload is empty (0 bytes); attach an image file.")
    if n_bytes > limits.max_bytes:
        raise UploadError(413, f"the upload is {_megabytes(n_bytes)}; the limit is "
                               f"{_megabytes(limits.max_bytes)}. Send a smaller photo (e.g. the phone's "
                               f"medium size) or start the server with a larger --max-upload-mb.")


def decode_image(data: bytes, limits: UploadLimits = UploadLimits()) -> np.ndarray:
    """Decode untrusted image bytes into a BGR uint8 frame, refusing anything unsafe or undecodable.

    The header is read first (Pillow's `open` is lazy) and its width x height checked against
    `limits.max_pixels` before any pixel data is decoded. JPEGs are decoded at a reduced scale when they are
    larger than `limits.work_side` (libjpeg's DCT scaling: less memory and time on a Pi). EXIF orientation is
    applied, so a phone photo taken upright reads upright. Transparent pixels become white paper.

    Args:
        data: the uploaded bytes.
        limits: byte and pixel limits, and the long side the result is reduced to.

    Returns:
        (H, W, 3) uint8 BGR, long side at most `limits.work_side`.

    Raises:
        UploadError: 400 (not a decodable image), 413 (too many bytes or pixels), 415 (a format we do not
            decode).
    """
    from PIL import Image, ImageOps

    check_size(len(data), limits)
    # Decoders see hostile input here: any exception they raise (OSError, SyntaxError, struct.error,
    # ValueError, ...) means "not a valid image", and must become a 4xx rather than a server error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: our own, lower limit is checked below
        try:
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except Image.DecompressionBombError as exc:
            raise UploadError(413, f"the image declares far too many pixels ({exc}); the limit is "
                                   f"{limits.max_pixels / 1e6:.0f} megapixels. Resize it.") from exc
        except Exception as exc:
            raise UploadError(400, f"the upload ({len(data)} bytes, starting {data[:8]!r}) is not a "
                                   f"{', '.join(ACCEPTED_FORMATS)} image ({exc}). Send a JPEG or PNG photo.") from exc
        with image:
            if image.format not in OPENED_FORMATS:
                raise UploadError(415, f"the file is a {image.format} image; send one of "
                                       f"{', '.join(ACCEPTED_FORMATS)}.")
            width, height = image.size
            if width < 1 or height < 1:
                raise UploadError(400, f"the image header declares {width}x{height} pixels; it is corrupt.")
            if width * height > limits.max_pixels:
                raise UploadError(413, f"the image is {width}x{height} = {width * height / 1e6:.0f} megapixels; "
                                       f"the limit is {limits.max_pixels / 1e6:.0f} megapixels. Resize it, or "
                                       f"start the server with a larger --max-megapixels.")
            try:
                if image.format in ("JPEG", "MPO") and max(width, height) > limits.work_side:
                    image.draft("RGB", (limits.work_side, limits.work_side))
                image.load()
                image = ImageOps.exif_transpose(image) or image
                if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                    rgba = image.convert("RGBA")
                    image = Image.new("RGB", rgba.size, (255, 255, 255))
                    image.paste(rgba, mask=rgba.getchannel("A"))
                rgb = np.asarray(image.convert("RGB"))
            except UploadError:
                raise
            except Exception as exc:
                raise UploadError(400, f"the {image.format} image ({width}x{height}, {len(data)} bytes) could "
                                       f"not be decoded: {exc}. The file may be truncated or corrupt.") from exc
    h, w = rgb.shape[:2]
    if max(h, w) > limits.work_side:
        f = limits.work_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def drawing_to_crop(frame_bgr: np.ndarray) -> np.ndarray:
    """A drawn digit (one digit filling a canvas, any polarity) as an MNIST-style (28, 28) uint8 crop.

    The ink strength is the darkness against the paper (or the brightness against a dark ground); the crop
    is made by `digitdata.crops.mnist_style`, the same preparation camera crops go through.

    Raises:
        UploadError: 422 when the drawing is blank.
    """
    gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    paper = int(np.median(gray))
    ink = (paper - gray.astype(np.int16)) if paper >= 128 else (gray.astype(np.int16) - paper)
    ink_u8 = np.clip(ink, 0, 255).astype(np.uint8)
    crop = mnist_style(ink_u8)
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edge_app.web.uploads IMAGE", file=sys.stderr)
        return 2
    with open(argv[0], "rb") as f:
        data = f.read()
    try:
        frame = decode_image(data)
    except UploadError as exc:
        print(f"refused with HTTP {exc.status}: {exc.message}")
        return 1
    print(f"accepted: {len(data)} bytes -> frame {frame.shape[1]}x{frame.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
