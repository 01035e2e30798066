"""The reader's models' gated conversion: the recognizer and the region finder, float32 and int8 .tflite,
checked through LiteRT (the device's adapters), released only if they pass.

Recognizer checks (`RecognizerGate`), all on MNIST **test** digits: exact-string accuracy on a fixed set of
rendered regions, the share of digit-free regions read as nothing, the 10,000 test digits read one at a time
(with per-class accuracy, float32 vs int8, as for the classifier); float32 within `max_keras_gap` points of
Keras, int8 within `max_drop` points of float32 on each figure, both above the floors.
Region finder checks (`RegionGate`): precision and recall of number lines on the fixed validation scenes of
every mix of the data engine (held-out training digits), the same tolerances.
Files move into the output folder (one rename each, then the manifest) only when every check passed.

    digitlite convert runs/recognizer/model.keras --out models/
    digitlite convert runs/regions/model.keras --out models/
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convert import manifest
from digitdata import ctc, engine, lines, realsets, regions, scene_sets
from digitdata.mnist import find_mnist
from digitdata.progress import progress

TASKS = ("recognizer", "regions")
FILE_NAMES = {"recognizer": {"float32": "recognizer_float32.tflite", "int8": "recognizer_int8.tflite"},
              "regions": {"float32": "regions_float32.tflite", "int8": "regions_int8.tflite"}}
CALIBRATION_SEED = 7  # the training regions or scenes used to calibrate int8 (never a validation or test seed)
GATE_LINES = 2000  # regions rendered from MNIST test digits for the recognizer's gate ...
GATE_SEED = 20_261_204  # ... from this seed


@dataclass
class RecognizerGate:
    # Reader v4 (issue 31) renders the gate regions with the pen model (ballpoint to marker, small zeros,
    # handwritten words): a harder set. Floors 2 points under v4's float32 there (exact 70.8 %, digit-free read as
    # nothing 94.7 %); v3.1, released under the old floors (78 %, 88 %), measures 66.2 % and 94.4 % on it. The
    # issue-21 floor of 99.0 % for MNIST test digits one at a time stays (v4: 99.00 %, v3.1: 99.22 %).
    min_exact: float = 0.68  # exact strings on the gate regions with digits
    min_nothing: float = 0.92  # digit-free gate regions read as nothing
    min_mnist_single: float = 0.99  # MNIST test digits one at a time
    # 357 digit-free regions: one region is 0.28 points, so 0.5 points was a tolerance of one region's noise.
    max_drop: float = 1.0  # percentage points int8 may lose against float32 (each figure)
    max_keras_gap: float = 0.3  # percentage points float32 .tflite may differ from Keras (each figure)


@dataclass
class RegionGate:
    # Reader v4 (issue 31) renders the validation scenes with the pen model: a harder set. Floors 2 points under
    # v4's float32 there (recall 71.7 %, precision 68.3 % of number lines at IoU 0.5 on the 800 validation scenes;
    # a region on a printed word counts against precision: the recognizer drops it); v3.1, released under the old
    # floors (74 %, 69 %), measures recall 62.4 % and precision 60.6 % on it.
    min_recall: float = 0.69  # of the number lines in the validation scenes, found at IoU >= 0.5
    min_precision: float = 0.66  # of the regions found, on a number line at IoU >= 0.5
    # About 750 lines: one point is 7 lines; int8's rounding moves a handful of borderline regions either way.
    max_drop: float = 1.0  # percentage points int8 may lose against float32 (precision and recall)
    max_keras_gap: float = 0.3  # percentage points float32 .tflite may differ from Keras


@dataclass
class ReleaseOutcome:
    passed: bool
    failures: list[str]
    scores: dict[str, dict]  # "keras", "float32", "int8" -> figures
    released: list[Path] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.failures) if self.failures else "all checks passed"


def run_task(keras_path: Path) -> tuple[str, dict] | None:
    """(task, the run's config.json) when the model beside it is the recognizer or the region finder."""
    config = Path(keras_path).parent / "config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        if data.get("task") in TASKS:
            return data["task"], data
    return None


# ---------------------------------------------------------------------------------------------- the recognizer


@dataclass
class RecognizerData:
    """The recognizer's fixed gate data, all from MNIST test digits."""

    inputs: np.ndarray  # (N, 32, 256) uint8 rendered regions
    texts: list[str]
    kinds: list[str]
    singles: np.ndarray  # (10000, 32, 256) uint8: the test digits one at a time
    labels: np.ndarray  # (10000,)
    amounts: np.ndarray | None = None  # (231, 32, 256) uint8: orand-car-a's held-out real cheque amounts ...
    amount_texts: list[str] | None = None  # ... and their digits; None without ../shared (`digitdata.realsets`)


def recognizer_data(data_dir=None) -> RecognizerData:
    m = find_mnist(data_dir)
    x, texts, kinds = lines.render_inputs(GATE_SEED, GATE_LINES, m.x_test, m.y_test)
    try:
        amounts, amount_texts = realsets.amount_inputs("held")
    except FileNotFoundError:
        amounts, amount_texts = None, None
    return RecognizerData(x, texts, kinds, lines.mnist_inputs(m.x_test), m.y_test, amounts, amount_texts)


def recognizer_scores(read_lines: list[str], read_singles: list[str], d: RecognizerData,
                      read_amounts: list[str] | None = None) -> dict:
    scores = lines.reading_scores(read_lines, d.texts, d.kinds)
    if read_amounts is not None and d.amount_texts:
        scores["real_amounts_held"] = {
            "exact": float(np.mean([r == t for r, t in zip(read_amounts, d.amount_texts, strict=True)])),
            "count": len(d.amount_texts), "set": "orand-car-a held-out part (digitdata.realsets)"}
    right = np.array([r == str(int(y)) for r, y in zip(read_singles, d.labels, strict=True)])
    scores["mnist_single"] = float(right.mean())
    scores["mnist_per_class"] = {str(c): float(right[d.labels == c].mean()) for c in range(10)}
    scores["mnist_wrong"] = [int(i) for i in np.flatnonzero(~right)]
    return scores


def read_tflite(path: Path, inputs: np.ndarray) -> list[str]:
    from edge_app.runtime import Recognizer

    model = Recognizer(path, threads=os.cpu_count() or 1)
    return [ctc.greedy(model.run(x))[0] for x in inputs]


def _recognizer_failures(scores: dict, gate: RecognizerGate) -> list[str]:
    failures = []
    floors = {"exact": gate.min_exact, "nothing_read": gate.min_nothing, "mnist_single": gate.min_mnist_single}
    for name in ("float32", "int8"):
        for metric, floor in floors.items():
            if scores[name][metric] < floor:
                failures.append(f"{name} {metric} {scores[name][metric]:.2%} < {floor:.2%}")
    for metric in floors:
        failures += _tolerances(scores, metric, gate.max_keras_gap, gate.max_drop)
    return failures


# ---------------------------------------------------------------------------------------------- the region finder


def region_sets(per_mix: int, seed: int, part: str = "validation", data_dir=None) -> dict[str, scene_sets.SceneSet]:
    """`per_mix` scenes of every mix of the data engine, in its order (each mix's seed follows from it)."""
    return scene_sets.mix_sets({m: per_mix for m in engine.MIXES}, seed, part, data_dir)


def region_tflite_scores(path: Path, sets: dict, threshold: float) -> dict:
    from edge_app.runtime import RegionFinder

    finder = RegionFinder(path, threads=os.cpu_count() or 1)
    return regions.all_scores({m: np.stack([finder.map(x) for x in s.inputs]) for m, s in sets.items()}, sets,
                              threshold)


def _region_failures(scores: dict, gate: RegionGate) -> list[str]:
    failures = []
    for name in ("float32", "int8"):
        for metric, floor in (("recall", gate.min_recall), ("precision", gate.min_precision)):
            if scores[name][metric] < floor:
                failures.append(f"{name} {metric} {scores[name][metric]:.2%} < {floor:.2%}")
    for metric in ("precision", "recall"):
        failures += _tolerances(scores, metric, gate.max_keras_gap, gate.max_drop)
    return failures


def _tolerances(scores: dict, metric: str, max_keras_gap: float, max_drop: float) -> list[str]:
    out = []
    gap = 100 * abs(scores["float32"][metric] - scores["keras"][metric])
    if gap > max_keras_gap:
        out.append(f"float32 .tflite {metric} differs from Keras by {gap:.2f} points (max {max_keras_gap})")
    drop = 100 * (scores["float32"][metric] - scores["int8"][metric])
    if drop > max_drop:
        out.append(f"int8 {metric} is {drop:.2f} points below float32 (--max-drop {max_drop})")
    return out


# ---------------------------------------------------------------------------------------------- both


def _keras_outputs(model, inputs_u8: np.ndarray, batch_size: int = 64):
    for s in range(0, len(inputs_u8), batch_size):
        yield np.asarray(model(inputs_u8[s:s + batch_size, ..., None].astype(np.float32) / 255.0, training=False))


def _keras_texts(model, inputs_u8: np.ndarray) -> list[str]:
    return [t for p in _keras_outputs(model, inputs_u8) for t in ctc.greedy_batch(p)]


def _keras_maps(model, inputs_u8: np.ndarray) -> np.ndarray:
    return np.concatenate([p[..., 0] for p in _keras_outputs(model, inputs_u8)])


def convert_reader_model(keras_path: str | Path, out_dir: str | Path, task: str, run_config: dict,
                         gate: RecognizerGate | RegionGate | None = None, calibration_size: int = 500,
                         data_dir=None, command: str = "") -> ReleaseOutcome:
    """Convert the recognizer or region finder at `keras_path`, check it, release it into `out_dir` if it passes."""
    from convert.release import load_keras, move_in, provenance, remove_stale_staging, staging_folder
    from convert.tflite import convert_variant

    keras_path, out_dir = Path(keras_path), Path(out_dir)
    remove_stale_staging(out_dir.absolute())
    model = load_keras(keras_path, compile=False)
    names = FILE_NAMES[task]
    if task == "recognizer":
        gate = gate or RecognizerGate()
        d = recognizer_data(data_dir)
        images, labels = scene_sets.digit_split(find_mnist(data_dir), "train")
        x_cal = lines.render_inputs(CALIBRATION_SEED, calibration_size, images, labels)[0]
        scores = {"keras": recognizer_scores(_keras_texts(model, d.inputs), _keras_texts(model, d.singles), d,
                                             _keras_texts(model, d.amounts) if d.amounts is not None else None)}
    else:
        gate = gate or RegionGate()
        sets = region_sets(run_config["regions"]["validation_scenes"], run_config["regions"]["validation_seed"],
                           data_dir=data_dir)
        threshold = run_config["regions"]["threshold"]
        per_mix = max(1, calibration_size // 4)
        cal = region_sets(per_mix, CALIBRATION_SEED, "train", data_dir)
        x_cal = np.concatenate([s.inputs for s in cal.values()])
        scores = {"keras": regions.all_scores({m: _keras_maps(model, s.inputs) for m, s in sets.items()}, sets,
                                              threshold)}
    x_cal = x_cal[..., None].astype(np.float32) / 255.0

    staging = staging_folder(out_dir)
    try:
        for variant, name in progress(names.items(), f"the {task} gate: converting {', '.join(names)}, each "
                                      f"checked as the Keras model was", unit="variants"):
            (staging / name).write_bytes(convert_variant(model, variant, x_cal if variant == "int8" else None))
            if task == "recognizer":
                scores[variant] = recognizer_scores(
                    read_tflite(staging / name, d.inputs), read_tflite(staging / name, d.singles), d,
                    read_tflite(staging / name, d.amounts) if d.amounts is not None else None)
            else:
                scores[variant] = region_tflite_scores(staging / name, sets, threshold)
        failures = (_recognizer_failures(scores, gate) if task == "recognizer" else _region_failures(scores, gate))
        outcome = ReleaseOutcome(not failures, failures, scores)
        if failures:
            return outcome
        source, commands, versions = provenance(keras_path, run_config, command)
        entries = {name: _entry(staging / name, task, variant, scores[variant], run_config, source, commands,
                                versions, asdict(gate), calibration_size)
                   for variant, name in names.items()}
        outcome.released += move_in(staging, out_dir, list(names.values()), entries)
        return outcome
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _entry(path: Path, task: str, variant: str, scores: dict, run_config: dict, source: dict, commands: list[str],
           versions: dict, gate: dict, calibration_size: int) -> dict:
    """The manifest entry of one released recognizer or region finder file."""
    from edge_app.runtime import Recognizer, RegionFinder

    model = Recognizer(path) if task == "recognizer" else RegionFinder(path)
    details = model.interpreter.get_input_details()[0]
    scale, zero_point = details.get("quantization", (0.0, 0))
    if task == "recognizer":
        figures = {k: v for k, v in scores.items() if k != "mnist_wrong"}
        figures["gate_regions"] = {"count": GATE_LINES, "seed": GATE_SEED, "digits": "MNIST test digits"}
        decoding = {"ctc": "greedy", "blank": ctc.BLANK, "columns": int(model.output_shape[0])}
    else:
        figures = scores
        cfg = run_config["regions"]
        figures["validation_scenes"] = {"per_mix": cfg["validation_scenes"], "seed": cfg["validation_seed"],
                                        "digits": "held-out MNIST training digits"}
        decoding = {"stride": 4, "threshold": cfg["threshold"]}
    return {
        "task": task, "variant": variant, "sha256": manifest.sha256_file(path), "bytes": path.stat().st_size,
        "input": {"shape": [int(v) for v in details["shape"]], "dtype": np.dtype(details["dtype"]).name,
                  "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None},
        "pixels": run_config.get("pixels", {}), "decoding": decoding, "figures": figures, "gate": gate,
        "calibration": {"count": calibration_size, "seed": CALIBRATION_SEED},
        "params": run_config.get("params"), "source_model": source, "commands": commands, "versions": versions,
    }


@dataclass
class ReaderModelCheck:
    model: str
    scores: dict  # the gate's figures, re-measured here
    recorded: dict  # the same figures from the manifest entry
    sha256: str
    sha256_matches: bool | None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**self.__dict__, "passed": self.passed}


CHECKED = {"recognizer": ("exact", "nothing_read", "mnist_single"), "regions": ("precision", "recall")}


def check_reader_model(model_path: str | Path, entry: dict, manifest_path: Path, tolerance: float = 0.5,
                       data_dir=None, allow_unverified: bool = False) -> ReaderModelCheck:
    """Re-measure a released recognizer or region finder on its manifest's fixed data: no figure may fall more
    than `tolerance` points below the recorded one, and its sha256 must match the entry."""
    from edge_app.runtime import Recognizer, RegionFinder

    model_path, task = Path(model_path), entry["task"]
    adapter = Recognizer if task == "recognizer" else RegionFinder
    integrity = adapter(model_path, threads=1, manifest_path=manifest_path).integrity
    figures = entry["figures"]
    if task == "recognizer":
        d = recognizer_data(data_dir)
        measured = recognizer_scores(read_tflite(model_path, d.inputs), read_tflite(model_path, d.singles), d)
    else:
        v = figures["validation_scenes"]
        sets = region_sets(v["per_mix"], v["seed"], data_dir=data_dir)
        measured = region_tflite_scores(model_path, sets, entry["decoding"]["threshold"])
    names = CHECKED[task]
    result = ReaderModelCheck(str(model_path), {k: measured[k] for k in names}, {k: figures[k] for k in names},
                              integrity.sha256, integrity.verified)
    if integrity.status == "mismatch" and not allow_unverified:
        result.failures.append(f"{integrity.problem()}; --allow-unverified measures it without failing for this")
    for k in names:
        drop = 100 * (figures[k] - measured[k])
        if drop > tolerance:
            result.failures.append(f"{k} {measured[k]:.2%} is {drop:.2f} points below the manifest's {figures[k]:.2%} "
                                   f"(--tolerance {tolerance})")
    return result
