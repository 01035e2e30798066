"""The live loop behind the web view: frames from a source, read and annotated in one thread, for any viewers.

`LiveFeed` owns the thread that pulls frames from a frame source, reads them with the reader (under the
lock shared with uploads: one interpreter is not safe to call from two threads), annotates them and
encodes one JPEG per frame, whatever the number of viewers. It keeps the stable reading (the same text on
`stable_frames` frames in a row), the last readings with their times, and the frame rate. `History` holds
the last readings, from the camera and from uploads, for `/api/latest`. No web framework here.

    python -m edge_app.web.live --source synthetic --seconds 5    # prints stable readings and the FPS
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from edge_app.web.uploads import encode_jpeg

log = logging.getLogger(__name__)

HISTORY = 20  # readings kept for the page's "last readings" list
STREAM_QUALITY = 75  # JPEG quality of the stream: a 640x480 frame is ~40 kB, fine over phone Wi-Fi
RETRY_S = 1.0  # s to wait before trying a failing source again (a camera being re-plugged)
FPS_WINDOW = 30  # frames over which the frame rate is measured


def now_iso() -> str:
    """The current time as ISO 8601 with milliseconds and the UTC offset (what the page shows, localised)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class History:
    """The last `size` readings, newest first, each `{"text", "time", "origin"}`; thread-safe."""

    def __init__(self, size: int = HISTORY):
        self._items: collections.deque[dict] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, text: str, origin: str) -> dict:
        item = {"text": text, "time": now_iso(), "origin": origin}
        with self._lock:
            self._items.appendleft(item)
        return item

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._items)


class StableText:
    """Reports a text once it has been read on `frames` consecutive frames (camera jitter is not a reading)."""

    def __init__(self, frames: int = 3):
        if frames < 1:
            raise ValueError(f"stable frames must be at least 1, got {frames}")
        self.frames = frames
        self.stable: str | None = None  # None until the first text is stable; "" when nothing is in view
        self._candidate: str | None = None
        self._count = 0

    def update(self, text: str) -> bool:
        """Feed one frame's text; True when the stable text changed with this frame."""
        if text == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = text, 1
        if self._count >= self.frames and text != self.stable:
            self.stable = text
            return True
        return False


class LiveFeed:
    """Reads a frame source in a background thread and keeps the latest annotated JPEG and readings.

    Args:
        reader: has `.read(frame_bgr)` returning a reading with `.to_dict()` (`{"text", "digits", ...}`).
        source: has `.read()` returning a BGR frame, or None once it has ended (a video file), and `.close()`.
        annotate: `annotate(frame_bgr, reading) -> frame_bgr`, the boxes and digits drawn on the frame.
        lock: held while the reader runs; share it with whatever else calls the same interpreter.
        stable_frames: frames a text must repeat before it becomes the stable reading.
        history: where stable readings are recorded.
        max_fps: upper bound on frames processed per second (leave CPU to the rest of the device).
        name: the source's description, for /api/health.
    """

    def __init__(self, reader, source, annotate: Callable, lock: threading.Lock | None = None,
                 stable_frames: int = 3, history: History | None = None, max_fps: float = 15.0, name: str = ""):
        self.reader, self.source, self.annotate = reader, source, annotate
        self.lock = lock or threading.Lock()
        self.stable = StableText(stable_frames)
        self.history = history or History()
        self.max_fps = max_fps
        self.name = name or type(source).__name__
        self.frames = 0
        self.error: str | None = None
        self.ended = False
        self.stable_since: str | None = None
        self._jpeg: bytes | None = None
        self._reading: dict | None = None
        self._times: collections.deque[float] = collections.deque(maxlen=FPS_WINDOW)
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ thread
    def start(self) -> LiveFeed:
        self._thread = threading.Thread(target=self._run, name="digitlite-live", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.source.close()
        except Exception as exc:  # closing a broken camera must not stop the server from shutting down
            log.warning("closing the source %s failed: %s", self.name, exc)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        period = 1.0 / self.max_fps if self.max_fps > 0 else 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                frame = self.source.read()
            except Exception as exc:
                self._fail(f"the source {self.name} failed: {exc}")
                continue
            if frame is None:
                self.ended = True
                log.info("the source %s has ended after %d frames", self.name, self.frames)
                return
            try:
                self.process(frame)
            except Exception as exc:
                self._fail(f"reading a frame failed: {type(exc).__name__}: {exc}")
                continue
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def _fail(self, message: str) -> None:
        if message != self.error:
            log.error("%s (retrying every %.0f s)", message, RETRY_S)
        self.error = message
        self._stop.wait(RETRY_S)

    def process(self, frame_bgr) -> dict:
        """Read, annotate and publish one frame; returns the reading as a dict."""
        with self.lock:
            reading = self.reader.read(frame_bgr)
        annotated = self.annotate(frame_bgr, reading)
        jpeg = encode_jpeg(annotated, STREAM_QUALITY)
        result = reading.to_dict()
        result["time"] = now_iso()
        result["origin"] = "live"
        with self._state_lock:
            self._jpeg, self._reading = jpeg, result
            self.frames += 1
            self._times.append(time.monotonic())
            self.error = None
            if self.stable.update(result.get("text", "")):
                self.stable_since = result["time"]
                if self.stable.stable:
                    self.history.add(self.stable.stable, "live")
        return result

    # ------------------------------------------------------------------ what viewers see
    def latest_jpeg(self) -> tuple[int, bytes | None]:
        """(frame number, annotated JPEG) of the newest frame; (0, None) before the first one."""
        with self._state_lock:
            return self.frames, self._jpeg

    def latest_reading(self) -> dict | None:
        with self._state_lock:
            return self._reading

    @property
    def fps(self) -> float | None:
        """Frames per second over the last FPS_WINDOW frames; None until there are two."""
        with self._state_lock:
            times = list(self._times)
        if len(times) < 2 or times[-1] == times[0]:
            return None
        if time.monotonic() - times[-1] > 5 * RETRY_S:  # the source stalled: do not report a stale rate
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def status(self) -> dict:
        return {"source": self.name, "running": self.running, "ended": self.ended, "frames": self.frames,
                "fps": None if self.fps is None else round(self.fps, 2), "error": self.error,
                "stable_frames": self.stable.frames}


def main(argv: list[str] | None = None) -> int:
    """Run the live loop without a web server and print what the page would show: a check of a camera."""
    import argparse

    from edge_app.runtime import DEFAULT_MODEL, Classifier

    parser = argparse.ArgumentParser(description="Run the web view's live loop and print its stable readings.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--source", default="synthetic", help="frame source (see `digitlite run --help`)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="the .tflite model")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to run")
    parser.add_argument("--stable-frames", type=int, default=3, help="frames a reading must repeat")
    args = parser.parse_args(argv)
    from edge_app.reader import DigitReader, annotate
    from edge_app.sources import open_source

    feed = LiveFeed(DigitReader(Classifier(args.model)), open_source(args.source), annotate,
                    stable_frames=args.stable_frames, name=args.source).start()
    time.sleep(args.seconds)
    feed.stop()
    for item in reversed(feed.history.items()):
        print(f"{item['time']}  {item['text']}")
    print(json.dumps(feed.status()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
