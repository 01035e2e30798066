"""`digitlite serve` and the web view of `digitlite run --web`: the server around the web app.

`serve_main` builds the reader (`edge_app.cli.make_reader`, the one reader factory) and, with `--source`, the
same live loop `digitlite run` uses (`edge_app.cli.build_live`, with the web stream as one of its sinks);
`LiveWebView` is the web page of a reader, bound to its port before anything else starts; `WebServer` runs an
app on a socket it binds itself (so port 0 works and a busy port gives a clear error) and stops it cleanly,
streams included, under `ConnectionLimits`: uvicorn's keep-alive timeout and h11's header size limit, and,
where uvicorn has no setting (its keep-alive timer is reset by every byte, so a client trickling headers is
never closed), its h11 protocol extended by `limited_protocol` with a header deadline and caps on connections
per client address and in all, that evict the oldest connection still waiting for its request rather than
refuse a new one: idle sockets, however many, never lock the owner out. The app itself is in `edge_app.web.app`;
this module imports it, and so FastAPI and uvicorn, only when a server starts, so that `digitlite serve --help`
works without the `[web]` extra.

    digitlite serve --source synthetic --port 8080            # open http://127.0.0.1:8080/
    digitlite serve --host 0.0.0.0 --token "$(openssl rand -hex 8)"   # reachable from a phone on the LAN
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """What a connection may hold: a client that connects and sends nothing, or its headers a byte at a time, is
    closed; more connections than the caps evict the oldest one still waiting for its request."""

    header_s: float = 10.0  # s from connecting (or the end of the last response) to a request's complete headers
    keep_alive_s: int = 5  # s an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)
    header_bytes: int = 16 * 1024  # B of request line and headers at most (h11's max_incomplete_event_size)
    max_connections: int = 64  # open connections at once, all clients (streams, uploads, page loads)
    per_client: int = 16  # open connections from one address (a browser opens about 6)


CONNECTION_LIMITS = ConnectionLimits()
_BUSY_BODY = b'{"detail": "every connection is busy with a request; retry shortly."}'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"retry-after: 5\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


def limited_protocol(limits: ConnectionLimits):
    """uvicorn's h11 protocol with a header deadline and connection caps (see `ConnectionLimits`).

    A connection is *waiting* while no request of it is being handled (h11's client state IDLE: nothing sent,
    headers incomplete, or between keep-alive requests); the header deadline closes it when it waits longer
    than `header_s`, and a new connection over a cap closes the oldest waiting one of that address (per
    client) or of all (in all). Only when every connection over the cap is busy is the new one answered 503.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.evicted, self.header_timer, self.waiting_since = False, None, 0.0
            self._wait_for_headers()
            if not self._make_room():
                self.evicted = True
                transport.write(BUSY)
                transport.close()

        def _address(self):
            return self.client[0] if self.client else None

        def _waiting(self) -> bool:
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def _make_room(self) -> bool:
            """Evict waiting connections until this one fits under both caps; False when it cannot."""
            for same_client, cap in ((True, limits.per_client), (False, limits.max_connections)):
                group = [c for c in self.connections if not getattr(c, "evicted", False)
                         and (not same_client or c._address() == self._address())]
                excess = len(group) - cap
                if excess <= 0:
                    continue
                idle = sorted((c for c in group if c is not self and c._waiting()), key=lambda c: c.waiting_since)
                if len(idle) < excess:
                    return False
                for other in idle[:excess]:
                    other._close("a newer connection needed its place")
            return True

        def _close(self, why: str) -> None:
            self.evicted = True
            self._disarm()
            if not self.transport.is_closing():
                self.logger.debug("closing a connection from %s: %s", self._address(), why)
                self.transport.close()

        def _wait_for_headers(self) -> None:
            self._disarm()
            self.waiting_since = self.loop.time()
            self.header_timer = self.loop.call_later(limits.header_s, self._header_deadline)

        def _disarm(self) -> None:
            if getattr(self, "header_timer", None) is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _header_deadline(self) -> None:
            self.header_timer = None
            if self._waiting():
                self._close(f"no complete request headers within {limits.header_s:g} s")

        def handle_events(self) -> None:
            super().handle_events()
            if not self._waiting():
                self._disarm()  # a request is being handled: the body has its own limits (edge_app.web.app.Guard)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._waiting():
                self._wait_for_headers()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return LimitedH11Protocol


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
        limits: timeouts and caps of the connections (`ConnectionLimits`).
    """

    def __init__(self, app, host: str = HOST, port: int = PORT, log_level: str = "warning",
                 limits: ConnectionLimits = CONNECTION_LIMITS):
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
                                timeout_graceful_shutdown=SHUTDOWN_S, http=limited_protocol(limits),
                                timeout_keep_alive=limits.keep_alive_s,
                                h11_max_incomplete_event_size=limits.header_bytes)
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


def check_token(token: str | None) -> str | None:
    """The token, or ValueError for an empty one (it would silently turn authentication off)."""
    if token is not None and not token.strip():
        raise ValueError(f"--token {token!r} is empty: give a token (e.g. --token \"$(openssl rand -hex 8)\"), or "
                         f"leave --token out for a page without one (loopback only).")
    return token


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
    check_token(args.token)
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
