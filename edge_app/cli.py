"""The command lines of the device: every `main()` of `digitlite read`, `run`, `serve`, `history`, `correct`,
`corrections`, `doctor` and `models`, and the only module of `edge_app` with argparse.

Each `*_main(argv) -> exit code` parses its options into the plain options of `edge_app.config`
(`ReaderOptions`, `LiveOptions`), lets `edge_app.wiring` build the reader and the loop, runs them, and says
what went wrong in one line (`_fail`), with an exit code of the one table, `digitlite.EXIT_CODES` (2: bad input
or options, a model or configuration it cannot use; 3: a missing extra). Defaults come from
`edge_app.config`; a TOML file's keys (`config.OPTIONS`) are checked against these parsers. TFLite's Pi
examples: `main()` parses, `run()` works. Never imports TensorFlow.

    digitlite read tests/data/golden/ --json
    digitlite run --source synthetic --headless --max-frames 30
    digitlite serve --source synthetic
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import fields, replace
from pathlib import Path

from digitlite import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_MISSING_EXTRA, EXIT_OK, EXIT_REFUSED, HelpFormatter
from edge_app import config
from edge_app.config import FILE_LIMITS, UPLOAD_LIMITS, HistorySettings, LiveOptions, ReaderOptions
from edge_app.live.sources import SOURCE_HELP
from edge_app.read.table import TEXT_MARK
from edge_app.runtime import DEFAULT_MODEL, DEFAULT_RECOGNIZER, DEFAULT_REGIONS, check_threads
from edge_app.store.corrections import describe, export
from edge_app.store.history import HistoryError, ReadingStore, default_history_path, parse_since, repair, write_records
from edge_app.wiring import MODEL_ERRORS, build_live, check_live, reader_from

log = logging.getLogger(__name__)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"digitlite {prog}", description=description, formatter_class=HelpFormatter)


def _fail(prog: str, exc: BaseException | str, code: int | None = None) -> int:
    """Say what went wrong in one line; the exit code of `digitlite.EXIT_CODES`: `code`, else 3 for a missing
    dependency (an ImportError: no LiteRT runtime, no paho-mqtt) and 2 for anything else (bad input)."""
    print(f"digitlite {prog}: {exc}", file=sys.stderr)
    if code is not None:
        return code
    return EXIT_MISSING_EXTRA if isinstance(exc, ImportError) else EXIT_BAD_INPUT


# ---------------------------------------------------------------------------------------------- the reader


def thread_count(text: str) -> int:
    """argparse `type=` for --threads: refuses what `check_threads` refuses, before anything loads."""
    try:
        return check_threads(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if "interpreter threads" in str(exc) else
                                         f"{text!r} is not an integer") from None


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options of `edge_app.config.ReaderOptions`, with its defaults."""
    d = ReaderOptions()
    parser.add_argument("--model", type=Path, default=d.model,
                        help="the .tflite digit classifier (single digits: the drawing canvas, `digitlite check`); "
                             f"by default the int8 model installed with digitlite ({DEFAULT_MODEL.name})")
    parser.add_argument("--threads", type=thread_count, default=d.threads, help="interpreter (XNNPACK) threads")
    parser.add_argument("--allow-unverified", action="store_true", default=d.allow_unverified,
                        help="use a model whose sha256 does not match its manifest entry, or that has none (your "
                             "own model); by default such a model is refused")
    parser.add_argument("--regions", type=Path, default=d.regions,
                        help="the .tflite region finder (where the numbers are); by default the installed one "
                             f"({DEFAULT_REGIONS.name})")
    parser.add_argument("--recognizer", type=Path, default=d.recognizer,
                        help="the .tflite number recognizer (what they say); by default the installed one "
                             f"({DEFAULT_RECOGNIZER.name})")
    parser.add_argument("--min-confidence", type=float, default=d.min_confidence,
                        help="numbers whose digits' mean confidence is below this are dropped")
    parser.add_argument("--roi", default=d.roi, help="read only this region: x,y,w,h in pixels")


