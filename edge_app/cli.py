"""Command lines of the edge stage: `digitlite read`, `run`, `eval` and `eval-scenes`.

Each `*_main` parses arguments and calls the function that does the work. This module also owns the one place
a `DigitReader` is built (`make_reader`, from `add_model_options`' flags: the model verified against its
manifest, the thread count checked) and the options every live mode shares (`add_live_options`, used by
`digitlite run` and `digitlite serve --source`). Never imports TensorFlow.

    digitlite read tests/data/golden/ --json
    digitlite run --source synthetic --headless --max-frames 30
    digitlite eval-scenes --count 200
    digitlite eval ../shared/datasets/real-photos --peer ppocr --out runs/eval
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from digitlite import HelpFormatter
from edge_app.images import FILE_LIMITS
from edge_app.reader import MIN_CONFIDENCE
from edge_app.runtime import DEFAULT_MODEL, DEFAULT_RECOGNIZER, DEFAULT_REGIONS, DEFAULT_THREADS, thread_count
from edge_app.sources import SOURCE_HELP

log = logging.getLogger(__name__)
MIX_NAMES = ("photo", "form", "hard", "distractors")  # digitdata.engine.MIXES (not imported here: it needs no MNIST)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"digitlite {prog}", description=description, formatter_class=HelpFormatter)


# ---------------------------------------------------------------------------------------------- the reader


def add_model_options(parser: argparse.ArgumentParser, reading: bool = True) -> None:
    """--model, --threads, --allow-unverified; with `reading`, the reader's models, --min-confidence and --roi."""
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="the .tflite digit classifier (single digits: the drawing canvas, `digitlite check`); "
                             "by default the int8 model installed with digitlite")
    parser.add_argument("--threads", type=thread_count, default=DEFAULT_THREADS,
                        help="interpreter (XNNPACK) threads")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="use a model whose sha256 does not match its manifest entry, or that has none (your "
                             "own model); by default such a model is refused")
    if reading:
        parser.add_argument("--regions", type=Path, default=DEFAULT_REGIONS,
                            help="the .tflite region finder (where the numbers are); by default the installed one")
        parser.add_argument("--recognizer", type=Path, default=DEFAULT_RECOGNIZER,
                            help="the .tflite number recognizer (what they say); by default the installed one")
        parser.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE,
                            help="numbers whose digits' mean confidence is below this are dropped")
        parser.add_argument("--roi", default=None, help="read only this region: x,y,w,h in pixels")


def make_reader(model: str | Path = DEFAULT_MODEL, threads: int = DEFAULT_THREADS, allow_unverified: bool = False,
                min_confidence: float = MIN_CONFIDENCE, roi: str | None = None,
                regions: str | Path = DEFAULT_REGIONS, recognizer: str | Path = DEFAULT_RECOGNIZER):
    """The one place a reader is built: its models verified against the manifest (unless allowed), once.

    Args:
        model: the .tflite digit classifier (kept beside the reader for single drawn digits).
        regions: the .tflite region finder.
        recognizer: the .tflite number recognizer.
        threads: interpreter threads (1 to runtime.MAX_THREADS).
        allow_unverified: load a model that does not match its manifest entry, or has none.
        min_confidence: numbers whose digits' mean confidence is below this are dropped.
        roi: "x,y,w,h", the region read, or None for the whole frame.

    Returns:
        An `edge_app.reader.DigitReader`; `.integrity.sha256` identifies its recognizer.

    Raises:
        ModelError (UnverifiedModelError), RuntimeNotFound, ValueError: see `_model_errors`.
    """
    from edge_app.runtime import Classifier

    classifier = Classifier(model, threads=threads, require_verified=not allow_unverified)
    return reader_for(classifier, allow_unverified, min_confidence, roi, regions, recognizer)


