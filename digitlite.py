"""The `digitlite` command: one entry point, a subcommand per job, each stage imported only when used.

The registry below names where each subcommand lives, as strings, so that `digitlite read` on a
Raspberry Pi with only the `[edge]` extra never imports the training stage (and TensorFlow). This module
also owns what every subcommand's command line shares: the help formatter, `--log-level`, and keeping
native libraries' start-up lines off the terminal.

    digitlite --help
    digitlite data --json
    python -m digitlite train --epochs 1
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

# name -> ("module:function", one-line help). The function takes argv (list[str]) and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("train.cli:data_main", "find or fetch MNIST, verify its checksums, summarise it"),
    "train": ("train.cli:train_main", "train a model (default: the dropout CNN) and write its run report"),
    "train-detector": ("train.cli:train_detector_main",
                       "train the digit detector (the region finder's pretraining) on rendered scenes"),
    "train-recognizer": ("train.cli:train_recognizer_main", "train the number recognizer on rendered regions"),
    "train-regions": ("train.cli:train_regions_main", "train the region finder on the data engine's mixes"),
    "architectures": ("benchmarks.architectures:architectures_main",
                      "train every network and classical baseline the same way; benchmarks/architectures.md"),
    "tune": ("train.cli:tune_main", "hyperparameter search with keras-tuner; saves the best config"),
    "convert": ("convert.cli:convert_main", "Keras model -> float32 and int8 .tflite, shipped only if they pass"),
    "check": ("convert.cli:check_main", "evaluate a .tflite on the MNIST test set against its manifest"),
    "compare": ("convert.cli:compare_main", "side-by-side report of two .tflite models"),
    "read": ("edge_app.cli:read_main", "read the numbers in image files"),
    "run": ("edge_app.cli:run_main", "live loop on a camera, video, stream or synthetic source"),
    "history": ("edge_app.cli:history_main", "the stored readings, since a time, as text, CSV or JSON lines"),
    "correct": ("edge_app.cli:correct_main", "correct a stored reading; its crops become labelled examples"),
    "corrections": ("edge_app.cli:corrections_main",
                    "export the corrections as a labelled set (labels.csv + images) for eval and training"),
    "eval-scenes": ("benchmarks.accuracy:eval_scenes_main", "accuracy and speed on camera-like synthetic scenes"),
    "eval": ("benchmarks.accuracy:eval_main", "accuracy and speed on a folder of labelled images (labels.csv)"),
    "serve": ("edge_app.cli:serve_main", "web app: live stream, photo upload, draw a digit"),
    "models": ("edge_app.cli:models_main", "model bundles on this device: list, install, activate, rollback, pack"),
    "config": ("edge_app.cli:config_main", "check a TOML configuration file and print the run options it sets"),
    "doctor": ("edge_app.cli:doctor_main", "check this device: runtime, camera, model, and what to fix"),
    "bench": ("benchmarks.cli:bench_main", "latency and throughput, appended to benchmarks/history.jsonl"),
}

# Which extra provides each stage, for the error when it is not installed.
EXTRA_FOR_PACKAGE = {"train": "train", "convert": "train", "edge_app": "edge", "benchmarks": "train"}

# The exit codes of every subcommand: one table, shown by `digitlite --help`; tests/test_cli.py runs each
# command's bad-input case against it.
EXIT_OK = 0
EXIT_FAILED = 1  # it ran and what it did failed: nothing could be read, the camera was lost, a fault found
EXIT_BAD_INPUT = 2  # refused before the work: arguments, a file, model, configuration or history it cannot use
EXIT_MISSING_EXTRA = 3  # an optional dependency (an extra) is not installed
EXIT_REFUSED = 4  # a gate said no: nothing was released or activated
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_FAILED: "it ran and failed: no file could be read (read), the camera or stream was lost (run, serve), a "
                 "fault found (doctor), slower than its history or band (bench --check, --board), devices that did "
                 "not answer (models announce)",
    EXIT_BAD_INPUT: "bad input, refused before any work: an argument, a missing or corrupt file or folder, a model "
                    "that is missing or fails its manifest check, a bad configuration file or labels file, a "
                    "history that cannot be opened, a camera that cannot be opened, MNIST not found",
    EXIT_MISSING_EXTRA: "an optional dependency is not installed: the error names the extra to install",
    EXIT_REFUSED: "a gate refused: an accuracy check or a sha256 failed (convert, check: nothing released), or the "
                  "canary read a bundle worse than the models in use (models: not activated)",
}

LOG_LEVELS = ("debug", "info", "warning", "error")
TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"  # TensorFlow's C++ log threshold: 0 everything, 3 nothing


# ---------------------------------------------------------------------------------------------- conventions


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """ArgumentDefaultsHelpFormatter, except for options whose default is None: their help says in words what
    happens when they are not given, and "(default: None)" after it would only contradict it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="warning", choices=LOG_LEVELS,
                        help="what is logged; debug also shows TensorFlow's C++ log lines")


