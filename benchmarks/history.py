"""The benchmark history: `benchmarks/history.jsonl` records, same-run ratios, the regression check, the plot.

One JSON line per run. Absolute times are recorded but never judged: machines differ and a shared one is
noisy. What is judged are ratios measured within one run (each lower-is-better):

    int8_over_float32             int8 invoke p50 / float32 invoke p50 (1 thread, batch 1, XNNPACK)
    int8_b32_over_float32_b32     the same at batch 32
    int8_over_reference           int8 invoke p50 / the fixed numpy reference workload's p50
    pipeline_1core_over_reference pipeline ms per frame on one core / reference ms
    pipeline_all_over_reference   pipeline ms per frame on all cores / reference ms

`check` compares the latest record's ratios with the median of up to `window` earlier records from the
same CPU model (all earlier records when none match) and fails a ratio above median * (1 + band).

    python -m benchmarks.history --check          # also: --plot, --show
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HISTORY = HERE / "history.jsonl"
PLOT = HERE / "latency.png"
BAND = 0.25  # a ratio more than 25 % above its history's median is a regression; same-run ratios vary ~10 %
WINDOW = 10  # earlier records the baseline is the median of
RATIO_HELP = {
    "int8_over_float32": "int8 / float32 invoke p50 (1 thread, batch 1)",
    "int8_b32_over_float32_b32": "int8 / float32 invoke p50 (1 thread, batch 32)",
    "int8_over_reference": "int8 invoke p50 / numpy reference p50",
    "pipeline_1core_over_reference": "pipeline ms per frame (1 core) / numpy reference",
    "pipeline_all_over_reference": "pipeline ms per frame (all cores) / numpy reference",
    "detector_int8_over_float32": "detector int8 / float32 invoke p50 (1 thread; the detector left the device)",
    "detector_int8_over_reference": "detector int8 invoke p50 / numpy reference p50 (the detector left the device)",
    "regions_int8_over_float32": "region finder int8 / float32 invoke p50 (1 thread)",
    "recognizer_int8_over_float32": "recognizer int8 / float32 invoke p50 (1 thread)",
}


# ---------------------------------------------------------------------------------------------- records


def load(path: str | Path = HISTORY) -> list[dict]:
    """All records, oldest first; a missing file is an empty history."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number} is not a JSON record ({exc}); fix or delete that line") from exc
    return records