def reader_for(classifier, allow_unverified: bool = False, min_confidence: float = MIN_CONFIDENCE,
               roi: str | None = None, regions: str | Path = DEFAULT_REGIONS,
               recognizer: str | Path = DEFAULT_RECOGNIZER):
    """The reader around a classifier already loaded (the web app shares it); see `make_reader`."""
    from edge_app.reader import DigitReader, parse_roi
    from edge_app.runtime import Recognizer, RegionFinder

    threads, verified = classifier.runtime.threads, not allow_unverified
    return DigitReader(RegionFinder(regions, threads=threads, require_verified=verified),
                       Recognizer(recognizer, threads=threads, require_verified=verified),
                       min_confidence=min_confidence, roi=parse_roi(roi), classifier=classifier)


def reader_from_args(args: argparse.Namespace):
    """`make_reader` with the options `add_model_options` added."""
    return make_reader(args.model, args.threads, args.allow_unverified, getattr(args, "min_confidence", MIN_CONFIDENCE),
                       getattr(args, "roi", None), getattr(args, "regions", DEFAULT_REGIONS),
                       getattr(args, "recognizer", DEFAULT_RECOGNIZER))


def _model_errors():
    from edge_app.runtime import ModelError, RuntimeNotFound

    return (ModelError, RuntimeNotFound, ValueError)


# ---------------------------------------------------------------------------------------------- read


def read_file(path: Path, reader, limits=FILE_LIMITS) -> dict:
    """One file's result: the reading, or {"source", "error"} saying why this file could not be read."""
    from edge_app.images import read_image

    started = time.perf_counter()
    try:
        frame = read_image(path, limits)
        reading = reader.read(frame)
    except (OSError, ValueError) as exc:
        return {"source": str(path), "error": str(exc)}
    except Exception as exc:  # the reader failing on one file must not lose the others' results
        log.debug("reading %s failed", path, exc_info=exc)
        return {"source": str(path), "error": f"the reader failed on this image ({type(exc).__name__}: {exc})"}
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
    from edge_app.sources import IMAGE_SUFFIXES

    out = []
    for p in map(Path, paths):
        out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p])
    return out


def add_pixel_limit(parser: argparse.ArgumentParser, default_pixels: int) -> None:
    parser.add_argument("--max-megapixels", type=float, default=default_pixels / 1e6,
                        help="largest image accepted, in decoded megapixels (refused before decoding)")


def limits_from_args(args: argparse.Namespace, base=FILE_LIMITS):
    """`base` with the --max-megapixels given; ValueError when it is not positive."""
    from dataclasses import replace

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
    add_pixel_limit(parser, FILE_LIMITS.max_pixels)
    add_model_options(parser)
    args = parser.parse_args(argv)
    try:
        limits = limits_from_args(args)
        reader = reader_from_args(args)
    except _model_errors() as exc:
        print(f"digitlite read: {exc}", file=sys.stderr)
        return 2
    any_read = False
    for result in read_files(_expand(args.paths), reader, limits):
        _print_result(result, args.json)
        any_read |= "error" not in result
    return 0 if any_read else 1


# ---------------------------------------------------------------------------------------------- run


