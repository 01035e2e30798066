"""The web view's FastAPI application: routes, OpenAPI schema, token check and request-body limit.

Routes (all behind the token when one is set):

    GET  /                 the page (static/index.html; static/app.js and static/style.css under /static)
    GET  /stream.mjpg      the live annotated stream (MJPEG), when a live source runs
    GET  /snapshot.jpg     the newest annotated frame
    POST /api/read         an image (multipart field `file`, or the raw body) -> the numbers read
    POST /api/digit        a drawing of one digit -> the prediction and its top-3 probabilities
    POST /api/table        an image of a ruled table (a mark sheet) -> its rows and cells, read cell by cell, and CSV
    GET  /api/latest       the stable live reading and the last readings, with times
    GET  /api/value        the value: the last stable reading that is plausible (or corrected), time, confidence
    GET  /api/history      the stored readings since a time (?since=15m or an ISO time), oldest first
    POST /api/readings/{id}/correction   what a stored reading really reads: its regions become labelled examples
    GET  /api/health       model, runtime, frame rate, limits
    GET  /openapi.json     the schema

`create_app` builds the app around objects made elsewhere (classifier, reader, live feed), so tests can
serve it on a free port. Needs the `[web]` extra (fastapi, uvicorn, python-multipart).

    digitlite serve --source synthetic     # edge_app.web.server builds this app and runs it with uvicorn
"""

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

try:
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
except ImportError as exc:  # pragma: no cover - exercised on devices without the extra
    raise ImportError(f"the web view needs the [web] extra ({exc.name} is not installed): "
                      f"pip install 'digitlite[web]'") from exc

import cv2

from edge_app.config import EXAMPLE_JPEG_QUALITY, UPLOAD_LIMITS, BodyLimits, ImageLimits
from edge_app.read.images import ImageError, decode_image
from edge_app.runtime import top_k
from edge_app.store.history import (
    MAX_CORRECTION_CHARS,
    MAX_READING_ID,
    HistoryError,
    ReadingStore,
    now_iso,
    parse_since,
    value_of,
)
from edge_app.web.guard import MULTIPART_OVERHEAD, Guard, Lanes
from edge_app.web.uploads import ACCEPTED_TYPES, UploadError, check_content_type, drawing_to_crop, encode_jpeg

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_STREAM_CLIENTS = 8  # concurrent MJPEG viewers; each is cheap (one JPEG per frame is shared) but not free
STREAM_POLL_S = 0.02  # s between checks for a new frame in a stream (a 15 fps source makes one every 67 ms)
ANNOTATED_SIDE = 1280  # px: long side of the annotated image sent back for an upload
TOP_K = 3
HISTORY_ITEMS = 20  # readings listed by /api/latest (from the readings history)
HISTORY_LIMIT = 10_000  # readings /api/history returns at most in one answer (?limit=)


