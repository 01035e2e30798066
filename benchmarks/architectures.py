"""`digitlite architectures`: every architecture trained the same way, side by side.

The five networks (train/models.py) and the reports' classical baselines (train/classical.py: SVM, k-NN and
random forest, fitted with scikit-learn on the same split and pixels, never converted to .tflite). The table
(test accuracy, the reports' figure, parameters, int8 .tflite size, training time, and the command that made each
row) is written to benchmarks/architectures.md and .json; README's architecture table is copied from that file.
`--only networks|classical` runs one group and keeps the other's rows. It lives in benchmarks because it needs
both stages, training and conversion, which never import each other.

    digitlite architectures --epochs 3 --out runs/all
    digitlite architectures --only classical --out runs/classical
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import replace
from pathlib import Path

from digitdata.atomic import write_json, write_text
from digitdata.mnist import Mnist
from train.config import ARCHITECTURES, CLASSICAL, EXTRA_FLAGS, TrainConfig

GROUPS = {"networks": ARCHITECTURES, "classical": CLASSICAL}
REPORTED = {"logistic": None, "dense": 0.976, "basic-cnn": 0.982, "dropout-cnn": 0.984, "mobilenet": 0.979,
            "svm": 0.971, "knn": 0.968, "random-forest": 0.9658}
TABLE = Path(__file__).resolve().parent / "architectures"
NOT_CONVERTED = (
    "Not converted to .tflite: the LiteRT converter takes TensorFlow/Keras graphs, and scikit-learn's SVM, k-NN "
    "and forest have no such graph; nor would they suit the device: k-NN keeps and searches all its training "
    "images, the SVM evaluates a kernel against every support vector, and the forest is megabytes of trees. "
    "Their size is that of the saved scikit-learn model (model.skops); their parameters are the numbers it keeps "
    "to predict (PCA basis and support vectors; training images and labels; tree nodes).")
# A row keeps the command that really made it. Committed rows made under the names this command replaced
# (`train --arch all`, networks only at the time; `train --arch classical` on issue 15's branch) say so in the
# table, with today's spelling of the same run.
RENAMED = {"digitlite train --arch all": "digitlite architectures --only networks",
           "digitlite train --arch classical": "digitlite architectures --only classical"}


def int8_size(model_path: Path, data: Mnist) -> int:
    """Bytes of the model's full-integer .tflite (converted only to measure it)."""
    import keras

    from convert.tflite import calibration_sample, convert_variant

    model = keras.saving.load_model(model_path)
    return len(convert_variant(model, "int8", calibration_sample(data.x_train, data.y_train, 200)))


def _network_row(cfg: TrainConfig, out: Path, data: Mnist, command: str) -> dict:
    from train.trainer import train

    result = train(cfg, out, data_dir=data.directory, command=command, verbose=2)
    return {"test_accuracy": result.test_accuracy, "params": result.params,
            "int8_bytes": int8_size(out / "model.keras", data), "train_seconds": round(result.train_seconds, 1),
            "epochs": result.epochs_run, "weights": result.weights}


def _classical_row(cfg: TrainConfig, out: Path, data: Mnist, command: str) -> dict:
    from train.classical import fit_classical

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


def command_line(command: str) -> str:
    """`command` for the table's list of commands, with today's spelling if it was run under a replaced name."""
    for old, new in RENAMED.items():
        if command == old or command.startswith(old + " "):
            today = new + command[len(old):]
            return f"`{command}` (run under an earlier name of this command; the same run today: `{today}`)"
    return f"`{command}`"


def markdown(rows: list[dict]) -> str:
    """The table, its commands numbered above it and, if classical rows are in it, why they are not converted."""
    commands = list(dict.fromkeys(r["command"] for r in rows))
    lines = ["Commands (2-core CPU; accuracy on the 10,000 MNIST test images):", ""]
    lines += [f"{n}. {command_line(c)}" for n, c in enumerate(commands, 1)]
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


def train_all(cfg: TrainConfig, out: str | Path, data: Mnist, archs: tuple[str, ...] = (*ARCHITECTURES, *CLASSICAL),
              command: str = "", table: Path = TABLE) -> str:
    """Train (a network) or fit (a classical baseline) each of `archs` with `cfg`, arch aside, under `out/<arch>`;
    write the table, keeping the rows of the architectures not run, and return it as Markdown.

    Raises:
        ValueError: `cfg` cannot run one of `archs` (checked for all of them before the first is trained).
    """
    from train.cli import check_settings

    check_settings(cfg, archs)
    out = Path(out)
    rows = {r["arch"]: r for r in previous_rows(table)}
    for arch in archs:
        fit = _classical_row if arch in CLASSICAL else _network_row
        row = fit(replace(cfg, arch=arch), out / arch, data, command)
        rows[arch] = {"arch": arch, "reported": REPORTED[arch], **row, "command": command}
    order = [*ARCHITECTURES, *CLASSICAL]
    ordered = sorted(rows.values(), key=lambda r: order.index(r["arch"]) if r["arch"] in order else len(order))
    markdown_text = markdown(ordered)
    write_text(table.with_suffix(".md"), markdown_text)
    write_json(table.with_suffix(".json"), {"rows": ordered})
    return markdown_text


def architectures_main(argv: list[str]) -> int:
    from digitlite import HelpFormatter
    from train.cli import add_training_flags, ready_to_train

    parser = argparse.ArgumentParser(prog="digitlite architectures", formatter_class=HelpFormatter,
                                     description="Train every architecture with the same flags (the networks, then "
                                                 "the classical baselines, which use --seed, --validation and "
                                                 "--subset), convert each network to int8 to measure it, and write "
                                                 "benchmarks/architectures.md.")
    add_training_flags(parser, skip=("arch", *EXTRA_FLAGS))
    parser.add_argument("--only", choices=tuple(GROUPS), default=None,
                        help="run this group alone and keep the other's rows in the table (default: every "
                             "architecture)")
    parser.add_argument("--out", type=Path, default=Path("runs/all"), help="one run folder per architecture here")
    args = parser.parse_args(argv)
    archs = GROUPS[args.only] if args.only else (*ARCHITECTURES, *CLASSICAL)
    ready = ready_to_train(args, "architectures", archs=archs)
    if ready is None:
        return 2
    cfg, data = ready
    print(train_all(cfg, args.out, data, archs=archs, command="digitlite architectures " + shlex.join(argv)))
    return 0