def add_live_options(parser: argparse.ArgumentParser, source_default: str | None = "picamera",
                     max_fps: float | None = None) -> None:
    """The options of the live loop, the same for `digitlite run` and `digitlite serve --source`."""
    from edge_app.history import HistorySettings, default_history_path

    history = HistorySettings()
    parser.add_argument("--source", default=source_default, help=SOURCE_HELP if source_default else
                        f"live frame source: {SOURCE_HELP}. Without it the page offers photo upload and drawing only.")
    parser.add_argument("--stable-frames", type=int, default=3, help="frames a reading must hold to be reported")
    parser.add_argument("--max-frames", type=int, default=None, help="stop reading after this many frames")
    parser.add_argument("--max-fps", type=float, default=max_fps,
                        help="frames read per second at most" + ("" if max_fps else
                                                                 " (default: as fast as the source delivers)"))
    parser.add_argument("--save", type=Path, default=None, help="write the annotated frames to this .mp4")
    parser.add_argument("--history", type=Path, default=default_history_path(),
                        help="the readings history (SQLite): every stable reading is committed here first")
    parser.add_argument("--history-keep", type=int, default=history.keep,
                        help="readings the history keeps; older ones are deleted")
    parser.add_argument("--mqtt", default=None, help="publish stable readings to this broker, HOST[:PORT]")
    parser.add_argument("--topic", default="digitlite/readings", help="MQTT topic")
    parser.add_argument("--outbox-limit", type=int, default=history.outbox_limit,
                        help="readings kept for MQTT while the broker is away; beyond it the oldest are dropped "
                             "(and counted)")
    parser.add_argument("--ha-discovery", action=argparse.BooleanOptionalAction, default=True,
                        help="with --mqtt, announce the device to Home Assistant (MQTT discovery: reading, "
                             "confidence and time sensors, online/offline availability)")
    parser.add_argument("--ha-prefix", default="homeassistant", help="Home Assistant's MQTT discovery prefix")
    parser.add_argument("--device-name", default=None,
                        help="this device's name in Home Assistant and MQTT messages (default: the host name)")
    plausible = parser.add_argument_group("plausibility (counters and meters): a stable reading that breaks these "
                                          "is stored and shown as suspect, not published as the value")
    plausible.add_argument("--expect", default=None, choices=("increasing",),
                           help="increasing: never below the previous value (default: no expectation)")
    plausible.add_argument("--max-step", type=int, default=None,
                           help="the largest change from the previous value, in counts (default: any)")
    plausible.add_argument("--digits", type=int, default=None,
                           help="how many digits a reading has (default: any number)")


def check_live_options(args: argparse.Namespace) -> None:
    """ValueError naming the option, for live options out of range (before anything is opened)."""
    from edge_app.mqtt import check_topic, parse_broker

    for name, value, low in (("--stable-frames", args.stable_frames, 1), ("--max-frames", args.max_frames, 1),
                             ("--history-keep", args.history_keep, 1), ("--outbox-limit", args.outbox_limit, 1)):
        if value is not None and value < low:
            raise ValueError(f"{name} {value} is too small; it must be at least {low}.")
    if args.max_fps is not None and not args.max_fps > 0:
        raise ValueError(f"--max-fps {args.max_fps}: give a positive number of frames per second")
    if args.mqtt:
        parse_broker(args.mqtt)
        check_topic(args.topic)
        if args.ha_discovery:
            from edge_app.homeassistant import check_prefix

            check_prefix(args.ha_prefix)
    plausibility_from_args(args)


def plausibility_from_args(args: argparse.Namespace):
    """The `edge_app.plausibility.Plausibility` of --expect, --max-step, --digits (ValueError when out of range)."""
    from edge_app.plausibility import Plausibility

    return Plausibility(args.expect, args.max_step, args.digits)


def build_live(args: argparse.Namespace, reader, source, extra_sinks=(), stdout: bool = True):
    """The live loop of `args` (see `add_live_options`): history, sinks (stdout, MQTT, video, ...) and the loop.

    Returns:
        An `edge_app.live.LiveLoop`; the caller runs it (`edge_app.live.run_until_stopped`).

    Raises:
        HistoryError, ValueError, ImportError: the history cannot be opened, a bad --save, no paho-mqtt.
    """
    from edge_app.history import HistorySettings, ReadingStore
    from edge_app.live import LiveLoop, LoopSettings
    from edge_app.sinks import JsonLines, MqttOutbox, VideoFile

    history = ReadingStore(args.history, HistorySettings(keep=args.history_keep, outbox_limit=args.outbox_limit))
    sinks = []
    try:
        if stdout:
            sinks.append(JsonLines())
        if args.save is not None:
            sinks.append(VideoFile(args.save))
        if args.mqtt:
            from edge_app.mqtt import OutboxPublisher

            discovery = None
            if args.ha_discovery:
                from edge_app.homeassistant import Discovery, HomeAssistant

                discovery = Discovery(args.topic, args.device_name or "", args.ha_prefix, _version())
            publisher = OutboxPublisher(history, args.mqtt, args.topic, device=args.device_name,
                                        presence=discovery.presence if discovery else None)
            sinks.append(MqttOutbox(publisher))
            if discovery is not None:
                sinks.append(HomeAssistant(publisher, discovery, history))
    except BaseException:
        for sink in sinks:
            sink.close()
        history.close()
        raise
    sinks.extend(extra_sinks)
    settings = LoopSettings(stable_frames=args.stable_frames, max_fps=args.max_fps)
    return LiveLoop(source, reader, history, sinks, settings, source_name=args.source,
                    model_sha256=reader.integrity.sha256, max_frames=args.max_frames,
                    plausibility=plausibility_from_args(args))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("digitlite")
    except Exception:  # a checkout that is not installed
        return "0"