def _options(cls, args: argparse.Namespace):
    """The `cls` dataclass (ReaderOptions, LiveOptions) of the parsed options."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def reader_from_args(args: argparse.Namespace):
    """The reader of the options `add_model_options` added (`edge_app.wiring.reader_from`)."""
    return reader_from(_options(ReaderOptions, args))


def _reloader(args: argparse.Namespace, web=None):
    """What the live loop calls on SIGHUP: the reader built anew (the active bundle's models), also for the page."""
    def reload():
        reader = reader_from_args(args)
        if web is not None:
            web.state.reader, web.state.classifier = reader, reader.classifier
        return reader

    return reload


# ---------------------------------------------------------------------------------------------- read


def _one_file(path: Path, what: str, work):
    """`work()` for one file: (its result, None), or (None, {"source", "error"}) saying why the file could not be
    read; the `what` (reader) failing on one file must not lose the others' results."""
    try:
        return work(), None
    except (OSError, ValueError) as exc:
        return None, {"source": str(path), "error": str(exc)}
    except Exception as exc:
        log.debug("the %s failed on %s", what, path, exc_info=exc)
        return None, {"source": str(path), "error": f"the {what} failed on this image ({type(exc).__name__}: {exc})"}


def read_file(path: Path, reader, limits=FILE_LIMITS) -> dict:
    """One file's result: the reading, or {"source", "error"} saying why this file could not be read."""
    from edge_app.read.images import read_image

    started = time.perf_counter()
    reading, failed = _one_file(path, "reader", lambda: reader.read(read_image(path, limits)))
    if failed:
        return failed
    stages = reading.to_dict()
    stage_ms = {"decode": round((time.perf_counter() - started) * 1e3 - reading.latency_ms["total"], 3),
                **stages.pop("latency_ms")}
    return {"source": str(path), **stages, "latency_ms": round((time.perf_counter() - started) * 1e3, 3),
            "stage_ms": stage_ms}


def read_files(paths: Iterable[Path], reader, limits=FILE_LIMITS) -> Iterator[dict]:
    """One result per file, each yielded as soon as that file is read."""
    for path in paths:
        yield read_file(path, reader, limits)


def _expand(paths: list[str]) -> list[Path]:
    from edge_app.live.sources import IMAGE_SUFFIXES

    out = []
    for p in map(Path, paths):
        out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p])
    return out


def add_pixel_limit(parser: argparse.ArgumentParser, default_pixels: int) -> None:
    parser.add_argument("--max-megapixels", type=float, default=default_pixels / 1e6,
                        help="largest image accepted, in decoded megapixels (refused before decoding)")


def limits_from_args(args: argparse.Namespace, base=FILE_LIMITS):
    """`base` with the --max-megapixels given; ValueError when it is not positive."""
    if not args.max_megapixels > 0:
        raise ValueError(f"--max-megapixels {args.max_megapixels}: give a positive number")
    return replace(base, max_pixels=int(args.max_megapixels * 1e6))


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
    elif "error" in result:
        print(f"{result['source']}: error: {result['error']}", flush=True)
    else:
        confidence = min((d["confidence"] for d in result["digits"]), default=0.0)
        print(f"{result['source']}: {result['text'] or '(nothing read)'}   [{len(result['digits'])} digits, lowest "
              f"confidence {confidence:.0%}, {result['latency_ms']:.1f} ms]", flush=True)


def read_main(argv: list[str]) -> int:
    parser = _parser("read", "Read the handwritten numbers in image files; each file's result is printed as soon "
                             "as it is read. Exit code 1 only if none could be read.")
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--json", action="store_true", help="one JSON object per image, per line")
    parser.add_argument("--table", type=Path, default=None, metavar="CSV",
                        help="read each image's ruled table cell by cell and write it as CSV: a number per cell, "
                             f"'37?' where unsure, {TEXT_MARK} for writing that is not a number (a printed header, "
                             "a name), empty cells empty; one image: this file; several: a folder of NAME.csv")
    add_pixel_limit(parser, FILE_LIMITS.max_pixels)
    add_model_options(parser)
    args = parser.parse_args(argv)
    try:
        limits = limits_from_args(args)
        paths = _expand(args.paths)
        outputs = table_outputs(paths, args.table) if args.table is not None else None
        reader = reader_from_args(args)
    except MODEL_ERRORS as exc:
        return _fail("read", exc)
    if outputs is not None:
        from edge_app.read.table import TableReader

        tables = TableReader(reader)
        results = (read_table_file(p, tables, out, limits) for p, out in zip(paths, outputs, strict=True))
        show = _print_table
    else:
        results, show = read_files(paths, reader, limits), _print_result
    any_read = False
    for result in results:
        show(result, args.json)
        any_read |= "error" not in result
    return EXIT_OK if any_read else EXIT_FAILED


def table_outputs(paths: list[Path], target: Path) -> list[Path]:
    """Where each image's table goes: `target` itself for one image (unless it is a folder), else
    `target`/NAME.csv. ValueError for two images of one name, or one image to an existing folder's name."""
    if len(paths) == 1 and not target.is_dir():
        return [target]
    if target.exists() and not target.is_dir():
        raise ValueError(f"--table {target}: {len(paths)} images need a folder for their tables, and {target} is a "
                         f"file; name a folder (it is created)")
    stems = collections.Counter(p.stem for p in paths)
    twice = sorted(stem for stem, n in stems.items() if n > 1)
    if twice:
        raise ValueError(f"--table {target}: several images are named {twice[0]!r} and their tables would be one "
                         f"file; read them one at a time")
    return [target / f"{p.stem}.csv" for p in paths]


def read_table_file(path: Path, table_reader, out: Path, limits=FILE_LIMITS) -> dict:
    """One file's ruled table read cell by cell (`edge_app.read.table`) and written to `out` as CSV, atomically:
    {"source", "csv", "rows", "columns", "cells", "corners", "latency_ms", "stage_ms"}, or {"source", "error"}
    saying why it could not be (no table, an unreadable file, a CSV that cannot be written)."""
    from edge_app.read.images import read_image

    def read_and_write():
        table = table_reader.read(read_image(path, limits))
        table.write_csv(out)
        return table

    started = time.perf_counter()
    table, failed = _one_file(path, "table reader", read_and_write)
    if failed:
        return failed
    result = table.to_dict()
    stages = result.pop("latency_ms")
    total = (time.perf_counter() - started) * 1e3
    return {"source": str(path), "csv": str(out), **result, "latency_ms": round(total, 3),
            "stage_ms": {"decode_and_write": round(total - stages["total"], 3), **stages}}


