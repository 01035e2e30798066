"""Interpreter `invoke` latency per model variant x threads x batch x XNNPACK on/off.

Only `invoke()` is timed: the input tensor is set once beforehand, so the figure is the kernels' time,
not numpy's quantization (the pipeline benchmark times that). Interpreters come from the one runtime
adapter, `edge_app.runtime.make_interpreter`.

    python -m benchmarks.invoke --model int8=models/digits_int8.tflite --threads 1 --batch 1 --runs 500
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.timing import summarize, time_calls
from digitlite import HelpFormatter
from edge_app.cli import thread_count
from edge_app.runtime import models_dir

log = logging.getLogger(__name__)

MODELS_DIR = models_dir()  # the released models, as every command finds them
VARIANT_ORDER = ("int8", "float32", "float16", "dynamic")  # released variants, reported in this order
THREADS = (1, 2, 4)  # one, the device default (runtime.DEFAULT_THREADS) and every core of a Pi 4/5
BATCHES = (1, 32)
RUNS = 2000  # timed invokes per configuration at batch 1 (fewer at larger batches, see runs_for)
WARMUP = 50  # untimed invokes first: XNNPACK packs weights and the thread pool spins up on the first calls
MAX_SECONDS = 3.0  # per configuration; caps slow ones (batch 32 without XNNPACK) on a shared 2-core machine


@dataclass
class InvokeCase:
    variant: str
    threads: int
    batch: int
    xnnpack: bool


def discover_models(models_dir: str | Path = MODELS_DIR) -> dict[str, Path]:
    """{variant: path} for every `digits_<variant>.tflite` in `models_dir`, released variants first, then the
    reader's graphs as `regions-<variant>` and `recognizer-<variant>`."""
    found = {p.stem.removeprefix("digits_"): p for p in sorted(Path(models_dir).glob("digits_*.tflite"))}
    order = [v for v in VARIANT_ORDER if v in found] + [v for v in found if v not in VARIANT_ORDER]
    graphs = {}
    for graph in READER_GRAPHS:
        found_graph = {f"{graph}-{p.stem.removeprefix(graph + '_')}": p
                       for p in sorted(Path(models_dir).glob(f"{graph}_*.tflite"))}
        graphs.update(sorted(found_graph.items(), key=lambda kv: kv[0] != f"{graph}-int8"))
    return {**{v: found[v] for v in order}, **graphs}


READER_GRAPHS = ("regions", "recognizer")  # the reader's models: one picture (one region) per invoke


def is_reader_graph(variant: str) -> bool:
    """The region finder and the recognizer run one input at a time: they are timed at batch 1 only."""
    return variant.split("-")[0] in READER_GRAPHS


def parse_model_specs(specs: list[str]) -> dict[str, Path]:
    """`--model VARIANT=PATH` values as {variant: path}."""
    models = {}
    for spec in specs:
        variant, sep, path = spec.partition("=")
        if not sep or not variant or not path:
            raise ValueError(f"bad --model {spec!r}: expected VARIANT=PATH, e.g. int8=models/digits_int8.tflite")
        models[variant] = Path(path)
    return models