PAGE_HEADERS = {
    # The page loads only its own files; the token in its URL is never sent to another site.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


# ---------------------------------------------------------------------------------------------- schema


class Problem(BaseModel):
    detail: str = Field(description="what was received, what is accepted, and how to fix it")


class DigitOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    digit: int = Field(ge=0, le=9)
    confidence: float = Field(ge=0, le=1)
    box: list[int] = Field(description="x, y, width, height in pixels of the (EXIF-rotated, reduced) image")


class ReadingOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str = Field(description="the numbers read, left to right and top to bottom")
    digits: list[DigitOut]
    latency_ms: dict[str, float] = Field(default_factory=dict)
    time: str | None = Field(None, description="when it was read, ISO 8601")
    origin: str | None = Field(None, description="'live' (the camera) or 'upload'")


class ReadResult(ReadingOut):
    image: dict[str, int] = Field(description="width and height of the image that was read")
    id: int | None = Field(None, description="its id in the readings history (POST api/readings/{id}/correction); "
                                             "null when the history could not store it (see warning)")
    warning: str | None = Field(None, description="why the reading was not stored (a full or read-only disk)")
    annotated_jpeg: str | None = Field(None, description="data: URL of the annotated image (with ?annotate=true)")


class Probability(BaseModel):
    digit: int = Field(ge=0, le=9)
    probability: float = Field(ge=0, le=1)


class TableCellOut(BaseModel):
    value: str = Field(description="the cell as in the CSV: '37', '37?' (unsure), '[text]' (not a number), or ''")
    state: str = Field(description="number, unsure, text, empty, or merged (covered by the cell above or left)")
    text: str = Field(description="the digits read")
    confidence: float = Field(ge=0, le=1, description="the least sure digit's confidence")
    box: list[int] = Field(description="x, y, width, height in pixels of the (EXIF-rotated, reduced) image")
    span: list[int] = Field(description="rows and columns the cell covers")


class TableResult(BaseModel):
    rows: int
    columns: int
    values: list[list[str]] = Field(description="each cell's value, row by row")
    cells: list[list[TableCellOut]]
    corners: list[list[float]] = Field(description="the table's corners in the image, clockwise from top left")
    csv: str = Field(description="the table as CSV text")
    image: dict[str, int] = Field(description="width and height of the image that was read")
    latency_ms: dict[str, float]
    annotated_jpeg: str | None = Field(None, description="data: URL of the image with the grid drawn "
                                                         "(with ?annotate=true)")


class DigitResult(BaseModel):
    digit: int = Field(ge=0, le=9)
    confidence: float = Field(ge=0, le=1)
    top3: list[Probability]
    crop_png: str = Field(description="data: URL of the 28x28 crop the model saw (white on black, as MNIST)")
    latency_ms: dict[str, float]


class HistoryItem(BaseModel):
    id: int | None = Field(None, description="the reading's id in the device's readings history")
    text: str = Field(description="what the reader read")
    time: str
    origin: str
    suspect: str | None = Field(None, description="why the plausibility check refused it as the value")
    corrected_text: str | None = Field(None, description="what a user said it reads (the original stays in text)")


class Stable(BaseModel):
    text: str = Field(description="the text read on the last stable_frames frames in a row ('' for none)")
    since: str | None
    id: int | None = Field(None, description="its id in the readings history")
    suspect: str | None = Field(None, description="why it is not the value (the plausibility check), or null")


class Value(BaseModel):
    value: str = Field(description="the reading's text, or its correction when a user corrected it")
    time: str = Field(description="when it was read, ISO 8601 UTC")
    confidence: float = Field(ge=0, le=1, description="the lowest confidence of its digits")
    id: int = Field(description="its id in the readings history")
    corrected: bool = Field(description="a user corrected it")
    origin: str = Field(description="'live' (the camera) or 'upload'")


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    time: str
    text: str = Field(description="what the reader read")
    value: str = Field(description="text, or the correction when there is one")
    corrected_text: str | None
    corrected_time: str | None
    suspect: str | None = Field(description="why the plausibility check refused it as the value, or null")
    digits: list[DigitOut]
    source: str
    origin: str
    model_sha256: str


class History(BaseModel):
    since: str | None = Field(description="the start of the period, ISO 8601 UTC (null: everything)")
    count: int
    readings: list[Record] = Field(description="oldest first")


class CorrectionIn(BaseModel):
    text: str = Field(description="what the reading really reads: digits, numbers separated by a space",
                      examples=["4509", "12 07"], max_length=MAX_CORRECTION_CHARS)


class Examples(BaseModel):
    crops: int = Field(description="crops kept with the reading: the recognizer's 32x256 input of each number "
                                   "region (0: none kept)")
    kind: str | None = Field(None, description='"regions" (one per number), "digits" (28x28, one per digit: a '
                                               'reading stored before reader v3), null: none kept')
    labelled: bool = Field(description="the regions are labelled, each with its number of the correction (when "
                                       "the counts agree)")
    frame: bool = Field(description="the frame is kept (for `digitlite eval`)")


class Corrected(Record):
    examples: Examples


class Latest(BaseModel):
    live: bool = Field(description="a live source is configured")
    stable: Stable | None
    reading: ReadingOut | None = Field(description="the newest reading, from the camera or an upload")
    history: list[HistoryItem] = Field(description="the last stable readings and uploads, newest first")


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str
    model: dict
    runtime: dict
    fps: float | None = Field(description="frames per second of the live loop; null without a live source")
    live: dict | None
    history: dict = Field(description="ok: readings are being stored; error: why not (a full or read-only disk); "
                                      "unstored: stable readings held in memory until they can be; in_memory: the "
                                      "history could not be written at start, this run's readings are in memory "
                                      "only")
    limits: dict[str, int]
    models: dict = Field(default_factory=dict,
                         description="bundle: the active model bundle's version (null: the models installed with "
                                     "digitlite); loaded: the bundle the reader loaded; signer: who signed the "
                                     "active bundle ({trusted, key_id, name, describe}); fallback: why older models "
                                     "read (the active bundle could not be loaded; status is then degraded), else "
                                     "null; recognizer_sha256: the model behind new readings; last_update: "
                                     "the outcome of the last install, activation or rollback")
    time: str


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "an image: multipart/form-data with the field `file` (what the page and "
                       "`curl -F file=@photo.jpg` send), or the raw bytes with an image Content-Type",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}}}},
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in ACCEPTED_TYPES},
        },
    }
}
ERRORS = {code: {"model": Problem, "description": text} for code, text in {
    400: "not a decodable image, or a malformed body", 401: "missing or wrong token",
    413: "too many bytes or pixels", 415: "a content type that is not an accepted image type",
    422: "no image in the body, a blank drawing, no ruled table (api/table), or an invalid query parameter"}.items()}