def append(record: dict, path: str | Path = HISTORY) -> None:
    """Add one record as one line (the file is append-only: earlier lines are never rewritten)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")


def _invoke_p50(record: dict, variant: str, batch: int = 1) -> float | None:
    for row in record.get("invoke", []):
        if (row.get("status"), row.get("variant"), row.get("threads"), row.get("batch"), row.get("xnnpack")) == (
                "ok", variant, 1, batch, True):
            return row["p50_us"]
    return None


def ratios(record: dict) -> dict[str, float]:
    """The same-run ratios of one record (those whose parts were measured)."""
    out = {}
    ref_ms = (record.get("reference") or {}).get("p50_ms")
    int8, f32 = _invoke_p50(record, "int8"), _invoke_p50(record, "float32")
    int8_32, f32_32 = _invoke_p50(record, "int8", 32), _invoke_p50(record, "float32", 32)
    if int8 and f32:
        out["int8_over_float32"] = int8 / f32
    if int8_32 and f32_32:
        out["int8_b32_over_float32_b32"] = int8_32 / f32_32
    det8, det32 = _invoke_p50(record, "detector-int8"), _invoke_p50(record, "detector-float32")
    if det8 and det32:
        out["detector_int8_over_float32"] = det8 / det32
    for graph in ("regions", "recognizer"):
        g8, g32 = _invoke_p50(record, f"{graph}-int8"), _invoke_p50(record, f"{graph}-float32")
        if g8 and g32:
            out[f"{graph}_int8_over_float32"] = g8 / g32
    if ref_ms:
        if int8:
            out["int8_over_reference"] = int8 / (ref_ms * 1e3)
        if det8:
            out["detector_int8_over_reference"] = det8 / (ref_ms * 1e3)
        for cores in ("1core", "all"):
            run = (record.get("pipeline") or {}).get(cores) or {}
            if run.get("status") == "ok":
                out[f"pipeline_{cores}_over_reference"] = run["frame_ms"]["mean_ms"] / ref_ms
    return out


# ---------------------------------------------------------------------------------------------- check


def check(latest: dict, earlier: list[dict], band: float = BAND, window: int = WINDOW) -> list[dict]:
    """Each of the latest record's ratios against its baseline.

    Args:
        latest: the record to judge.
        earlier: records before it, oldest first.
        band: allowed rise over the baseline (0.25: +25 %).
        window: the baseline is the median of this many most recent comparable records.

    Returns:
        One row per ratio: {"ratio", "value", "baseline", "limit", "n", "verdict"}, verdict one of
        "ok", "REGRESSION", "no baseline".
    """
    cpu = (latest.get("machine") or {}).get("cpu_model")
    same_cpu = [r for r in earlier if (r.get("machine") or {}).get("cpu_model") == cpu]
    pool = (same_cpu or earlier)[-window:]
    rows = []
    for name, value in ratios(latest).items():
        history = [v for r in pool if (v := ratios(r).get(name)) is not None]
        if not history:
            rows.append({"ratio": name, "value": value, "baseline": None, "limit": None, "n": 0,
                         "verdict": "no baseline"})
            continue
        baseline = statistics.median(history)
        limit = baseline * (1 + band)
        rows.append({"ratio": name, "value": value, "baseline": baseline, "limit": limit, "n": len(history),
                     "verdict": "REGRESSION" if value > limit else "ok"})
    return rows


def format_check(rows: list[dict], band: float) -> str:
    lines = [f"{'ratio (lower is better)':<32} {'now':>8} {'median':>8} {'limit':>8}  verdict   (band +{band:.0%})"]
    for r in rows:
        base = "-" if r["baseline"] is None else f"{r['baseline']:.3f}"
        limit = "-" if r["limit"] is None else f"{r['limit']:.3f}"
        lines.append(f"{r['ratio']:<32} {r['value']:>8.3f} {base:>8} {limit:>8}  {r['verdict']} (n={r['n']})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- plot


def plot(records: list[dict], out: str | Path = PLOT, band: float = BAND) -> Path:
    """Absolute latencies and same-run ratios over the history, one point per record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise ValueError("the history is empty: run `digitlite bench` first")
    x = list(range(len(records)))
    labels = [f"{r['date'][:10]}\n{str((r.get('git') or {}).get('commit'))[:7]}" for r in records]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    series = {
        "int8 invoke p50 (µs)": [_invoke_p50(r, "int8") for r in records],
        "float32 invoke p50 (µs)": [_invoke_p50(r, "float32") for r in records],
        "pipeline 1 core (µs/frame)": [((r.get("pipeline") or {}).get("1core") or {}).get("frame_ms", {})
                                       .get("mean_ms", float("nan")) * 1e3 for r in records],
        "numpy reference (µs)": [((r.get("reference") or {}).get("p50_ms") or float("nan")) * 1e3 for r in records],
    }
    for name, values in series.items():
        top.plot(x, [float("nan") if v is None else v for v in values], marker="o", label=name)
    top.set_yscale("log")
    top.set_ylabel("time (log scale)")
    top.set_title("digitlite benchmarks: absolute times (machine-dependent, never asserted)")
    top.legend(fontsize=8)
    top.grid(True, alpha=0.3)
    all_ratios = [ratios(r) for r in records]
    for name in RATIO_HELP:
        values = [rs.get(name, float("nan")) for rs in all_ratios]
        if all(v != v for v in values):
            continue
        line = bottom.plot(x, values, marker="o", label=RATIO_HELP[name])[0]
        known = [v for v in values if v == v]
        median = statistics.median(known)
        bottom.axhspan(median, median * (1 + band), color=line.get_color(), alpha=0.08)
    bottom.set_yscale("log")
    bottom.set_ylabel("same-run ratio (lower is better)")
    bottom.set_title(f"tracked by `digitlite bench --check` (shaded: median to +{band:.0%})")
    bottom.legend(fontsize=8)
    bottom.grid(True, alpha=0.3)
    bottom.set_xticks(x, labels, fontsize=7, rotation=0 if len(x) < 8 else 45)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark history: check for regressions, plot, show.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--history", default=str(HISTORY), help="the JSON-lines history")
    parser.add_argument("--check", action="store_true", help="judge the latest record against the earlier ones")
    parser.add_argument("--plot", nargs="?", const=str(PLOT), help="draw the history to this PNG")
    parser.add_argument("--band", type=float, default=BAND, help="allowed rise of a ratio over its baseline")
    parser.add_argument("--show", action="store_true", help="print the latest record's ratios")
    args = parser.parse_args(argv)
    records = load(args.history)
    if not records:
        print(f"{args.history}: no records yet; run `digitlite bench` first", file=sys.stderr)
        return 1 if args.check else 0
    status = 0
    if args.show:
        print(json.dumps(ratios(records[-1]), indent=2))
    if args.plot:
        print(f"wrote {plot(records, args.plot, args.band)}")
    if args.check:
        rows = check(records[-1], records[:-1], args.band)
        print(format_check(rows, args.band))
        status = 1 if any(r["verdict"] == "REGRESSION" for r in rows) else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
