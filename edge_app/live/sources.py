"""Frame sources behind one interface, chosen by one factory from a `--source` string.

`open_source(spec)` understands: `picamera` (Raspberry Pi camera through picamera2, imported lazily, its
low-resolution stream), a webcam index or device path (`0`, `/dev/video0`), a video file, an RTSP/HTTP
stream URL, an image file / folder / glob, and `synthetic` (camera-like scenes from MNIST test digits).
Live sources are read in their own thread where the newest frame wins (`LatestFrame`); a camera that
disappears is reopened with backoff (the reader waits for the whole backoff, not only the frame timeout) and,
if it never returns, `SourceLost` ends the loop cleanly. Image files go through the one decoder
(`edge_app.read.images.read_image`): an image it refuses is skipped with the reason, as `digitlite read` reports it.

    digitlite run --source synthetic --headless --max-frames 3
"""

from __future__ import annotations

import glob
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".h264"}
RETRIES = 5  # reopen attempts after a live source fails, with doubling waits
BACKOFF_S = 0.5  # first wait before reopening; then 1, 2, 4 ... seconds
FRAME_TIMEOUT_S = 10.0  # a live source that delivers nothing for this long (and is not being reopened) is lost
POLL_S = 0.1  # s between checks for an interrupt (a shutdown) while waiting for a frame
PICAMERA_LORES = (640, 480)  # inference runs on the camera's low-resolution stream
SYNTHETIC_REPEAT = 30  # frames per synthetic scene: about a second at camera rates
SYNTHETIC_FPS = 30.0  # frames/s the synthetic source delivers, like a camera
PICAMERA_NAMES = ("picamera", "picamera2", "pi")  # the first is the one the help and the examples use
SOURCE_HELP = ("picamera (the Raspberry Pi camera), a webcam index (0) or device (/dev/video0), a video file, an "
               "rtsp:// or http:// URL, images (a file, folder or glob), or synthetic")


class SourceError(OSError):
    """A frame source could not be opened. The message names the source and what to try."""


class SourceLost(SourceError):
    """A live source stopped delivering frames and did not come back."""


class FrameSource(Protocol):
    """What every source here is, and what `open_source` returns and the live loop reads."""

    name: str
    live: bool  # a camera or stream (newest frame wins) rather than a file read to its end

    def read(self) -> np.ndarray | None:
        """The next frame (BGR or grey uint8), or None when a finite source has ended."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------- sources


class ImageFiles:
    """Image files read in order; unreadable files are skipped with a warning."""

    live = False

    def __init__(self, paths: Iterable[str | Path], name: str):
        self.paths, self.name = [Path(p) for p in paths], name
        if not self.paths:
            raise SourceError(f"no images found for --source {name!r} ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._next = 0

    def read(self) -> np.ndarray | None:
        from edge_app.read.images import ImageError, read_image

        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            try:
                return read_image(path)
            except (ImageError, OSError) as exc:
                log.warning("skipping %s: %s", path, exc)
        return None

    def close(self) -> None:
        pass


class VideoCapture:
    """OpenCV capture: a webcam index, a device path, a video file or a stream URL."""

    def __init__(self, target: int | str, name: str, live: bool):
        self.target, self.name, self.live = target, name, live
        self._cap = None
        self.open()

    def open(self) -> None:
        import cv2

        self.close()
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            if isinstance(self.target, int) or str(self.target).startswith("/dev/"):
                hint = "is it connected, and is this user in the 'video' group? Try --source 1, or a file"
                raise SourceError(f"Unable to read from the camera at {self.name}: {hint}.")
            if "://" in str(self.target):
                raise SourceError(f"Unable to open the stream {self.name}: is the URL right and reachable?")
            raise SourceError(f"Unable to open the video file {self.name}: is it a video OpenCV can decode?")
        self._cap = cap

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read() if self._cap is not None else (False, None)
        if ok:
            return frame
        if not self.live:
            return None  # the file has ended
        raise SourceLost(f"{self.name} stopped delivering frames")

    def reopen(self) -> None:
        self.open()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class PiCamera:
    """A Raspberry Pi camera module through picamera2: the low-resolution YUV stream's grey plane."""

    live = True

    def __init__(self, name: str = "picamera", size: tuple[int, int] = PICAMERA_LORES):
        self.name, self.size = name, size
        self._cam = None
        self.open()

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(f"--source picamera needs picamera2 ({exc}). On Raspberry Pi OS: sudo apt install "
                              f"python3-picamera2, and a venv made with --system-site-packages.") from exc
        self.close()
        try:
            cam = Picamera2()
            config = cam.create_preview_configuration(main={"size": (1280, 960)},
                                                      lores={"size": self.size, "format": "YUV420"})
            cam.configure(config)
            cam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceError(f"Unable to start the Raspberry Pi camera ({exc}): is it connected and enabled? "
                              f"`digitlite doctor` lists the cameras found.") from exc
        self._cam = cam

    def read(self) -> np.ndarray | None:
        try:
            yuv = self._cam.capture_array("lores")
        except Exception as exc:  # noqa: BLE001  (libcamera raises many kinds when the camera goes away)
            raise SourceLost(f"{self.name}: {exc}") from exc
        return np.ascontiguousarray(yuv[: self.size[1], : self.size[0]])  # the Y (grey) plane of YUV420

    def reopen(self) -> None:
        self.open()

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None


