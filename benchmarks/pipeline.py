"""End-to-end reading pipeline on camera-like 640x480 frames: latency per stage and frames per second.

Frames are engine camera frames (`digitdata.engine`: MNIST test digits photographed badly), rendered before
timing starts; "capture" is taking the next frame from that ring as a fresh buffer, as a camera driver
hands one over, so the figure is the device's work per frame and not the scene renderer's. The reader
(`edge_app.read.DigitReader`) reports its own stages (find, read, group, total); the benchmark adds capture
and the wall time per frame, from which frames per second follow.

One core: this module pins itself with `os.sched_setaffinity` before importing numpy/OpenCV, so their
thread pools see one CPU; `digitlite bench` runs it in a child process per core setting.

    python -m benchmarks.pipeline --model models/digits_int8.tflite --cores 1 --frames 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from digitlite import HelpFormatter
from edge_app.runtime import models_dir

MODELS_DIR = models_dir()  # the released models, as every command finds them
FRAMES = 500  # timed frames
WARMUP = 20  # untimed frames first
DISTINCT_SCENES = 24  # rendered once, then cycled; enough variety in digit count and clutter
SCENE_SEED = 7
FRAME_SIZE = (640, 480)  # (width, height) px


def pin_cores(cores: int | None) -> list[int]:
    """Restrict this process to its first `cores` allowed CPUs (None: leave as is); the CPUs it may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores is not None:
        if not 1 <= cores <= len(allowed):
            raise ValueError(f"--cores {cores}: this process may use {len(allowed)} CPUs ({allowed}); "
                             f"pass 1..{len(allowed)} or leave it out for all")
        os.sched_setaffinity(0, allowed[:cores])
    return sorted(os.sched_getaffinity(0))


def run_pipeline(model_path: str | Path, frames: int = FRAMES, warmup: int = WARMUP,
                 distinct: int = DISTINCT_SCENES, seed: int = SCENE_SEED) -> dict:
    """Time capture -> reading on pre-rendered 640x480 scenes with the CPUs this process may use.

    Args:
        model_path: the .tflite classifier.
        frames: timed frames.
        warmup: untimed frames first.
        distinct: scenes rendered and cycled through.
        seed: scene generator seed (the same scenes every run).

    Returns:
        {"cpus", "threads", "frames", "stages_ms": {stage: summary}, "frame_ms": summary, "fps",
         "digits_per_frame", "exact_reading_rate", "peak_rss_mib"}.
    """
    import cv2
    import numpy as np

    from benchmarks.timing import peak_rss_mib, summarize
    from digitdata import engine
    from digitdata.mnist import load_mnist
    from edge_app.runtime import DEFAULT_THREADS
    from edge_app.wiring import make_reader

    cpus = sorted(os.sched_getaffinity(0))
    cv2.setNumThreads(len(cpus))
    threads = min(len(cpus), DEFAULT_THREADS)  # as the device runs it, within the CPUs this run may use
    reader = make_reader(model_path, threads=threads, allow_unverified=True)  # any model given with --model
    mnist = load_mnist()
    rng = np.random.default_rng(seed)
    scenes = [engine.render(rng, mnist.x_test, mnist.y_test, kind="frame") for _ in range(max(1, distinct))]

    stage_ns: dict[str, list[int]] = {}
    frame_ns: list[int] = []
    digits, exact = 0, 0
    for i in range(warmup + frames):
        scene = scenes[i % len(scenes)]
        start = time.perf_counter_ns()
        frame_bgr = scene.image_bgr.copy()  # capture: the driver hands over a fresh buffer
        captured = time.perf_counter_ns()
        reading = reader.read(frame_bgr)
        end = time.perf_counter_ns()
        if i < warmup:
            continue
        frame_ns.append(end - start)
        stage_ns.setdefault("capture", []).append(captured - start)
        for stage, ms in reading.latency_ms.items():
            stage_ns.setdefault(stage, []).append(int(ms * 1e6))
        digits += _digit_count(reading)
        exact += _reading_text(reading) == "".join(scene.text.split())
    frame_summary = summarize(frame_ns, unit="ms")
    return {
        "cpus": cpus,
        "threads": threads,
        "frame_size": list(FRAME_SIZE),
        "frames": frames,
        "distinct_scenes": len(scenes),
        "model": str(model_path),
        "stages_ms": {stage: summarize(ns, unit="ms") for stage, ns in stage_ns.items()},
        "frame_ms": frame_summary,
        "fps": 1000.0 / frame_summary["mean_ms"],
        "digits_per_frame": digits / max(1, frames),
        "exact_reading_rate": exact / max(1, frames),
        "peak_rss_mib": peak_rss_mib(),
    }


def _reading_text(reading) -> str:
    """All digits the reader found, left to right and top to bottom, as one string."""
    text = getattr(reading, "text", None)
    if text is None:
        numbers = getattr(reading, "numbers", [])
        text = "".join(getattr(n, "text", str(n)) for n in numbers)
    return "".join(ch for ch in str(text) if ch.isdigit())


def _digit_count(reading) -> int:
    for name in ("digits", "detections"):
        if hasattr(reading, name):
            return len(getattr(reading, name))
    return len(_reading_text(reading))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="End-to-end reading pipeline latency and FPS on 640x480 frames.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", default=str(MODELS_DIR / "digits_int8.tflite"), help="the .tflite classifier")
    parser.add_argument("--cores", type=int, default=None, help="pin to this many CPUs (default: all allowed)")
    parser.add_argument("--frames", type=int, default=FRAMES, help="timed frames")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed frames first")
    parser.add_argument("--distinct", type=int, default=DISTINCT_SCENES, help="scenes rendered and cycled")
    parser.add_argument("--json-out", help="write the result here (default: stdout)")
    args = parser.parse_args(argv)
    pin_cores(args.cores)  # before numpy/OpenCV start their thread pools
    result = run_pipeline(args.model, args.frames, args.warmup, args.distinct)
    from benchmarks.timing import emit_json

    return emit_json(result, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
