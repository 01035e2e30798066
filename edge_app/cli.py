"""Command lines of the edge stage: `digitlite read`, `run`, `eval` and `eval-scenes`.

Each `*_main` parses arguments and calls the function that does the work. Never imports TensorFlow.

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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from digitlite import HelpFormatter
from edge_app.runtime import DEFAULT_DETECTOR, DEFAULT_MODEL, DEFAULT_THREADS
from edge_app.sources import SOURCE_HELP


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"digitlite {prog}", description=description, formatter_class=HelpFormatter)


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="the .tflite model; by default the int8 model installed with digitlite")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="interpreter (XNNPACK) threads")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="digits below this are dropped")
    parser.add_argument("--roi", default=None, help="read only this region: x,y,w,h in pixels")
    parser.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR, help="the .tflite digit detector")
    parser.add_argument("--reader", choices=["learned", "classic"], default="classic",
                        help="learned: the detector finds the digits; classic: tuned thresholds (transition)")


def _reader(args):
    from edge_app.reader import DigitReader, parse_roi
    from edge_app.runtime import Classifier, Detector

    classifier = Classifier(args.model, threads=args.threads)
    if getattr(args, "reader", "learned") == "classic":
        from edge_app.classic_reader import ClassicReader

        return ClassicReader(classifier, min_confidence=args.min_confidence, roi=parse_roi(args.roi))
    return DigitReader(classifier, Detector(args.detector, threads=args.threads),
                       min_confidence=args.min_confidence, roi=parse_roi(args.roi))


def _model_errors():
    from edge_app.runtime import ModelError, RuntimeNotFound

    return (ModelError, RuntimeNotFound, ValueError)


# ---------------------------------------------------------------------------------------------- read


def decode_image(path: Path) -> np.ndarray:
    """BGR uint8 pixels of an image file, or ValueError/FileNotFoundError saying why not."""
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ValueError("the file is empty")
    frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError("not an image OpenCV can decode (PNG, JPEG, BMP, WebP, TIFF)")
    return frame


def read_files(paths: list[Path], reader) -> list[dict]:
    """One result per file: the reading, or {"source", "error"} for a file that cannot be read."""
    results = []
    for path in paths:
        started = time.perf_counter()
        try:
            frame = decode_image(path)
            reading = reader.read(frame)
        except (OSError, ValueError) as exc:
            results.append({"source": str(path), "error": str(exc)})
            continue
        stages = reading.to_dict()
        stage_ms = {"decode": round((time.perf_counter() - started) * 1e3 - reading.latency_ms["total"], 3),
                    **stages.pop("latency_ms")}
        results.append({"source": str(path), **stages,
                        "latency_ms": round((time.perf_counter() - started) * 1e3, 3), "stage_ms": stage_ms})
    return results


def _expand(paths: list[str]) -> list[Path]:
    from edge_app.sources import IMAGE_SUFFIXES

    out = []
    for p in map(Path, paths):
        out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p])
    return out


def read_main(argv: list[str]) -> int:
    parser = _parser("read", "Read the handwritten numbers in image files. Exit code 1 only if none could be read.")
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--json", action="store_true", help="one JSON object per image, per line")
    _add_model(parser)
    args = parser.parse_args(argv)
    try:
        reader = _reader(args)
    except _model_errors() as exc:
        print(f"digitlite read: {exc}", file=sys.stderr)
        return 2
    results = read_files(_expand(args.paths), reader)
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{r['source']}: error: {r['error']}")
        else:
            confidence = min((d["confidence"] for d in r["digits"]), default=0.0)
            print(f"{r['source']}: {r['text'] or '(nothing read)'}   [{len(r['digits'])} digits, lowest "
                  f"confidence {confidence:.0%}, {r['latency_ms']:.1f} ms]")
    return 0 if any("error" not in r for r in results) else 1


# ---------------------------------------------------------------------------------------------- run


def run_loop(source, reader, stable_frames: int = 3, emit=print, publisher=None, writer_path: Path | None = None,
             show: bool = False, max_frames: int | None = None) -> int:
    """The live loop: read frames, report each reading once it is stable. Returns the exit code.

    0 when the source ended (or max_frames), 1 when a live source was lost for good (after its retries).
    """
    from edge_app.reader import Stabilizer, annotate
    from edge_app.sources import SourceError

    stabilizer = Stabilizer(stable_frames)
    writer, times, n = None, [], 0
    try:
        while max_frames is None or n < max_frames:
            waited = time.perf_counter()
            try:
                frame = source.read()
            except SourceError as exc:
                print(f"digitlite run: {exc}", file=sys.stderr)
                return 1
            if frame is None:
                return 0
            captured = time.perf_counter()
            reading = reader.read(frame)
            n += 1
            times.append(time.perf_counter())
            times = times[-30:]
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            latency = {"capture": round((captured - waited) * 1e3, 3),
                       **{k: round(v, 3) for k, v in reading.latency_ms.items()}}
            stable = stabilizer.update(reading.text)
            if stable is not None:
                message = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "frame": n,
                           **reading.to_dict(), "latency_ms": latency, "fps": round(fps, 1)}
                emit(json.dumps(message))
                if publisher is not None:
                    publisher.publish(message)
            if writer_path is not None or show:
                import cv2

                annotated = annotate(frame, reading, fps)
                if writer_path is not None:
                    if writer is None:
                        h, w = annotated.shape[:2]
                        writer = cv2.VideoWriter(str(writer_path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (w, h))
                    writer.write(annotated)
                if show:
                    cv2.imshow("digitlite", annotated)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        return 0
        return 0
    finally:
        if writer is not None:
            writer.release()


def _can_show() -> bool:
    """A preview window needs a display and an OpenCV built with a GUI (the headless wheel has none)."""
    import os

    import cv2

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and "GUI" in cv2.getBuildInformation() \
        and "NONE" not in cv2.getBuildInformation().split("GUI:")[-1].split("\n")[0]


def run_main(argv: list[str]) -> int:
    parser = _parser("run", "Live loop: read numbers from a camera, stream, video, images or synthetic scenes, "
                            "and report each reading once it is stable.")
    parser.add_argument("--source", default="picamera", help=SOURCE_HELP)
    parser.add_argument("--headless", action="store_true",
                        help="no preview window (for a service; stable readings are printed as JSON lines either way)")
    parser.add_argument("--save", type=Path, default=None, help="write the annotated frames to this .mp4")
    parser.add_argument("--stable-frames", type=int, default=3, help="frames a reading must hold to be reported")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--mqtt", default=None, help="publish stable readings to this broker, HOST[:PORT]")
    parser.add_argument("--topic", default="digitlite/readings", help="MQTT topic")
    parser.add_argument("--web", action="store_true", help="serve the live web page instead of printing")
    parser.add_argument("--host", default="127.0.0.1", help="web page address (with --web)")
    parser.add_argument("--port", type=int, default=8080, help="web page port (with --web)")
    parser.add_argument("--token", default=None, help="web page access token (with --web)")
    parser.add_argument("--config", default=None, help="TOML config whose keys are defaults for these options "
                                                       "(default: $DIGITLITE_CONFIG, else /etc/digitlite.toml)")
    _add_model(parser)
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

    from edge_app.sources import SourceError, open_source

    try:
        reader = _reader(args)
        source = open_source(args.source)
    except (SourceError, *_model_errors()) as exc:
        print(f"digitlite run: {exc}", file=sys.stderr)
        return 2
    if args.web:
        try:
            from edge_app.web.server import serve_live
        except ImportError as exc:
            print(f"digitlite run --web: {exc}", file=sys.stderr)
            source.close()
            return 3
        return serve_live(reader, source, host=args.host, port=args.port, token=args.token,
                          stable_frames=args.stable_frames)
    publisher = None
    try:
        if args.mqtt:
            from edge_app.mqtt import Publisher

            publisher = Publisher(args.mqtt, args.topic)
        show = not args.headless and _can_show()
        if not args.headless and not show:
            print("digitlite run: no display or no GUI in this OpenCV build; running headless", file=sys.stderr)
        return run_loop(source, reader, args.stable_frames, emit=lambda line: print(line, flush=True),
                        publisher=publisher, writer_path=args.save, show=show, max_frames=args.max_frames)
    except (ImportError, ValueError, ConnectionError) as exc:
        print(f"digitlite run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        source.close()
        if publisher is not None:
            publisher.close()


# ---------------------------------------------------------------------------------------------- eval-scenes


def eval_scenes(readers: dict, count: int = 200, seed: int = 0, thumbnail=None) -> list:
    """Every reader on `count` engine scenes written with MNIST *test* digits, scored by `edge_app.evaluation`.

    A scene's kind is the main condition it was made for (tight, small, frame, ...); each picture is
    rendered, read and dropped in turn (only the misses' thumbnails are kept).
    """
    from digitdata.engine import scenes
    from digitdata.mnist import load_mnist
    from edge_app.evaluation import Sample, evaluate

    mnist = load_mnist()
    samples = (Sample(f"scene {i}", scene.text, scene.kind, lambda f=scene.image_bgr: f)
               for i, scene in zip(range(count), scenes(seed, mnist.x_test, mnist.y_test), strict=False))
    return evaluate(samples, readers, thumbnail)


def eval_scenes_main(argv: list[str]) -> int:
    parser = _parser("eval-scenes", "Accuracy and speed of the reader on camera-like synthetic scenes: the "
                                    "report of `digitlite eval`, with each scene's number as the truth.")
    parser.add_argument("--count", type=int, default=200, help="scenes to render and read")
    parser.add_argument("--seed", type=int, default=0, help="scene generator seed")
    _add_eval_options(parser)
    _add_model(parser)
    args = parser.parse_args(argv)
    if args.count < 1:
        print("digitlite eval-scenes: --count must be at least 1", file=sys.stderr)
        return 2
    meta = {"command": " ".join(["digitlite eval-scenes", *argv]), "scenes": args.count, "seed": args.seed,
            "source": f"digitdata.engine, MNIST test digits, seed {args.seed}"}
    return _evaluate_and_report("eval-scenes", args, meta,
                                lambda readers, thumbnail: eval_scenes(readers, args.count, args.seed, thumbnail))


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
        readers = {"digitlite": from_reader(_reader(args))}
    except _model_errors() as exc:
        print(f"digitlite {prog}: {exc}", file=sys.stderr)
        return 2
    about = {"digitlite": f"{args.reader} reader, {args.model}"
                          + (f" + {args.detector}" if args.reader == "learned" else "")
                          + f", {args.threads} interpreter thread(s)"}
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
                             "labels are digit strings, leading zeros count) beside the images or an images/ "
                             "folder. Exact-number and per-digit accuracy, overall and per kind, time per image, "
                             "and a contact sheet of the misses.")
    parser.add_argument("folder", type=Path, help="the folder with labels.csv (else truth.csv) and the images")
    parser.add_argument("--labels", type=Path, default=None,
                        help="the labels file; None: FOLDER/labels.csv, else FOLDER/truth.csv")
    _add_eval_options(parser)
    _add_model(parser)
    args = parser.parse_args(argv)
    from edge_app.evaluation import LabelsError, evaluate, labelled_samples

    try:
        labels, samples = labelled_samples(args.folder, decode_image, args.labels)
    except (LabelsError, OSError) as exc:
        print(f"digitlite eval: {exc}", file=sys.stderr)
        return 2
    meta = {"command": " ".join(["digitlite eval", *argv]), "folder": str(args.folder), "labels": str(labels)}
    return _evaluate_and_report("eval", args, meta,
                                lambda readers, thumbnail: evaluate(samples, readers, thumbnail))