def _print_table(result: dict, as_json: bool) -> None:
    if as_json or "error" in result:
        _print_result(result, as_json)
        return
    states = collections.Counter(cell["state"] for row in result["cells"] for cell in row)
    print(f"{result['source']}: {result['rows']} rows x {result['columns']} columns -> {result['csv']}   "
          f"[{states['number']} numbers, {states['unsure']} unsure, {states['text']} text not read, "
          f"{result['latency_ms']:.1f} ms]", flush=True)


# ---------------------------------------------------------------------------------------------- run


def add_live_options(parser: argparse.ArgumentParser, source_default: str | None = config.SOURCE,
                     max_fps: float | None = None) -> None:
    """The options of `edge_app.config.LiveOptions`, the same for `digitlite run` and `digitlite serve --source`."""
    from edge_app.store.history import default_history_path

    d = LiveOptions()
    parser.add_argument("--source", default=source_default, help=SOURCE_HELP if source_default else
                        f"live frame source: {SOURCE_HELP}. Without it the page offers photo upload and drawing only.")
    parser.add_argument("--stable-frames", type=int, default=d.stable_frames,
                        help="frames a reading must hold to be reported")
    parser.add_argument("--max-frames", type=int, default=d.max_frames, help="stop reading after this many frames")
    parser.add_argument("--max-fps", type=float, default=max_fps,
                        help="frames read per second at most" + ("" if max_fps else
                                                                 " (default: as fast as the source delivers)"))
    parser.add_argument("--save", type=Path, default=d.save, help="write the annotated frames to this .mp4")
    parser.add_argument("--history", type=Path, default=default_history_path(),
                        help="the readings history (SQLite): every stable reading is committed here first")
    parser.add_argument("--history-keep", type=int, default=d.history_keep,
                        help="readings the history keeps; older ones are deleted")
    parser.add_argument("--mqtt", default=d.mqtt, help="publish stable readings to this broker, HOST[:PORT]")
    parser.add_argument("--topic", default=d.topic, help="MQTT topic")
    parser.add_argument("--outbox-limit", type=int, default=d.outbox_limit,
                        help="readings kept for MQTT while the broker is away; beyond it the oldest are dropped "
                             "(and counted)")
    parser.add_argument("--ha-discovery", action=argparse.BooleanOptionalAction, default=d.ha_discovery,
                        help="with --mqtt, announce the device to Home Assistant (MQTT discovery: reading, "
                             "confidence and time sensors, online/offline availability)")
    parser.add_argument("--ha-prefix", default=d.ha_prefix, help="Home Assistant's MQTT discovery prefix")
    parser.add_argument("--device-name", default=d.device_name,
                        help="this device's name in Home Assistant and MQTT messages (default: the host name)")
    plausible = parser.add_argument_group("plausibility (counters and meters): a stable reading that breaks these "
                                          "is stored and shown as suspect, not published as the value")
    plausible.add_argument("--expect", default=d.expect, choices=("increasing",),
                           help="increasing: never below the previous value (default: no expectation)")
    plausible.add_argument("--max-step", type=int, default=d.max_step,
                           help="the largest change from the previous value, in counts (default: any)")
    plausible.add_argument("--digits", type=int, default=d.digits,
                           help="how many digits a reading has (default: any number)")


def live_options(args: argparse.Namespace) -> LiveOptions:
    return _options(LiveOptions, args)


def _run_parser() -> argparse.ArgumentParser:
    parser = _parser("run", "Live loop: read numbers from a camera, stream, video, images or synthetic scenes; each "
                            "stable reading is stored in the readings history, then printed as a JSON line and "
                            "sent to every output asked for (MQTT, video, the web page). SIGTERM or Ctrl-C stops it "
                            "cleanly.")
    add_live_options(parser)
    parser.add_argument("--headless", action="store_true",
                        help="no preview window (for a service; stable readings are printed as JSON lines either way)")
    parser.add_argument("--web", action="store_true", help="also serve the live web page while running")
    parser.add_argument("--host", default=config.HOST, help="web page address (with --web)")
    parser.add_argument("--port", type=int, default=config.PORT, help="web page port (with --web)")
    parser.add_argument("--token", default=None, help="web page access token (with --web); default: "
                                                      "$DIGITLITE_TOKEN (kept out of `ps`)")
    parser.add_argument("--config", default=None, help="TOML config whose keys are defaults for these options "
                                                       "(default: $DIGITLITE_CONFIG, else /etc/digitlite.toml)")
    add_model_options(parser)
    return parser