# ---------------------------------------------------------------------------------------------- app


@dataclass
class WebState:
    """What the routes work with. `lock` serialises every call into the interpreter (the live loop shares it)."""

    classifier: object  # edge_app.runtime.Classifier
    reader: object  # has .read(frame_bgr) -> reading with .to_dict()
    annotate: Callable  # annotate(frame_bgr, reading) -> frame_bgr
    history: ReadingStore  # the readings history: uploads are recorded, /api/latest lists the last ones
    loop: object | None = None  # edge_app.live.loop.LiveLoop, when a live source runs
    stream: object | None = None  # edge_app.web.stream.WebStream, that loop's web sink
    limits: ImageLimits = UPLOAD_LIMITS
    body: BodyLimits = field(default_factory=BodyLimits)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)  # set on shutdown: streams end
    stream_clients: int = 0
    last_upload: dict | None = None
    lanes: Lanes | None = None  # the upload slots, made from `body` by create_app

    def __post_init__(self):
        self.lanes = self.lanes or Lanes(self.body)

    @property
    def model_sha256(self) -> str:
        """The model behind a reading, as the live loop stores it: the reader's recognizer (`DigitReader.integrity`)."""
        integrity = getattr(self.reader, "integrity", None)
        return (integrity or self.classifier.integrity).sha256


