"""Command lines of the training stage: `digitlite data`, `digitlite train`, `digitlite tune`.

Each `*_main` only parses arguments and calls the function that does the work. Bad arguments and a missing
MNIST are reported before TensorFlow is imported (seconds, not a minute); only the commands that train a
network import it, quietly (`--log-level debug` shows its C++ log lines): the classical baselines never do.

    digitlite data --json
    digitlite train --out runs/release
    digitlite train --arch knn --out runs/knn
    digitlite tune --max-trials 6
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from digitdata.mnist import Mnist
from digitlite import HelpFormatter, add_log_level, load_tensorflow, setup_logging
from train.config import CLASSICAL, ClassicalParams, TrainConfig

# Flags whose default alone does not say what they do.
FIELD_HELP = {
    "extra": "labelled sets of 28x28 digits to learn from as well (folders written by `digitlite corrections "
             "export` from readings stored before reader v3, or hand-labelled crops; corrections now label number "
             "regions: `digitlite train-recognizer --extra`): fine-tunes --init (default: the released "
             "models/digits.keras) on MNIST plus them; the report measures their held-out share before and after "
             "(default: none)",
    "extra_weight": f"times each extra digit is seen per epoch (default: {TrainConfig().extra_weight})",
    "extra_held_out": f"share of the extra rows (frames) held out for the report (default: "
                      f"{TrainConfig().extra_held_out})",
    "init": "a Keras model to start from instead of a new one (default: none; with --extra the released model)",
    "real": "real single-digit sets whose training part joins MNIST (nsysu-digits: 1,406 digits of the exams outside "
            "the held-out semesters, digitdata.realsets; needs ../shared/datasets or $DIGITLITE_DATASETS); the "
            "report measures the held-out part before and after (default: none)",
    "real_weight": f"times each real training digit is seen per epoch (default: {TrainConfig().real_weight})",
    "styled": "MNIST training digits redrawn in other hands (pen model, flagged 1s, barred 7s, elastic, low "
              "resolution: digitdata.handwriting), drawn once from the seed (default: 0)",
}


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"digitlite {prog}", description=description, formatter_class=HelpFormatter)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the four MNIST IDX files (default: $DIGITLITE_MNIST_DIR, the cache, "
                             "then download)")


# ---------------------------------------------------------------------------------------------- data


def data_main(argv: list[str]) -> int:
    parser = _parser("data", "Find or fetch MNIST, verify it against the canonical checksums, summarise it.")
    add_data_dir(parser)
    parser.add_argument("--offline", action="store_true", help="never download: folder and cache only")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--eda", type=Path, default=None, metavar="PNG",
                        help="also write an EDA sheet (class counts, mean image per class) to this PNG")
    args = parser.parse_args(argv)

    from digitdata.mnist import MnistError, find_mnist

    try:
        data = find_mnist(args.data_dir, offline=args.offline)
    except MnistError as exc:
        print(f"digitlite data: {exc}", file=sys.stderr)
        return 2  # MNIST not found: bad input, as in train, tune and convert (digitlite.EXIT_CODES)
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


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field (but `skip`); a flag not given keeps the value of --config, else the
    built-in default shown in the help."""
    for name, value in TrainConfig().to_dict().items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(value, bool) else {"type": type(value)}
        if isinstance(value, list):  # --extra DIR...: folders; --real SET...: real digit sets
            kind = {"nargs": "+", "metavar": "DIR" if name == "extra" else "SET"}
        parser.add_argument(flag, default=None, help=FIELD_HELP.get(name, f"(default: {value})"), **kind)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    base = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    overrides = {k: v for k, v in vars(args).items() if k in base.to_dict() and v is not None}
    return TrainConfig(**{**base.to_dict(), **overrides})


