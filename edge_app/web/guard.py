"""What a client may hold of the device's web server, so that no client, slow or hostile, locks out the others:

- `limited_protocol`: uvicorn's h11 protocol with a header deadline and caps on connections per client address
  and in all (`edge_app.config.ConnectionLimits`), evicting the oldest connection still waiting for its request
  rather than refusing a new one;
- `Guard`: the token check and the request bodies' limits (`edge_app.config.BodyLimits`): idle and total time,
  bytes held at once, uploads decoded at once in two lanes (`Lanes`), small ones never waiting behind large ones.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from urllib.parse import parse_qs

from edge_app.config import BodyLimits, ConnectionLimits, ImageLimits
from edge_app.read.images import header_pixels

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024  # bytes of multipart headers and boundaries allowed on top of the image
DRAIN_FACTOR = 4  # an oversized body up to this many times the limit is read and discarded before the 413,
#                   so that the client, still sending, receives the answer instead of a reset connection


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


def token_bytes(token: str) -> bytes:
    """The token as the bytes a request carries: UTF-8 (a command line's undecodable bytes kept as they were)."""
    return token.encode("utf-8", "surrogateescape")

class Guard:
    """ASGI middleware in front of every route: the token check, then the request body.

    The token is accepted as `Authorization: Bearer <token>`, an `X-Token` header, or a `token` query
    parameter (an <img> tag cannot send headers, so the MJPEG stream needs the query form), compared as bytes
    in constant time: a header's raw bytes, the query's percent-decoded bytes (a non-ASCII token is its UTF-8
    in both). No cookie: a request carries the token explicitly, so another site cannot make a browser send it
    (no CSRF). Websocket requests are checked alike (closed with 1008 before they are accepted); lifespan
    events pass.

    Bodies are read into memory up to `max_body` bytes before the app sees them; a larger one gets a 413
    without reaching the multipart parser or the decoder. A body must keep arriving (`BodyLimits.idle_s`) and
    be complete within `BodyLimits.total_s`, else 408; all bodies being received hold at most
    `BodyLimits.buffered_bytes` (else 503, retry); a body still arriving when the server shuts down is
    answered 503 (send it again) rather than cut off. Only a request whose body is in takes an upload slot
    (`Lanes`, in the routes): a client that sends slowly, or stops, delays no one else.
    """

    def __init__(self, app, token: str | None, max_body: int, body: BodyLimits = BodyLimits(),
                 closing: threading.Event | None = None):
        self.app, self.max_body, self.body = app, max_body, body
        self.token = token_bytes(token) if token else None
        self.closing = closing or threading.Event()
        self.buffered = 0  # bytes of bodies held right now (one event loop: no lock needed)

    def _token_problem(self, scope) -> str | None:
        if self.token is None:
            return None
        given: list[bytes] = []
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given.append(value[7:].strip())
            elif name == b"x-token":
                given.append(value.strip())
        # latin-1 maps each byte to one character and back: the percent-decoded bytes, whatever their encoding.
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), encoding="latin-1")
        given += [v.encode("latin-1") for v in query.get("token", [])]
        if any(hmac.compare_digest(g, self.token) for g in given):
            return None
        how = ("open the page as http://HOST:PORT/?token=<token>, or send the header "
               "'Authorization: Bearer <token>' (the token is the one given to `digitlite serve --token`).")
        return ("this server needs a token: " if not given else "wrong token: ") + how

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        problem = self._token_problem(scope)
        if problem and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": problem[:120]})  # policy violation
            return
        if problem:
            await _send_json(send, 401, problem, [(b"www-authenticate", b'Bearer realm="digitlite"')])
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _send_json(send, 400, f"Content-Length {declared[:40]!r} is not a number of bytes.")
            return
        if declared is not None and int(declared) > self.max_body:
            await self._refuse_large(receive, send, int(declared), 0)
            return
        held = [0]  # bytes of this body counted in self.buffered
        try:
            body = await self._receive_body(receive, send, held)
            if body is None:
                return  # answered (408, 413, 503) or the client left
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.buffered -= held[0]

    async def _receive_body(self, receive, send, held: list[int]) -> bytes | None:
        """The whole body, or None after answering: 408 (too slow), 413 (too large), 503 (memory budget, or the
        server shutting down)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body.total_s
        chunks, size, more = [], 0, True
        while more:
            idle_until = min(loop.time() + self.body.idle_s, deadline)
            pending = asyncio.ensure_future(receive())
            while not pending.done() and not self.closing.is_set() and loop.time() < idle_until:
                await asyncio.wait([pending], timeout=min(self.body.shutdown_poll_s, idle_until - loop.time()))
            if not pending.done():
                pending.cancel()
                if self.closing.is_set():
                    await _send_json(send, 503, f"the server is shutting down ({size} bytes of this body "
                                                f"received); send it again once it is back.",
                                     [(b"retry-after", b"5"), (b"connection", b"close")])
                    return None
                await _send_json(send, 408, f"the request body did not arrive in time ({size} bytes received; a "
                                            f"body must keep coming, with no pause over {self.body.idle_s:g} s, and "
                                            f"be complete within {self.body.total_s:g} s). Check the connection "
                                            f"and send it again.", [(b"connection", b"close")])
                return None
            message = pending.result()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_body:
                await self._refuse_large(receive, send, size, size, more)
                return None
            if self.buffered + len(chunk) > self.body.buffered_bytes:
                await _send_json(send, 503, f"the device is receiving {self.buffered / 1e6:.0f} MB of other uploads "
                                            f"right now; send this one again in a few seconds.",
                                 [(b"retry-after", b"5"), (b"connection", b"close")])
                return None
            self.buffered += len(chunk)
            held[0] += len(chunk)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _refuse_large(self, receive, send, size: int, read: int, more: bool = True) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body.total_s
        while more and read <= DRAIN_FACTOR * self.max_body and loop.time() < deadline:
            try:
                message = await asyncio.wait_for(receive(), self.body.idle_s)
            except TimeoutError:
                break
            if message["type"] == "http.disconnect":
                return
            read += len(message.get("body", b""))
            more = message.get("more_body", False)
        limit = self.max_body - MULTIPART_OVERHEAD
        await _send_json(send, 413, f"the request body is {max(size, read) / 1e6:.1f} MB or more; uploads are "
                                    f"limited to {limit / 1e6:.1f} MB. Send a smaller photo, or start the server "
                                    f"with a larger --max-upload-mb.", [(b"connection", b"close")])

class Lanes:
    """Upload slots by cost, taken once the body is in: `concurrent_small` for images of at most `small_pixels`
    (their header says so), `concurrent` for the rest. A queue of large images holds no small one up: a small
    upload waits at most for the interpreter's current read."""

    def __init__(self, body: BodyLimits):
        self.body = body
        self._lanes: dict[bool, asyncio.Semaphore] = {}  # made on first use, inside the server's event loop

    def slot(self, data: bytes, limits: ImageLimits) -> asyncio.Semaphore:
        pixels = header_pixels(data, limits)
        small = pixels is None or pixels <= self.body.small_pixels  # not an image: the decoder refuses it at once
        if small not in self._lanes:
            self._lanes[small] = asyncio.Semaphore(self.body.concurrent_small if small else self.body.concurrent)
        return self._lanes[small]

def _replay(body: bytes, receive):
    """An ASGI `receive` that gives the buffered body once, then waits for the disconnect as a server would."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_json(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