def setup_logging(level: str) -> None:
    """Python logging at `level` (one of LOG_LEVELS), and TensorFlow's C++ lines only at debug."""
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if level == "debug":
        os.environ[TF_LOG_ENV] = "0"
    else:
        os.environ.setdefault(TF_LOG_ENV, "3")


@contextmanager
def capture_native_stderr() -> Iterator[list[str]]:
    """Collect what native code writes to file descriptor 2 (C++ log lines) into a list, instead of the terminal."""
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:
        yield lines
        return
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors="replace").splitlines())


@contextmanager
def native_lines_off() -> Iterator[None]:
    """Keep what native code writes to stderr in this block off the terminal, unless TF_CPP_MIN_LOG_LEVEL is 0
    (`--log-level debug`). If the block fails, what was written is shown with the error."""
    if os.environ.get(TF_LOG_ENV, "0") == "0":
        yield
        return
    lines: list[str] = []
    try:
        with capture_native_stderr() as lines:
            yield
    except BaseException:
        if lines:  # filled when the capture ends, before this runs
            print("\n".join(lines), file=sys.stderr)
        raise


def load_tensorflow():
    """`import tensorflow`, its C++ start-up lines (the oneDNN note, "All log messages before
    absl::InitializeLog()") kept off the terminal unless `--log-level debug`: they are written while its
    shared libraries load, before TensorFlow's own log threshold applies."""
    with native_lines_off():
        import tensorflow
    return tensorflow


def usage(commands: dict[str, tuple[str, str]], prog: str) -> str:
    width = max(len(name) for name in commands)
    lines = [f"usage: {prog} <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in commands.items()]
    lines += ["", f"`{prog} <command> --help` shows the options of one command.", "",
              "exit codes (every command):"]
    lines += [textwrap.fill(meaning, width=100, initial_indent=f"  {code}  ", subsequent_indent="     ")
              for code, meaning in EXIT_CODES.items()]
    return "\n".join(lines)


def _close_matches(name: str, names: list[str]) -> str:
    import difflib

    matches = difflib.get_close_matches(name, names, n=3)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


def main(argv: list[str] | None = None, only: tuple[str, ...] | None = None, prog: str = "digitlite") -> int:
    """Dispatch `argv[0]` to its subcommand. `only` restricts the registry (for `python -m <package>`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {k: v for k, v in COMMANDS.items() if only is None or k in only}
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(commands, prog))
        return EXIT_OK if argv else EXIT_BAD_INPUT
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(
            f"{prog}: unknown command {name!r}; valid commands are {', '.join(commands)}."
            + _close_matches(name, list(commands)),
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    target, _ = commands[name]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        package = module_name.split(".")[0]
        if exc.name and exc.name.split(".")[0] == package:
            raise
        extra = EXTRA_FOR_PACKAGE.get(package, "dev")
        print(
            f"{prog} {name}: needs the Python package {exc.name!r}, which is not installed. "
            f"Install the '{extra}' extra: pip install 'digitlite[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA
    return int(getattr(module, func_name)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