def add_training_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The flags of every command that trains: one per TrainConfig field (but `skip`), --config, --data-dir,
    --log-level."""
    add_config_flags(parser, skip)
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON config (a run's config.json or tune's best_config.json); flags win over it")
    add_data_dir(parser)
    add_log_level(parser)


def check_settings(cfg: TrainConfig, archs: tuple[str, ...], resume: bool = False) -> None:
    """Raise ValueError for the first of `archs` that `cfg` cannot train (a network) or fit (a classical
    baseline), so that a bad flag is refused before anything is trained, not after an hour of it."""
    for arch in archs:
        run = replace(cfg, arch=arch).validate()
        if arch in CLASSICAL:
            from train.classical import validate  # scikit-learn, only when a baseline is asked for

            validate(run, ClassicalParams(), resume)


def ready_to_train(args: argparse.Namespace, prog: str, archs: tuple[str, ...] = (),
                   resume: bool = False) -> tuple[TrainConfig, Mnist] | None:
    """(config, MNIST) in an order that reports a bad flag or a missing MNIST in a second, then TensorFlow loaded
    if a network is among `archs` (default: the config's --arch; the classical baselines never need it). None
    after printing why not (the caller exits 2)."""
    try:
        cfg = resolve_config(args)
        archs = archs or (cfg.arch,)
        check_settings(cfg, archs, resume)
        for name in cfg.real:  # a real set that is not there is refused in a second, not after TF loads
            from digitdata.realsets import missing_reason

            if missing_reason(name):
                raise FileNotFoundError(f"--real {name}: {missing_reason(name)}")
        if cfg.extra:  # read them now: a folder of number regions only is refused in a second, not after TF loads
            from train.split import extra_split

            extra_split(cfg)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as exc:
        print(f"digitlite {prog}: {exc}", file=sys.stderr)
        return None
    setup_logging(args.log_level)
    data = mnist_or_error(args.data_dir, prog)
    if data is None:
        return None
    if any(arch not in CLASSICAL for arch in archs):
        load_tensorflow()
    return cfg, data


def mnist_or_error(data_dir: Path | None, prog: str):
    """MNIST found (or fetched) and verified, or None after printing why not."""
    from digitdata.mnist import MnistError, find_mnist

    try:
        return find_mnist(data_dir)
    except MnistError as exc:
        print(f"digitlite {prog}: {exc}", file=sys.stderr)
        return None


def train_main(argv: list[str]) -> int:
    parser = _parser("train", "Train a digit classifier on MNIST and write its run folder (model, curves, report).")
    add_training_flags(parser)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<arch>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    args = parser.parse_args(argv)
    command = "digitlite train " + shlex.join(argv)
    ready = ready_to_train(args, "train", resume=args.resume)
    if ready is None:
        return 2
    cfg, data = ready
    out = args.out or Path("runs") / cfg.arch
    if cfg.arch in CLASSICAL:  # scikit-learn: TensorFlow was not loaded
        from train.classical import fit_classical

        try:
            fitted = fit_classical(cfg, out, data_dir=data.directory, command=command)
        except ValueError as exc:
            print(f"digitlite train: {exc}", file=sys.stderr)
            return 2
        print(fitted.summary())
        return 0

    from train.trainer import RunExistsError, train

    try:
        result = train(cfg, out, data_dir=data.directory, resume=args.resume, command=command)
    except (RunExistsError, FileNotFoundError, ValueError) as exc:
        print(f"digitlite train: {exc}", file=sys.stderr)
        return 2
    print(f"{cfg.arch}: test accuracy {result.test_accuracy:.4%}, {result.params} parameters, "
          f"{result.epochs_run} epochs in {result.train_seconds:.0f} s (weights: {result.weights}) -> {out}")
    for name, r in (result.real_held or {}).items():
        print(f"{name} held-out part ({r['images']} digits, never trained on): {r['before']['accuracy']:.2%} before "
              f"({r['start']}), {r['after']['accuracy']:.2%} after")
    if result.held_out is not None:
        h = result.held_out
        print(f"held-out extra digits ({h['digits']} from {h['rows']} rows): {h['before']['accuracy']:.2%} before "
              f"({h['start']}), {h['after']['accuracy']:.2%} after")
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
    add_data_dir(parser)
    add_log_level(parser)
    args = parser.parse_args(argv)
    if args.max_trials < 1 or args.epochs < 1:
        print("digitlite tune: --max-trials and --epochs must be at least 1", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    data = mnist_or_error(args.data_dir, "tune")
    if data is None:
        return 2

    load_tensorflow()
    from train.tune import tune

    best = tune(args.out, max_trials=args.max_trials, epochs=args.epochs, subset=args.subset,
                seed=args.seed, arch=args.arch, data_dir=data.directory)
    print(f"best: {best}; train with: digitlite train --config {args.out / 'best_config.json'}")
    return 0


# ---------------------------------------------------------------------------------------------- run-folder trainers


def _config_parser(prog: str, description: str, config_cls, default_out: str) -> argparse.ArgumentParser:
    """A trainer's parser: one flag per field of its config dataclass, then --out, --resume, --data-dir."""
    from dataclasses import asdict

    parser = _parser(prog, description)
    for name, value in asdict(config_cls()).items():
        if isinstance(value, bool):
            parser.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--out", type=Path, default=Path(default_out), help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_data_dir(parser)
    add_log_level(parser)
    return parser


def _config_of(config_cls, args):
    from dataclasses import asdict

    return config_cls(**{k: getattr(args, k) for k in asdict(config_cls())}).validate()


def _train_run(prog: str, args, run) -> dict | None:
    """TensorFlow loaded, `run()` called; its scores, or None after printing why it could not run."""
    setup_logging(args.log_level)
    load_tensorflow()

    from digitdata.mnist import MnistError
    from train.trainer import RunExistsError

    try:
        return run()
    except (RunExistsError, MnistError, FileNotFoundError, ValueError) as exc:
        print(f"digitlite {prog}: {exc}", file=sys.stderr)
        return None


def train_detector_main(argv: list[str]) -> int:
    from train.detector_config import DetectorConfig

    parser = _config_parser("train-detector", "Train the digit detector (the region finder's pretraining) on engine "
                                              "scenes (MNIST training digits) and write its run folder (model, "
                                              "curves, precision/recall report).", DetectorConfig, "runs/detector")
    args = parser.parse_args(argv)
    try:
        cfg = _config_of(DetectorConfig, args)
    except ValueError as exc:
        print(f"digitlite train-detector: {exc}", file=sys.stderr)
        return 2

    def run():
        from train.detector_trainer import train_detector

        return train_detector(cfg, args.out, data_dir=args.data_dir, resume=args.resume,
                              command="digitlite train-detector " + shlex.join(argv))

    scores = _train_run("train-detector", args, run)
    if scores is None:
        return 2
    print(f"detector: precision {scores['precision']:.2%}, recall {scores['recall']:.2%} at IoU "
          f"{scores['min_iou']} on {cfg.validation_scenes} validation scenes -> {args.out}")
    return 0


def train_recognizer_main(argv: list[str]) -> int:
    from train.recognizer_config import RecognizerConfig

    parser = _config_parser("train-recognizer", "Train the number recognizer (conv + CTC) on rendered regions (MNIST "
                                                "training digits among words, lines and marks) and write its run "
                                                "folder.", RecognizerConfig, "runs/recognizer")
    parser.add_argument("--extra", nargs="+", type=Path, default=None, metavar="DIR",
                        help="labelled number regions to learn from as well (folders written by `digitlite "
                             "corrections export`): every 5th row is held out and measured before and after, the "
                             "rest repeated among the rendered regions up to 5%% of them (default: none)")
    parser.add_argument("--init", type=Path, default=None,
                        help="a Keras recognizer to start from, e.g. a previous run's model.keras; its own "
                             "architecture wins over --width and --dropout (default: a new one)")
    args = parser.parse_args(argv)
    try:
        cfg = _config_of(RecognizerConfig, args)
        if args.init is not None and not args.init.is_file():
            raise FileNotFoundError(f"--init {args.init}: no such Keras model; give a recognizer run's model.keras")
        if args.extra:  # read them now: a bad folder is refused in a second, not after TensorFlow loads
            from train.split import extra_regions

            extra_regions(args.extra, cfg.lines)
    except (ValueError, FileNotFoundError) as exc:
        print(f"digitlite train-recognizer: {exc}", file=sys.stderr)
        return 2

    def run():
        from train.recognizer_trainer import train_recognizer

        return train_recognizer(cfg, args.out, data_dir=args.data_dir, resume=args.resume,
                                command="digitlite train-recognizer " + shlex.join(argv), extra=args.extra,
                                init=args.init)

    scores = _train_run("train-recognizer", args, run)
    if scores is None:
        return 2
    print(f"recognizer: exact {scores['exact']:.2%}, digit-free read as nothing {scores['nothing_read']:.2%}, "
          f"MNIST singles {scores['mnist_single']:.2%} on the validation set -> {args.out}")
    held = scores.get("held_out_extra")
    if held is not None and held["before"] is not None:
        print(f"held-out extra regions ({held['regions']} from {held['rows']} rows): exact "
              f"{held['before']['exact']:.2%} before ({held['start']}), {held['after']['exact']:.2%} after")
    return 0


def train_regions_main(argv: list[str]) -> int:
    from train.region_config import RegionConfig

    parser = _config_parser("train-regions", "Train the region finder (a per-pixel number-line map) on the data "
                                             "engine's mixes (MNIST training digits) and write its run folder.",
                            RegionConfig, "runs/regions")
    args = parser.parse_args(argv)
    try:
        cfg = _config_of(RegionConfig, args)
    except ValueError as exc:
        print(f"digitlite train-regions: {exc}", file=sys.stderr)
        return 2

    def run():
        from train.region_trainer import train_regions

        return train_regions(cfg, args.out, data_dir=args.data_dir, resume=args.resume,
                             command="digitlite train-regions " + shlex.join(argv))

    scores = _train_run("train-regions", args, run)
    if scores is None:
        return 2
    print(f"region finder: precision {scores['precision']:.2%}, recall {scores['recall']:.2%} on the validation "
          f"scenes -> {args.out}")
    return 0
