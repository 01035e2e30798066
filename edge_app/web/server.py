"""`digitlite serve` and the web view of `digitlite run --web`: the server around the web app.

`serve_main` builds the reader (`edge_app.cli.make_reader`, the one reader factory) and, with `--source`, the
same live loop `digitlite run` uses (`edge_app.cli.build_live`, with the web stream as one of its sinks);
`LiveWebView` is the web page of a reader, bound to its port before anything else starts; `WebServer` runs an
app on a socket it binds itself (so port 0 works and a busy port gives a clear error) and stops it cleanly,
streams included. The app itself is in `edge_app.web.app`; this module imports it, and so FastAPI and uvicorn,
only when a server starts, so that `digitlite serve --help` works without the `[web]` extra.

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

from digitlite import HelpFormatter
from edge_app.images import UPLOAD_LIMITS

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- defaults
HOST = "127.0.0.1"  # loopback only: reaching the camera from the network is a choice (--host 0.0.0.0)
PORT = 8080
MAX_FPS = 15.0  # live frames processed per second at most; a phone sees no difference above this
TOKEN_ENV = "DIGITLITE_TOKEN"  # the token can come from the environment, to keep it out of `ps`
SHUTDOWN_S = 3  # s uvicorn waits for open connections (a stream viewer) before closing them
MAX_CONNECTIONS = 64  # open connections at once (streams, uploads, page loads); more get a 503 from uvicorn


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
                                timeout_graceful_shutdown=SHUTDOWN_S, limit_concurrency=MAX_CONNECTIONS)
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


def _announce(server: WebServer, token: str | None, live: bool, out=sys.stdout) -> None:
    url = server.url if is_loopback(server.host) or server.host not in ("0.0.0.0", "::") else \
        f"http://<this device's address>:{server.port}/"
    print(f"digitlite web view on {url}{'?token=<token>' if token else ''}"
          f"{'' if live else ' (no live source: photo upload and drawing only; add --source for the stream)'}",
          file=out, flush=True)
    if not is_loopback(server.host) and not token:
        print(f"warning: listening on {server.host} without --token: anyone on the network can see the camera "
              f"and use the API. Set --token (or ${TOKEN_ENV}).", file=sys.stderr)
    print("Ctrl-C stops it.", file=out, flush=True)


class LiveWebView:
    """The web page of a reader: the app and its server (bound now), and `stream`, the sink a live loop feeds.

    Args:
        reader: from `edge_app.cli.make_reader` (its classifier also serves the drawing canvas).
        host, port, token: where the page listens and the token every route needs (None: open).
        limits: what an upload may be (`edge_app.images.ImageLimits`).
        history: the readings history, when there is no live loop to take it from (`attach`).
        log_level: uvicorn's log level.

    Raises:
        WebDependencyError: the `[web]` extra is not installed.
        OSError: the port cannot be bound (the message says what to do).
    """

    def __init__(self, reader, host: str = HOST, port: int = PORT, token: str | None = None, limits=UPLOAD_LIMITS,
                 history=None, log_level: str = "warning"):
        app_module = load_app_module()
        from edge_app.reader import annotate
        from edge_app.web.live import WebStream

        self.token = token
        self.stream = WebStream()
        self.state = app_module.WebState(classifier=reader.classifier, reader=reader, annotate=annotate,
                                         history=history, limits=limits)
        self.server = WebServer(app_module.create_app(self.state, token), host, port, log_level)

    def attach(self, loop) -> None:
        """Show `loop` (an `edge_app.live.LiveLoop` whose sinks include `self.stream`): its stream, status and
        history; uploads share its interpreter lock."""
        self.state.loop, self.state.stream, self.state.history, self.state.lock = (loop, self.stream, loop.history,
                                                                                  loop.lock)

    def announce(self, live: bool, out=sys.stdout) -> None:
        _announce(self.server, self.token, live, out)


def build_parser() -> argparse.ArgumentParser:
    from edge_app.cli import add_live_options, add_model_options, add_pixel_limit

    parser = argparse.ArgumentParser(
        prog="digitlite serve", formatter_class=HelpFormatter,
        description="Serve the web view: the live annotated stream, photo upload and a canvas to draw a digit, "
                    "with a JSON API (/api/read, /api/latest, /api/health; schema at /openapi.json). With --source, "
                    "the live loop of `digitlite run` runs under it (history, MQTT, video alike); the page stays "
                    "up after a finite source ends, until Ctrl-C or SIGTERM.")
    add_live_options(parser, source_default=None, max_fps=MAX_FPS)
    add_model_options(parser)
    parser.add_argument("--host", default=HOST,
                        help="address to listen on; 0.0.0.0 makes the page reachable from the network")
    parser.add_argument("--port", type=int, default=PORT, help="TCP port (0: any free port)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                        help=f"require this token on every request (?token=... in the page URL); default: "
                             f"${TOKEN_ENV}")
    parser.add_argument("--max-upload-mb", type=float, default=UPLOAD_LIMITS.max_bytes / 2**20,
                        help="largest upload accepted, MiB")
    add_pixel_limit(parser, UPLOAD_LIMITS.max_pixels)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="server log level")
    return parser


def _check(args: argparse.Namespace):
    """The upload limits of `args`; ValueError naming the option that is out of range."""
    from dataclasses import replace

    from edge_app.cli import check_live_options, limits_from_args

    check_live_options(args)
    if not args.max_upload_mb >= 0.01:
        raise ValueError(f"--max-upload-mb {args.max_upload_mb} is too small; it must be at least 0.01.")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is not a TCP port; use 1-65535 (or 0 for any free port).")
    if args.source is None:
        needs = [flag for flag, value in (("--mqtt", args.mqtt), ("--save", args.save),
                                          ("--max-frames", args.max_frames)) if value]
        if needs:
            raise ValueError(f"{', '.join(needs)} need a live source: add --source (e.g. --source picamera).")
    limits = limits_from_args(args, UPLOAD_LIMITS)
    return replace(limits, max_bytes=int(args.max_upload_mb * 2**20))


def serve_main(argv: list[str]) -> int:
    """`digitlite serve`: parse the options, build the reader (and the live loop with --source), serve until
    Ctrl-C or SIGTERM."""
    args = build_parser().parse_args(argv)
    try:
        limits = _check(args)
    except ValueError as exc:
        print(f"digitlite serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        load_app_module()
    except WebDependencyError as exc:
        print(f"digitlite serve: {exc}", file=sys.stderr)
        return 3
    from edge_app.cli import _model_errors, build_live, reader_from_args
    from edge_app.history import HistoryError, HistorySettings, ReadingStore
    from edge_app.live import run_until_stopped

    try:
        reader = reader_from_args(args)
    except (*_model_errors(), ImportError) as exc:
        print(f"digitlite serve: {exc}", file=sys.stderr)
        return 1
    if args.source is None:
        try:
            history = ReadingStore(args.history, HistorySettings(keep=args.history_keep))
            view = LiveWebView(reader, args.host, args.port, args.token, limits, history, args.log_level)
        except (HistoryError, OSError) as exc:
            print(f"digitlite serve: {exc}", file=sys.stderr)
            return 1
        view.announce(live=False)
        try:
            view.server.run()
        finally:
            history.close()
        return 0
    from edge_app.sources import open_source

    try:
        view = LiveWebView(reader, args.host, args.port, args.token, limits, log_level=args.log_level)
        source = open_source(args.source)
    except OSError as exc:  # a busy port, a camera that cannot be opened (SourceError)
        print(f"digitlite serve: {exc}", file=sys.stderr)
        return 1
    try:
        loop = build_live(args, reader, source, [view.stream], stdout=False)
    except (HistoryError, ValueError, ImportError) as exc:
        source.close()
        print(f"digitlite serve: {exc}", file=sys.stderr)
        return 1
    view.attach(loop)
    view.announce(live=True)
    return run_until_stopped(loop, view.server, keep_serving=True)