class Synthetic:
    """Camera frames rendered by the data engine from MNIST test digits (`digitdata.engine`, its `photo` mix:
    what people photograph, one number filling a good part of the frame); `.truth` is the last scene's text.

    Like a camera held over a page: each scene is shown for `repeat` frames (so `--stable-frames` can
    settle), at most `fps` frames per second (so the capture thread does not spin a core).
    """

    live = True

    def __init__(self, seed: int = 0, frames: int | None = None, repeat: int = SYNTHETIC_REPEAT,
                 fps: float | None = SYNTHETIC_FPS):
        from digitdata.engine import MIXES, scenes
        from digitdata.mnist import load_mnist

        mnist = load_mnist()
        self._scenes = scenes(seed, mnist.x_test, mnist.y_test, MIXES["photo"], kind="frame")
        self.name, self.frames, self.repeat = "synthetic", frames, max(1, repeat)
        self.fps = fps
        self._served, self._frame, self.truth, self._next_at = 0, None, "", 0.0

    def read(self) -> np.ndarray | None:
        if self.frames is not None and self._served >= self.frames:
            return None
        if self.fps:
            wait = self._next_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._next_at = max(self._next_at, time.monotonic()) + 1.0 / self.fps
        if self._served % self.repeat == 0:  # the same scene for `repeat` frames, like a camera held still
            scene = next(self._scenes)
            self._frame, self.truth = scene.image_bgr, scene.text
        self._served += 1
        return self._frame

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- threading


