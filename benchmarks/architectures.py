"""`digitlite architectures`: every architecture trained the same way, side by side.

The table (test accuracy, parameters, int8 .tflite size, training time) is written to
benchmarks/architectures.md and .json; README's architecture table is copied from that file. It lives in
benchmarks because it needs both stages, training and conversion, which never import each other.

    digitlite architectures --epochs 3 --out runs/all
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

from digitdata.atomic import write_json, write_text
from digitdata.mnist import Mnist
from train.config import ARCHITECTURES, TrainConfig

REPORTED = {"logistic": None, "dense": 0.976, "basic-cnn": 0.982, "dropout-cnn": 0.984, "mobilenet": 0.979}
TABLE = Path(__file__).resolve().parent / "architectures"


def int8_size(model_path: Path, data: Mnist) -> int:
    """Bytes of the model's full-integer .tflite (converted only to measure it)."""
    import keras

    from convert.tflite import calibration_sample, convert_variant

    model = keras.saving.load_model(model_path)
    return len(convert_variant(model, "int8", calibration_sample(data.x_train, data.y_train, 200)))


def train_all(cfg: TrainConfig, out: str | Path, data: Mnist, command: str = "", table: Path = TABLE) -> str:
    """Train every architecture with `cfg` (arch aside) under `out/<arch>`; write and return the table."""
    from train.trainer import train

    out = Path(out)
    rows = []
    for arch in ARCHITECTURES:
        run = replace(cfg, arch=arch)
        result = train(run, out / arch, data_dir=data.directory, command=command, verbose=2)
        rows.append({"arch": arch, "test_accuracy": result.test_accuracy, "reported": REPORTED[arch],
                     "params": result.params, "int8_bytes": int8_size(out / arch / "model.keras", data),
                     "train_seconds": round(result.train_seconds, 1), "epochs": result.epochs_run,
                     "weights": result.weights})
    lines = [f"Command: `{command}` (2-core CPU; accuracy on the 10,000 MNIST test images)", "",
             "| model | test accuracy | reports' accuracy | parameters | int8 .tflite | train time | epochs |"
             " weights |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reported = f"{r['reported']:.1%}" if r["reported"] else "-"
        lines.append(f"| {r['arch']} | {r['test_accuracy']:.2%} | {reported} | {r['params']:,} | "
                     f"{r['int8_bytes'] / 1024:.1f} KB | {r['train_seconds']:.0f} s | {r['epochs']} | {r['weights']} |")
    markdown = "\n".join(lines) + "\n"
    write_text(table.with_suffix(".md"), markdown)
    write_json(table.with_suffix(".json"), {"command": command, "rows": rows})
    return markdown


def architectures_main(argv: list[str]) -> int:
    from digitlite import HelpFormatter
    from train.cli import add_training_flags, ready_to_train

    parser = argparse.ArgumentParser(prog="digitlite architectures", formatter_class=HelpFormatter,
                                     description="Train every architecture with the same flags, convert each to "
                                                 "int8 to measure it, and write benchmarks/architectures.md.")
    add_training_flags(parser, skip=("arch",))
    parser.add_argument("--out", type=Path, default=Path("runs/all"), help="one run folder per architecture here")
    args = parser.parse_args(argv)
    ready = ready_to_train(args, "architectures")
    if ready is None:
        return 2
    cfg, data = ready
    print(train_all(cfg, args.out, data, command="digitlite architectures " + shlex.join(argv)))
    return 0