def run_main(argv: list[str]) -> int:
    parser = _run_parser()
    known, _ = parser.parse_known_args(argv)
    try:
        defaults = config.load_run_config(known.config)
        config.check_against_parser(defaults, parser)
    except (config.ConfigError, FileNotFoundError) as exc:
        return _fail("run", exc)
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from edge_app.live.loop import run_until_stopped
    from edge_app.live.sources import SourceError, open_source
    from edge_app.outputs.local import Preview, can_show
    from edge_app.store.history import HistoryError

    options = live_options(args)
    try:
        check_live(options)
        mqtt_auth = config.load_mqtt_auth(known.config) if options.mqtt else config.MqttAuth()
        if args.web:
            from edge_app.web.server import resolve_token

            args.token = resolve_token(args.token)
        reader = reader_from_args(args)
        web = _web_view(args, reader) if args.web else None
    except (*MODEL_ERRORS, ImportError, OSError) as exc:
        return _fail("run", exc)
    try:
        source = open_source(args.source)
    except SourceError as exc:
        return _fail("run", exc)
    show = not args.headless and can_show()
    if not args.headless and not show:
        print("digitlite run: no display or no GUI in this OpenCV build; running headless", file=sys.stderr)
    try:
        loop = build_live(options, reader, source, [web.stream] if web else [], reload=_reloader(args, web),
                          mqtt_auth=mqtt_auth)
    except (HistoryError, ValueError, ImportError) as exc:
        source.close()
        return _fail("run", exc)
    if show:
        loop.sinks.append(Preview(loop.request_stop))
    if web is not None:
        web.attach(loop)
        web.announce(live=True, out=sys.stderr)  # stdout carries the JSON lines
    code = run_until_stopped(loop, web.server if web else None)
    if code and loop.status.error:
        print(f"digitlite run: {loop.status.error}", file=sys.stderr)
    return code


def _web_view(args: argparse.Namespace, reader):
    """The web page of `run --web`, bound to its port now (a busy port is an error before the camera opens)."""
    from edge_app.web.server import LiveWebView

    return LiveWebView(reader, host=args.host, port=args.port, token=args.token)


# ---------------------------------------------------------------------------------------------- serve


def _serve_parser() -> argparse.ArgumentParser:
    from edge_app.web.server import TOKEN_ENV

    parser = argparse.ArgumentParser(
        prog="digitlite serve", formatter_class=HelpFormatter,
        description="Serve the web view: the live annotated stream, photo upload and a canvas to draw a digit, "
                    "with a JSON API (/api/read, /api/latest, /api/health; schema at /openapi.json). With --source, "
                    "the live loop of `digitlite run` runs under it (history, MQTT, video alike); the page stays "
                    "up after a finite source ends, until Ctrl-C or SIGTERM.")
    add_live_options(parser, source_default=None, max_fps=config.MAX_FPS)
    add_model_options(parser)
    parser.add_argument("--host", default=config.HOST,
                        help="address to listen on; 0.0.0.0 makes the page reachable from the network")
    parser.add_argument("--port", type=int, default=config.PORT, help="TCP port (0: any free port)")
    parser.add_argument("--token", default=None,
                        help=f"require this token on every request (?token=... in the page URL); default: "
                             f"${TOKEN_ENV}")
    parser.add_argument("--max-upload-mb", type=float, default=UPLOAD_LIMITS.max_bytes / 2**20,
                        help="largest upload accepted, MiB")
    add_pixel_limit(parser, UPLOAD_LIMITS.max_pixels)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="server log level")
    return parser


def _serve_limits(args: argparse.Namespace):
    """The upload limits of `args`; ValueError naming the option that is out of range."""
    from edge_app.web.server import resolve_token

    check_live(live_options(args))
    args.token = resolve_token(args.token)  # --token, else $DIGITLITE_TOKEN; an empty one from either is refused
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
    args = _serve_parser().parse_args(argv)
    try:
        limits = _serve_limits(args)
        # The broker's credentials: $DIGITLITE_CONFIG (else /etc/digitlite.toml) [mqtt] and $DIGITLITE_MQTT_*.
        mqtt_auth = config.load_mqtt_auth() if args.mqtt else config.MqttAuth()
    except (ValueError, FileNotFoundError) as exc:
        return _fail("serve", exc)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from edge_app.web.server import LiveWebView, WebDependencyError, load_app_module

    try:
        load_app_module()
    except WebDependencyError as exc:
        return _fail("serve", exc)
    from edge_app.live.loop import run_until_stopped
    from edge_app.store.history import HistoryError, ReadingStore

    try:
        reader = reader_from_args(args)
    except (*MODEL_ERRORS, ImportError) as exc:  # as `read` and `run`: 2, or 3 for a missing runtime
        return _fail("serve", exc)
    if args.source is None:
        try:
            history = ReadingStore(args.history, HistorySettings(keep=args.history_keep))
            view = LiveWebView(reader, args.host, args.port, args.token, limits, history, args.log_level)
        except (HistoryError, OSError) as exc:
            return _fail("serve", exc)
        view.announce(live=False)
        try:
            view.server.run()
        finally:
            history.close()
        return EXIT_OK
    from edge_app.live.sources import open_source

    try:
        view = LiveWebView(reader, args.host, args.port, args.token, limits, log_level=args.log_level)
        source = open_source(args.source)
    except OSError as exc:  # a busy port, a camera that cannot be opened (SourceError): as in `run`
        return _fail("serve", exc)
    try:
        loop = build_live(live_options(args), reader, source, [view.stream], stdout=False,
                          reload=_reloader(args, view), mqtt_auth=mqtt_auth)
    except (HistoryError, ValueError, ImportError) as exc:
        source.close()
        return _fail("serve", exc)
    view.attach(loop)
    view.announce(live=True)
    return run_until_stopped(loop, view.server, keep_serving=True)


