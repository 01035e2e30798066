"""Images in, frames out: the one decoder and the one frame check behind `read`, the live loop and the web.

This module owns the decoder behind all of them, so that a
file reads the same way whether it comes from `digitlite read`, an image-folder `--source` or a phone upload:

- `decode_image(data, limits)`: untrusted bytes to an 8-bit BGR frame. Pillow, with an allow-list of formats;
  the header's width x height is checked against `limits.max_pixels`, and the memory decoding it takes
  against `limits.max_decode_bytes`, before a pixel is decoded (a decompression bomb never reaches memory);
  JPEGs are decoded at a reduced scale and other formats reduced by an integer factor right after decoding,
  before any conversion, so no full-size copy is made; EXIF orientation is applied; every pixel format becomes
  the same BGR: 16-bit grey is scaled to 8 bits (not clipped to white), alpha is laid on white paper, CMYK,
  palette and bilevel images are converted.
- `read_image(path, limits)`: the same for a file, its size checked before it is read.
- `check_frame(frame, limits)`: what a frame must be before the reader sees it, from any source: not
  degenerate (a side under `min_side` px, or a strip longer than `max_aspect` times its width: nothing a
  digit fits in), and no longer than `work_side` (larger frames are reduced).

Pillow rather than OpenCV's `imdecode`: it reads the header without decoding (the pixel limit is checked
first), lets us name the decoders that may run on hostile bytes, and converts CMYK and palette images.
Every refusal is an `ImageError` saying what was received and what is accepted; its `status` is the HTTP
status the web answers with.

    digitlite read photo.jpg      # what the decoder and the reader make of a file (or why it is refused)
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np

from edge_app.config import FILE_LIMITS, UPLOAD_LIMITS, ImageLimits

OPENED_AS = {"MPO": "JPEG"}  # the multi-picture JPEG some phones write is opened by the JPEG decoder
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # grey at 16 (or 32) bits per pixel
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}  # B/px Pillow holds; others 4
UNREDUCIBLE = {"1": 1, "P": 4}  # modes Pillow's reduce() cannot take: converted at full size first (B/px of that)
BAND_ROWS = 256  # rows of a 16-bit image scaled to 8 bits at a time (a 7000 px wide band is 3.5 MB)


class ImageError(ValueError):
    """An image the decoder refuses; `status` is the HTTP status a server answers with (400, 413, 415, 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def check_size(n_bytes: int, limits: ImageLimits = UPLOAD_LIMITS) -> None:
    """ImageError unless 0 < n_bytes <= limits.max_bytes."""
    if n_bytes == 0:
        raise ImageError(400, "the image is empty (0 bytes).")
    if n_bytes > limits.max_bytes:
        raise ImageError(413, f"the image is {_megabytes(n_bytes)}; the limit is {_megabytes(limits.max_bytes)}. "
                              f"Send a smaller photo (e.g. the phone's medium size), or raise the limit "
                              f"(--max-upload-mb).")


def check_shape(width: int, height: int, limits: ImageLimits = UPLOAD_LIMITS) -> None:
    """ImageError unless width x height is within the pixel limit and is not degenerate.

    Raises:
        ImageError: 400 for a header declaring no pixels, 413 over `max_pixels`, 422 for a side under
            `min_side` or a long side over `max_aspect` times the short one.
    """
    if width < 1 or height < 1:
        raise ImageError(400, f"the image header declares {width}x{height} pixels; it is corrupt.")
    if width * height > limits.max_pixels:
        raise ImageError(413, f"the image is {width}x{height} = {width * height / 1e6:.0f} megapixels; the limit "
                              f"is {limits.max_pixels / 1e6:.0f} megapixels. Resize it, or raise the limit "
                              f"(--max-megapixels).")
    short, long = min(width, height), max(width, height)
    if short < limits.min_side or long > limits.max_aspect * short:
        raise ImageError(422, f"the image is {width}x{height} pixels: too thin to hold a digit (at least "
                              f"{limits.min_side} px each way, and no more than {limits.max_aspect:g} times as "
                              f"long as it is wide). Crop the photo around the writing.")


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """Bytes Pillow holds for a decoded `mode` image of width x height, with the full-size conversion some modes
    need before they can be reduced (palette, bilevel, 16-bit grey). The work-size copies after it are small."""
    pixels = width * height
    if mode in SIXTEEN_BIT_MODES:
        convert = 1  # the 8-bit grey copy, filled band by band
    else:
        convert = UNREDUCIBLE.get(mode, 0)
    return pixels * (MODE_BYTES.get(mode, 4) + convert)


def check_memory(width: int, height: int, mode: str, limits: ImageLimits = UPLOAD_LIMITS) -> None:
    """ImageError(413) when decoding a width x height `mode` image would take more than `limits.max_decode_bytes`."""
    need = decoded_bytes(width, height, mode)
    if need > limits.max_decode_bytes:
        raise ImageError(413, f"the image is {width}x{height} {mode}: decoding it takes {_megabytes(need)}, and one "
                              f"image may take {_megabytes(limits.max_decode_bytes)}. Resize it, or send it as a "
                              f"JPEG or as 8-bit colour.")


def check_frame(frame: np.ndarray, limits: ImageLimits = UPLOAD_LIMITS) -> np.ndarray:
    """A frame the reader may read: not degenerate, long side at most `limits.work_side` (reduced if larger).

    Args:
        frame: (H, W) or (H, W, C) pixels from any source.
        limits: the shape limits.

    Returns:
        The frame, or a reduced copy of it (INTER_AREA).

    Raises:
        ImageError: the array is not an image, or has a degenerate or oversized shape (see `check_shape`).
    """
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        shape = getattr(frame, "shape", None)
        raise ImageError(400, f"not an image: an array of shape {shape}; expected (height, width[, channels]).")
    height, width = frame.shape[:2]
    check_shape(width, height, limits)
    if max(height, width) <= limits.work_side:
        return frame
    f = limits.work_side / max(height, width)
    size = (max(1, round(width * f)), max(1, round(height * f)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _rgb8(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded Pillow image of any mode, the same way for every source."""
    from PIL import Image

    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        return np.repeat(np.asarray(_grey8(image))[:, :, None], 3, axis=2)
    if mode == "F":  # 32-bit float grey (TIFF): 0-1 if it fits there, else 0-255
        grey = np.nan_to_num(np.asarray(image, np.float32))
        grey = grey * 255 if grey.size and grey.max() <= 1.0 else grey
        return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGB", rgba.size, (255, 255, 255))  # transparent pixels are white paper
        paper.paste(rgba, mask=rgba.getchannel("A"))
        return np.asarray(paper)
    return np.asarray(image.convert("RGB"))  # RGB, L, 1, P, CMYK, YCbCr


def _grey8(image):
    """A 16-bit (or 32-bit "I") grey Pillow image as 8-bit "L", its top 8 bits kept (as OpenCV's IMREAD_COLOR
    does; Pillow's convert would clip every value above 255 to white and lose the picture), band by band: no
    copy wider than 16 bits of the whole picture is made."""
    from PIL import Image

    width, height = image.size
    grey = np.empty((height, width), np.uint8)
    for top in range(0, height, BAND_ROWS):
        band = np.asarray(image.crop((0, top, width, min(height, top + BAND_ROWS))))
        if band.dtype.itemsize > 2:  # "I": 32 bits, taken as 16-bit (PNG, TIFF)
            band = np.clip(band, 0, 65535)
        grey[top:top + band.shape[0]] = band >> 8
    return Image.fromarray(grey, "L")


def _reduced(image, work_side: int):
    """The decoded image reduced by the largest integer factor that keeps its long side at least `work_side`
    (Pillow's box `reduce`, as libjpeg's scaling does for JPEG), in the modes reduce cannot take converted first;
    `check_frame` makes the last, fractional step on the small copy."""
    factor = max(image.size) // work_side
    if factor < 2:
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        image = _grey8(image)
    elif image.mode in UNREDUCIBLE:
        image = image.convert("RGBA" if "transparency" in image.info else "RGB" if image.mode == "P" else "L")
    return image.reduce(factor)


def decode_image(data: bytes, limits: ImageLimits = UPLOAD_LIMITS) -> np.ndarray:
    """Decode untrusted image bytes into a BGR uint8 frame, refusing anything unsafe, undecodable or degenerate.

    The header is read first (Pillow's `open` is lazy) and its width x height checked (`check_shape`), and the
    memory decoding takes (`check_memory`), before any pixel is decoded. JPEGs larger than `limits.work_side`
    are decoded at a reduced scale (libjpeg's DCT scaling: less memory and time on a Pi); other images twice
    the working size or more are reduced right after decoding (`_reduced`), before any conversion. EXIF
    orientation is applied, so a phone photo taken upright reads upright.

    Args:
        data: the image file's bytes.
        limits: byte and pixel limits, the allowed formats and the long side the result is reduced to.

    Returns:
        (H, W, 3) uint8 BGR, long side at most `limits.work_side`.

    Raises:
        ImageError: 400 (not a decodable image), 413 (too many bytes, pixels or bytes decoded), 415 (a format or pixel
            format we do not decode), 422 (a degenerate shape).
    """
    from PIL import Image, ImageOps

    check_size(len(data), limits)
    # Decoders see hostile input here: any exception they raise (OSError, SyntaxError, struct.error,
    # ValueError, ...) means "not a valid image", and must become a refusal rather than a crash.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: our own, lower limit is checked below
        try:
            image = Image.open(io.BytesIO(data), formats=limits.formats)
        except Image.DecompressionBombError as exc:
            raise ImageError(413, f"the image declares far too many pixels ({exc}); the limit is "
                                  f"{limits.max_pixels / 1e6:.0f} megapixels. Resize it, or raise the limit "
                                  f"(--max-megapixels).") from exc
        except Exception as exc:
            raise ImageError(400, f"the data ({len(data)} bytes, starting {data[:8]!r}) is not a "
                                  f"{', '.join(limits.formats)} image ({exc}). Send a JPEG or PNG photo.") from exc
        with image:
            kind = OPENED_AS.get(image.format, image.format)
            if kind not in limits.formats:
                raise ImageError(415, f"the file is a {image.format} image; send one of "
                                      f"{', '.join(limits.formats)}.")
            width, height = image.size
            check_shape(width, height, limits)
            if kind == "JPEG" and max(width, height) > limits.work_side:
                image.draft("RGB", (limits.work_side, limits.work_side))  # size and mode now the reduced decode's
            check_memory(*image.size, image.mode, limits)
            try:
                image.load()
                image = _reduced(image, limits.work_side)
                ImageOps.exif_transpose(image, in_place=True)
                rgb = _rgb8(image)
            except Exception as exc:
                raise ImageError(400, f"the {image.format} image ({width}x{height} {image.mode}, {len(data)} bytes) "
                                      f"could not be decoded: {exc}. The file may be truncated or "
                                      f"corrupt.") from exc
    return np.ascontiguousarray(check_frame(rgb, limits)[:, :, ::-1])


def header_pixels(data: bytes, limits: ImageLimits = UPLOAD_LIMITS) -> int | None:
    """Width x height from an image's header, without decoding a pixel; None when it is not an image we open (the
    decoder then refuses it quickly). What the web weighs an upload by before it takes a slot."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data), formats=limits.formats) as image:
                width, height = image.size
        except Exception:  # hostile bytes: any failure means "not an image", as in decode_image
            return None
    return width * height


def read_image(path: str | Path, limits: ImageLimits = FILE_LIMITS) -> np.ndarray:
    """The BGR uint8 frame of an image file (see `decode_image`), its size checked before it is read.

    Raises:
        FileNotFoundError: no such file.
        ImageError: see `decode_image`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    check_size(path.stat().st_size, limits)
    return decode_image(path.read_bytes(), limits)
