"""Timing primitives shared by every benchmark: warm up, time N calls, summarise as percentiles.

Also owns the fixed numpy reference workload that each run times alongside the models. Absolute times
differ between machines and between two runs on a shared one; a figure divided by the reference measured
in the same run (`pipeline ms per frame / reference ms`) is what `digitlite bench --check` tracks.

    python -m benchmarks.timing            # times the reference workload and prints its summary
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable

import numpy as np

REFERENCE_SHAPE = (480, 640)  # one 640x480 frame's worth of float32 pixels
REFERENCE_SEED = 1234  # the workload's data never changes between runs


def summarize(samples_ns: np.ndarray | list[int], unit: str = "us") -> dict:
    """Percentiles and mean of timings given in nanoseconds.

    Args:
        samples_ns: one duration per timed call, in ns.
        unit: "us" or "ms": the unit of the returned figures (named in each key).

    Returns:
        {"p50_us", "p90_us", "p99_us", "mean_us", "min_us", "n"} (or the `_ms` keys).
    """
    divisor = {"us": 1e3, "ms": 1e6}[unit]
    x = np.asarray(samples_ns, np.float64) / divisor
    if x.size == 0:
        raise ValueError("no timings to summarise: run at least one timed call (--runs >= 1)")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {f"p50_{unit}": float(p50), f"p90_{unit}": float(p90), f"p99_{unit}": float(p99),
            f"mean_{unit}": float(x.mean()), f"min_{unit}": float(x.min()), "n": int(x.size)}


def time_calls(fn: Callable[[], object], runs: int, warmup: int, max_seconds: float | None = None) -> np.ndarray:
    """Call `fn` `warmup` times untimed, then up to `runs` times timed; durations in ns.

    Args:
        fn: the work to time, with its inputs already bound.
        runs: timed calls (at least one is always made).
        warmup: untimed calls first (caches, thread pools, lazy allocations).
        max_seconds: stop timing early once this much wall time has been spent (keeps slow configurations,
            such as batch 32 without XNNPACK, from dominating a run).
    """
    for _ in range(warmup):
        fn()
    samples = np.empty(max(1, runs), np.int64)
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    n = 0
    for n in range(1, len(samples) + 1):
        start = time.perf_counter_ns()
        fn()
        samples[n - 1] = time.perf_counter_ns() - start
        if deadline is not None and time.perf_counter() > deadline:
            break
    return samples[:n]


def reference_workload() -> Callable[[], float]:
    """A fixed, single-threaded numpy workload of about a millisecond: the yardstick for this machine.

    Elementwise maths, a reduction, a 3x3 box sum by shifted adds and a sort over one frame's worth of
    float32: memory-bound and ALU-bound work like the pipeline's, and no BLAS (whose thread count varies).
    """
    rng = np.random.default_rng(REFERENCE_SEED)
    frame = rng.random(REFERENCE_SHAPE, dtype=np.float32)
    row = frame[240].copy()

    def work() -> float:
        y = np.sqrt(frame * 1.5 + 0.25)
        box = y[:-2, :-2] + y[1:-1, :-2] + y[2:, :-2] + y[:-2, 1:-1] + y[1:-1, 1:-1] + y[2:, 1:-1]
        box += y[:-2, 2:] + y[1:-1, 2:] + y[2:, 2:]
        return float(box.sum()) + float(np.sort(row)[320])

    return work


def time_reference(runs: int = 200, warmup: int = 20) -> dict:
    """The reference workload's timing summary in ms."""
    return summarize(time_calls(reference_workload(), runs, warmup), unit="ms")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def emit_json(result: dict, json_out: str | None) -> int:
    """A sub-benchmark's result to `json_out` (the parent process reads it) or stdout; returns exit code 0."""
    text = json.dumps(result, indent=2)
    if json_out:
        from pathlib import Path

        Path(json_out).write_text(text)
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the fixed numpy reference workload.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="timed calls")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    args = parser.parse_args(argv)
    print(json.dumps(time_reference(args.runs, args.warmup), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
