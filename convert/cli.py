"""Command lines of the conversion stage: `digitlite convert`, `digitlite check`, `digitlite compare`.

Exit codes (convert and check): 0 all checks passed; 2 bad input (missing or corrupt model, wrong input
shape, bad arguments, MNIST not found); 4 a failed check: an accuracy regression (nothing released), or for
`check` a model whose sha256 differs from its manifest entry. (3: the dispatcher's "extra not installed".)

    digitlite convert models/digits.keras --out models/
    digitlite check models/digits_int8.tflite
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from convert.release import EXIT_BAD_INPUT, EXIT_OK, EXIT_REGRESSION, Gate
from digitlite import HelpFormatter, add_log_level, setup_logging


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"digitlite {prog}", description=description, formatter_class=HelpFormatter,
                                     epilog="exit codes: 0 passed, 2 bad input, 4 a failed check (accuracy "
                                            "regression; for check also a sha256 that differs from the manifest)")
    add_log_level(parser)
    return parser


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the four MNIST IDX files (default: $DIGITLITE_MNIST_DIR, the cache, "
                             "then download)")


def _add_gate(parser: argparse.ArgumentParser) -> None:
    defaults = Gate()
    parser.add_argument("--max-drop", type=float, default=defaults.max_drop,
                        help="percentage points int8 (and other variants) may lose against float32")
    parser.add_argument("--min-accuracy", type=float, default=defaults.min_accuracy,
                        help="minimum test accuracy of every model (fraction)")
    _add_data_dir(parser)


def _input_errors():
    from convert.release import ModelLoadError
    from digitdata.mnist import MnistError
    from edge_app.runtime import ModelError, RuntimeNotFound

    return (ModelError, RuntimeNotFound, MnistError, ModelLoadError, FileNotFoundError, ValueError)


def convert_main(argv: list[str]) -> int:
    from convert.tflite import VARIANTS

    parser = _parser("convert", "Convert a Keras model to float32 and int8 .tflite; release them only if they "
                                "pass the accuracy checks on the full MNIST test set.")
    parser.add_argument("model", type=Path, help="the .keras model")
    parser.add_argument("--out", type=Path, default=Path("models"), help="release folder")
    parser.add_argument("--variants", nargs="*", default=[], choices=[v for v in VARIANTS if v not in
                                                                        ("float32", "int8")],
                        help="extra variants besides float32 and int8")
    parser.add_argument("--calibration-size", type=int, default=500,
                        help="class-balanced training images used to calibrate int8 (the recognizer: rendered "
                             "regions; the region finder: scenes, a quarter from each mix)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    _add_gate(parser)
    parser.add_argument("--min-recall", type=float, default=None,
                        help="region finder only: minimum recall of number lines at IoU 0.5 (default: RegionGate's)")
    parser.add_argument("--min-precision", type=float, default=None,
                        help="region finder only: minimum precision of number lines at IoU 0.5 (default: RegionGate's)")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="after a release, also write the release folder's int8 models as one model bundle "
                             "(`digitlite models install` on a device), its sha256 beside it")
    parser.add_argument("--bundle-version", default=None, help="the bundle's version (default: the time and a hash)")
    parser.add_argument("--bundle-golden", type=Path, default=None,
                        help="labelled images the bundle carries for the device's canary (e.g. tests/data/golden)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    from convert.reader_release import run_task

    task = run_task(args.model)
    if task is not None:
        return _convert_reader_model(args, argv, *task)

    from convert.release import convert_and_release

    try:
        outcome = convert_and_release(args.model, args.out, ("float32", "int8", *args.variants),
                                      args.calibration_size, args.seed, Gate(args.max_drop, args.min_accuracy),
                                      args.data_dir, command="digitlite convert " + shlex.join(argv))
    except _input_errors() as exc:
        print(f"digitlite convert: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for variant, ev in outcome.evaluations.items():
        print(f"{variant:>8}: test accuracy {ev.accuracy:.4%}")
    print(f"float32 .tflite agrees with Keras on {outcome.keras_agreement:.4%} of test images")
    for variant, comp in outcome.comparisons.items():
        print(f"{variant:>8} vs float32: {comp['drop_points']:+.2f} points, {len(comp['disagreements'])} "
              f"disagreements, McNemar p = {comp['mcnemar']['p_value']:.3g}")
    return _released_or_refused(outcome, args)


def _released_or_refused(outcome, args) -> int:
    """The last lines of a conversion (classifier, recognizer or region finder), the bundle, and the exit code."""
    if not outcome.passed:
        print(f"digitlite convert: not released: {outcome.reason}", file=sys.stderr)
        return EXIT_REGRESSION
    print(f"released into {args.out}: " + ", ".join(p.name for p in outcome.released) + ", manifest.json")
    if args.bundle is not None:
        from edge_app.runtime.bundle import BundleError, pack_release

        try:
            bundle = pack_release(args.out, args.bundle, args.bundle_version, args.bundle_golden)
        except BundleError as exc:
            print(f"digitlite convert: released, but no bundle: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"bundle {bundle.version} written to {args.bundle} (sha256 {bundle.sha256})")
    return EXIT_OK


def _convert_reader_model(args, argv: list[str], task: str, run_config: dict) -> int:
    """`digitlite convert` of a recognizer or region finder run: its own gate (convert/reader_release.py)."""
    from convert.reader_release import RecognizerGate, RegionGate, convert_reader_model

    gate = RecognizerGate() if task == "recognizer" else RegionGate()
    if "--max-drop" in argv:
        gate.max_drop = args.max_drop
    if task == "regions":
        gate.min_recall = args.min_recall if args.min_recall is not None else gate.min_recall
        gate.min_precision = args.min_precision if args.min_precision is not None else gate.min_precision
    try:
        outcome = convert_reader_model(args.model, args.out, task, run_config, gate, data_dir=args.data_dir,
                                       command="digitlite convert " + shlex.join(argv))
    except _input_errors() as exc:
        print(f"digitlite convert: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for variant, s in outcome.scores.items():
        if task == "recognizer":
            print(f"{variant:>8}: exact {s['exact']:.2%} on {s['regions'] - s['digit_free']} test-digit regions, "
                  f"digit-free read as nothing {s['nothing_read']:.2%}, MNIST test digits one at a time "
                  f"{s['mnist_single']:.2%}")
        else:
            print(f"{variant:>8}: number lines precision {s['precision']:.2%}, recall {s['recall']:.2%}; " + ", ".join(
                f"{m} {v['precision']:.1%}/{v['recall']:.1%}" for m, v in s["per_mix"].items() if v["lines"]))
    return _released_or_refused(outcome, args)


def check_main(argv: list[str]) -> int:
    parser = _parser("check", "Evaluate a .tflite on the MNIST test set through LiteRT and compare it with its "
                              "manifest entry and the accuracy gate.")
    parser.add_argument("model", type=Path, help="the .tflite model")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest (default: manifest.json beside the model)")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="percentage points the accuracy may fall below the manifest's")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="measure a model whose sha256 differs from its manifest entry without failing for it")
    _add_gate(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    from convert.check import check_model

    entry = _manifest_entry(args.model, args.manifest)
    if entry.get("task") in ("recognizer", "regions"):
        return _check_reader_model(args, entry)

    def describe(result) -> None:
        recorded = f" (manifest: {result.recorded['overall']:.4%})" if result.recorded else " (not in a manifest)"
        print(f"{args.model}: test accuracy {result.accuracy:.4%}{recorded}; sha256 "
              f"{'matches' if result.sha256_matches else 'differs from' if result.recorded else 'is'} "
              f"{'the manifest' if result.recorded else result.sha256}")
        print("per class: " + " ".join(f"{c}:{a:.4f}" for c, a in enumerate(result.per_class)))

    return _checked(args, lambda: check_model(args.model, args.manifest, Gate(args.max_drop, args.min_accuracy),
                                              args.tolerance, args.data_dir, args.allow_unverified), describe)


def _checked(args, run, describe) -> int:
    """`digitlite check`'s common part: run the check, print it (JSON or `describe`), the exit code."""
    try:
        result = run()
    except _input_errors() as exc:
        print(f"digitlite check: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        describe(result)
    if not result.passed:
        print(f"digitlite check: failed: {'; '.join(result.failures)}", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


def _manifest_entry(model: Path, manifest: Path | None) -> dict:
    from convert import manifest as manifest_io

    path = manifest or model.parent / "manifest.json"
    try:
        return manifest_io.read(path)["models"].get(model.name, {}) if path.exists() else {}
    except ValueError:
        return {}  # check_model reports a corrupt manifest


def _check_reader_model(args, entry: dict) -> int:
    """`digitlite check` of a released recognizer or region finder: its gate figures re-measured, and its sha256."""
    from convert.reader_release import check_reader_model

    def describe(result) -> None:
        print(f"{args.model}: " + ", ".join(f"{k} {v:.2%} (manifest: {result.recorded[k]:.2%})"
                                            for k, v in result.scores.items()) +
              f"; sha256 {'matches' if result.sha256_matches else 'differs from'} the manifest")

    manifest = args.manifest or args.model.parent / "manifest.json"
    return _checked(args, lambda: check_reader_model(args.model, entry, manifest, max(args.tolerance, 0.5),
                                                     args.data_dir, args.allow_unverified), describe)


def compare_main(argv: list[str]) -> int:
    parser = _parser("compare", "Side-by-side report of two .tflite models on the MNIST test set (Markdown + PNG).")
    parser.add_argument("a", type=Path, help="the first .tflite model (A)")
    parser.add_argument("b", type=Path, help="the second .tflite model (B)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="report folder")
    _add_data_dir(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    from convert.check import compare_models

    try:
        comparison = compare_models(args.a, args.b, args.out, args.data_dir)
    except _input_errors() as exc:
        print(f"digitlite compare: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print((args.out / "compare.md").read_text())
    print(f"report: {args.out / 'compare.md'} (McNemar p = {comparison['mcnemar']['p_value']:.4g})")
    return EXIT_OK