class LatestFrame:
    """Reads a live source in its own thread; `read()` returns the newest frame, dropping stale ones.

    When the source fails it is reopened `retries` times with doubling waits; each attempt is logged, and
    `read()` waits for them (the frame timeout counts only while the source is not being reopened). If it
    never returns, `read()` raises SourceLost naming the source and the attempts. `interrupt()` (a shutdown)
    makes a waiting `read()` return None within POLL_S.
    """

    def __init__(self, source: FrameSource, retries: int = RETRIES, backoff_s: float = BACKOFF_S,
                 frame_timeout_s: float = FRAME_TIMEOUT_S):
        self.source, self.name, self.live = source, source.name, True
        self.retries, self.backoff_s, self.frame_timeout_s = retries, backoff_s, frame_timeout_s
        self.dropped = 0  # frames replaced before anyone read them
        self.reconnects = 0
        self._frame, self._seq, self._taken = None, 0, 0
        self._ended, self._error = False, None
        self._recovering = False
        self.interrupted = False  # set by interrupt(); a plain flag, so a signal handler may set it
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read()
            except SourceError as exc:
                if not self._recover(exc):
                    return
                continue
            with self._cond:
                if frame is None:
                    self._ended = True
                else:
                    if self._seq > self._taken:
                        self.dropped += 1
                    self._frame, self._seq = frame, self._seq + 1
                self._cond.notify_all()
            if frame is None:
                return

    def _recover(self, exc: Exception) -> bool:
        self._recovering = True
        try:
            return self._reopen(exc)
        finally:
            self._recovering = False

    def _reopen(self, exc: Exception) -> bool:
        wait = self.backoff_s
        for attempt in range(1, self.retries + 1):
            log.warning("%s lost (%s); reopening, attempt %d of %d in %.1f s", self.name, exc, attempt,
                        self.retries, wait)
            if self._stop.wait(wait):
                return False
            try:
                self.source.reopen()
                self.reconnects += 1
                log.warning("%s is back after %d attempt(s)", self.name, attempt)
                return True
            except (SourceError, AttributeError) as again:
                exc = again
            wait *= 2
        with self._cond:
            self._error = SourceLost(f"{self.name} disappeared and did not come back after {self.retries} "
                                     f"attempts over {self.backoff_s * (2 ** self.retries - 1):.1f} s (last "
                                     f"error: {exc}); check the cable or the stream, then run again.")
            self._cond.notify_all()
        return False

    def read(self) -> np.ndarray | None:
        deadline = None
        with self._cond:
            while True:
                if self._seq > self._taken:
                    self._taken = self._seq
                    return self._frame
                if self._error is not None:
                    raise self._error
                if self._ended or self.interrupted:
                    return None
                if self._recovering:
                    deadline = None  # the reopening has its own bound (retries x backoff); wait for it
                elif deadline is None:
                    deadline = time.monotonic() + self.frame_timeout_s
                elif time.monotonic() >= deadline:
                    raise SourceLost(f"{self.name} delivered no frame for {self.frame_timeout_s:.0f} s")
                self._cond.wait(POLL_S)

    def interrupt(self) -> None:
        """Make a waiting `read()` return None (the loop is shutting down). Only sets a flag: signal-safe."""
        self.interrupted = True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.source.close()


# ---------------------------------------------------------------------------------------------- factory


def _image_paths(spec: str) -> list[Path] | None:
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if any(ch in spec for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    return None


def open_source(spec: str, threaded: bool | None = None, retries: int = RETRIES,
                backoff_s: float = BACKOFF_S) -> FrameSource:
    """The frame source that `spec` names (see the module docstring); live ones wrapped in `LatestFrame`.

    Raises:
        SourceError: the source cannot be opened, or `spec` names nothing valid.
    """
    spec = str(spec).strip()
    if spec in PICAMERA_NAMES:
        source = PiCamera()
    elif spec == "synthetic" or spec.startswith("synthetic:"):
        seed = spec.partition(":")[2]
        source = Synthetic(seed=int(seed) if seed.isdigit() else 0)
    elif spec.isdigit():
        source = VideoCapture(int(spec), f"/dev/video{spec}", live=True)
    elif spec.startswith("/dev/"):
        source = VideoCapture(spec, spec, live=True)
    elif "://" in spec:
        source = VideoCapture(spec, spec, live=True)
    elif (paths := _image_paths(spec)) is not None:
        source = ImageFiles(paths, spec)
    elif Path(spec).is_file() and Path(spec).suffix.lower() in VIDEO_SUFFIXES:
        source = VideoCapture(spec, spec, live=False)
    else:
        raise SourceError(f"--source {spec!r} is not a camera, file, folder or URL that exists. Valid: picamera, "
                          f"a webcam index (0) or device (/dev/video0), a video file, rtsp:// or http:// URL, "
                          f"an image, a folder or glob of images, or synthetic.")
    live = source.live if threaded is None else threaded
    return LatestFrame(source, retries, backoff_s) if live else source


def frames(source, limit: int | None = None) -> Iterator[np.ndarray]:
    """Iterate a source's frames until it ends (or `limit`)."""
    n = 0
    while limit is None or n < limit:
        frame = source.read()
        if frame is None:
            return
        n += 1
        yield frame