# ---------------------------------------------------------------------------------------------- history


def history_main(argv: list[str]) -> int:
    """`digitlite history`: print the readings history, all of it or since a time, as text, CSV or JSON lines."""
    parser = argparse.ArgumentParser(prog="digitlite history", formatter_class=HelpFormatter,
                                     description="Print the readings the device has stored (every stable reading "
                                                 "and every photo read by the web view), oldest first.")
    _history_options(parser)
    parser.add_argument("--since", default=None,
                        help="only readings from then on: 15m, 2h, 7d (ago), or an ISO date or time")
    parser.add_argument("--limit", type=int, default=None, help="print at most this many (the oldest first)")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="CSV with a header; digits as a JSON column")
    form.add_argument("--json", action="store_true", help="one JSON object per reading, per line")
    parser.add_argument("--repair", action="store_true",
                        help="copy what is readable of a corrupt history into a new file in its place; the old "
                             "file is kept beside it as <name>.corrupt-<time>")
    args = parser.parse_args(argv)
    if args.repair:
        return _repair_main(args)
    try:
        since = parse_since(args.since) if args.since else None
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit {args.limit}: give at least 1")
        db = history_db(args.db, args.config)
        store = ReadingStore(db, create=False)
    except (ValueError, OSError) as exc:
        return _fail("history", exc)
    try:
        records = store.since(since, args.limit)
    finally:
        store.close()
    write_records(records, "csv" if args.csv else "json" if args.json else "text")
    if not records and not (args.csv or args.json):
        print(f"no readings{' since ' + since if since else ''} in {db}", file=sys.stderr)
    return 0


def _repair_main(args: argparse.Namespace) -> int:
    try:
        db = history_db(args.db, args.config)
        done = repair(db)
    except (HistoryError, ValueError) as exc:
        return _fail("history", exc)
    copied = ", ".join(f"{n} {table}" for table, n in done["copied"].items())
    lost = sum(done["lost"].values())
    print(f"repaired {db}: copied {copied}; {lost} unreadable rows left out"
          + (f" ({', '.join(f'{n} {t}' for t, n in done['lost'].items() if n)})" if lost else "")
          + f". The old file is kept as {done['kept']}.")
    return 0


# ---------------------------------------------------------------------------------------------- corrections


def _history_options(parser: argparse.ArgumentParser, flag: str = "--db") -> None:
    """The history database option (`flag`) and the configuration file whose [history] path is its default."""
    parser.add_argument(flag, type=Path, default=None,
                        help="the readings history; default: [history] path of the configuration file, else "
                             f"{default_history_path()}")
    parser.add_argument("--config", default=None, help=f"TOML config whose [history] path is the default {flag} "
                                                       "(default: $DIGITLITE_CONFIG, else /etc/digitlite.toml)")


def history_db(given: Path | None, config_path: str | None) -> Path:
    """The history a command reads: `given`, else the configuration file's [history] path, else the default.

    Raises:
        ConfigError (a ValueError), FileNotFoundError: the configuration file named cannot be used.
    """
    return given or Path(config.load_run_config(config_path).get("history") or default_history_path())


def _with_store(args: argparse.Namespace, prog: str, work, errors: tuple = (ValueError, KeyError, OSError)):
    """`work(store)` on the history of --db (else the configured one), closed after; (result, 0), or (None, 2)
    after printing why the history cannot be opened or `work` refused."""
    try:
        db = history_db(args.db, args.config)
        store = ReadingStore(db, create=False)
    except (ValueError, OSError) as exc:
        return None, _fail(prog, exc)
    try:
        return work(store), EXIT_OK
    except errors as exc:
        return None, _fail(prog, exc.args[0] if isinstance(exc, KeyError) else exc, EXIT_BAD_INPUT)
    finally:
        store.close()


def correct_main(argv: list[str]) -> int:
    """`digitlite correct <reading-id> <text>`."""
    parser = argparse.ArgumentParser(prog="digitlite correct", formatter_class=HelpFormatter,
                                     description="Correct a stored reading: keep what it really reads beside the "
                                                 "original, and label its number regions as training "
                                                 "examples.")
    parser.add_argument("reading_id", type=int, help="the reading's id (`digitlite history` lists them)")
    parser.add_argument("text", nargs="+", help="what it really reads: digits, numbers separated by a space")
    _history_options(parser)
    args = parser.parse_args(argv)
    record, code = _with_store(args, "correct", lambda store: store.correct(args.reading_id, " ".join(args.text)))
    if record is not None:
        print(describe(record))
    return code


