"""The live loop's outputs, one class each, behind `edge_app.live.sink.Sink`: what `digitlite run` can do with readings.

- `JsonLines`: each stable reading as one JSON line on stdout (a service's journal, a pipe).
- Home Assistant's discovery and state are `edge_app.outputs.homeassistant.HomeAssistant` (retained messages of that
  same publisher).
- `VideoFile`: every annotated frame into an .mp4, written beside the target and renamed into place when
  closed, so the file named is always a complete, playable video (SIGTERM included).
- `Preview`: an OpenCV window with the annotated frames; q or Esc stops the loop.

The MQTT outbox's sink is `edge_app.outputs.mqtt.MqttOutbox`; the web page's is `edge_app.web.stream.WebStream`
(it keeps the JPEG the stream sends).

    digitlite run --source synthetic --headless --save /tmp/run.mp4 --max-frames 60
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import cv2

from edge_app.live.sink import Frame, Sink

log = logging.getLogger(__name__)

VIDEO_FPS = 15.0  # frames/s written into the file's header (the live loop's own rate varies)
VIDEO_CODEC = "mp4v"  # MPEG-4 part 2: in every OpenCV build, including the headless wheel


class JsonLines(Sink):
    """Prints each stable reading as one JSON object: time, frame, text, numbers, digits, latency_ms, fps, id,
    "suspect" (why) when the plausibility check refused it as the value, and "stored": false with a "warning"
    when the history could not store it (id null)."""

    name = "stdout"

    def __init__(self, write: Callable[[str], None] | None = None):
        self._write = write or (lambda line: print(line, flush=True))

    def on_reading(self, record: dict, frame: Frame) -> None:
        line = {**frame.to_dict(), "time": record["time"], "id": record["id"]}
        if record.get("suspect"):
            line["suspect"] = record["suspect"]
        if record.get("stored") is False:
            line["stored"], line["warning"] = False, record["warning"]
        self._write(json.dumps(line))


class VideoFile(Sink):
    """Writes every annotated frame to `path` (.mp4), complete once closed.

    Frames go to a hidden partial file beside `path` (same suffix: OpenCV picks the container from it); `close()`
    finalises it (the index an .mp4 needs to play) and renames it to `path`. Frames of another size than the
    first (an image folder) are resized to it.

    Raises:
        ValueError: the folder does not exist, or OpenCV cannot write this kind of file.
    """

    name = "video"

    def __init__(self, path: str | Path, fps: float = VIDEO_FPS):
        self.path, self.fps = Path(path), fps
        if not self.path.parent.is_dir():
            raise ValueError(f"--save {self.path}: the folder {self.path.parent} does not exist")
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov", ".avi"):
            raise ValueError(f"--save {self.path}: give a .mp4 (or .m4v, .mov, .avi) file name")
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None

    def on_frame(self, frame: Frame) -> None:
        image = frame.annotated
        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            self._writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*VIDEO_CODEC), self.fps,
                                           self._size)
            if not self._writer.isOpened():
                self._writer = None
                raise ValueError(f"OpenCV cannot write {self.partial} with the {VIDEO_CODEC} codec")
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self.partial, self.path)
        log.info("wrote %d frames to %s", self.frames, self.path)


class Preview(Sink):
    """An OpenCV window with the annotated frames; q or Esc calls `on_quit` (the loop's stop request)."""

    name = "preview"

    def __init__(self, on_quit: Callable[[str], None] | None = None, title: str = "digitlite"):
        self.on_quit, self.title = on_quit, title

    def on_frame(self, frame: Frame) -> None:
        cv2.imshow(self.title, frame.annotated)
        if cv2.waitKey(1) & 0xFF in (27, ord("q")) and self.on_quit is not None:
            self.on_quit("q pressed")

    def close(self) -> None:
        cv2.destroyAllWindows()


def can_show() -> bool:
    """A preview window needs a display and an OpenCV built with a GUI (the headless wheel has none)."""
    build = cv2.getBuildInformation()
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return bool(display) and "GUI" in build and "NONE" not in build.split("GUI:")[-1].split("\n")[0]