def run_main(argv: list[str]) -> int:
    parser = _parser("run", "Live loop: read numbers from a camera, stream, video, images or synthetic scenes; each "
                            "stable reading is stored in the readings history, then printed as a JSON line and "
                            "sent to every output asked for (MQTT, video, the web page). SIGTERM or Ctrl-C stops it "
                            "cleanly.")
    add_live_options(parser)
    parser.add_argument("--headless", action="store_true",
                        help="no preview window (for a service; stable readings are printed as JSON lines either way)")
    parser.add_argument("--web", action="store_true", help="also serve the live web page while running")
    parser.add_argument("--host", default="127.0.0.1", help="web page address (with --web)")
    parser.add_argument("--port", type=int, default=8080, help="web page port (with --web)")
    parser.add_argument("--token", default=None, help="web page access token (with --web)")
    parser.add_argument("--config", default=None, help="TOML config whose keys are defaults for these options "
                                                       "(default: $DIGITLITE_CONFIG, else /etc/digitlite.toml)")
    add_model_options(parser)
    from edge_app import settings

    known, _ = parser.parse_known_args(argv)
    try:
        config = settings.load_run_config(known.config)
        settings.check_against_parser(config, parser)
    except (settings.ConfigError, FileNotFoundError) as exc:
        print(f"digitlite run: {exc}", file=sys.stderr)
        return 2
    parser.set_defaults(**config)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from edge_app.history import HistoryError
    from edge_app.live import run_until_stopped
    from edge_app.sinks import Preview, can_show
    from edge_app.sources import SourceError, open_source

    try:
        check_live_options(args)
        if args.web:
            from edge_app.web.server import check_token

            check_token(args.token)
        reader = reader_from_args(args)
        web = _web_view(args, reader) if args.web else None
    except (*_model_errors(), ImportError, OSError) as exc:
        print(f"digitlite run: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, ImportError) else 2
    try:
        source = open_source(args.source)
    except SourceError as exc:
        print(f"digitlite run: {exc}", file=sys.stderr)
        return 2
    show = not args.headless and can_show()
    if not args.headless and not show:
        print("digitlite run: no display or no GUI in this OpenCV build; running headless", file=sys.stderr)
    try:
        loop = build_live(args, reader, source, [web.stream] if web else [])
    except (HistoryError, ValueError, ImportError) as exc:
        source.close()
        print(f"digitlite run: {exc}", file=sys.stderr)
        return 2
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


# ---------------------------------------------------------------------------------------------- eval-scenes


def eval_scenes(readers: dict, count: int = 200, seed: int = 0, thumbnail=None, mix: str = "photo") -> list:
    """Every reader on `count` engine scenes of one mix written with MNIST *test* digits, scored by
    `edge_app.evaluation`.

    A scene's kind is the main condition it was made for (tight, small, frame, ...; "no-digit" where nothing
    is written); each picture is rendered, read and dropped in turn (only the misses' thumbnails are kept).
    """
    from digitdata.engine import MIXES, scenes
    from digitdata.mnist import load_mnist
    from edge_app.evaluation import Sample, evaluate

    mnist = load_mnist()
    samples = (Sample(f"scene {i}", scene.text, scene.kind, lambda f=scene.image_bgr: f)
               for i, scene in zip(range(count), scenes(seed, mnist.x_test, mnist.y_test, MIXES[mix]), strict=False))
    return evaluate(samples, readers, thumbnail)


def eval_scenes_main(argv: list[str]) -> int:
    parser = _parser("eval-scenes", "Accuracy and speed of the reader on camera-like synthetic scenes: the "
                                    "report of `digitlite eval`, with each scene's number as the truth.")
    parser.add_argument("--count", type=int, default=200, help="scenes to render and read")
    parser.add_argument("--seed", type=int, default=0, help="scene generator seed")
    parser.add_argument("--mix", choices=sorted(MIX_NAMES), default="photo",
                        help="the data engine's mix: photo (what people photograph), form (labels, lines, cells), "
                             "hard (small digits, long rows, three lines), distractors (no digit at all)")
    _add_eval_options(parser)
    add_model_options(parser)
    args = parser.parse_args(argv)
    if args.count < 1:
        print("digitlite eval-scenes: --count must be at least 1", file=sys.stderr)
        return 2
    meta = {"command": " ".join(["digitlite eval-scenes", *argv]), "scenes": args.count, "seed": args.seed,
            "mix": args.mix, "source": f"digitdata.engine mix {args.mix}, MNIST test digits, seed {args.seed}"}
    return _evaluate_and_report("eval-scenes", args, meta, lambda readers, thumbnail: eval_scenes(
        readers, args.count, args.seed, thumbnail, args.mix))


# ---------------------------------------------------------------------------------------------- eval

PEERS = {"ppocr": "edge_app.ppocr_peer:PPOCRPeer"}  # --peer name -> its adapter, imported only when asked for


def _add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peer", choices=sorted(PEERS), default=None,
                        help="also read every image with this peer and report both (needs the bench extra)")
    parser.add_argument("--out", type=Path, default=None, help="write report.json, report.md and misses.png here")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON, not the summary")