def corrections_main(argv: list[str]) -> int:
    """`digitlite corrections export DIR`."""
    parser = argparse.ArgumentParser(prog="digitlite corrections", formatter_class=HelpFormatter,
                                     description="The corrections stored in the readings history.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="export")
    out = sub.add_parser("export", formatter_class=HelpFormatter,
                         help="write them as a labelled set for `digitlite eval` and `digitlite "
                              "train-recognizer --extra`",
                         description="Write every corrected reading as labels.csv (file,label,kind), its frame "
                                     "and its labelled 32x256 number regions: `digitlite eval DIR` reads the "
                                     "frames, `digitlite train-recognizer --extra DIR` the regions (and "
                                     "`digitlite train --extra DIR` the 28x28 digit crops of readings stored "
                                     "before reader v3).")
    out.add_argument("folder", type=Path, help="the folder to write (created)")
    _history_options(out)
    args = parser.parse_args(argv)
    counts, code = _with_store(args, "corrections", lambda store: export(store, args.folder))
    if counts is None:
        return code
    lost = f"; {counts['without_frame']} had no frame kept and are left out" if counts["without_frame"] else ""
    old = f", {counts['digits']} labelled 28x28 digits from before reader v3" if counts["digits"] else ""
    print(f"{counts['rows']} corrections written to {args.folder} ({counts['regions']} labelled number regions"
          f"{old}; {counts['frame_only']} with a frame only){lost}")
    if not counts["corrections"]:
        print("no corrections in the history yet: `digitlite correct <reading-id> <text>` or the web view's "
              "correct button adds one", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- models

MODELS_HELP = """
  list                      the installed bundles, which is active, who signed each, their gate figures (signed)
  install PATH|URL          verify a bundle (sha256, manifest, a trusted signature) and unpack it beside the
                            others; --activate too
  activate VERSION          switch to an installed bundle, after the canary on this device's corrections
  rollback                  back to the bundle active before (or the packaged models)
  keygen --out KEY          (host) a signing key: KEY stays on the host, devices trust KEY.pub ([models] trusted_keys)
  pack RELEASE --out FILE --sign KEY
                            (host) the released int8 models of RELEASE as one signed bundle, its sha256 beside it
  announce BUNDLE --broker H:P [--serve ADDR | --url URL] [--devices A,B]
                            (host) offer a bundle to the fleet over MQTT; print each device's outcome
  follow --broker H:P       (device) take the bundles the fleet is offered: fetch, verify, canary, activate
"""


LOADED = (f"a running digitlite loads it within {config.LoopSettings().model_check_s:g} s "
          "(at once: systemctl reload digitlite)")


def models_main(argv: list[str]) -> int:
    from edge_app.store.models import ModelStore

    parser = argparse.ArgumentParser(
        prog="digitlite models", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The model bundles on this device: installed beside each other, one active, switched "
                    f"atomically. Store: ${config.MODEL_STORE_ENV}, else ~/.local/share/digitlite/models. A "
                    "running `digitlite run` or `serve` loads a newly activated one between two frames, within "
                    f"{config.LoopSettings().model_check_s:g} s (at once on SIGHUP). A bundle is taken only when a "
                    "key in [models] trusted_keys of the configuration file (--config, else $DIGITLITE_CONFIG, else "
                    "/etc/digitlite.toml) signed it.",
        epilog="commands:" + MODELS_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = sub.add_parser("list", help="the installed bundles")
    show.add_argument("--json", action="store_true", help="print them as JSON")
    show.add_argument("--config", default=None, help="TOML config whose [models] trusted_keys say who signed each "
                                                     "(default: $DIGITLITE_CONFIG, else /etc/digitlite.toml)")
    keygen = sub.add_parser("keygen", help="(host) make an Ed25519 signing key and its public key")
    keygen.add_argument("--out", type=Path, required=True,
                        help="the private key to write (mode 0600; never overwritten); KEY.pub beside it")
    keygen.add_argument("--name", default="", help="the key's name, shown by devices (default: the file's name)")
    install = sub.add_parser("install", help="install a bundle (path or http(s) URL)")
    install.add_argument("source", help="the bundle file or URL; its sha256 from --sha256, else NAME.sha256 beside it")
    install.add_argument("--sha256", default=None, help="the bundle's sha256 as the host printed it")
    install.add_argument("--activate", action="store_true", help="activate it once installed (canary first)")
    activate = sub.add_parser("activate", help="activate an installed bundle")
    activate.add_argument("version")
    for p in (install, activate):
        p.add_argument("--force", action="store_true",
                       help="activate without the canary (this device's corrections are not read with it)")
    sub.add_parser("rollback", help="back to the bundle active before")
    pack = sub.add_parser("pack", help="(host) make a bundle of a release folder")
    pack.add_argument("release", type=Path, help="the folder `digitlite convert` released into (models/)")
    pack.add_argument("--out", type=Path, required=True, help="the bundle file to write (NAME.sha256 beside it)")
    pack.add_argument("--version", default=None, help="the bundle's version (default: the time and a hash)")
    pack.add_argument("--golden", type=Path, default=None,
                      help="a folder of labelled images (truth.csv or labels.csv) the bundle carries: a device's "
                           "canary refuses the bundle if it reads them worse than the models in use")
    pack.add_argument("--sign", type=Path, default=None, metavar="KEY",
                      help="sign the bundle with this private key (`models keygen`); devices refuse unsigned "
                           "bundles unless their configuration sets allow_unsigned")
    offer = sub.add_parser("announce", help="(host) offer a bundle to the fleet over MQTT")
    offer.add_argument("bundle", type=Path, help="the bundle file (its NAME.sha256 beside it)")
    where = offer.add_mutually_exclusive_group(required=True)
    where.add_argument("--serve", metavar="HOST:PORT", help="serve the bundle over HTTP from here meanwhile")
    where.add_argument("--url", help="where the devices download it (served elsewhere)")
    offer.add_argument("--expect", type=int, default=None,
                       help="wait for this many devices' outcomes (default: as many as --devices names, else 0)")
    offer.add_argument("--devices", type=lambda text: [d for d in text.split(",") if d.strip()], default=None,
                       metavar="A,B", help="the fleet's devices: only their outcomes count, one each (default: any "
                                           "device's; the broker's ACL keeps each device to its own topic)")
    offer.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for them")
    follow = sub.add_parser("follow", help="(device) take the bundles offered to the fleet")
    follow.add_argument("--device", default=None, help="this device's name (default: the host name)")
    follow.add_argument("--max-updates", type=int, default=None, help="stop after this many (default: never)")
    offer.add_argument("--config", default=None, help="TOML config whose [mqtt] credentials and TLS files are used "
                                                      "(default: $DIGITLITE_CONFIG, else /etc/digitlite.toml)")
    for p in (offer, follow):
        p.add_argument("--broker", required=True, help="the MQTT broker, HOST[:PORT]; its user name, password and "
                                                       "TLS files come from [mqtt] of --config or $DIGITLITE_MQTT_*")
        p.add_argument("--prefix", default="digitlite/fleet", help="the fleet's topic prefix")
    for p in (install, activate, follow):  # the history whose corrections the canary reads
        _history_options(p, "--history")
    args = parser.parse_args(argv)
    if hasattr(args, "history"):  # install, activate, follow
        try:
            args.history = history_db(args.history, args.config)
        except (config.ConfigError, FileNotFoundError) as exc:
            return _fail("models", exc)

    from edge_app.runtime.bundle import BundleError, pack_release

    store = ModelStore(config=getattr(args, "config", None))
    try:
        if args.command == "keygen":
            return _keygen(args.out, args.name)
        if args.command == "pack":
            bundle = pack_release(args.release, args.out, args.version, args.golden, sign=args.sign)
            print(f"bundle {bundle.version} written to {args.out}\nsha256 {bundle.sha256}")
            if args.sign is None:
                print("digitlite models: the bundle is not signed (--sign KEY): devices refuse it unless their "
                      "configuration sets allow_unsigned = true in [models]", file=sys.stderr)
            return 0
        if args.command == "list":
            return _list_bundles(store, args.json)
        if args.command == "announce":
            return _announce(args)
        if args.command == "follow":
            return _follow(args, store)
        if args.command == "rollback":
            pointer = store.rollback()
            store.record_update(pointer["version"], "rolled back")
            print(f"active: {pointer['version'] or 'the packaged models'}; {LOADED}")
            return 0
        if args.command == "install":
            bundle = store.fetch(args.source, args.sha256)
            fresh = store.install(bundle)
            signer = store.signer(bundle.version)
            print(f"bundle {bundle.version} {'installed' if fresh else 'was already installed'} in {store.bundles}"
                  f" (signed by {signer.describe()})")
            if not args.activate:
                return 0
            return _activate(store, bundle.version, args.force, args.history, installed=fresh)
        return _activate(store, args.version, args.force, args.history)
    except (BundleError, HistoryError, OSError, ValueError, ImportError) as exc:
        return _fail("models", exc)


def _announce(args: argparse.Namespace) -> int:
    """`models announce`: serve (or point at) the bundle, announce it, print the devices' outcomes as they come."""
    from edge_app.fleet import BundleServer, announce

    server = None
    if args.serve:
        host, _, port = args.serve.rpartition(":")
        server = BundleServer(args.bundle, host or "0.0.0.0", int(port or 0))
    url = server.url if server else args.url
    print(f"announcing {args.bundle.name} at {url} on {args.prefix}/bundle", flush=True)

    def show(outcome: dict) -> None:
        print(f"{outcome.get('device')}: {outcome.get('outcome')} ({outcome.get('reason')})", flush=True)

    if args.expect is None:
        args.expect = len(args.devices or [])
    try:
        outcomes = announce(args.bundle, url, args.broker, args.prefix, args.expect, args.timeout, show,
                            auth=config.load_mqtt_auth(args.config), devices=args.devices)
    finally:
        if server is not None:
            server.close()
    counts = collections.Counter(o.get("outcome") for o in outcomes)
    print(f"{len(outcomes)} device(s) answered: " + (", ".join(f"{n} {k}" for k, n in counts.items()) or "none"))
    if len(outcomes) < args.expect:
        return _fail("models", f"{args.expect - len(outcomes)} device(s) did not answer in {args.timeout:g} s "
                               f"(the announcement stays retained: they take it when they connect)", EXIT_FAILED)
    return 0


def _follow(args: argparse.Namespace, store) -> int:
    """`models follow`: the device side of fleet updates, until SIGTERM or SIGINT."""
    from edge_app.fleet import FleetAgent
    from edge_app.live.loop import stop_on_signals

    agent = FleetAgent(args.broker, args.device, args.prefix, store, args.history,
                       auth=config.load_mqtt_auth(args.config))
    print(f"following {agent.topic} on {args.broker} as {agent.device}; outcomes on {agent.reply_topic}",
          flush=True)
    with stop_on_signals(agent.stop):
        return agent.run(lambda o: print(json.dumps(o), flush=True), args.max_updates)


def _list_bundles(store, as_json: bool) -> int:
    bundles = store.installed()
    if as_json:
        print(json.dumps({"store": str(store.root), "active": store.pointer()["version"], "bundles": bundles},
                         indent=2))
        return 0
    if not bundles:
        print(f"no bundles installed in {store.root}: the packaged models are in use")
    for b in bundles:
        if b["gate"] is None:
            exact = "gate figures not shown: no trusted key signed them"
        else:
            figures = (b["gate"].get("recognizer") or {}).get("figures") or {}
            exact = f"recognizer exact {figures['exact']:.1%}" if "exact" in figures else "no gate figures"
        print(f"{'*' if b['active'] else ' '} {b['version']}  created {b.get('created', '?')}  signed by "
              f"{b['signer']['describe']}  {exact}")
    return 0


def _keygen(out: Path, name: str) -> int:
    """`models keygen`: a new signing key, and what to do with each half."""
    from edge_app.runtime.signing import generate, public_path

    public = generate(out, name)
    print(f"signing key {public.label} written to {out} (keep it on this host, mode 0600) and its public key to "
          f"{public_path(out)}\non each device, trust it in the configuration file:\n  [models]\n  trusted_keys = "
          f"[\"/etc/digitlite/{public_path(out).name}\"]   # or the key itself: \"{public.line().split()[1]}\"\n"
          f"then sign bundles with: digitlite models pack RELEASE --out b.tar --sign {out}")
    return 0


def _activate(store, version: str, force: bool, history_path: Path | None, installed: bool = False) -> int:
    """The canary (unless `force`), then the switch; EXIT_REFUSED (4) when the canary refuses the bundle. A bundle
    this command `installed` that is refused or cannot be loaded is removed again."""
    from edge_app.canary import update

    if force:
        print("--force: the canary is skipped; this device's corrections are not read with the new bundle")
    try:
        done = update(store, version, Path(history_path) if history_path else None, force)
    except MODEL_ERRORS as exc:
        if installed:
            store.discard(version)
        return _fail("models", f"bundle {version} cannot be loaded: {exc}")
    if done["canary"] is not None:
        print(f"canary: {done['reason']}")
    if done["outcome"] == "refused":
        removed = installed and store.discard(version)
        then = ("and it is removed again (install it with --activate --force to take it anyway)" if removed else
                "(--force activates it anyway)")
        return _fail("models", f"bundle {version} refused; the models in use stay active {then}", EXIT_REFUSED)
    print(f"active: {version}; {LOADED}")
    return 0


# ---------------------------------------------------------------------------------------------- config


def config_main(argv: list[str]) -> int:
    parser = _parser("config", "Check a digitlite TOML configuration file and print the `digitlite run` options "
                               "it sets.")
    parser.add_argument("config", nargs="?", default=None,
                        help=f"the file; default: ${config.CONFIG_ENV}, else {config.DEFAULT_CONFIG} when it exists")
    args = parser.parse_args(argv)
    try:
        options = config.load_run_config(args.config)
    except (config.ConfigError, FileNotFoundError) as exc:
        return _fail("config", exc)  # as `run` refuses the same file
    print(json.dumps(options, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- doctor


def doctor_main(argv: list[str]) -> int:
    from edge_app import doctor, runtime

    parser = _parser("doctor", doctor.__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None,
                        help=f"the .tflite to check (default: the configuration's model, else the one installed "
                             f"with digitlite, {runtime.DEFAULT_MODEL})")
    parser.add_argument("--config", default=None,
                        help=f"configuration file (default: ${config.CONFIG_ENV}, else "
                             f"{config.DEFAULT_CONFIG} when present)")
    parser.add_argument("--threads", type=thread_count, default=None,
                        help=f"interpreter threads (default: the configuration's, else "
                             f"{runtime.DEFAULT_THREADS})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="print only warnings and failures")
    args = parser.parse_args(argv)
    checks = doctor.run_checks(args.model, args.config, args.threads)
    ok = not any(c.status == "fail" for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [dataclasses.asdict(c) for c in checks]}, indent=2, default=str))
    else:
        report = doctor.format_report(checks, args.quiet)
        if report:
            print(report)
    return EXIT_OK if ok else EXIT_FAILED
