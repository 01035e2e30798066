"""Helpers for the web view's tests: a real server on a free loopback port, HTTP calls, pages of real digits.

Imported by tests/test_web_*.py (pytest puts tests/ on sys.path); not a test module itself.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.runtime import DEFAULT_MODEL

MODEL_ENV = "DIGITLITE_TEST_MODEL"  # a .tflite to test with before models/digits_int8.tflite exists


def model_path() -> Path:
    path = Path(os.environ.get(MODEL_ENV) or DEFAULT_MODEL)
    if not path.is_file():
        pytest.skip(f"no model at {path}: convert one (`digitlite convert`) or set {MODEL_ENV}")
    return path


class Pages:
    """A camera looking at pages: each frame held for `repeat` reads, in turn; then the source ends, or with
    `hold_last` the last page stays in view (a camera keeps delivering)."""

    name = "pages"

    def __init__(self, frames, repeat: int = 4, hold_last: bool = False):
        self.frames, self.hold_last = [f for f in frames for _ in range(repeat)], hold_last

    def read(self):
        if self.hold_last and len(self.frames) == 1:
            return self.frames[0].copy()
        return self.frames.pop(0).copy() if self.frames else None

    def close(self):
        pass


def make_state(classifier, feed_source=None, limits=None, stable_frames: int = 2, max_fps: float = 10.0,
               history=None, body=None, reader=None):
    """A WebState with the real reader around `classifier` (or `reader`, e.g. `fakes.ScriptedReader`), a readings
    history (in memory unless given), and the live loop over `feed_source` with the web stream as its sink when a
    source is given."""
    from edge_app.live.loop import LiveLoop, LoopSettings
    from edge_app.read import annotate
    from edge_app.read.images import UPLOAD_LIMITS
    from edge_app.store.history import ReadingStore
    from edge_app.web.app import BodyLimits, WebState
    from edge_app.web.stream import WebStream
    from edge_app.wiring import make_reader

    reader = reader or make_reader(classifier=classifier)
    state = WebState(classifier=classifier, reader=reader, annotate=annotate,
                     history=history or ReadingStore(":memory:"), limits=limits or UPLOAD_LIMITS,
                     body=body or BodyLimits())
    if feed_source is not None:
        state.stream = WebStream()
        state.loop = LiveLoop(feed_source, reader, state.history, [state.stream],
                              LoopSettings(stable_frames=stable_frames, max_fps=max_fps), source_name="test source",
                              model_sha256=reader.integrity.sha256, lock=state.lock)
    return state


@contextlib.contextmanager
def running_server(state, token: str | None = None):
    """The app served by uvicorn in a thread on 127.0.0.1:<free port>, the live loop (if any) in another;
    yields the WebServer; always stopped."""
    from edge_app.web.app import create_app
    from edge_app.web.server import WebServer

    server = WebServer(create_app(state, token), "127.0.0.1", 0)
    if state.loop is not None:
        state.loop.start()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if state.loop is not None:
            state.loop.stop()


class Reply:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HTTP {self.status}: {self.body[:300]!r}"


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def multipart(fields: dict[str, tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) for multipart/form-data; fields: name -> (filename, content type, bytes)."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, (filename, content_type, data) in fields.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                  f"Content-Type: {content_type}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def clear_examples(mnist, classifier, per_digit: int = 1) -> dict[int, list[np.ndarray]]:
    """For each digit, the first MNIST test images the classifier gets right with confidence > 0.95, written in
    one connected stroke.

    The tests are about the web view, not about the model's or the detector's hard cases (a 5 whose top bar
    does not touch the rest is two blobs to a detector).
    """
    labels, confidences = classifier.predict(classifier.pixels_to_input(mnist.x_test[:2000]))
    chosen: dict[int, list[np.ndarray]] = {d: [] for d in range(10)}
    for image, truth, label, confidence in zip(mnist.x_test[:2000], mnist.y_test[:2000], labels, confidences,
                                               strict=True):
        n_labels, _ = cv2.connectedComponents((image > 60).astype(np.uint8), connectivity=8)
        if label == truth and confidence > 0.95 and n_labels == 2 and len(chosen[int(truth)]) < per_digit:
            chosen[int(truth)].append(image)
    missing = [d for d, images in chosen.items() if len(images) < per_digit]
    assert not missing, f"the model gets no clear MNIST example of {missing} right: is it trained?"
    return chosen


def number_page(examples: dict[int, list[np.ndarray]], text: str, digit_px: int = 120,
                size: tuple[int, int] = (800, 480)) -> np.ndarray:
    """A white page (BGR, width x height = `size`) with `text` written in real MNIST digits, dark ink."""
    width, height = size
    page = np.full((height, width), 255, np.uint8)
    step = int(digit_px * 0.8)  # MNIST digits fill ~20 of 28 px: neighbours touch nearly as in handwriting
    x = (width - step * len(text)) // 2
    y = (height - digit_px) // 2
    for k, ch in enumerate(text):
        digit = cv2.resize(examples[int(ch)][0], (digit_px, digit_px), interpolation=cv2.INTER_CUBIC)
        region = page[y:y + digit_px, x + k * step:x + k * step + digit_px]
        np.minimum(region, 255 - digit, out=region)
    return cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)


def png_bytes(frame_bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", frame_bgr)
    assert ok
    return buf.tobytes()


def jpeg_bytes(frame_bgr: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()