def _evaluate_and_report(prog: str, args, meta: dict, run) -> int:
    """Build the readers (ours, and the peer if asked), `run(readers, thumbnail)`, report. Returns the exit code."""
    import importlib

    from edge_app import eval_report
    from edge_app.evaluation import from_reader

    try:
        readers = {"digitlite": from_reader(reader_from_args(args))}
    except _model_errors() as exc:
        print(f"digitlite {prog}: {exc}", file=sys.stderr)
        return 2
    about = {"digitlite": f"reader: {args.regions.name} + {args.recognizer.name}, "
                          f"{args.threads} interpreter thread(s)"}
    if args.peer:
        module, name = PEERS[args.peer].split(":")
        try:
            peer = getattr(importlib.import_module(module), name)()
        except ImportError as exc:
            print(f"digitlite {prog}: {exc}", file=sys.stderr)
            return 3
        readers[args.peer], about[args.peer] = peer.predict, peer.description
    results = run(readers, eval_report.thumbnail)
    report = eval_report.build_report(results, about, meta)
    if args.out is not None:
        eval_report.write_report(args.out, report, results)
    print(json.dumps(report) if args.json else eval_report.summary_text(report, args.out))
    return 0


def eval_main(argv: list[str]) -> int:
    parser = _parser("eval", "Accuracy and speed on a folder of labelled images: labels.csv (file,label[,kind]; "
                             "labels are digit strings, leading zeros count, spaces between numbers on different "
                             "lines, empty for an image with no number) beside the images or an images/ "
                             "folder. Exact-number and per-digit accuracy, overall and per kind, time per image, "
                             "and a contact sheet of the misses.")
    parser.add_argument("folder", type=Path, help="the folder with labels.csv (else truth.csv) and the images")
    parser.add_argument("--labels", type=Path, default=None,
                        help="the labels file; None: FOLDER/labels.csv, else FOLDER/truth.csv")
    _add_eval_options(parser)
    add_model_options(parser)
    args = parser.parse_args(argv)
    from edge_app.evaluation import LabelsError, evaluate, labelled_samples
    from edge_app.images import read_image

    try:
        labels, samples = labelled_samples(args.folder, read_image, args.labels)
    except (LabelsError, OSError) as exc:
        print(f"digitlite eval: {exc}", file=sys.stderr)
        return 2
    meta = {"command": " ".join(["digitlite eval", *argv]), "folder": str(args.folder), "labels": str(labels)}
    return _evaluate_and_report("eval", args, meta,
                                lambda readers, thumbnail: evaluate(samples, readers, thumbnail))
