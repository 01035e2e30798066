"""The web view's JSON API over real HTTP on 127.0.0.1: readings, refusals (4xx, never 5xx), token, fuzzing.

    .venv/bin/pytest tests/test_web_api.py
"""

from __future__ import annotations

import base64
import json
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_support import (
    jpeg_bytes,
    make_state,
    multipart,
    number_page,
    png_bytes,
    request,
    running_server,
)

pytest.importorskip("fastapi", reason="the [web] extra is not installed")

TOKEN = "test-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT_BYTES = 1_000_000  # small limits so that the oversized cases stay small
LIMIT_PIXELS = 4_000_000


@pytest.fixture(scope="module")
def server(classifier):
    from edge_app.read.images import ImageLimits

    state = make_state(classifier, limits=ImageLimits(max_bytes=LIMIT_BYTES, max_pixels=LIMIT_PIXELS))
    with running_server(state, token=TOKEN) as server:
        yield server


def post_image(server, data: bytes, content_type: str, path: str = "/api/read", form: bool = False):
    if form:
        body, content_type = multipart({"file": ("upload", content_type, data)})
        return request(server, "POST", path, body, {**AUTH, "Content-Type": content_type})
    return request(server, "POST", path, data, {**AUTH, "Content-Type": content_type})


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def assert_problem(reply, status: int, *words: str) -> None:
    assert reply.status == status, reply
    detail = reply.json()["detail"]
    assert isinstance(detail, str | list) and detail, reply
    for word in words:
        assert word.lower() in str(detail).lower(), (word, detail)


# ---------------------------------------------------------------------------------------------- what works


def test_health_names_model_runtime_and_fps(server):
    reply = request(server, "GET", "/api/health", headers=AUTH)
    assert reply.status == 200, reply
    health = reply.json()
    assert health["status"] == "ok"
    assert health["model"]["name"].endswith(".tflite")
    assert health["runtime"]["name"] in ("ai_edge_litert", "tflite_runtime")
    assert "fps" in health and health["live"] is None  # no live source on this server
    assert health["limits"]["max_upload_bytes"] == LIMIT_BYTES


