"""The detector's gated conversion: float32 and int8 .tflite, checked through LiteRT, released only if they pass.

Checks on the fixed validation scene set (engine scenes of held-out training digits, `DetectorGate`):
precision and recall of digit boxes at IoU 0.5, float32 .tflite within `max_keras_gap` points of the Keras
model, int8 within `max_drop` points of float32, both above the floors. Files move into the output folder
(one rename each, then the manifest) only when every check passed; otherwise nothing there changes.

    digitlite convert runs/detector/model.keras --out models/
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convert import manifest
from digitdata import scene_sets

FILE_NAMES = {"float32": "detector_float32.tflite", "int8": "detector_int8.tflite"}
CALIBRATION_SEED = 7  # the training scenes used to calibrate int8 (not the validation set)


@dataclass
class DetectorGate:
    # Floors 2 points under the first release (precision 78.7 %, recall 78.3 % on the validation scenes): a
    # retrained detector must not do worse. The scenes are hard (12 px digits, touching rows, distractors).
    min_recall: float = 0.76  # of the digits in the validation scenes, found at IoU >= 0.5
    min_precision: float = 0.76  # of the boxes found, on a digit at IoU >= 0.5
    max_drop: float = 0.5  # percentage points int8 may lose against float32 (precision and recall)
    max_keras_gap: float = 0.2  # percentage points float32 .tflite may differ from the Keras model


@dataclass
class DetectorOutcome:
    passed: bool
    failures: list[str]
    scores: dict[str, dict]  # "keras", "float32", "int8" -> detection scores
    released: list[Path] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.failures) if self.failures else "all checks passed"


def is_detector_run(keras_path: Path) -> dict | None:
    """The detector run's config.json beside the model, or None when the model is not a detector."""
    config = keras_path.parent / "config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        if data.get("task") == "detector":
            return data
    return None


def evaluate_tflite(path: Path, scene_set: scene_sets.SceneSet, threshold: float, max_boxes: int) -> dict:
    """Detection scores of a detector .tflite through the device's LiteRT adapter."""
    from edge_app.runtime import Detector

    detector = Detector(path, threads=os.cpu_count() or 1)
    maps = [detector.maps(x) for x in scene_set.inputs]
    return scene_sets.detection_scores(np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps]), scene_set,
                                       threshold, max_boxes)


def apply_gate(scores: dict[str, dict], gate: DetectorGate) -> list[str]:
    failures = []
    for name in ("float32", "int8"):
        s = scores[name]
        if s["recall"] < gate.min_recall:
            failures.append(f"{name} recall {s['recall']:.2%} < {gate.min_recall:.2%}")
        if s["precision"] < gate.min_precision:
            failures.append(f"{name} precision {s['precision']:.2%} < {gate.min_precision:.2%}")
    for metric in ("precision", "recall"):
        gap = 100 * abs(scores["float32"][metric] - scores["keras"][metric])
        if gap > gate.max_keras_gap:
            failures.append(f"float32 .tflite {metric} differs from Keras by {gap:.2f} points "
                            f"(max {gate.max_keras_gap})")
        drop = 100 * (scores["float32"][metric] - scores["int8"][metric])
        if drop > gate.max_drop:
            failures.append(f"int8 {metric} is {drop:.2f} points below float32 (--max-drop {gate.max_drop})")
    return failures


