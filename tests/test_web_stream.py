"""The live side of the web view: stable readings, the MJPEG stream, clients that vanish mid-stream, shutdown.

    .venv/bin/pytest tests/test_web_stream.py
"""

from __future__ import annotations

import socket
import struct
import threading

import cv2
import numpy as np
import pytest
from waiting import WAIT_S, wait_for
from web_support import clear_examples, make_state, model_path, number_page, request, running_server

pytest.importorskip("fastapi", reason="the [web] extra is not installed")



class PageSource:
    """A frame source showing one page of real MNIST digits, like a camera pointed at a sheet."""

    def __init__(self, frame_bgr: np.ndarray):
        self.frame_bgr, self.closed = frame_bgr, False

    def read(self) -> np.ndarray:
        return self.frame_bgr.copy()

    def close(self) -> None:
        self.closed = True


# ---------------------------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def live(mnist):
    from edge_app.runtime import Classifier

    classifier = Classifier(model_path())
    page = number_page(clear_examples(mnist, classifier), "4071", size=(640, 480))
    source = PageSource(page)
    state = make_state(classifier, feed_source=source, stable_frames=2, max_fps=10)
    with running_server(state) as server:
        yield server, state, source
    assert source.closed, "stopping the server did not close the source"


def open_stream(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> int:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the stream ended while waiting for {marker!r}")
        buffer += chunk
    return buffer.index(marker)


def read_frames(sock: socket.socket, count: int) -> list[np.ndarray]:
    """Decode `count` JPEG parts from an open MJPEG response (chunked transfer framing is stripped)."""
    buffer = bytearray()
    end = read_until(sock, buffer, b"\r\n\r\n")
    head = bytes(buffer[:end]).decode("latin-1")
    assert head.startswith("HTTP/1.1 200"), head
    assert "multipart/x-mixed-replace; boundary=frame" in head
    frames = []
    while len(frames) < count:
        start = read_until(sock, buffer, b"\xff\xd8")  # JPEG start of image
        stop = read_until(sock, buffer, b"\xff\xd9")  # end of image (never inside entropy-coded data)
        if stop < start:
            del buffer[:start]
            continue
        frames.append(cv2.imdecode(np.frombuffer(bytes(buffer[start:stop + 2]), np.uint8), cv2.IMREAD_COLOR))
        del buffer[:stop + 2]
    return frames


def test_live_page_settles_on_the_stable_reading(live):
    server, state, _ = live
    latest = wait_for(lambda: (r := request(server, "GET", "/api/latest").json())["stable"] and r, "a stable reading")
    assert latest["live"] is True
    assert latest["stable"]["text"] == "4071", latest
    assert latest["history"][0] == {**latest["history"][0], "text": "4071", "origin": "live"}
    health = wait_for(lambda: (h := request(server, "GET", "/api/health").json())["fps"] and h, "a frame rate")
    assert health["fps"] > 0 and health["live"]["frames"] >= 2 and health["live"]["error"] is None


def test_stream_sends_annotated_frames(live):
    server, state, source = live
    sock = open_stream(server)
    try:
        frames = read_frames(sock, 3)
    finally:
        sock.close()
    for frame in frames:
        assert frame is not None and frame.shape == source.frame_bgr.shape
    # Annotated: the boxes make the streamed frame differ from the page beyond JPEG noise.
    assert np.abs(frames[-1].astype(int) - source.frame_bgr.astype(int)).max() > 100
    snapshot = request(server, "GET", "/snapshot.jpg")
    assert snapshot.status == 200 and snapshot.headers["content-type"] == "image/jpeg"


def test_stream_survives_clients_that_disconnect_mid_stream(live):
    server, state, _ = live
    for abrupt in (True, False) * 3:
        sock = open_stream(server)
        buffer = bytearray()
        read_until(sock, buffer, b"\xff\xd8")  # in the middle of a frame
        if abrupt:  # a phone losing Wi-Fi: reset, not a polite close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    wait_for(lambda: state.stream_clients == 0, "the server to notice the disconnected viewers")
    sock = open_stream(server)
    try:
        assert len(read_frames(sock, 2)) == 2
        assert request(server, "GET", "/api/health").status == 200
        assert state.stream_clients == 1
    finally:
        sock.close()
    wait_for(lambda: state.stream_clients == 0, "the last viewer to be counted out")
    assert state.loop.active and state.loop.status.error is None


def test_server_stops_while_a_viewer_is_watching(mnist):
    from edge_app.runtime import Classifier

    classifier = Classifier(model_path())
    state = make_state(classifier, feed_source=PageSource(np.full((120, 160, 3), 255, np.uint8)), max_fps=10)
    watcher_done = threading.Event()
    with running_server(state) as server:
        sock = open_stream(server)
        read_frames(sock, 1)

        def drain():
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            watcher_done.set()

        threading.Thread(target=drain, daemon=True).start()
    # running_server.stop() returned: the uvicorn thread is gone although a viewer was attached.
    assert not server._thread.is_alive()
    assert watcher_done.wait(WAIT_S), "the viewer's connection was not closed"
    sock.close()
    assert not state.loop.active
