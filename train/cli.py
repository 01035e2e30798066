"""Command lines of the training stage: `digitlite data`, `digitlite train`, `digitlite tune`.

Each `*_main` only parses arguments and calls the function that does the work; TensorFlow is imported
only by the commands that train.

    digitlite data --json
    digitlite train --out runs/release
    digitlite tune --max-trials 6
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from train.config import CLASSICAL, TrainConfig

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"digitlite {prog}", description=description, formatter_class=FORMATTER)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the four MNIST IDX files (default: $DIGITLITE_MNIST_DIR, the cache, "
                             "then download)")


# ---------------------------------------------------------------------------------------------- data


def data_main(argv: list[str]) -> int:
    parser = _parser("data", "Find or fetch MNIST, verify it against the canonical checksums, summarise it.")
    _add_data_dir(parser)
    parser.add_argument("--offline", action="store_true", help="never download: folder and cache only")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--eda", type=Path, default=None, metavar="PNG",
                        help="also write an EDA sheet (class counts, mean image per class) to this PNG")
    args = parser.parse_args(argv)

    from train.mnist import MnistError, find_mnist

    try:
        data = find_mnist(args.data_dir, offline=args.offline)
    except MnistError as exc:
        print(f"digitlite data: {exc}", file=sys.stderr)
        return 1
    summary = data.summary()
    if args.eda:
        from train.report import write_eda

        write_eda(data, args.eda)
        summary["eda"] = str(args.eda)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"MNIST verified in {summary['directory']}: {summary['train']} training and "
              f"{summary['test']} test images (sha256 of every file checked)")
        print("class           " + " ".join(f"{c:>6}" for c in range(10)))
        print("train per class " + " ".join(f"{n:>6}" for n in summary["train_per_class"]))
        print("test per class  " + " ".join(f"{n:>6}" for n in summary["test_per_class"]))
        if args.eda:
            print(f"EDA sheet: {args.eda}")
    return 0


# ---------------------------------------------------------------------------------------------- train


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults come from the config (a file given by --config, else built-in)."""
    defaults = TrainConfig()
    for name, value in defaults.to_dict().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"(default {value})")
        else:
            parser.add_argument(flag, type=type(value), default=None, help=f"(default {value})")


def _resolve_config(args: argparse.Namespace) -> TrainConfig:
    base = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    overrides = {k: v for k, v in vars(args).items() if k in base.to_dict() and v is not None}
    return TrainConfig(**{**base.to_dict(), **overrides})


def train_main(argv: list[str]) -> int:
    parser = _parser("train", "Train a digit classifier on MNIST and write its run folder (model, curves, report).")
    _add_config_flags(parser)
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON config (a run's config.json or tune's best_config.json); flags win over it")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<arch>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    _add_data_dir(parser)
    args = parser.parse_args(argv)
    command = "digitlite train " + shlex.join(argv)

    from train.mnist import MnistError

    try:
        cfg = _resolve_config(args)
        if cfg.arch in ("all", "classical"):
            from train.compare import train_all

            table = train_all(cfg, args.out or Path("runs") / cfg.arch, data_dir=args.data_dir, command=command)
            print(table)
            return 0
        if cfg.arch in CLASSICAL:  # checks its own settings, before importing TensorFlow
            from train.classical import fit_classical

            out = args.out or Path("runs") / cfg.arch
            print(fit_classical(cfg, out, data_dir=args.data_dir, resume=args.resume, command=command).summary())
            return 0
        cfg.validate()
    except (ValueError, FileNotFoundError, json.JSONDecodeError, MnistError) as exc:
        print(f"digitlite train: {exc}", file=sys.stderr)
        return 2

    from train.trainer import RunExistsError, train

    out = args.out or Path("runs") / cfg.arch
    try:
        result = train(cfg, out, data_dir=args.data_dir, resume=args.resume, command=command)
    except (RunExistsError, MnistError, FileNotFoundError, ValueError) as exc:
        print(f"digitlite train: {exc}", file=sys.stderr)
        return 2
    print(f"{cfg.arch}: test accuracy {result.test_accuracy:.4%}, {result.params} parameters, "
          f"{result.epochs_run} epochs in {result.train_seconds:.0f} s (weights: {result.weights}) -> {out}")
    return 0


# ---------------------------------------------------------------------------------------------- tune


def tune_main(argv: list[str]) -> int:
    parser = _parser("tune", "Hyperparameter search (keras-tuner) over filters, dense units and learning rate.")
    parser.add_argument("--max-trials", type=int, default=6, help="configurations to try")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument("--subset", type=int, default=10000, help="training images per trial (0 = all)")
    parser.add_argument("--out", type=Path, default=Path("runs/tune"), help="folder for results and best config")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--arch", default="basic-cnn", choices=["basic-cnn", "dropout-cnn"],
                        help="architecture whose filters/units/learning rate are searched")
    _add_data_dir(parser)
    args = parser.parse_args(argv)
    if args.max_trials < 1 or args.epochs < 1:
        print("digitlite tune: --max-trials and --epochs must be at least 1", file=sys.stderr)
        return 2

    from train.mnist import MnistError
    from train.tune import tune

    try:
        best = tune(args.out, max_trials=args.max_trials, epochs=args.epochs, subset=args.subset,
                    seed=args.seed, arch=args.arch, data_dir=args.data_dir)
    except MnistError as exc:
        print(f"digitlite tune: {exc}", file=sys.stderr)
        return 2
    print(f"best: {best}; train with: digitlite train --config {args.out / 'best_config.json'}")
    return 0