def convert_detector(keras_path: str | Path, out_dir: str | Path, run_config: dict, gate: DetectorGate | None = None,
                     calibration_size: int = 600, data_dir: str | Path | None = None,
                     command: str = "") -> DetectorOutcome:
    """Convert the detector at `keras_path`, check it, and release it into `out_dir` if every check passes.

    `calibration_size` training scenes calibrate int8: with 200, the first release's int8 lost 1.18 points of
    precision against float32; with 600, 0.29.
    """
    from convert.release import load_keras, move_in, provenance, remove_stale_staging, staging_folder
    from convert.tflite import convert_variant

    gate = gate or DetectorGate()
    keras_path, out_dir = Path(keras_path), Path(out_dir)
    remove_stale_staging(out_dir.absolute())
    model = load_keras(keras_path, compile=False)
    cfg = run_config["detector"]
    threshold, max_boxes = cfg["threshold"], cfg["max_boxes"]
    val_set = scene_sets.render_set(cfg["validation_scenes"], cfg["validation_seed"], "validation", data_dir)
    calibration = scene_sets.render_set(calibration_size, CALIBRATION_SEED, "train", data_dir)
    x_cal = calibration.inputs[..., None].astype(np.float32) / 255.0

    heats, boxes = [], []
    for s in range(0, len(val_set), 32):
        out = model(val_set.inputs[s:s + 32, ..., None].astype(np.float32) / 255.0, training=False)
        heats.append(np.asarray(out["heat"])[..., 0])
        boxes.append(np.asarray(out["box"]))
    scores = {"keras": scene_sets.detection_scores(np.concatenate(heats), np.concatenate(boxes), val_set,
                                                   threshold, max_boxes)}

    staging = staging_folder(out_dir)
    try:
        for variant, name in FILE_NAMES.items():
            (staging / name).write_bytes(convert_variant(model, variant, x_cal if variant == "int8" else None))
            scores[variant] = evaluate_tflite(staging / name, val_set, threshold, max_boxes)
        failures = apply_gate(scores, gate)
        outcome = DetectorOutcome(not failures, failures, scores)
        if failures:
            return outcome
        source, commands, versions = provenance(keras_path, run_config, command)
        entries = {name: detector_entry(staging / name, variant, scores[variant], run_config, source, commands,
                                        versions, asdict(gate), calibration_size)
                   for variant, name in FILE_NAMES.items()}
        outcome.released += move_in(staging, out_dir, list(FILE_NAMES.values()), entries)
        return outcome
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def detector_entry(path: Path, variant: str, scores: dict, run_config: dict, source: dict, commands: list[str],
                   versions: dict, gate: dict, calibration_size: int) -> dict:
    """The manifest entry of one released detector file."""
    from edge_app.runtime import Detector

    det = Detector(path)
    details = det.interpreter.get_input_details()[0]
    scale, zero_point = details.get("quantization", (0.0, 0))
    return {
        "task": "detector", "variant": variant, "sha256": manifest.sha256_file(path), "bytes": path.stat().st_size,
        "input": {"shape": [int(v) for v in details["shape"]], "dtype": np.dtype(details["dtype"]).name,
                  "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None},
        "pixels": run_config.get("pixels", {}),
        "decoding": {"stride": 4, "threshold": run_config["detector"]["threshold"],
                     "max_boxes": run_config["detector"]["max_boxes"]},
        "detection": {**{k: scores[k] for k in ("precision", "recall", "scenes_all_found", "min_iou")},
                      "per_kind": scores["per_kind"],
                      "validation_scenes": {"count": run_config["detector"]["validation_scenes"],
                                            "seed": run_config["detector"]["validation_seed"],
                                            "digits": "held-out MNIST training digits"}},
        "gate": gate, "calibration": {"scenes": calibration_size, "seed": CALIBRATION_SEED},
        "params": run_config.get("params"), "source_model": source, "commands": commands, "versions": versions,
    }


@dataclass
class DetectorCheck:
    model: str
    scores: dict  # precision, recall, ... on the manifest's validation scenes, re-rendered here
    recorded: dict | None  # the manifest entry's detection block
    sha256: str
    sha256_matches: bool | None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**self.__dict__, "passed": self.passed}


def check_detector(model_path: str | Path, entry: dict, manifest_path: Path, tolerance: float = 0.5,
                   data_dir: str | Path | None = None, allow_unverified: bool = False) -> DetectorCheck:
    """Re-measure a released detector on its manifest's validation scenes: precision and recall may not fall
    more than `tolerance` points below the recorded ones, and its sha256 must match the entry."""
    from edge_app.runtime import Detector

    model_path = Path(model_path)
    integrity = Detector(model_path, threads=1, manifest_path=manifest_path).integrity
    detection, decoding = entry["detection"], entry["decoding"]
    val = detection["validation_scenes"]
    val_set = scene_sets.render_set(val["count"], val["seed"], "validation", data_dir)
    scores = evaluate_tflite(model_path, val_set, decoding["threshold"], decoding["max_boxes"])
    result = DetectorCheck(str(model_path), scores, detection, integrity.sha256, integrity.verified)
    if integrity.status == "mismatch" and not allow_unverified:
        result.failures.append(f"{integrity.problem()}; --allow-unverified measures it without failing for this")
    for metric in ("precision", "recall"):
        drop = 100 * (detection[metric] - scores[metric])
        if drop > tolerance:
            result.failures.append(f"{metric} {scores[metric]:.2%} is {drop:.2f} points below the manifest's "
                                   f"{detection[metric]:.2%} (--tolerance {tolerance})")
    return result
