"""Command lines of the conversion stage: `digitlite convert`, `digitlite check`, `digitlite compare`.

The classifier is judged on two sets: the 10,000 MNIST test digits and the held-out part of the real digits
(nsysu-digits, `convert.real_digits`), the second skipped with a message where ../shared/datasets is not there.
Exit codes (convert and check): 0 all checks passed; 2 bad input (missing or corrupt model, wrong input
shape, bad arguments, MNIST not found); 4 a failed check: an accuracy regression on either set (nothing
released), or for `check` a model whose sha256 differs from its manifest entry. (3: the dispatcher's "extra not
installed".)

    digitlite convert models/digits.keras --out models/
    digitlite check models/digits_int8.tflite
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from convert.release import Gate
from digitlite import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, HelpFormatter, add_log_level, setup_logging


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


def _add_datasets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", type=Path, default=None,
                        help="folder holding nsysu-digits/ (default: $DIGITLITE_DATASETS, then ../shared/datasets "
                             "beside the checkout; where none is there, the real-digit part is skipped)")


def _add_gate(parser: argparse.ArgumentParser) -> None:
    defaults = Gate()
    parser.add_argument("--max-drop", type=float, default=defaults.max_drop,
                        help="percentage points int8 (and other variants) may lose against float32 (MNIST test)")
    parser.add_argument("--min-accuracy", type=float, default=defaults.min_accuracy,
                        help="minimum MNIST test accuracy of every model (fraction)")
    parser.add_argument("--min-real-accuracy", type=float, default=defaults.min_real_accuracy,
                        help="minimum accuracy of every model on the real digits' held-out part (fraction)")
    parser.add_argument("--max-real-drop", type=float, default=defaults.max_real_drop,
                        help="percentage points int8 (and other variants) may lose against float32 on the real "
                             "digits")
    _add_data_dir(parser)
    _add_datasets(parser)


def _gate(args) -> Gate:
    return Gate(max_drop=args.max_drop, min_accuracy=args.min_accuracy, min_real_accuracy=args.min_real_accuracy,
                max_real_drop=args.max_real_drop, max_regression=getattr(args, "max_regression", Gate().max_regression))


def _input_errors():
    from convert.release import ModelLoadError
    from digitdata.mnist import MnistError
    from edge_app.runtime import ModelError, RuntimeNotFound

    return (ModelError, RuntimeNotFound, MnistError, ModelLoadError, FileNotFoundError, ValueError)


def convert_main(argv: list[str]) -> int:
    from convert.tflite import VARIANTS

    parser = _parser("convert", "Convert a Keras model to float32 and int8 .tflite; release them only if they "
                                "pass the accuracy checks on the full MNIST test set and the real digits' held-out "
                                "part, and read neither worse than the release they replace.")
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
    parser.add_argument("--max-regression", type=float, default=Gate().max_regression,
                        help="percentage points a file may lose against the release it replaces in --out, on "
                             "either set")
    parser.add_argument("--report", type=Path, default=Path("runs/convert"),
                        help="folder for the real digits' figures (disagreements, confusions, per class, the int8 "
                             "misreads): their images never go into the release folder")
    parser.add_argument("--min-recall", type=float, default=None,
                        help="region finder only: minimum recall of number lines at IoU 0.5 (default: RegionGate's)")
    parser.add_argument("--min-precision", type=float, default=None,
                        help="region finder only: minimum precision of number lines at IoU 0.5 (default: RegionGate's)")
    parser.add_argument("--min-exact", type=float, default=None,
                        help="recognizer only: minimum exact strings on the gate regions (default: RecognizerGate's)")
    parser.add_argument("--min-nothing", type=float, default=None,
                        help="recognizer only: minimum digit-free gate regions read as nothing "
                             "(default: RecognizerGate's)")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="after a release, also write the release folder's int8 models as one model bundle "
                             "(`digitlite models install` on a device), its sha256 beside it")
    parser.add_argument("--bundle-version", default=None, help="the bundle's version (default: the time and a hash)")
    parser.add_argument("--bundle-golden", type=Path, default=None,
                        help="labelled images the bundle carries for the device's canary (e.g. tests/data/golden)")
    parser.add_argument("--sign", type=Path, default=None, metavar="KEY",
                        help="sign the bundle with this private key (`digitlite models keygen`); devices refuse an "
                             "unsigned bundle unless their configuration allows it")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if args.sign is not None:  # a key that cannot sign is found before the conversion, not after it
        from edge_app.runtime.signing import KeyFileError, load_private

        try:
            load_private(args.sign)
        except KeyFileError as exc:
            print(f"digitlite convert: --sign: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT

    from convert.reader_release import run_task

    task = run_task(args.model)
    if task is not None:
        return _convert_reader_model(args, argv, *task)

    from convert.release import convert_and_release

    try:
        outcome = convert_and_release(args.model, args.out, ("float32", "int8", *args.variants),
                                      args.calibration_size, args.seed, _gate(args), args.data_dir,
                                      command="digitlite convert " + shlex.join(argv), report_dir=args.report,
                                      datasets=args.datasets)
    except _input_errors() as exc:
        print(f"digitlite convert: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for variant, ev in outcome.evaluations.items():
        real = "".join(f"; {name} held-out part {evs[variant].accuracy:.4%} ({len(evs[variant].labels)})"
                       for name, evs in outcome.real.items())
        print(f"{variant:>8}: MNIST test accuracy {ev.accuracy:.4%}{real}")
    print(f"float32 .tflite agrees with Keras on {outcome.keras_agreement:.4%} of test images")
    for variant, comp in outcome.comparisons.items():
        print(f"{variant:>8} vs float32 on MNIST: {comp['drop_points']:+.2f} points, {len(comp['disagreements'])} "
              f"disagreements, McNemar p = {comp['mcnemar']['p_value']:.3g}")
        for name, comps in outcome.real_comparisons.items():
            c = comps[variant]
            print(f"{variant:>8} vs float32 on {name}: {c['drop_points']:+.2f} points, {len(c['disagreements'])} "
                  f"disagreements, McNemar p = {c['mcnemar']['p_value']:.3g}")
    for reason in outcome.skipped.values():
        print(f"{reason} (the MNIST part of the gate decided alone)")
    if outcome.report:
        print(f"real-digit figures: {', '.join(str(p) for p in outcome.report)}")
    return _released_or_refused(outcome, args)


def _released_or_refused(outcome, args) -> int:
    """The last lines of a conversion (classifier, recognizer or region finder), the bundle, and the exit code."""
    if not outcome.passed:
        print(f"digitlite convert: not released: {outcome.reason}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"released into {args.out}: " + ", ".join(p.name for p in outcome.released) + ", manifest.json")
    if args.bundle is not None:
        from edge_app.runtime.bundle import pack_release

        try:
            bundle = pack_release(args.out, args.bundle, args.bundle_version, args.bundle_golden, sign=args.sign)
        except ValueError as exc:  # BundleError, or a signing key that cannot be used (KeyFileError)
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
    if task == "recognizer":
        gate.min_exact = args.min_exact if args.min_exact is not None else gate.min_exact
        gate.min_nothing = args.min_nothing if args.min_nothing is not None else gate.min_nothing
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
                  f"{s['mnist_single']:.2%}" + (f", held-out real cheque amounts {s['real_amounts_held']['exact']:.2%}"
                                                 if "real_amounts_held" in s else ""))
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
        for name, r in result.real.items():
            recorded = f" (manifest: {r['recorded']:.4%})" if r["recorded"] is not None else " (not in the manifest)"
            print(f"{name} held-out part ({r['images']} digits): accuracy {r['accuracy']:.4%}{recorded}")
            print("per class: " + " ".join(f"{c}:{a:.4f}" for c, a in enumerate(r["per_class"])))
        for reason in result.skipped.values():
            print(reason)

    return _checked(args, lambda: check_model(args.model, args.manifest, _gate(args), args.tolerance, args.data_dir,
                                              args.allow_unverified, args.datasets), describe)


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
        return EXIT_REFUSED
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
    parser = _parser("compare", "Side-by-side report of two .tflite models on the MNIST test set and the real "
                                "digits' held-out part (Markdown + PNG).")
    parser.add_argument("a", type=Path, help="the first .tflite model (A)")
    parser.add_argument("b", type=Path, help="the second .tflite model (B)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="report folder")
    _add_data_dir(parser)
    _add_datasets(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    from convert.check import compare_models

    try:
        comparison = compare_models(args.a, args.b, args.out, args.data_dir, args.datasets)
    except _input_errors() as exc:
        print(f"digitlite compare: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print((args.out / "compare.md").read_text())
    real = "".join(f"; {name}: McNemar p = {c['mcnemar']['p_value']:.4g}" for name, c in comparison["real"].items())
    print(f"report: {args.out / 'compare.md'} (MNIST: McNemar p = {comparison['mcnemar']['p_value']:.4g}{real})")
    return EXIT_OK
