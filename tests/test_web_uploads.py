"""edge_app.web.uploads: untrusted image bytes are checked before decoding; drawings become MNIST-style crops.

    .venv/bin/pytest tests/test_web_uploads.py
"""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_app.web.uploads import UploadError, UploadLimits, check_content_type, decode_image, drawing_to_crop


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR declaring width x height, then IEND: a bomb's header without its payload."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_accepted_content_types_and_helpful_refusals():
    assert check_content_type("image/png") == "image/png"
    assert check_content_type("IMAGE/JPEG; charset=binary") == "image/jpeg"
    assert check_content_type("image/jpg") == "image/jpeg"
    for bad, hint in [("text/plain", "image/jpeg"), ("image/heic", "Most Compatible"), (None, "type=image/jpeg"),
                      ("application/octet-stream", "type=image/jpeg")]:
        with pytest.raises(UploadError) as info:
            check_content_type(bad)
        assert info.value.status == 415 and hint in info.value.message, (bad, info.value.message)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_accepted_format_decodes_to_bgr(fmt):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, :, 0] = 255  # pure red in RGB
    frame = decode_image(encode(Image.fromarray(rgb), fmt))
    assert frame.shape == (30, 40, 3) and frame.dtype == np.uint8
    assert frame[15, 20, 2] > 200 and frame[15, 20, 0] < 60, f"{fmt}: red did not land in BGR's last channel"


def test_transparent_pixels_become_white_paper():
    rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent black, as an untouched browser canvas
    rgba[5:15, 9:11] = (0, 0, 0, 255)
    frame = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert frame[0, 0].tolist() == [255, 255, 255] and frame[10, 10].tolist() == [0, 0, 0]


def test_exif_orientation_is_applied():
    rgb = np.full((20, 60, 3), 255, np.uint8)  # stored landscape; EXIF says rotate 90: shown portrait
    exif = Image.Exif()
    exif[0x0112] = 6
    frame = decode_image(encode(Image.fromarray(rgb), "JPEG", exif=exif.tobytes()))
    assert frame.shape[:2] == (60, 20)


def test_large_images_are_reduced_to_the_working_size():
    big = Image.fromarray(np.full((1000, 3000, 3), 200, np.uint8))
    limits = UploadLimits(work_side=500)
    for fmt in ("JPEG", "PNG"):
        frame = decode_image(encode(big, fmt), limits)
        assert max(frame.shape[:2]) == 500, fmt


def test_decompression_bomb_refused_from_its_header():
    bomb = encode(Image.new("1", (12_000, 12_000)), "PNG")  # 144 megapixels (432 MB as RGB) in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(UploadError) as info:
        decode_image(bomb)
    assert info.value.status == 413 and "12000x12000" in info.value.message
    with pytest.raises(UploadError) as info:  # beyond Pillow's own bomb limit too
        decode_image(png_header_only(60_000, 60_000))
    assert info.value.status == 413


def test_pixel_limit_is_configurable():
    image = encode(Image.new("L", (200, 100), 255), "PNG")
    assert decode_image(image, UploadLimits(max_pixels=20_000)).shape[:2] == (100, 200)
    with pytest.raises(UploadError) as info:
        decode_image(image, UploadLimits(max_pixels=19_999))
    assert info.value.status == 413 and "200x100" in info.value.message


@pytest.mark.parametrize("data, status", [
    (b"", 400), (b"not an image at all", 400), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 400),
    (b"GIF89a" + b"\xff" * 30, 400), (b"II*\x00" + b"\0" * 100, 400),  # TIFF: not a decoder we let run
])
def test_garbage_is_a_400_with_a_message(data, status):
    with pytest.raises(UploadError) as info:
        decode_image(data)
    assert info.value.status == status and info.value.message


def test_truncated_image_is_refused():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), "JPEG")
    with pytest.raises(UploadError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.status == 400 and "truncated" in info.value.message


def test_byte_limit():
    with pytest.raises(UploadError) as info:
        decode_image(b"x" * 1001, UploadLimits(max_bytes=1000))
    assert info.value.status == 413 and "limit" in info.value.message


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

