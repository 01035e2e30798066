"""The one live loop: frames from a source, read, stabilised, recorded, and handed to sinks.

`LiveLoop` is the loop of every live mode (`digitlite run`, `run --web`, `serve --source`): source -> frame
check -> reader -> stabiliser -> plausibility -> history -> sinks. Each frame goes to every sink's `on_frame`
(video file, preview window, web stream); each stable reading is judged by the plausibility check
(`edge_app.store.plausibility`; a reading that breaks it is marked suspect, and not queued for MQTT), committed to
the readings history (`edge_app.store.history.ReadingStore`) with its examples (the classifier's crops and the
frame, for a later correction), then handed to every sink's `on_reading` (stdout JSON lines, the MQTT outbox,
Home Assistant, the web page). A correction made while the loop runs reaches the sinks' `on_correction`. A
new output is a new sink (`edge_app.outputs.local`), not a second loop. A frame the reader
cannot take is counted and skipped (skipped frames count towards `max_frames`); a failing sink is logged and the
others go on. A region of interest outside the frame stops the loop at its first frame, with the reason.

A stable reading the history cannot store (a full or read-only disk) is still handed to the sinks, marked
"stored": false with a "warning" saying why (the JSON line, the web page and Home Assistant's availability show
it); it is kept in memory (at most `LoopSettings.unstored_keep`, the oldest dropped and counted, its frame not
kept) and stored, in order, as soon as the history takes writes again (tried every `retry_s`).

`run_until_stopped` is the one shutdown path: SIGTERM (what systemd sends) and SIGINT (Ctrl-C) become a stop
request the loop sees between frames, within `LoopSettings.poll_s` while it waits for a camera; then the sinks
are closed (the video file finalised, MQTT disconnected within its bound), the web server stopped and the
history closed.

    digitlite run --source synthetic --headless --max-frames 90 --history /tmp/readings.db
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_app.config import LoopSettings
from edge_app.live.sink import Frame, Sink
from edge_app.live.sources import SourceError
from edge_app.live.stabilizer import Stabilizer
from edge_app.read.images import check_frame
from edge_app.read.pipeline import crop_roi
from edge_app.store.history import ReadingStore, now_iso, value_of
from edge_app.store.plausibility import Plausibility

log = logging.getLogger(__name__)


@dataclass
class LoopStatus:
    frames: int = 0  # frames read
    readings: int = 0  # stable readings recorded
    skipped: int = 0  # frames the reader could not take (degenerate shape, a reader error)
    ended: bool = False  # a finite source (video file, images) ended
    error: str | None = None  # why the loop stopped early, or the last frame error
    stop_reason: str | None = None  # what asked the loop to stop (a signal's name, a key, a test)
    history_error: str | None = None  # why the history cannot store readings right now (None: it can)
    history_off: str | None = None  # why the history is kept in memory only (it could not be written at start)
    unstored: int = 0  # stable readings held in memory, waiting to be stored
    unstored_dropped: int = 0  # held readings dropped because more than `unstored_keep` were waiting
    model_sha256: str = ""  # the reader's model now (it changes when a newly activated bundle is loaded)
    model_switches: int = 0  # readers swapped in between frames (SIGHUP, `request_reload`)
    model_error: str | None = None  # why the last reload kept the reader in use (None: it did not fail)
    times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=30))


class LiveLoop:
    """source -> reader -> stabiliser -> history -> sinks, in the thread that calls `run()` (or `start()`).

    Args:
        source: a frame source (`edge_app.live.sources`): `.read()` -> frame or None at the end, `.close()`.
        reader: has `.read(frame) -> Reading` (`edge_app.read.DigitReader`).
        history: where stable readings are committed before any sink sees them.
        sinks: the outputs.
        settings: stable frames, pacing, frame limits.
        source_name: the source as the user named it, stored with each reading.
        model_sha256: the reader's model, stored with each reading.
        max_frames: stop after this many frames (None: until the source ends or a stop request).
        lock: held while the reader runs; share it with whatever else calls the same interpreter (the web).
        plausibility: the rule a stable reading must meet to be the value (default: none).
        reload: builds the reader anew (the active bundle's models); called between frames after
            `request_reload()` (SIGHUP). None: the reader is never swapped.
        watch: returns what identifies the models to load (the store's active bundle), looked at every
            `settings.model_check_s`; when it changes, the reader is reloaded.
    """

    def __init__(self, source, reader, history: ReadingStore, sinks: Sequence[Sink] = (),
                 settings: LoopSettings = LoopSettings(), source_name: str = "", model_sha256: str = "",
                 max_frames: int | None = None, lock: threading.Lock | None = None,
                 plausibility: Plausibility | None = None, reload: Callable[[], object] | None = None,
                 watch: Callable[[], object] | None = None):
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"--max-frames must be at least 1, got {max_frames}")
        self.source, self.reader, self.history, self.sinks = source, reader, history, list(sinks)
        self.settings, self.max_frames = settings, max_frames
        self.source_name = source_name or getattr(source, "name", type(source).__name__)
        self.model_sha256 = model_sha256
        self.lock = lock or threading.Lock()
        self.plausibility = plausibility or Plausibility()
        self.stabilizer = Stabilizer(settings.stable_frames)
        self.status = LoopStatus(times=collections.deque(maxlen=settings.fps_window))
        self._outbox = any(s.uses_outbox for s in self.sinks)
        self._errors: set[str] = set()  # messages logged once
        self.active = False  # run() is running (in whichever thread)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._unstored: collections.deque[dict] = collections.deque()  # history.add() arguments, oldest first
        self._retry_at = 0.0  # time.monotonic() of the next attempt to store them
        self._roi_checked = False
        self.reload, self.watch = reload, watch
        self._reload_requested = False
        self._watched = self._look(None)
        self._watch_at = 0.0  # time.monotonic() of the next look
        self.status.model_sha256 = model_sha256

    # ------------------------------------------------------------------ stopping
    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to stop after the current frame. Safe in a signal handler: it only sets flags."""
        if self.status.stop_reason is None:
            self.status.stop_reason = reason
        if hasattr(self.source, "interrupt"):
            self.source.interrupt()

    def request_reload(self) -> None:
        """Load the reader anew before the next frame (a newly activated bundle). Safe in a signal handler."""
        self._reload_requested = True

    def _reload(self) -> None:
        """Swap in a new reader between frames; the stabiliser, history, outbox and sinks go on as they were.
        A reader that cannot be built is logged and the one in use kept."""
        self._reload_requested = False
        if self.reload is None:
            log.warning("reload requested, but this loop was built without a way to rebuild its reader")
            return
        try:
            reader = self.reload()
        except Exception as exc:  # a bad bundle must not end a device's loop
            self.status.model_error = f"{type(exc).__name__}: {exc}"
            log.error("reload failed, the models in use are kept: %s", self.status.model_error)
            return
        was, now = getattr(self.reader, "bundle", None), getattr(reader, "bundle", None)
        if now != was:
            log.warning("the active models changed (%s -> %s): loading them", was, now)
        with self.lock:
            self.reader = reader
        sha = getattr(getattr(reader, "integrity", None), "sha256", "")
        if sha != self.model_sha256:
            log.info("models reloaded: recognizer %s... (was %s...)", sha[:12], self.model_sha256[:12])
        self.model_sha256 = self.status.model_sha256 = sha
        self.status.model_switches += 1
        self.status.model_error = None
        for sink in self.sinks:
            self._deliver(sink, "on_model", self.model_info())

    def _look(self, previous):
        """What `watch` says now (`previous` when it fails: a store being written is looked at again later)."""
        if self.watch is None:
            return None
        try:
            return self.watch()
        except Exception as exc:
            self._log_once(f"cannot look at the active models: {exc}", exc)
            return previous

    def _check_models(self) -> None:
        now = time.monotonic()
        if self.watch is None or now < self._watch_at:
            return
        self._watch_at = now + self.settings.model_check_s
        seen = self._look(self._watched)
        if seen != self._watched:  # a bundle was activated or rolled back: load what is active now
            self._watched = seen
            self._reload_requested = True

    def model_info(self) -> dict:
        return {"bundle": getattr(self.reader, "bundle", None), "recognizer_sha256": self.model_sha256,
                "time": now_iso()}

    @property
    def stopping(self) -> bool:
        return self.status.stop_reason is not None

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        """Run until the source ends, `max_frames`, or a stop request (0); 1 if the source was lost for good, 2 if
        the region of interest lies outside the frame."""
        self.active = True
        try:
            return self._run()
        finally:
            self.active = False

    def _run(self) -> int:
        for sink in self.sinks:
            self._deliver(sink, "on_model", self.model_info())
        period = 1.0 / self.settings.max_fps if self.settings.max_fps else 0.0
        next_at = time.monotonic()
        status = self.status
        while not self.stopping and (self.max_frames is None or status.frames + status.skipped < self.max_frames):
            if period:
                self._sleep_until(next_at)
                next_at = max(next_at + period, time.monotonic())
                if self.stopping:
                    break
            self._check_models()
            if self._reload_requested:
                self._reload()
            waited = time.perf_counter()
            try:
                frame = self.source.read()
            except SourceError as exc:
                self.status.error = str(exc)
                log.error("%s", exc)
                return 1
            if frame is None:
                self.status.ended = not self.stopping
                if self.status.ended:
                    log.info("the source %s has ended after %d frames", self.source_name, self.status.frames)
                return 0
            if not self._roi_checked and (problem := self._roi_problem(frame)):
                self.status.error = problem
                log.error("%s", problem)
                return 2
            self._process(frame, (time.perf_counter() - waited) * 1e3)
            if self._unstored and time.monotonic() >= self._retry_at:
                self._store_held()
        return 0

    def _roi_problem(self, frame) -> str | None:
        """Why the reader's region of interest cannot be read in frames like this first one, or None."""
        self._roi_checked = True
        roi = getattr(self.reader, "roi", None)
        if roi is None:
            return None
        try:
            crop_roi(check_frame(frame, self.settings.limits), roi)
        except ValueError as exc:
            return f"--roi {','.join(map(str, roi))}: {exc}; nothing would ever be read. Give one inside the frame."
        return None

    def _sleep_until(self, moment: float) -> None:
        while not self.stopping and (left := moment - time.monotonic()) > 0:
            time.sleep(min(left, self.settings.poll_s))

    def _process(self, frame, capture_ms: float) -> None:
        try:
            frame = check_frame(frame, self.settings.limits)
            with self.lock:
                reading = self.reader.read(frame)
        except Exception as exc:  # a frame the reader cannot take must not end a device's loop
            self.status.skipped += 1
            self.status.error = f"frame skipped: {type(exc).__name__}: {exc}"
            self._log_once(self.status.error, exc)
            return
        status = self.status
        status.error = None
        status.frames += 1
        status.times.append(time.monotonic())
        times = status.times
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        latency = {"capture": round(capture_ms, 3), **{k: round(v, 3) for k, v in reading.latency_ms.items()}}
        stable = self.stabilizer.update(reading.text)
        item = Frame(status.frames, frame, reading, now_iso(), fps, latency, self.stabilizer.stable)
        if stable is not None:
            record = self._record(item)
            for sink in self.sinks:
                self._deliver(sink, "on_reading", record, item)
        for sink in self.sinks:
            self._deliver(sink, "on_frame", item)

    def _record(self, item: Frame) -> dict:
        """Judge a stable reading, commit it (with its examples) to the history first; the sinks get the stored
        row. A suspect reading is stored but not queued for MQTT."""
        reading = item.reading_dict
        suspect = None
        crops = getattr(item.reading, "crops", None)
        held = {"reading": reading, "source": self.source_name, "model_sha256": self.model_sha256, "origin": "live",
                "time": item.time, "suspect": None, "crops": crops, "outbox": self._outbox}
        try:
            if self._unstored:
                self._store_held()
            if self.plausibility.active:
                previous = self.history.latest_value() if self.plausibility.compares else None
                suspect = self.plausibility.check(reading["text"], value_of(previous) if previous else None)
            held.update(suspect=suspect, outbox=self._outbox and suspect is None)
            if self._unstored:  # still failing: keep the order, this one waits behind the others
                raise OSError(self.status.history_error)
            record = self.history.add(**held, frame_jpeg=self._jpeg(item.image) if crops is not None else None)
        except Exception as exc:  # a full disk: the reading is still printed and shown, held, and stored later
            record = self._hold(held, exc)
        else:
            self.status.readings += 1
            self.status.history_error = None
        if suspect:
            log.warning("reading #%s %r is suspect: %s (stored, not published as the value)", record["id"],
                        reading["text"], suspect)
        return record

    def _hold(self, held: dict, exc: BaseException) -> dict:
        """Keep a reading the history could not store; the record the sinks get says so on the reading itself."""
        status = self.status
        status.history_error = str(exc)
        self._log_once(f"the readings history {self.history.path} failed: {type(exc).__name__}: {exc}", exc)
        self._unstored.append(held)
        if len(self._unstored) > self.settings.unstored_keep:
            self._unstored.popleft()
            status.unstored_dropped += 1
        status.unstored = len(self._unstored)
        self._retry_at = time.monotonic() + self.settings.retry_s
        warning = (f"not stored: {exc}. Held in memory with {status.unstored - 1} others (at most "
                   f"{self.settings.unstored_keep}; {status.unstored_dropped} dropped), stored once the history "
                   f"takes writes again")
        log.warning("reading %r %s", held["reading"]["text"], warning)
        reading = held["reading"]
        return {"id": None, "time": held["time"], "text": reading["text"], "digits": reading["digits"],
                "source": self.source_name, "origin": "live", "model_sha256": self.model_sha256,
                "suspect": held["suspect"], "corrected_text": None, "corrected_time": None, "stored": False,
                "warning": warning}

    def _store_held(self) -> None:
        """Store the held readings, oldest first, until one fails (the rest wait for the next attempt)."""
        while self._unstored:
            try:
                self.history.add(**self._unstored[0])
            except Exception as exc:
                self.status.history_error = str(exc)
                self._retry_at = time.monotonic() + self.settings.retry_s
                return
            self._unstored.popleft()
            self.status.readings += 1
            self.status.unstored = len(self._unstored)
        self.status.history_error = None
        log.warning("the readings history %s takes writes again: the held readings are stored", self.history.path)

    def _jpeg(self, image: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.settings.example_jpeg_quality])
        if not ok:
            raise ValueError(f"OpenCV could not encode a frame of shape {image.shape} as JPEG")
        return buf.tobytes()

    def corrected(self, record: dict) -> None:
        """Tell every sink that a stored reading was corrected (from the thread that took the correction)."""
        for sink in self.sinks:
            self._deliver(sink, "on_correction", record)

    def _deliver(self, sink: Sink, method: str, *args) -> None:
        try:
            getattr(sink, method)(*args)
        except Exception as exc:
            self._log_once(f"the {sink.name} output failed: {type(exc).__name__}: {exc}", exc)

    def _log_once(self, message: str, exc: BaseException) -> None:
        if message not in self._errors:
            self._errors.add(message)
            log.error("%s", message, exc_info=exc if not isinstance(exc, ValueError | OSError) else None)

    @property
    def fps(self) -> float | None:
        """Frames per second over the last frames; None until there are two, 0 once the source has stalled."""
        times = list(self.status.times)
        if len(times) < 2 or times[-1] == times[0]:
            return None
        if time.monotonic() - times[-1] > 5.0:  # s: no frame for this long: do not report a stale rate
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    # ------------------------------------------------------------------ in a thread (the web tests, embedding)
    def start(self) -> LiveLoop:
        """Run the loop in a daemon thread (signals stay with the caller); `stop()` ends it."""
        self._thread = threading.Thread(target=self.run, name="digitlite-live", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread started by `start()`, then close the sinks and the source."""
        self.request_stop("stopped")
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        """Close every sink, then the source (idempotent); the history is the owner's to close."""
        if self._closed:
            return
        self._closed = True
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.error("closing the %s output failed: %s: %s", sink.name, type(exc).__name__, exc)
        try:
            self.source.close()
        except Exception as exc:  # a broken camera must not stop the shutdown
            log.warning("closing the source %s failed: %s", self.source_name, exc)


# ---------------------------------------------------------------------------------------------- shutdown


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call `request_stop(signal name)` instead of killing the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def reload_on_sighup(request_reload: Callable[[], None]) -> Iterator[None]:
    """SIGHUP calls `request_reload()` (systemd's `reload`, `kill -HUP`), main thread only."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        yield
        return
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: request_reload())
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def run_until_stopped(loop: LiveLoop, server=None, keep_serving: bool = False) -> int:
    """Run `loop` in this (main) thread until its source ends, `max_frames`, SIGTERM or SIGINT; then shut down.

    Args:
        loop: the loop, its sinks and source.
        server: a `edge_app.web.server.WebServer` to serve in a thread meanwhile, stopped at the end.
        keep_serving: after the source ends, keep the server up until a signal (`serve --source`).

    Returns:
        The loop's exit code: 0 (ended, stopped), 1 (the source was lost for good), 2 (the region of interest is
        outside the frame).
    """
    code = 1
    with stop_on_signals(loop.request_stop), reload_on_sighup(loop.request_reload):
        try:
            if server is not None:
                server.start()
            code = loop.run()
            while keep_serving and server is not None and not loop.stopping:
                time.sleep(loop.settings.poll_s)
        finally:
            loop.close()  # sinks first: the video file is finalised, MQTT disconnected
            if server is not None:
                server.stop()
            loop.history.close()
    if loop.status.stop_reason:
        log.info("stopped (%s) after %d frames, %d readings", loop.status.stop_reason, loop.status.frames,
                 loop.status.readings)
    return code
