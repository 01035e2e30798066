"""`digitlite serve` and the web view of `digitlite run --web`: the server around the web app.

`serve_main` builds the reader (`edge_app.wiring.make_reader`, the one reader factory) and, with `--source`, the
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

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time

from edge_app.config import CONNECTION_LIMITS, HOST, PORT, UPLOAD_LIMITS, ConnectionLimits
from edge_app.web.guard import limited_protocol

log = logging.getLogger(__name__)

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


def resolve_token(given: str | None, environ=None) -> str | None:
    """The page's token: `given` (--token), else $DIGITLITE_TOKEN, else None (no token). An empty one is refused
    from either place: an empty variable (a secret that did not expand) would silently turn authentication off.

    Raises:
        ValueError: an empty --token or $DIGITLITE_TOKEN, with how to fix it.
    """
    if given is not None:
        return check_token(given)
    token = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise ValueError(f"${TOKEN_ENV} is set but empty: give a token (export {TOKEN_ENV}=\"$(openssl rand -hex "
                         f"8)\"), or unset it (`unset {TOKEN_ENV}`) for a page without one (loopback only).")
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
        reader: from `edge_app.wiring.make_reader` (its classifier also serves the drawing canvas).
        host, port, token: where the page listens and the token every route needs (None: open).
        limits: what an upload may be (`edge_app.read.images.ImageLimits`).
        history: the readings history, when there is no live loop to take it from (`attach`).
        log_level: uvicorn's log level.

    Raises:
        WebDependencyError: the `[web]` extra is not installed.
        OSError: the port cannot be bound (the message says what to do).
    """

    def __init__(self, reader, host: str = HOST, port: int = PORT, token: str | None = None, limits=UPLOAD_LIMITS,
                 history=None, log_level: str = "warning"):
        app_module = load_app_module()
        from edge_app.read import annotate
        from edge_app.web.stream import WebStream

        self.token = token
        self.stream = WebStream()
        self.state = app_module.WebState(classifier=reader.classifier, reader=reader, annotate=annotate,
                                         history=history, limits=limits)
        self.server = WebServer(app_module.create_app(self.state, token), host, port, log_level)

    def attach(self, loop) -> None:
        """Show `loop` (an `edge_app.live.loop.LiveLoop` whose sinks include `self.stream`): its stream, status and
        history; uploads share its interpreter lock."""
        self.state.loop, self.state.stream, self.state.history, self.state.lock = (loop, self.stream, loop.history,
                                                                                  loop.lock)

    def announce(self, live: bool, out=sys.stdout) -> None:
        _announce(self.server, self.token, live, out)