def test_openapi_schema_documents_the_api(server):
    schema = request(server, "GET", "/openapi.json", headers=AUTH).json()
    paths = schema["paths"]
    assert {"/api/read", "/api/digit", "/api/latest", "/api/health"} <= set(paths)
    body = paths["/api/read"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/jpeg", "image/png"} <= set(body)
    assert {"400", "401", "413", "415", "422"} <= set(paths["/api/read"]["post"]["responses"])


@pytest.mark.parametrize("text, encoding, form", [("4071", "png", True), ("35", "jpeg", False),
                                                  ("2896", "jpeg", True)])
def test_real_mnist_digits_on_a_page_read_as_the_number(server, examples, text, encoding, form):
    page = number_page(examples, text)
    data = png_bytes(page) if encoding == "png" else jpeg_bytes(page)
    reply = post_image(server, data, f"image/{encoding}", form=form)
    assert reply.status == 200, reply
    result = reply.json()
    assert result["text"] == text, f"page {text!r} ({encoding}) read as {result['text']!r}: {result['digits']}"
    assert len(result["digits"]) == len(text)
    assert result["image"] == {"width": page.shape[1], "height": page.shape[0]}
    assert all(0.0 <= d["confidence"] <= 1.0 and len(d["box"]) == 4 for d in result["digits"])


def test_annotated_image_comes_back_on_request(server, examples):
    page = number_page(examples, "35")
    result = post_image(server, png_bytes(page), "image/png", "/api/read?annotate=true").json()
    prefix = "data:image/jpeg;base64,"
    assert result["annotated_jpeg"].startswith(prefix)
    annotated = cv2.imdecode(np.frombuffer(base64.b64decode(result["annotated_jpeg"][len(prefix):]), np.uint8),
                             cv2.IMREAD_COLOR)
    assert annotated.shape == page.shape
    assert np.abs(annotated.astype(int) - page.astype(int)).max() > 100, "nothing was drawn on the image"
    plain = post_image(server, png_bytes(page), "image/png").json()
    assert plain["annotated_jpeg"] is None


def test_latest_lists_uploads_with_times(server, examples):
    post_image(server, png_bytes(number_page(examples, "2896")), "image/png")
    latest = request(server, "GET", "/api/latest", headers=AUTH).json()
    assert latest["live"] is False and latest["stable"] is None
    assert latest["reading"]["text"] == "2896" and latest["reading"]["origin"] == "upload"
    assert latest["history"][0]["text"] == "2896" and latest["history"][0]["time"].startswith("20")


@pytest.mark.parametrize("digit", range(10))
def test_drawn_digit_is_classified_with_top3(server, examples, digit):
    drawing = cv2.resize(255 - examples[digit][0], (280, 280), interpolation=cv2.INTER_LINEAR)
    reply = post_image(server, png_bytes(cv2.cvtColor(drawing, cv2.COLOR_GRAY2BGR)), "image/png", "/api/digit",
                       form=True)
    assert reply.status == 200, reply
    result = reply.json()
    assert result["digit"] == digit, f"a drawn {digit} was classified as {result['top3']}"
    assert [t["digit"] for t in result["top3"]][0] == digit and len(result["top3"]) == 3
    probabilities = [t["probability"] for t in result["top3"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-6
    assert result["crop_png"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("digit", range(10))
def test_a_photo_of_one_digit_is_read_through_the_one_preparation(server, examples, digit):
    """A phone photo of one digit on paper (dark ink, light falling off, sensor noise, JPEG) is read by /api/digit
    through `digit_to_mnist`, the preparation the release gate measures the classifier with (issue 33)."""
    from digitdata.crops import digit_to_mnist

    rng = np.random.default_rng(digit)
    ink = cv2.resize(examples[digit][0], (420, 420), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    paper = np.tile(np.linspace(150, 215, 900, dtype=np.float32), (1200, 1))
    photo = paper.copy()
    photo[390:810, 240:660] -= ink * (paper[390:810, 240:660] - 45)
    photo += rng.normal(0, 3, photo.shape)
    bgr = cv2.cvtColor(np.clip(photo, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    reply = post_image(server, jpeg_bytes(bgr, 80), "image/jpeg", "/api/digit", form=True)
    assert reply.status == 200, reply
    result = reply.json()
    assert result["digit"] == digit, f"a photographed {digit} was classified as {result['top3']}"
    crop = cv2.imdecode(np.frombuffer(base64.b64decode(result["crop_png"].split(",", 1)[1]), np.uint8),
                        cv2.IMREAD_GRAYSCALE)
    local = digit_to_mnist(cv2.imdecode(np.frombuffer(jpeg_bytes(bgr, 80), np.uint8), cv2.IMREAD_COLOR))
    assert np.abs(crop.astype(int) - local.astype(int)).mean() < 2  # JPEG decoders may differ by a level


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("form", [False, True])
@pytest.mark.parametrize("data", [b"\x00\x01garbage" * 50, b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
                                  b"\xff\xd8\xff\xe0" + b"\x00" * 300])
def test_garbage_bytes_are_a_400(server, data, form):
    assert_problem(post_image(server, data, "image/png", form=form), 400, "image")


def test_empty_upload_is_a_400(server):
    assert_problem(post_image(server, b"", "image/png"), 400, "empty")


@pytest.mark.parametrize("form", [False, True])
def test_oversized_upload_is_a_413(server, form):
    data = np.random.default_rng(0).integers(0, 255, LIMIT_BYTES + 300_000, np.uint8).tobytes()
    assert_problem(post_image(server, data, "image/jpeg", form=form), 413, "limit")
    assert request(server, "GET", "/api/health", headers=AUTH).status == 200


def test_too_many_pixels_is_a_413_before_decoding(server):
    big = np.full((2500, 2000, 3), 255, np.uint8)  # 5 MP, over this server's 4 MP; a small PNG
    assert_problem(post_image(server, png_bytes(big), "image/png"), 413, "2000x2500", "megapixels")


@pytest.mark.parametrize("form", [False, True])
def test_decompression_bomb_is_a_413(server, form):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buf, "PNG")  # 144 MP that compress to a few kB
    assert_problem(post_image(server, buf.getvalue(), "image/png", form=form), 413, "megapixels")
    assert_problem(post_image(server, png_header_only(65_000, 65_000), "image/png", form=form), 413)


@pytest.mark.parametrize("content_type, form", [("text/plain", False), ("application/json", False),
                                                ("text/plain", True), ("image/heic", True),
                                                ("application/x-www-form-urlencoded", False)])
def test_wrong_content_type_is_a_415(server, examples, content_type, form):
    data = png_bytes(number_page(examples, "35"))  # a valid image, declared as something else
    assert_problem(post_image(server, data, content_type, form=form), 415, "image/jpeg")


def test_multipart_without_a_file_field_is_a_422(server):
    body, content_type = multipart({"photo": ("a.png", "image/png", b"\x89PNG")})
    reply = request(server, "POST", "/api/read", body, {**AUTH, "Content-Type": content_type})
    assert_problem(reply, 422, "'file'", "'photo'")


def test_malformed_multipart_is_a_400(server):
    for body, content_type in [(b"--x\r\nnot a part", "multipart/form-data; boundary=x"),
                               (b"anything", "multipart/form-data")]:
        reply = request(server, "POST", "/api/read", body, {**AUTH, "Content-Type": content_type})
        assert 400 <= reply.status < 500, reply


def test_blank_drawing_is_a_422(server):
    blank = np.full((280, 280, 3), 255, np.uint8)
    assert_problem(post_image(server, png_bytes(blank), "image/png", "/api/digit"), 422, "blank")


def test_bad_query_parameter_is_a_422(server, examples):
    reply = post_image(server, png_bytes(number_page(examples, "35")), "image/png", "/api/read?annotate=maybe")
    assert reply.status == 422, reply


# ---------------------------------------------------------------------------------------------- token

ROUTES = [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/static/style.css"), ("GET", "/openapi.json"),
          ("GET", "/api/health"), ("GET", "/api/latest"), ("POST", "/api/read"), ("POST", "/api/digit"),
          ("GET", "/api/value"), ("GET", "/api/history?since=1h"), ("POST", "/api/readings/1/correction"),
          ("GET", "/stream.mjpg"), ("GET", "/snapshot.jpg"), ("GET", "/no-such-page")]


@pytest.mark.parametrize("method, path", ROUTES)
def test_every_route_needs_the_token(server, method, path):
    assert_problem(request(server, method, path, b"" if method == "POST" else None), 401, "token")
    wrong = request(server, method, path, None, {"Authorization": "Bearer nope"})
    assert_problem(wrong, 401, "wrong token")
    assert_problem(request(server, method, path + ("&" if "?" in path else "?") + "token=nope"), 401, "wrong token")
    assert wrong.headers.get("www-authenticate", "").startswith("Bearer")


@pytest.mark.parametrize("how", ["bearer", "x-token", "query"])
def test_the_token_is_accepted_as_header_or_query(server, how):
    headers = {"bearer": AUTH, "x-token": {"X-Token": TOKEN}, "query": {}}[how]
    path = "/api/health" + (f"?token={TOKEN}" if how == "query" else "")
    assert request(server, "GET", path, headers=headers).status == 200


def test_page_and_its_files_are_served_with_a_strict_policy(server):
    page = request(server, "GET", f"/?token={TOKEN}")
    assert page.status == 200 and b'<canvas id="pad"' in page.body
    assert b'accept="image/*" capture="environment"' in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        reply = request(server, "GET", f"/static/{name}", headers=AUTH)
        assert reply.status == 200 and kind in reply.headers["content-type"], name


def test_without_a_token_the_server_is_open(classifier):
    with running_server(make_state(classifier)) as open_server:
        assert request(open_server, "GET", "/api/health").status == 200
        assert request(open_server, "GET", "/stream.mjpg").status == 404  # no live source: says so
        assert "--source" in request(open_server, "GET", "/stream.mjpg").json()["detail"]


# ---------------------------------------------------------------------------------------------- fuzzing


def _schema_upload_types(server) -> tuple[list[str], list[str]]:
    schema = request(server, "GET", "/openapi.json", headers=AUTH).json()
    paths = [p for p, ops in schema["paths"].items() if "requestBody" in ops.get("post", {})]
    types = sorted({t for p in paths for t in schema["paths"][p]["post"]["requestBody"]["content"]})
    return paths, types


_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@st.composite
def upload_bodies(draw, valid_png: bytes):
    kind = draw(st.sampled_from(["random", "mutated", "truncated", "header"]))
    if kind == "random":
        return draw(st.binary(max_size=3000))
    if kind == "header":
        return png_header_only(draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1)))
    data = bytearray(valid_png)
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def test_fuzz_uploads_never_get_a_server_error(server, examples):
    """Random, mutated and truncated bodies under every upload route and content type of the schema: always 4xx
    or 200, never 5xx, and the server still answers afterwards."""
    paths, schema_types = _schema_upload_types(server)
    valid_png = png_bytes(number_page(examples, "35", digit_px=40, size=(160, 80)))

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(path=st.sampled_from(paths + [p + "?annotate=true" for p in paths if p == "/api/read"]),
           content_type=st.one_of(st.sampled_from(schema_types), _header_text),
           part_type=st.one_of(st.sampled_from(schema_types), _header_text),
           body=upload_bodies(valid_png), form=st.booleans())
    def probe(path, content_type, part_type, body, form):
        if form:
            data, header = multipart({"file": ("f", part_type.replace('"', ""), body)})
        else:
            data, header = body, content_type
        reply = request(server, "POST", path, data, {**AUTH, "Content-Type": header})
        assert reply.status < 500, f"{path} {header!r} {body[:40]!r}: {reply}"
        if reply.status >= 400:
            assert json.loads(reply.body)["detail"], reply

    probe()
    assert request(server, "GET", "/api/health", headers=AUTH).status == 200
