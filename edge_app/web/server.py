"""`digitlite serve` and `digitlite run --web`: the web view served by uvicorn, in the foreground or a thread.

This module owns starting and stopping the web server: `serve_main` parses `digitlite serve`'s options and
builds the classifier, reader and (optional) live source; `serve_live` is what `digitlite run --web` calls
with the reader and source it already has; `WebServer` runs an app on a socket it binds itself (so port 0
works and a busy port gives a clear error) and stops it cleanly, streams included. The app itself is in
`edge_app.web.app`; this module imports it, and so FastAPI and uvicorn, only when a server starts, so that
`digitlite serve --help` works without the `[web]` extra.

    digitlite serve --source synthetic --port 8080            # open http://127.0.0.1:8080/
    digitlite serve --host 0.0.0.0 --token "$(openssl rand -hex 8)"   # reachable from a phone on the LAN
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from digitlite import HelpFormatter
from edge_app.runtime import DEFAULT_MODEL, DEFAULT_THREADS
from edge_app.web.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- defaults
HOST = "127.0.0.1"  # loopback only: reaching the camera from the network is a choice (--host 0.0.0.0)
PORT = 8080
STABLE_FRAMES = 3  # frames a reading must repeat before it is the stable reading
MAX_FPS = 15.0  # live frames processed per second at most; a phone sees no difference above this
TOKEN_ENV = "DIGITLITE_TOKEN"  # the token can come from the environment, to keep it out of `ps`
SHUTDOWN_S = 3  # s uvicorn waits for open connections (a stream viewer) before closing them


class WebDependencyError(ImportError):
    """FastAPI, uvicorn or python-multipart is missing: the `[web]` extra is not installed."""


def load_app_module():
    """`edge_app.web.app`, or WebDependencyError naming the `[web]` extra."""
    try:
        import uvicorn  # noqa: F401

        from edge_app.web import app
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise WebDependencyError(f"the web view needs the [web] extra ({missing} is not installed): "
                                 f"pip install 'digitlite[web]'") from exc
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port).

    Raises:
        OSError: with a message naming the address and what to do when it is taken or not local.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve --host {host!r} ({exc}); use an address of this device such as "
                      f"127.0.0.1 (this device only) or 0.0.0.0 (every network interface)") from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({exc.strerror}): another server may be using the port, "
                      f"or the address is not this device's. Try --port {port + 1 if port else 8081}, or stop "
                      f"the other server.") from exc
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


class WebServer:
    """uvicorn serving one app on a socket bound here, in the foreground (`run`) or a thread (`start`/`stop`).

    Args:
        app: the ASGI app from `edge_app.web.app.create_app` (its `.state.closing` ends the streams).
        host: address to listen on.
        port: TCP port; 0 picks a free one (see `.port`).
        log_level: uvicorn's log level.
    """

    def __init__(self, app, host: str = HOST, port: int = PORT, log_level: str = "warning"):
        import uvicorn

        self.app, self.host = app, host
        self.sock = bind_socket(host, port)
        self.port = int(self.sock.getsockname()[1])
        closing = app.state.closing

        class _Server(uvicorn.Server):
            def handle_exit(self, sig, frame):  # Ctrl-C / SIGTERM: end the endless streams first
                closing.set()
                super().handle_exit(sig, frame)

            @contextlib.contextmanager
            def capture_signals(self):
                # uvicorn re-raises the signal after its graceful shutdown; a server stopped on request has
                # done its job, so `digitlite serve` exits 0 (systemd, and `run --web` that continues).
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)

        # No access log: with --token, the stream's URL carries the token in its query string.
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=SHUTDOWN_S)
        self.server = _Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def run(self) -> None:
        """Serve until Ctrl-C or SIGTERM (uvicorn installs the handlers in the main thread)."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.app.state.closing.set()
            self.sock.close()

    def start(self, timeout: float = 30.0) -> WebServer:
        """Serve in a daemon thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="digitlite-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError(f"the web server did not start within {timeout:.0f} s on {self.url}")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.app.state.closing.set()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _announce(server: WebServer, token: str | None, live: bool) -> None:
    url = server.url if is_loopback(server.host) or server.host not in ("0.0.0.0", "::") else \
        f"http://<this device's address>:{server.port}/"
    print(f"digitlite web view on {url}{'?token=<token>' if token else ''}"
          f"{'' if live else ' (no live source: photo upload and drawing only; add --source for the stream)'}")
    if not is_loopback(server.host) and not token:
        print(f"warning: listening on {server.host} without --token: anyone on the network can see the camera "
              f"and use the API. Set --token (or ${TOKEN_ENV}).", file=sys.stderr)
    print("Ctrl-C stops it.")


def serve_live(reader, source, host: str = HOST, port: int = PORT, token: str | None = None,
               stable_frames: int = STABLE_FRAMES, max_fps: float = MAX_FPS, limits=None,
               log_level: str = "warning") -> int:
    """Serve the web view over a live source until Ctrl-C; what `digitlite run --web` calls.

    Args:
        reader: an `edge_app.reader.DigitReader` (its classifier also serves the drawing canvas).
        source: an opened frame source (`edge_app.sources.open_source`); closed on return.
        host: address to listen on (127.0.0.1: this device only).
        port: TCP port.
        token: when set, every route needs it.
        stable_frames: frames a reading must repeat before it is the stable reading.
        max_fps: live frames processed per second at most.
        limits: `edge_app.web.uploads.UploadLimits` for uploads (default: the module's defaults).
        log_level: uvicorn's log level.

    Returns:
        0 after a clean stop; 1 when the port cannot be bound.

    Raises:
        WebDependencyError: the `[web]` extra is not installed.
    """
    app_module = load_app_module()
    from edge_app.reader import annotate
    from edge_app.web.live import LiveFeed
    from edge_app.web.uploads import UploadLimits

    classifier = getattr(reader, "classifier", None)
    if classifier is None:
        raise TypeError(f"serve_live needs a reader with a .classifier (for the drawing canvas); got "
                        f"{type(reader).__name__}. Pass an edge_app.reader.DigitReader.")
    state = app_module.WebState(classifier=classifier, reader=reader, annotate=annotate,
                                limits=limits or UploadLimits())
    state.feed = LiveFeed(reader, source, annotate, lock=state.lock, stable_frames=stable_frames,
                          history=state.history, max_fps=max_fps, name=_describe(source))
    try:
        server = WebServer(app_module.create_app(state, token), host, port, log_level)
    except OSError as exc:
        print(f"digitlite: {exc}", file=sys.stderr)
        _close(source)
        return 1
    state.feed.start()
    _announce(server, token, live=True)
    try:
        server.run()
    finally:
        state.feed.stop()
    return 0


def _describe(source) -> str:
    for name in ("description", "describe", "name", "spec"):
        value = getattr(source, name, None)
        value = value() if callable(value) else value
        if value:
            return str(value)
    return type(source).__name__


def _close(source) -> None:
    close = getattr(source, "close", None)
    if close is not None:
        close()


def build_parser() -> argparse.ArgumentParser:
    from edge_app.sources import SOURCE_HELP

    parser = argparse.ArgumentParser(
        prog="digitlite serve", formatter_class=HelpFormatter,
        description="Serve the web view: the live annotated stream, photo upload and a canvas to draw a digit, "
                    "with a JSON API (/api/read, /api/latest, /api/health; schema at /openapi.json).")
    parser.add_argument("--source", default=None,
                        help="live frame source, as for `digitlite run`: " + SOURCE_HELP + ". Without it the page "
                             "offers photo upload and drawing only.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="the .tflite model; by default the int8 model installed with digitlite")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="interpreter (XNNPACK) threads")
    parser.add_argument("--host", default=HOST,
                        help="address to listen on; 0.0.0.0 makes the page reachable from the network")
    parser.add_argument("--port", type=int, default=PORT, help="TCP port (0: any free port)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                        help=f"require this token on every request (?token=... in the page URL); default: "
                             f"${TOKEN_ENV}")
    parser.add_argument("--stable-frames", type=int, default=STABLE_FRAMES,
                        help="frames a reading must repeat before it is shown as the stable reading")
    parser.add_argument("--max-fps", type=float, default=MAX_FPS, help="live frames processed per second at most")
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20,
                        help="largest upload accepted, MiB")
    parser.add_argument("--max-megapixels", type=float, default=MAX_UPLOAD_PIXELS / 1e6,
                        help="largest image accepted, in decoded megapixels (refused before decoding)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="server log level")
    return parser


def serve_main(argv: list[str]) -> int:
    """`digitlite serve`: parse the options, build the classifier, reader and source, serve until Ctrl-C."""
    args = build_parser().parse_args(argv)
    for name, value, low in (("--stable-frames", args.stable_frames, 1), ("--threads", args.threads, 1),
                             ("--max-upload-mb", args.max_upload_mb, 0.01), ("--max-megapixels",
                                                                             args.max_megapixels, 0.01)):
        if value < low:
            print(f"digitlite serve: {name} {value} is too small; it must be at least {low}.", file=sys.stderr)
            return 2
    if not 0 <= args.port <= 65535:
        print(f"digitlite serve: --port {args.port} is not a TCP port; use 1-65535 (or 0 for any free port).",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        app_module = load_app_module()
    except WebDependencyError as exc:
        print(f"digitlite serve: {exc}", file=sys.stderr)
        return 3
    from edge_app.reader import DigitReader, annotate
    from edge_app.runtime import Classifier, ModelError
    from edge_app.web.uploads import UploadLimits

    try:
        classifier = Classifier(args.model, threads=args.threads)
    except (ModelError, ImportError) as exc:
        print(f"digitlite serve: {exc}", file=sys.stderr)
        return 1
    reader = DigitReader(classifier)
    limits = UploadLimits(max_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6))
    if args.source is not None:
        from edge_app.sources import open_source

        try:
            source = open_source(args.source)
        except (ValueError, OSError) as exc:
            print(f"digitlite serve: {exc}", file=sys.stderr)
            return 1
        return serve_live(reader, source, args.host, args.port, args.token, args.stable_frames, args.max_fps,
                          limits, args.log_level)
    state = app_module.WebState(classifier=classifier, reader=reader, annotate=annotate, limits=limits)
    try:
        server = WebServer(app_module.create_app(state, args.token), args.host, args.port, args.log_level)
    except OSError as exc:
        print(f"digitlite serve: {exc}", file=sys.stderr)
        return 1
    _announce(server, args.token, live=False)
    server.run()
    return 0
