"""edge_app.read.images: the one decoder of `digitlite read`, the image-folder source and the web. Untrusted bytes are
checked before decoding; every pixel format becomes the same 8-bit BGR; degenerate shapes are refused.

    .venv/bin/pytest tests/test_images.py
"""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_app.read.images import FILE_LIMITS, ImageError, ImageLimits, check_frame, decode_image, read_image


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
    limits = ImageLimits(work_side=500)
    for fmt in ("JPEG", "PNG"):
        frame = decode_image(encode(big, fmt), limits)
        assert max(frame.shape[:2]) == 500, fmt


def test_decompression_bomb_refused_from_its_header():
    bomb = encode(Image.new("1", (12_000, 12_000)), "PNG")  # 144 megapixels (432 MB as RGB) in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError) as info:
        decode_image(bomb)
    assert info.value.status == 413 and "12000x12000" in info.value.message
    with pytest.raises(ImageError) as info:  # beyond Pillow's own bomb limit too
        decode_image(png_header_only(60_000, 60_000))
    assert info.value.status == 413


def test_pixel_limit_is_configurable():
    image = encode(Image.new("L", (200, 100), 255), "PNG")
    assert decode_image(image, ImageLimits(max_pixels=20_000)).shape[:2] == (100, 200)
    with pytest.raises(ImageError) as info:
        decode_image(image, ImageLimits(max_pixels=19_999))
    assert info.value.status == 413 and "200x100" in info.value.message


@pytest.mark.parametrize("data, status", [
    (b"", 400), (b"not an image at all", 400), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 400),
    (b"GIF89a" + b"\xff" * 30, 400), (b"II*\x00" + b"\0" * 100, 400),  # TIFF: not a decoder we let run
])
def test_garbage_is_a_400_with_a_message(data, status):
    with pytest.raises(ImageError) as info:
        decode_image(data)
    assert info.value.status == status and info.value.message


def test_truncated_image_is_refused():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), "JPEG")
    with pytest.raises(ImageError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.status == 400 and "truncated" in info.value.message


def test_byte_limit():
    with pytest.raises(ImageError) as info:
        decode_image(b"x" * 1001, ImageLimits(max_bytes=1000))
    assert info.value.status == 413 and "limit" in info.value.message


# ---------------------------------------------------------------------------------------------- pixel formats


def _page() -> np.ndarray:
    """A grey page (uint8) with a dark bar: enough structure to compare two decodings."""
    page = np.full((60, 80), 230, np.uint8)
    page[10:50, 30:40] = 20
    return page


def test_16_bit_grey_is_scaled_not_clipped_to_white():
    grey16 = _page().astype(np.uint16) * 257  # the same picture at 16 bits
    frame = decode_image(encode(Image.fromarray(grey16), "PNG"))
    assert frame.shape == (60, 80, 3) and frame.dtype == np.uint8
    assert np.abs(frame[:, :, 0].astype(int) - _page()).max() <= 1, "16-bit grey lost its picture"
    # What OpenCV's own 16-bit decoding makes of it: the same 8-bit picture.
    cv = cv2.imdecode(np.frombuffer(encode(Image.fromarray(grey16), "PNG"), np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(frame.astype(int) - cv.astype(int)).max() <= 1


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1"])
def test_every_pixel_format_decodes_to_the_same_picture(mode):
    page = _page()
    if mode == "CMYK":
        image = Image.fromarray(page).convert("RGB").convert("CMYK")
        data = encode(image, "JPEG", quality=100)
    elif mode == "P":
        data = encode(Image.fromarray(page).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    else:
        data = encode(Image.fromarray(page).convert(mode, dither=Image.Dither.NONE), "PNG")
    grey = cv2.cvtColor(decode_image(data), cv2.COLOR_BGR2GRAY).astype(int)
    tolerance = 30 if mode == "1" else 4  # grey levels; bilevel keeps only black and white
    assert np.abs(grey - page).mean() < tolerance and grey[30, 35] < 80 and grey[5, 5] > 150, mode


def test_tiff_is_read_from_files_but_not_from_the_network(tmp_path):
    path = tmp_path / "scan.tif"
    Image.fromarray(_page()).save(path)
    assert read_image(path, FILE_LIMITS).shape == (60, 80, 3)
    with pytest.raises(ImageError) as info:
        decode_image(path.read_bytes())  # the upload limits: no TIFF decoder on network bytes
    assert info.value.status == 400


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("width, height", [(1, 5000), (5000, 1), (7, 7), (8, 300)])
def test_degenerate_shapes_are_refused_with_the_shape_named(width, height):
    data = encode(Image.new("L", (width, height), 255), "PNG")
    with pytest.raises(ImageError) as info:
        decode_image(data)
    assert info.value.status == 422 and f"{width}x{height}" in info.value.message
    with pytest.raises(ImageError):
        check_frame(np.zeros((height, width), np.uint8))


def test_smallest_accepted_shapes_decode():
    assert decode_image(encode(Image.new("L", (8, 8), 255), "PNG")).shape == (8, 8, 3)
    assert decode_image(encode(Image.new("L", (200, 8), 255), "PNG")).shape == (8, 200, 3)  # 25:1


def test_a_file_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(20_000, 20_000))  # 400 megapixels declared in a few bytes
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert info.value.status == 413 and "400000000 pixels" in info.value.message
    assert "50 megapixels" in info.value.message and "--max-megapixels" in info.value.message


def test_frames_from_any_source_are_reduced_to_the_working_size():
    frame = np.zeros((3000, 4000, 3), np.uint8)
    assert check_frame(frame, ImageLimits(work_side=1000)).shape == (750, 1000, 3)
    small = np.zeros((480, 640), np.uint8)
    assert check_frame(small) is small
