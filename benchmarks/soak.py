"""A live soak: thousands of frames of the synthetic source through the live loop, resident memory sampled.

The loop is the one every live mode runs (`edge_app.live.loop.LiveLoop`) with the sinks of `digitlite run --web`:
the readings history (a temporary SQLite file, WAL, synced at each reading), the JSON lines (discarded) and the
web stream (one annotated JPEG per frame). The synthetic source renders camera-like scenes from MNIST test
digits, each held for 30 frames, as fast as the loop takes them (no capture thread, no frame dropped). Resident
memory (RSS, /proc/self/statm) is sampled every `every` frames. `digitlite bench` runs this in a child
process and reports the samples; nothing is asserted: memory that grows shows as a slope in the report.

    python -m benchmarks.soak --frames 10000            # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from digitlite import HelpFormatter
from edge_app.live.sink import Frame, Sink
from edge_app.runtime import models_dir

FRAMES = 10_000  # the soak length
EVERY = 500  # frames between RSS samples
SEED = 3  # synthetic scenes (evaluation digits: MNIST test set)


def rss_mib() -> float:
    """This process's resident memory now, in MiB (peak RSS where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        from benchmarks.timing import peak_rss_mib

        return peak_rss_mib()


class RssSampler(Sink):
    """Records (frame number, RSS MiB) every `every` frames."""

    name = "rss sampler"

    def __init__(self, every: int):
        self.every, self.samples = every, []

    def on_frame(self, frame: Frame) -> None:
        if frame.number == 1 or frame.number % self.every == 0:
            self.samples.append([frame.number, round(rss_mib(), 2)])


def run_soak(model_path: str | Path, frames: int = FRAMES, every: int = EVERY, seed: int = SEED) -> dict:
    """Run the live loop for `frames` frames; RSS samples and the loop's counts.

    Returns:
        {"frames", "readings", "skipped", "seconds", "fps", "every", "rss_mib": [[frame, MiB], ...],
         "rss_first_mib", "rss_last_mib", "rss_max_mib", "rss_growth_mib_per_1000_frames" (from the second
         sample on: the first is before the caches warm), "history_bytes", "peak_rss_mib"}.
    """
    from benchmarks.timing import peak_rss_mib
    from edge_app.live.loop import LiveLoop, LoopSettings
    from edge_app.live.sources import Synthetic
    from edge_app.outputs.local import JsonLines
    from edge_app.store.history import ReadingStore
    from edge_app.web.stream import WebStream
    from edge_app.wiring import make_reader

    reader = make_reader(model_path, allow_unverified=True)  # any model given with --model
    sampler = RssSampler(every)
    with tempfile.TemporaryDirectory(prefix="digitlite-soak-") as tmp:
        history = ReadingStore(Path(tmp) / "readings.db")
        loop = LiveLoop(Synthetic(seed=seed, frames=frames, fps=None), reader, history,
                        [JsonLines(lambda line: None), WebStream(), sampler], LoopSettings(stable_frames=3),
                        source_name="synthetic", model_sha256=reader.integrity.sha256)
        started = time.perf_counter()
        loop.run()
        seconds = time.perf_counter() - started
        if sampler.samples[-1][0] != loop.status.frames:
            sampler.samples.append([loop.status.frames, round(rss_mib(), 2)])
        loop.close()
        history.close()
        history_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())
    samples = sampler.samples
    steady = samples[1:] if len(samples) > 2 else samples
    span = steady[-1][0] - steady[0][0]
    growth = (steady[-1][1] - steady[0][1]) / span * 1000 if span else 0.0
    return {"frames": loop.status.frames, "readings": loop.status.readings, "skipped": loop.status.skipped,
            "seconds": seconds, "fps": loop.status.frames / seconds, "every": every, "rss_mib": samples,
            "rss_first_mib": samples[0][1], "rss_last_mib": samples[-1][1],
            "rss_max_mib": max(s[1] for s in samples), "rss_growth_mib_per_1000_frames": round(growth, 3),
            "history_bytes": history_bytes, "peak_rss_mib": peak_rss_mib()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak the live loop on the synthetic source; RSS sampled.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", default=str(models_dir() / "digits_int8.tflite"), help="the .tflite classifier")
    parser.add_argument("--frames", type=int, default=FRAMES, help="frames through the loop")
    parser.add_argument("--every", type=int, default=EVERY, help="frames between RSS samples")
    parser.add_argument("--json-out", help="write the result here (default: stdout)")
    args = parser.parse_args(argv)
    if args.frames < 2 or args.every < 1:
        parser.error("--frames must be at least 2 and --every at least 1")
    from benchmarks.timing import emit_json

    return emit_json(run_soak(args.model, args.frames, min(args.every, args.frames)), args.json_out)


if __name__ == "__main__":
    sys.exit(main())
