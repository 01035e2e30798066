"""What the web view shows of the live loop: the `WebStream` sink.

`WebStream` is the live loop's output for the web page (`edge_app.live.sink.Sink`): it encodes one annotated JPEG
per frame, whatever the number of viewers, and keeps the newest frame's reading and the stable reading with
the time it became stable, for the MJPEG stream and `/api/latest`. The loop itself, its stabiliser and its
status are `edge_app.live.loop.LiveLoop`'s; the list of last readings comes from the readings history. No web
framework here.

    digitlite serve --source synthetic      # the page's stream and "stable" box come from this sink
"""

from __future__ import annotations

import threading

from edge_app.config import STREAM_QUALITY
from edge_app.live.sink import Frame, Sink
from edge_app.web.uploads import encode_jpeg


class WebStream(Sink):
    """The newest annotated JPEG, the newest reading and the stable reading, for any number of viewers."""

    name = "web stream"

    def __init__(self, quality: int = STREAM_QUALITY):
        self.quality = quality
        self._lock = threading.Lock()
        self._number, self._jpeg, self._reading = 0, None, None
        self._stable: dict | None = None  # {"text", "since"} of the reading on view

    def on_frame(self, frame: Frame) -> None:
        jpeg = encode_jpeg(frame.annotated, self.quality)
        reading = {**frame.reading_dict, "time": frame.time, "origin": "live"}
        with self._lock:
            self._number, self._jpeg, self._reading = frame.number, jpeg, reading
            if frame.stable is None:
                self._stable = None  # nothing readable for stable_frames frames: no reading on view

    def on_reading(self, record: dict, frame: Frame) -> None:
        with self._lock:
            self._stable = {"text": record["text"], "since": record["time"], "id": record["id"],
                            "suspect": record.get("suspect")}

    def on_correction(self, record: dict) -> None:
        with self._lock:
            if self._stable is not None and self._stable.get("id") == record["id"]:
                # The reading on view was corrected: show the user's text, no longer suspect.
                self._stable = {**self._stable, "text": record["corrected_text"], "suspect": None}

    def latest_jpeg(self) -> tuple[int, bytes | None]:
        """(frame number, annotated JPEG) of the newest frame; (0, None) before the first one."""
        with self._lock:
            return self._number, self._jpeg

    def latest_reading(self) -> dict | None:
        with self._lock:
            return self._reading

    def stable(self) -> dict | None:
        """{"text", "since"} of the stable reading on view; None when there is none (never an empty text)."""
        with self._lock:
            return self._stable