async def _image_from_request(request: Request) -> bytes:
    """The uploaded image's bytes, from a multipart field `file` or a raw image body; content type checked."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
        except HTTPException as exc:
            raise HTTPException(400, f"malformed multipart body: {exc.detail}") from exc
        except Exception as exc:  # the multipart parser on hostile input: any failure is the client's
            raise HTTPException(400, f"malformed multipart body: {type(exc).__name__}: {exc}") from exc
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                fields = ", ".join(repr(k) for k in form.keys()) or "none"
                raise HTTPException(422, f"no file in the form field 'file' (fields received: {fields}); send "
                                         f"the image as multipart/form-data field 'file', e.g. "
                                         f"curl -F file=@photo.jpg URL")
            check_content_type(upload.content_type)
            return await upload.read()
        finally:
            await form.close()
    if media_type.startswith("image/") or media_type in ("", "application/octet-stream"):
        check_content_type(media_type)
        return await request.body()
    raise UploadError(415, f"content type {media_type!r} is not accepted; send multipart/form-data with the "
                           f"field 'file', or the raw image with one of {', '.join(ACCEPTED_TYPES)}.")


def create_app(state: WebState, token: str | None = None) -> FastAPI:
    """The FastAPI app serving the page and the API around `state`.

    Args:
        state: classifier, reader, annotate function, optional live feed, upload limits.
        token: when set, every route needs it (see `Guard`).

    Returns:
        An ASGI app (FastAPI wrapped in `Guard`) with `.state` set to `state` and `.fastapi` the inner app.
    """
    api = FastAPI(
        title="digitlite",
        description="Reads handwritten numbers on this device: live camera stream, photo upload, drawn digits.",
        version=_version(),
        docs_url=None,  # Swagger UI loads its scripts from a CDN, which a device on a closed network cannot
        redoc_url=None,  # reach; the schema itself is at /openapi.json
    )
    api.state.web = state

    @api.exception_handler(ImageError)
    async def upload_error(request: Request, exc: ImageError):
        return Response(json.dumps({"detail": exc.message}), status_code=exc.status, media_type="application/json")

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's own handler echoes the body back and fails (500) on one that is not UTF-8: name the problems.
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                             for e in exc.errors())
        return Response(json.dumps({"detail": f"invalid request: {problems}"}), status_code=422,
                        media_type="application/json")

    page_html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @api.get("/", include_in_schema=False)
    def page(request: Request):
        html = page_html
        given = request.query_params.get("token")
        if token and given:
            # <script src> and <link href> cannot send a header: the page's files carry the token in their URL.
            suffix = "?token=" + quote(given, safe="")
            html = html.replace('"static/app.js"', f'"static/app.js{suffix}"')
            html = html.replace('"static/style.css"', f'"static/style.css{suffix}"')
        return HTMLResponse(html, headers=PAGE_HEADERS)

    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @api.get("/api/health", response_model=Health, summary="model, runtime and frame rate")
    def health():
        info = state.classifier.info
        model = {"path": info.path, "name": Path(info.path).name, "input_dtype": info.input_dtype,
                 "pixels_from": info.pixels_from}
        loop = state.loop
        off = loop.status.history_off if loop else None  # a history that could not be written at start
        storing = {"ok": state.history.last_error is None and not (loop and loop.status.history_error) and not off,
                   "error": (loop.status.history_error if loop else None) or state.history.last_error or off,
                   "in_memory": bool(off),
                   "unstored": loop.status.unstored if loop else 0,
                   "unstored_dropped": loop.status.unstored_dropped if loop else 0}
        models = _models_status(state)
        healthy = storing["ok"] and (loop is None or not loop.status.error) and not models["fallback"]
        return {"status": "ok" if healthy else "degraded", "model": model,
                "runtime": _asdict(state.classifier.runtime), "fps": loop.fps if loop else None,
                "live": _live_status(loop) if loop else None, "history": storing,
                "limits": {"max_upload_bytes": state.limits.max_bytes, "max_pixels": state.limits.max_pixels},
                "models": models, "time": now_iso()}

    @api.get("/api/latest", response_model=Latest, summary="the stable live reading and the last readings")
    async def latest():
        stream = state.stream
        candidates = [r for r in (stream.latest_reading() if stream else None, state.last_upload) if r]
        reading = max(candidates, key=lambda r: r["time"]) if candidates else None
        history = await run_in_threadpool(state.history.recent, HISTORY_ITEMS)
        return {"live": stream is not None, "stable": stream.stable() if stream else None, "reading": reading,
                "history": history}

    @api.get("/api/value", response_model=Value, responses={404: {"model": Problem}},
             summary="the value: the last stable reading that is plausible, or corrected, with its time and "
                     "confidence")
    async def value():
        record = await run_in_threadpool(state.history.latest_value, "live" if state.loop is not None else None)
        if record is None:
            raise HTTPException(404, "no reading yet: the device has stored no plausible stable reading.")
        return {"value": value_of(record), "time": record["time"],
                "confidence": min((d["confidence"] for d in record["digits"]), default=0.0), "id": record["id"],
                "corrected": record["corrected_text"] is not None, "origin": record["origin"]}

    @api.get("/api/history", response_model=History, responses={422: ERRORS[422]},
             summary="the stored readings since a time, oldest first")
    async def history(since: str | None = Query(None, description="15m, 2h, 7d (ago), or an ISO 8601 date or time "
                                                                  "(UTC unless it has an offset); none: all"),
                      limit: int = Query(1000, ge=1, le=HISTORY_LIMIT, description="at most this many")):
        try:
            start = parse_since(since, utc_default=True) if since else None
        except ValueError as exc:
            raise HTTPException(422, str(exc).replace("--since", "since")) from None
        records = await run_in_threadpool(state.history.since, start, limit)
        return {"since": start, "count": len(records), "readings": [{**r, "value": value_of(r)} for r in records]}

    @api.post("/api/readings/{reading_id}/correction", response_model=Corrected,
              responses={404: {"model": Problem}, 422: ERRORS[422]},
              summary="correct a stored reading: the original stays, its regions become labelled examples")
    async def correction(body: CorrectionIn,
                         reading_id: int = PathParam(ge=1, le=MAX_READING_ID, description="the reading's id")):
        try:
            record = await run_in_threadpool(state.history.correct, reading_id, body.text)
        except KeyError:
            raise HTTPException(404, f"no reading #{reading_id} in the history; GET api/history lists them.") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except HistoryError as exc:  # a full or read-only disk: nothing was changed
            raise HTTPException(503, f"{exc} The correction was not stored; send it again later.",
                                headers={"Retry-After": "30"}) from None
        if state.loop is not None:
            await run_in_threadpool(state.loop.corrected, record)  # Home Assistant's state may change
        return {**record, "value": value_of(record)}

    @api.post("/api/read", response_model=ReadResult, responses=ERRORS, openapi_extra=UPLOAD_BODY,
              summary="read the numbers in an image")
    async def read(request: Request, annotate: bool = Query(False, description="include the annotated image")):
        data = await _image_from_request(request)
        async with state.lanes.slot(data, state.limits):  # bounds the memory and CPU of decoding and reading
            return await run_in_threadpool(_read_image, state, data, annotate)

    @api.post("/api/table", response_model=TableResult, responses=ERRORS, openapi_extra=UPLOAD_BODY,
              summary="read the ruled table in an image, cell by cell")
    async def table(request: Request, annotate: bool = Query(False, description="include the image with the grid")):
        data = await _image_from_request(request)
        async with state.lanes.slot(data, state.limits):
            return await run_in_threadpool(_read_table, state, data, annotate)

    @api.post("/api/digit", response_model=DigitResult, responses=ERRORS, openapi_extra=UPLOAD_BODY,
              summary="classify a drawing of one digit")
    async def digit(request: Request):
        data = await _image_from_request(request)
        async with state.lanes.slot(data, state.limits):
            return await run_in_threadpool(_classify_drawing, state, data)

    @api.get("/snapshot.jpg", responses={404: {"model": Problem}}, summary="the newest annotated frame",
             response_class=Response)
    def snapshot():
        _, jpeg = _stream_or_404(state).latest_jpeg()
        if jpeg is None:
            raise HTTPException(503, "no frame yet: the live source has not delivered one; try again shortly.")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @api.get("/stream.mjpg", responses={404: {"model": Problem}, 503: {"model": Problem}},
             summary="the live annotated stream (multipart/x-mixed-replace JPEGs)", response_class=StreamingResponse)
    async def stream():  # on the event loop, like the generator that counts the viewers
        stream = _stream_or_404(state)
        if state.stream_clients >= MAX_STREAM_CLIENTS:
            raise HTTPException(503, f"{state.stream_clients} viewers are watching already (the limit is "
                                     f"{MAX_STREAM_CLIENTS}); close another tab and reload.",
                                headers={"Retry-After": "5"})
        return StreamingResponse(_mjpeg(state, stream), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    app = Guard(api, token, state.limits.max_bytes + MULTIPART_OVERHEAD, state.body, state.closing)
    app.state = state
    app.fastapi = api
    return app


def _asdict(obj) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else {"name": str(obj)}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("digitlite")
    except Exception:
        return "0"


def _stream_or_404(state: WebState):
    if state.stream is None:
        raise HTTPException(404, "no live source: start the server with --source (picamera2, a camera index, "
                                 "a video file or URL, or synthetic) to see the stream.")
    return state.stream


def _models_status(state: WebState) -> dict:
    """Which models read: the active bundle (`digitlite models`), who signed it, the recognizer's sha256, the last
    update, and why older models read when the active ones could not be loaded (`fallback`)."""
    from edge_app.store.models import ModelStore

    store = ModelStore()
    version = store.pointer()["version"]
    try:
        signer = store.signer(version).to_dict() if version else None
    except (ValueError, OSError) as exc:  # the configuration or a trusted key cannot be read
        signer = {"trusted": False, "key_id": None, "name": None, "describe": f"unknown ({exc})"}
    return {"bundle": version, "loaded": getattr(state.reader, "bundle", None), "signer": signer,
            "fallback": getattr(state.reader, "fallback", None), "recognizer_sha256": state.model_sha256,
            "last_update": store.last_update()}


def _live_status(loop) -> dict:
    status = loop.status
    return {"source": loop.source_name, "running": loop.active, "ended": status.ended, "frames": status.frames,
            "readings": status.readings, "skipped": status.skipped,
            "fps": None if loop.fps is None else round(loop.fps, 2), "error": status.error,
            "stable_frames": loop.stabilizer.frames}


async def _mjpeg(state: WebState, stream):
    """multipart/x-mixed-replace parts, one per new frame, until the client leaves or the server stops.

    When the client disconnects, Starlette cancels this generator; the `finally` keeps the viewer count right.
    """
    state.stream_clients += 1
    try:
        sent = -1
        while not state.closing.is_set():
            number, jpeg = stream.latest_jpeg()
            if jpeg is None or number == sent:
                if state.loop is not None and not state.loop.active and jpeg is not None and number == sent:
                    return
                await asyncio.sleep(STREAM_POLL_S)
                continue
            sent = number
            yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                   + b"\r\n\r\n" + jpeg + b"\r\n")
    finally:
        state.stream_clients -= 1


def _read_image(state: WebState, data: bytes, annotate: bool) -> dict:
    started = time.perf_counter()
    frame = decode_image(data, state.limits)
    decode_ms = (time.perf_counter() - started) * 1000
    with state.lock:
        reading = state.reader.read(frame)
    result = reading.to_dict()
    result["latency_ms"] = {"decode": round(decode_ms, 2), **result.get("latency_ms", {})}
    result["time"], result["origin"] = now_iso(), "upload"
    result["image"] = {"width": int(frame.shape[1]), "height": int(frame.shape[0])}
    crops = getattr(reading, "crops", None)
    jpeg = encode_jpeg(frame, EXAMPLE_JPEG_QUALITY) if crops is not None else None
    try:
        result["id"] = state.history.add(result, "upload", state.model_sha256, origin="upload", time=result["time"],
                                         crops=crops, frame_jpeg=jpeg)["id"]
    except HistoryError as exc:  # a full or read-only disk: the reading is still answered, and says so
        log.warning("an upload's reading %r was not stored: %s", result["text"], exc)
        result["id"], result["warning"] = None, f"not stored: {exc}"
    state.last_upload = {k: v for k, v in result.items() if k != "image"}
    if annotate:
        jpeg = encode_jpeg(state.annotate(frame, reading), 85, max_side=ANNOTATED_SIDE)
        result["annotated_jpeg"] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return result


def _read_table(state: WebState, data: bytes, annotate: bool) -> dict:
    """An upload's ruled table read cell by cell (`edge_app.read.table`); 422 where it holds none. Not stored in
    the history: a table is not one reading."""
    from edge_app.read.table import TableError, TableReader, draw_table

    started = time.perf_counter()
    frame = decode_image(data, state.limits)
    decode_ms = (time.perf_counter() - started) * 1000
    try:
        with state.lock:
            table = TableReader(state.reader).read(frame)
    except TableError as exc:
        raise HTTPException(422, str(exc)) from None
    result = table.to_dict()
    result["csv"] = table.csv_text()
    result["latency_ms"] = {"decode": round(decode_ms, 2), **result["latency_ms"]}
    result["image"] = {"width": int(frame.shape[1]), "height": int(frame.shape[0])}
    if annotate:
        jpeg = encode_jpeg(draw_table(frame, table), 85, max_side=ANNOTATED_SIDE)
        result["annotated_jpeg"] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return result


def _classify_drawing(state: WebState, data: bytes) -> dict:
    started = time.perf_counter()
    frame = decode_image(data, state.limits)
    crop_28x28 = drawing_to_crop(frame)
    prepared = time.perf_counter()
    clf = state.classifier
    with state.lock:
        probabilities = clf.probabilities(clf.pixels_to_input(crop_28x28[None]))
    classified = time.perf_counter()
    best = top_k(probabilities, TOP_K)[0]
    ok, png = cv2.imencode(".png", crop_28x28)
    return {"digit": best[0][0], "confidence": round(best[0][1], 6),
            "top3": [{"digit": d, "probability": round(min(max(p, 0.0), 1.0), 6)} for d, p in best],
            "crop_png": "data:image/png;base64," + base64.b64encode(png.tobytes() if ok else b"").decode(),
            "latency_ms": {"prepare": round((prepared - started) * 1000, 2),
                           "classify": round((classified - prepared) * 1000, 2)}}
