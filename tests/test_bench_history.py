"""Benchmark bookkeeping on synthetic records: history append/load, same-run ratios, the regression check,
the plot, the README tables, the Raspberry Pi estimate and reference bands. No timing is measured here."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks import boards, history, report
from benchmarks.cli import bench_main
from benchmarks.graph import _macs


def make_record(int8_us: float = 100.0, float32_us: float = 150.0, reference_ms: float = 1.0,
                pipeline_ms: float = 5.0, cpu: str = "Test CPU", commit: str = "abc1234", board: str | None = None,
                date: str = "2026-01-01T00:00:00+00:00") -> dict:
    """A record with the fields the bookkeeping reads; int8 is at `int8_us`, float32 at `float32_us`."""
    invoke = []
    for variant, p50 in (("int8", int8_us), ("float32", float32_us)):
        for batch in (1, 32):
            invoke.append({"variant": variant, "threads": 1, "batch": batch, "xnnpack": True, "status": "ok",
                           "p50_us": p50 * batch, "p90_us": p50 * batch * 1.1, "p99_us": p50 * batch * 1.3,
                           "mean_us": p50 * batch, "min_us": p50 * batch * 0.9, "n": 100, "per_image_us": p50})
    pipeline = {label: {"status": "ok", "threads": 1, "fps": 1000 / pipeline_ms,
                        "frame_ms": {"mean_ms": pipeline_ms, "p50_ms": pipeline_ms, "p90_ms": pipeline_ms * 1.2},
                        "stages_ms": {"capture": {"p50_ms": 0.1}, "find": {"p50_ms": pipeline_ms * 0.7},
                                      "classify": {"p50_ms": pipeline_ms * 0.2}}}
                for label in ("1core", "all")}
    record = {
        "schema": 1, "date": date, "git": {"commit": commit, "dirty": False},
        "machine": {"cpu_model": cpu, "board": board, "arch": "x86_64", "cpus_allowed": 2, "governor_warning": None},
        "versions": {"ai-edge-litert": "2.3.0", "numpy": "2.4.6", "python": "3.11.7"},
        "settings": {"runs": 100},
        "reference": {"p50_ms": reference_ms},
        "models": {"int8": {"file_bytes": 46000, "params": 35514, "macs": 5_532_544}},
        "invoke": invoke, "pipeline": pipeline,
        "peers": {"rows": [
            {"peer": "LiteRT int8", "batch": 1, "status": "ok", "p50_us": int8_us, "ratio_to_int8": 1.0},
            {"peer": "OpenCV DNN .tflite int8", "batch": 1, "status": "cannot run: no RELU | lookup table"},
        ]},
        "memory": {"invoke process": 80.0},
        "pi_estimate": boards.pi_estimate(5_532_544),
        "targets": [{"name": "int8 invoke p50", "target": "<= 30 µs", "unit": "µs", "measured": int8_us,
                     "met": int8_us <= 30}],
    }
    record["ratios"] = history.ratios(record)
    return record


# ---------------------------------------------------------------------------------------------- records


def test_append_and_load_round_trip_one_line_per_record(tmp_path):
    path = tmp_path / "history.jsonl"
    assert history.load(path) == []
    first, second = make_record(commit="aaa"), make_record(commit="bbb")
    history.append(first, path)
    history.append(second, path)
    assert len(path.read_text().splitlines()) == 2
    loaded = history.load(path)
    assert [r["git"]["commit"] for r in loaded] == ["aaa", "bbb"]
    assert loaded[0] == json.loads(json.dumps(first))


def test_load_names_the_corrupt_line(tmp_path):
    path = tmp_path / "history.jsonl"
    history.append(make_record(), path)
    with path.open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"history.jsonl:2"):
        history.load(path)


def test_ratios_are_same_run_quotients():
    r = history.ratios(make_record(int8_us=80, float32_us=160, reference_ms=2.0, pipeline_ms=6.0))
    assert r["int8_over_float32"] == pytest.approx(0.5)
    assert r["int8_b32_over_float32_b32"] == pytest.approx(0.5)
    assert r["int8_over_reference"] == pytest.approx(80 / 2000)
    assert r["pipeline_1core_over_reference"] == pytest.approx(3.0)


def test_ratios_skip_parts_not_measured():
    record = make_record()
    record["pipeline"]["1core"] = {"status": "cannot run: no reader"}
    del record["invoke"]
    assert set(history.ratios(record)) == {"pipeline_all_over_reference"}


# ---------------------------------------------------------------------------------------------- check


def _verdicts(rows):
    return {r["ratio"]: r["verdict"] for r in rows}


def test_check_passes_within_band_even_when_absolute_times_double():
    earlier = [make_record(int8_us=100, float32_us=150, reference_ms=1.0, pipeline_ms=5.0) for _ in range(5)]
    # A machine twice as slow: every absolute time doubles, every ratio stays.
    latest = make_record(int8_us=200, float32_us=300, reference_ms=2.0, pipeline_ms=10.0)
    rows = history.check(latest, earlier, band=0.25)
    assert set(_verdicts(rows).values()) == {"ok"}, rows


def test_check_flags_a_ratio_beyond_the_band_and_only_that_one():
    earlier = [make_record(pipeline_ms=5.0) for _ in range(5)]
    latest = make_record(pipeline_ms=5.0 * 1.4)  # the pipeline got 40 % slower against the same reference
    verdicts = _verdicts(history.check(latest, earlier, band=0.25))
    assert verdicts["pipeline_1core_over_reference"] == "REGRESSION"
    assert verdicts["int8_over_float32"] == "ok"
    assert verdicts["int8_over_reference"] == "ok"


def test_check_just_inside_and_just_outside_the_band():
    earlier = [make_record(int8_us=100, float32_us=100)]
    inside = history.check(make_record(int8_us=124, float32_us=100), earlier, band=0.25)
    outside = history.check(make_record(int8_us=126, float32_us=100), earlier, band=0.25)
    assert _verdicts(inside)["int8_over_float32"] == "ok"
    assert _verdicts(outside)["int8_over_float32"] == "REGRESSION"


def test_check_baseline_is_the_median_of_the_window_so_one_outlier_does_not_move_it():
    earlier = [make_record(int8_us=100, float32_us=100) for _ in range(4)] + [make_record(int8_us=300,
                                                                                          float32_us=100)]
    row = next(r for r in history.check(make_record(int8_us=130, float32_us=100), earlier, band=0.25)
               if r["ratio"] == "int8_over_float32")
    assert row["baseline"] == pytest.approx(1.0) and row["n"] == 5 and row["verdict"] == "REGRESSION"


def test_check_prefers_records_from_the_same_cpu():
    other_cpu = [make_record(int8_us=300, float32_us=100, cpu="Cortex-A72") for _ in range(3)]
    same_cpu = [make_record(int8_us=100, float32_us=100, cpu="Test CPU")]
    row = next(r for r in history.check(make_record(int8_us=100, float32_us=100), other_cpu + same_cpu)
               if r["ratio"] == "int8_over_float32")
    assert row["baseline"] == pytest.approx(1.0) and row["n"] == 1


def test_check_without_history_has_no_baseline():
    assert set(_verdicts(history.check(make_record(), [])).values()) == {"no baseline"}


def test_bench_check_exit_codes(tmp_path, capsys):
    path = tmp_path / "history.jsonl"
    for _ in range(3):
        history.append(make_record(), path)
    history.append(make_record(int8_us=105), path)
    assert bench_main(["--check", "--history", str(path)]) == 0
    history.append(make_record(int8_us=200), path)
    assert bench_main(["--check", "--history", str(path)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert bench_main(["--check", "--history", str(tmp_path / "empty.jsonl")]) == 2


# ---------------------------------------------------------------------------------------------- outputs


def test_plot_writes_a_png(tmp_path):
    records = [make_record(int8_us=100 + i, commit=f"c{i}") for i in range(4)]
    out = history.plot(records, tmp_path / "latency.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_plot_and_table_from_history(tmp_path):
    path = tmp_path / "history.jsonl"
    history.append(make_record(), path)
    png, md = tmp_path / "p.png", tmp_path / "latest.md"
    assert bench_main(["--plot", str(png), "--table", "--table-out", str(md), "--history", str(path)]) == 0
    assert png.stat().st_size > 0 and "| int8, batch 1 |" in md.read_text()


def test_table_has_every_section_and_marks_the_pi_figures_as_an_estimate():
    text = report.render(make_record())
    for heading in ("Interpreter invoke", "Reading pipeline", "Peers", "Models", "Targets", "Same-run ratios",
                    "ESTIMATE, not measured"):
        assert heading in text, heading
    # A peer that cannot run is listed with its reason, and a '|' in the reason cannot break the table.
    assert "cannot run [1]" in text and "[1] no RELU / lookup table" in text


# ---------------------------------------------------------------------------------------------- boards and graph


def test_pi_estimate_follows_the_formula():
    rows = boards.pi_estimate(1_000_000)
    pi4_int8 = next(r for r in rows if r["board"] == "Raspberry Pi 4 Model B" and r["variant"] == "int8")
    # 1e6 MACs / (1.5 GHz * 16 MACs/cycle) = 41.7 µs at 100 %; the band is 15 %..50 % of that peak.
    assert pi4_int8["estimate_us_low"] == pytest.approx(1e6 / (1.5e3 * 16 * 0.5))
    assert pi4_int8["estimate_us_high"] == pytest.approx(1e6 / (1.5e3 * 16 * 0.15))
    assert all(r["estimate_us_low"] < r["estimate_us_high"] for r in rows)


def test_reference_band_written_on_a_board_then_checked(tmp_path):
    band_file = tmp_path / "reference.csv"
    on_pi = make_record(int8_us=400, float32_us=900, board="Raspberry Pi 4 Model B Rev 1.4")
    assert boards.write_band(on_pi, band_file, band=0.3) == 4
    rows = list(csv.DictReader(band_file.open()))
    assert {r["board"] for r in rows} == {"Raspberry Pi 4 Model B Rev 1.4"}
    assert [r["verdict"] for r in boards.check_bands(on_pi, band_file)] == ["in band"] * 4
    slower = make_record(int8_us=600, float32_us=900, board="Raspberry Pi 4 Model B Rev 1.4")
    verdicts = {(r["variant"], r["batch"]): r["verdict"] for r in boards.check_bands(slower, band_file)}
    assert verdicts[("int8", 1)] == "slower" and verdicts[("float32", 1)] == "in band"
    # Another machine has no rows in this file.
    assert boards.check_bands(make_record(cpu="AMD EPYC"), band_file) == []


def test_bench_board_exit_code(tmp_path):
    path, band_file = tmp_path / "history.jsonl", tmp_path / "reference.csv"
    history.append(make_record(int8_us=100), path)
    assert bench_main(["--write-band", str(band_file), "--history", str(path)]) == 0
    assert bench_main(["--board", str(band_file), "--history", str(path)]) == 0
    history.append(make_record(int8_us=200), path)
    assert bench_main(["--board", str(band_file), "--history", str(path)]) == 1


def test_macs_per_op_from_shapes():
    assert _macs("CONV_2D", [[1, 28, 28, 1], [16, 3, 3, 1], [16]], [1, 28, 28, 16]) == 28 * 28 * 16 * 9
    assert _macs("DEPTHWISE_CONV_2D", [[1, 14, 14, 32], [1, 3, 3, 32], [32]], [1, 14, 14, 32]) == 14 * 14 * 32 * 9
    assert _macs("FULLY_CONNECTED", [[4, 64], [10, 64], [10]], [4, 10]) == 4 * 64 * 10
    assert _macs("MAX_POOL_2D", [[1, 28, 28, 16]], [1, 14, 14, 16]) == 0