def runs_for(batch: int, runs: int) -> int:
    """Timed calls for a batch size: the same number of images at every batch, at least 20 calls."""
    return max(20, runs // batch) if batch > 1 else runs


def random_input(detail: dict, batch: int, seed: int = 0) -> np.ndarray:
    """A random input tensor of the model's dtype (the kernels' time does not depend on the values)."""
    rng = np.random.default_rng(seed)
    shape = [batch, *[int(s) for s in detail["shape"][1:]]]
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def time_invoke(model_path: str | Path, case: InvokeCase, runs: int = RUNS, warmup: int = WARMUP,
                max_seconds: float | None = MAX_SECONDS, runtime: str | None = None) -> dict:
    """Latency of `invoke()` for one configuration.

    Args:
        model_path: the .tflite file.
        case: variant name (for the record), threads, batch, XNNPACK on/off.
        runs: timed calls at batch 1 (scaled down by `runs_for` for larger batches).
        warmup: untimed calls first.
        max_seconds: time budget of the timed calls.
        runtime: force a runtime (see edge_app.runtime.RUNTIMES).

    Returns:
        The case's fields, the runtime, p50/p90/p99/mean/min in µs per invoke, and `per_image_us`
        (p50 / batch). A configuration the runtime cannot build gets `status: "cannot run: <reason>"`.
    """
    from edge_app.runtime import ModelError, make_interpreter

    row = {**asdict(case), "model": str(model_path)}
    try:
        interpreter, info = make_interpreter(model_path, case.threads, case.xnnpack, runtime)
        detail = interpreter.get_input_details()[0]
        if case.batch != int(detail["shape"][0]):
            interpreter.resize_tensor_input(detail["index"], [case.batch, *[int(s) for s in detail["shape"][1:]]])
            interpreter.allocate_tensors()
            detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], random_input(detail, case.batch))
    except (ModelError, ValueError, RuntimeError) as exc:
        return {**row, "status": f"cannot run: {exc}"}
    stats = summarize(time_calls(interpreter.invoke, runs_for(case.batch, runs), warmup, max_seconds))
    return {**row, "status": "ok", "runtime": f"{info.name} {info.version}", **stats,
            "per_image_us": stats["p50_us"] / case.batch}


def run_invoke(models: dict[str, Path], threads: tuple[int, ...] = THREADS, batches: tuple[int, ...] = BATCHES,
               xnnpack: tuple[bool, ...] = (True, False), runs: int = RUNS, warmup: int = WARMUP,
               max_seconds: float | None = MAX_SECONDS) -> list[dict]:
    """Every combination of variant x threads x batch x XNNPACK; one row each (see `time_invoke`)."""
    rows = []
    for variant, path in models.items():
        for xnn in xnnpack:
            for batch in ((1,) if is_reader_graph(variant) else batches):
                for n_threads in threads:
                    row = time_invoke(path, InvokeCase(variant, n_threads, batch, xnn), runs, warmup, max_seconds)
                    log.info("invoke %-8s threads=%d batch=%-3d xnnpack=%-5s %s", variant, n_threads, batch, xnn,
                             f"p50 {row['p50_us']:.1f} µs" if row["status"] == "ok" else row["status"])
                    rows.append(row)
    return rows


def find_row(rows: list[dict], variant: str, threads: int = 1, batch: int = 1, xnnpack: bool = True) -> dict | None:
    """The successful row of one configuration, or None."""
    for row in rows:
        if (row["variant"], row["threads"], row["batch"], row["xnnpack"], row["status"]) == (
                variant, threads, batch, xnnpack, "ok"):
            return row
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Interpreter invoke latency of .tflite models.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", action="append", default=None, metavar="VARIANT=PATH",
                        help="a model to time (repeatable); without it, every digits_*.tflite in --models-dir")
    parser.add_argument("--models-dir", default=str(MODELS_DIR), help="where digits_<variant>.tflite live")
    parser.add_argument("--threads", type=thread_count, nargs="+", default=list(THREADS), help="interpreter threads")
    parser.add_argument("--batch", type=int, nargs="+", default=list(BATCHES), help="images per invoke")
    parser.add_argument("--xnnpack", choices=("on", "off", "both"), default="both", help="XNNPACK delegate")
    parser.add_argument("--runs", type=int, default=RUNS, help="timed invokes at batch 1")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed invokes first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    models = parse_model_specs(args.model) if args.model else discover_models(args.models_dir)
    xnn = {"on": (True,), "off": (False,), "both": (True, False)}[args.xnnpack]
    rows = run_invoke(models, tuple(args.threads), tuple(args.batch), xnn, args.runs, args.warmup)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
