"""Raspberry Pi figures: an ESTIMATE of invoke latency from measured MACs, and per-board reference bands.

Estimate (not a measurement): the model's multiply-accumulates per image (counted from the graph by
`benchmarks.graph`) over one core's peak MAC rate from published figures (`boards/published.csv`: clock
from the board's product brief, MACs per cycle from Arm's optimization guide for the core), at an assumed
15-50 % of peak, the range small convolutions reach with XNNPACK at batch 1:

    latency_us = MACs / (clock_GHz * 1e3 * MACs_per_cycle * efficiency)

Reference bands (`boards/reference.csv`, like pycoral's per-board CSVs): p50 ranges measured on a real
board, keyed by its model string (`/proc/device-tree/model`, e.g. "Raspberry Pi 4 Model B Rev 1.4"; the
CPU model on machines without a device tree). `digitlite bench --board FILE` compares the latest record
with the rows for this machine; `--write-band` adds rows from a run on the board itself.

    python -m benchmarks.boards --macs 5532544        # prints the estimate table
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PUBLISHED = HERE / "boards" / "published.csv"
REFERENCE = HERE / "boards" / "reference.csv"
EFFICIENCY = (0.15, 0.50)  # assumed fraction of one core's peak MAC rate (pessimistic, optimistic)
BAND = 0.30  # --write-band: a measured p50 +-30 %, a board's run-to-run spread with the governor pinned
BAND_FIELDS = ("board", "variant", "threads", "batch", "xnnpack", "p50_us_low", "p50_us_high", "source")


def read_csv(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"board file {path} not found; the shipped ones are {PUBLISHED} and {REFERENCE}")
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if row and not str(row.get("board", "")).startswith("#")]


def pi_estimate(macs_per_image: int, published: str | Path = PUBLISHED) -> list[dict]:
    """Estimated single-core, batch-1 invoke latency per board for float32 and int8 (an ESTIMATE).

    Args:
        macs_per_image: multiply-accumulates of one inference, from the graph.
        published: CSV of per-board clock and MACs per cycle.

    Returns:
        One row per board: {"board", "cpu", "variant", "estimate_us_low", "estimate_us_high", "basis"}.
    """
    rows = []
    for board in read_csv(published):
        clock_ghz = float(board["clock_ghz"])
        for variant, column in (("float32", "fp32_macs_per_cycle"), ("int8", "int8_macs_per_cycle")):
            peak_macs_per_us = clock_ghz * 1e3 * float(board[column])
            rows.append({
                "board": board["board"], "cpu": board["cpu"], "variant": variant, "threads": 1, "batch": 1,
                "estimate_us_low": macs_per_image / (peak_macs_per_us * EFFICIENCY[1]),
                "estimate_us_high": macs_per_image / (peak_macs_per_us * EFFICIENCY[0]),
                "basis": f"{macs_per_image} MACs / ({clock_ghz} GHz x {board[column]} MACs/cycle x "
                         f"{EFFICIENCY[0]:.0%}-{EFFICIENCY[1]:.0%} assumed efficiency)",
            })
    return rows


def machine_key(machine: dict) -> str:
    """The string a reference band is keyed by: the board model, else the CPU model."""
    return machine.get("board") or machine.get("cpu_model") or "unknown"


def check_bands(record: dict, reference: str | Path) -> list[dict]:
    """Compare the record's invoke p50s with the reference rows for its machine.

    Returns:
        One row per matching reference row: {..., "measured_us", "verdict": "in band" | "slower" | "faster" |
        "not measured"}. Empty when the file has no row for this machine.
    """
    key = machine_key(record["machine"])
    results = []
    for ref in read_csv(reference):
        if not key.startswith(ref["board"]):
            continue
        match = next((r for r in record.get("invoke", []) if r.get("status") == "ok"
                      and r["variant"] == ref["variant"] and r["threads"] == int(ref["threads"])
                      and r["batch"] == int(ref["batch"]) and r["xnnpack"] == (ref["xnnpack"].lower() == "true")),
                     None)
        low, high = float(ref["p50_us_low"]), float(ref["p50_us_high"])
        if match is None:
            verdict, measured = "not measured", None
        else:
            measured = match["p50_us"]
            verdict = "slower" if measured > high else "faster" if measured < low else "in band"
        results.append({"board": ref["board"], "variant": ref["variant"], "threads": int(ref["threads"]),
                        "batch": int(ref["batch"]), "xnnpack": ref["xnnpack"].lower() == "true", "p50_us_low": low,
                        "p50_us_high": high, "source": ref.get("source", ""), "measured_us": measured,
                        "verdict": verdict})
    return results


def band_rows(record: dict, band: float = BAND) -> list[dict]:
    """Reference rows (p50 +- band) for this record's machine from its single-image and batch-32 invokes."""
    key = machine_key(record["machine"])
    rows = []
    for r in record.get("invoke", []):
        if r.get("status") != "ok":
            continue
        rows.append({"board": key, "variant": r["variant"], "threads": r["threads"], "batch": r["batch"],
                     "xnnpack": r["xnnpack"], "p50_us_low": round(r["p50_us"] / (1 + band), 1),
                     "p50_us_high": round(r["p50_us"] * (1 + band), 1),
                     "source": f"measured {record['date'][:10]} commit {str(record['git'].get('commit'))[:8]}"})
    return rows


def write_band(record: dict, path: str | Path, band: float = BAND) -> int:
    """Replace this machine's rows in the reference CSV with bands from `record`; the number written."""
    path = Path(path)
    key = machine_key(record["machine"])
    kept = [r for r in read_csv(path) if r["board"] != key] if path.is_file() else []
    new = band_rows(record, band)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=BAND_FIELDS)
        writer.writeheader()
        writer.writerows(kept + new)
    return len(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Raspberry Pi latency estimate from MACs (an ESTIMATE).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--macs", type=int, required=True, help="multiply-accumulates per image")
    parser.add_argument("--published", default=str(PUBLISHED), help="per-board clock and MACs/cycle CSV")
    args = parser.parse_args(argv)
    print("ESTIMATE, not a measurement: MACs over published peak rates at an assumed efficiency")
    for row in pi_estimate(args.macs, args.published):
        print(f"  {row['board']:<28} {row['variant']:<8} {row['estimate_us_low']:8.0f} - "
              f"{row['estimate_us_high']:8.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
