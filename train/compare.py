"""`digitlite train --arch all`: every architecture trained the same way, side by side.

The table (test accuracy, parameters, int8 .tflite size, training time) is written to
benchmarks/architectures.md and .json; README's architecture table is copied from that file.
`--arch classical` fits only the classical baselines and replaces their rows, keeping the networks' rows;
each row names the command that made it.

    digitlite train --arch all --epochs 3 --out runs/all
    digitlite train --arch classical --out runs/classical
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from train.atomic import write_json, write_text
from train.classical import fit_classical
from train.classical import validate as validate_classical
from train.config import CLASSICAL, ClassicalParams, TrainConfig
from train.mnist import find_mnist
from train.models import ARCHITECTURES

REPORTED = {"logistic": None, "dense": 0.976, "basic-cnn": 0.982, "dropout-cnn": 0.984, "mobilenet": 0.979,
            "svm": 0.971, "knn": 0.968, "random-forest": 0.9658}
TABLE = Path(__file__).resolve().parents[1] / "benchmarks" / "architectures"
NOT_CONVERTED = (
    "Not converted to .tflite: the LiteRT converter takes TensorFlow/Keras graphs, and scikit-learn's SVM, k-NN "
    "and forest have no such graph; nor would they suit the device: k-NN keeps and searches all its training "
    "images, the SVM evaluates a kernel against every support vector, and the forest is megabytes of trees. "
    "Their size is that of the saved scikit-learn model (model.skops); their parameters are the numbers it keeps "
    "to predict (PCA basis and support vectors; training images and labels; tree nodes).")


def int8_size(model_path: Path, data) -> int:
    """Bytes of the model's full-integer .tflite (converted only to measure it)."""
    import keras

    from convert.tflite import calibration_sample, convert_variant

    model = keras.saving.load_model(model_path)
    return len(convert_variant(model, "int8", calibration_sample(data.x_train, data.y_train, 200)))


def _network_row(cfg: TrainConfig, out: Path, data, command: str) -> dict:
    from train.trainer import train

    result = train(cfg, out, data_dir=data.directory, command=command, verbose=2)
    return {"test_accuracy": result.test_accuracy, "params": result.params,
            "int8_bytes": int8_size(out / "model.keras", data), "train_seconds": round(result.train_seconds, 1),
            "epochs": result.epochs_run, "weights": result.weights}


def _classical_row(cfg: TrainConfig, out: Path, data, command: str) -> dict:
    result = fit_classical(cfg, out, data_dir=data.directory, command=command)
    print(result.summary(), flush=True)
    return {"test_accuracy": result.test_accuracy, "params": result.stored_numbers, "int8_bytes": None,
            "model_bytes": result.model_bytes, "train_seconds": round(result.train_seconds, 1), "epochs": None,
            "weights": result.setting, "val_accuracy": result.val_accuracy, "train_images": result.train_images}


def previous_rows(table: Path) -> list[dict]:
    """The rows of the table's JSON, each with the command that made it (older files name one for all)."""
    path = table.with_suffix(".json")
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    return [{"command": saved.get("command", ""), **row} for row in saved.get("rows", [])]


def markdown(rows: list[dict]) -> str:
    """The table, its commands numbered above it and, if classical rows are in it, why they are not converted."""
    commands = list(dict.fromkeys(r["command"] for r in rows))
    lines = ["Commands (2-core CPU; accuracy on the 10,000 MNIST test images):", ""]
    lines += [f"{n}. `{c}`" for n, c in enumerate(commands, 1)]
    lines += ["", "| model | test accuracy | reports' accuracy | parameters | int8 .tflite | train time | epochs | "
              "weights or setting | command |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reported = f"{r['reported'] * 100:g}%" if r["reported"] else "-"
        size = f"{r['int8_bytes'] / 1024:.1f} KB" if r["int8_bytes"] is not None else \
            f"not converted [a]; model.skops {r['model_bytes'] / 1e6:.1f} MB"
        epochs = r["epochs"] if r["epochs"] is not None else "-"
        lines.append(f"| {r['arch']} | {r['test_accuracy']:.2%} | {reported} | {r['params']:,} | {size} | "
                     f"{r['train_seconds']:.0f} s | {epochs} | {r['weights']} | {commands.index(r['command']) + 1} |")
    if any(r["int8_bytes"] is None for r in rows):
        lines += ["", f"[a] {NOT_CONVERTED}"]
    return "\n".join(lines) + "\n"


def train_all(cfg: TrainConfig, out: str | Path, data_dir=None, command: str = "", table: Path = TABLE) -> str:
    """Train every architecture of `cfg.arch` ("all", or "classical" for the scikit-learn baselines) with `cfg`
    (arch aside) under `out/<arch>`; write and return the table, keeping the rows of architectures not run."""
    if cfg.arch not in ("all", "classical"):
        raise ValueError(f"train_all runs --arch 'all' or 'classical', got {cfg.arch!r}")
    out = Path(out)
    data = find_mnist(data_dir)
    archs = CLASSICAL if cfg.arch == "classical" else (*ARCHITECTURES, *CLASSICAL)
    runs = [replace(cfg, arch=arch) for arch in archs]
    for run in runs:  # every configuration checked before the first fit, not after an hour of them
        if run.arch in CLASSICAL:
            validate_classical(run, ClassicalParams())
        else:
            run.validate()
    rows = {r["arch"]: r for r in previous_rows(table)}
    for run in runs:
        fit = _classical_row if run.arch in CLASSICAL else _network_row
        rows[run.arch] = {"arch": run.arch, "reported": REPORTED[run.arch], **fit(run, out / run.arch, data, command),
                          "command": command}
    order = [*ARCHITECTURES, *CLASSICAL]
    ordered = sorted(rows.values(), key=lambda r: order.index(r["arch"]) if r["arch"] in order else len(order))
    markdown_text = markdown(ordered)
    write_text(table.with_suffix(".md"), markdown_text)
    write_json(table.with_suffix(".json"), {"rows": ordered})
    return markdown_text
