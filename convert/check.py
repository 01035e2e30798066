"""Checks of any .tflite: accuracy on the MNIST test set and on the real digits' held-out part
(`convert.real_digits`; skipped with a message where the set is not there) against its manifest entry and the
gate; and the side-by-side comparison report of two models on both sets.

    digitlite check models/digits_int8.tflite --json
    digitlite compare models/digits_float32.tflite models/digits_int8.tflite --out runs/compare
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convert import manifest as manifest_io
from convert.evaluate import evaluate
from convert.real_digits import evaluate_real, gate_sets, real_paired, summary_markdown, write_figures
from convert.release import Gate, comparison_markdown, write_comparison
from digitdata.atomic import write_json, write_text
from digitdata.mnist import FILES, find_mnist
from edge_app.runtime import Classifier


@dataclass
class CheckResult:
    model: str
    accuracy: float
    per_class: list[float]
    sha256: str
    recorded: dict | None  # the manifest entry's accuracy block, when the model has one
    sha256_matches: bool | None
    failures: list[str] = field(default_factory=list)
    real: dict[str, dict] = field(default_factory=dict)  # set -> accuracy, per_class, images, recorded (or None)
    skipped: dict[str, str] = field(default_factory=dict)  # set -> why it was not measured

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**self.__dict__, "passed": self.passed}


def check_model(model_path: str | Path, manifest_path: str | Path | None = None, gate: Gate | None = None,
                tolerance: float = 0.05, data_dir: str | Path | None = None,
                allow_unverified: bool = False, datasets: str | Path | None = None) -> CheckResult:
    """Evaluate `model_path` on all MNIST test images and the real digits' held-out part; fail on the gate, a
    drop below its recorded accuracy on either, or a sha256 that differs from its manifest entry.

    Args:
        tolerance: percentage points the measured accuracy may fall below the manifest's (runtimes on other
            CPUs may round differently); 0 demands at least the recorded accuracy.
        allow_unverified: measure a model whose sha256 differs from its entry without failing for it.
    """
    gate = gate or Gate()
    model_path = Path(model_path)
    manifest_path = Path(manifest_path) if manifest_path else model_path.parent / "manifest.json"
    entry = manifest_io.read(manifest_path)["models"].get(model_path.name) if manifest_path.exists() else None
    # A missing, corrupt or non-digit model is reported before MNIST is sought.
    integrity = Classifier(model_path, threads=1, manifest_path=manifest_path).integrity
    data = find_mnist(data_dir)
    ev = evaluate(model_path, data, manifest_path=manifest_path)
    result = CheckResult(str(model_path), ev.accuracy, ev.per_class(), integrity.sha256,
                         entry["accuracy"] if entry else None, integrity.verified if entry else None)
    if integrity.status == "mismatch" and not allow_unverified:
        result.failures.append(f"{integrity.problem()}; --allow-unverified measures it without failing for this")
    if ev.accuracy < gate.min_accuracy:
        result.failures.append(f"accuracy {ev.accuracy:.4%} < --min-accuracy {gate.min_accuracy:.2%}")
    if entry:
        recorded = entry["accuracy"]
        if recorded.get("test_images_sha256") != FILES["test_images"][1]:
            result.failures.append("the manifest's accuracy was measured on a different test set")
        drop = 100 * (recorded["overall"] - ev.accuracy)
        if drop > tolerance:
            result.failures.append(f"accuracy {ev.accuracy:.4%} is {drop:.2f} points below the manifest's "
                                   f"{recorded['overall']:.4%} (--tolerance {tolerance})")
    real_sets, result.skipped = gate_sets(datasets)
    for name, digits in real_sets.items():
        real = evaluate_real(model_path, digits, manifest_path)
        block = (entry or {}).get("real_digits", {}).get(name)
        result.real[name] = {"accuracy": real.accuracy, "per_class": real.per_class(), "images": len(digits),
                             "errors": int((~real.correct).sum()), "sha256": digits.sha256,
                             "recorded": block["accuracy"]["overall"] if block else None}
        if real.accuracy < gate.min_real_accuracy:
            result.failures.append(f"{name} held-out accuracy {real.accuracy:.4%} < --min-real-accuracy "
                                   f"{gate.min_real_accuracy:.2%}")
        if block and block.get("sha256") != digits.sha256:
            result.failures.append(f"the manifest's {name} accuracy was measured on a different held-out part "
                                   f"(sha256 {block.get('sha256')}, here {digits.sha256})")
        elif block:
            drop = 100 * (block["accuracy"]["overall"] - real.accuracy)
            if drop > tolerance:
                result.failures.append(f"{name} held-out accuracy {real.accuracy:.4%} is {drop:.2f} points below "
                                       f"the manifest's {block['accuracy']['overall']:.4%} (--tolerance {tolerance})")
    return result


def single_image_latency_ms(model_path: Path, runs: int = 200) -> float:
    """Median single-image, single-thread invoke time: a quick indication, benchmarks/ has the real figures."""
    clf = Classifier(model_path, threads=1)
    x = np.zeros((1, 28, 28, 1), np.float32)
    clf.probabilities(x)  # warm-up and tensor allocation
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        clf.interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def compare_models(a_path: str | Path, b_path: str | Path, out: str | Path,
                   data_dir: str | Path | None = None, datasets: str | Path | None = None) -> dict:
    """Write compare.md, compare.json and the figures for A vs B on the MNIST test set and on the real digits'
    held-out part into `out`; return the comparison (the real part's under "real", by set)."""
    a_path, b_path, out = Path(a_path), Path(b_path), Path(out)
    if a_path.name == b_path.name:
        raise ValueError(f"both models are named {a_path.name}; copy one under another name to compare them")
    for path in (a_path, b_path):
        Classifier(path, threads=1)  # bad models are reported before MNIST is sought
    data = find_mnist(data_dir)
    a, b = evaluate(a_path, data), evaluate(b_path, data)
    out.mkdir(parents=True, exist_ok=True)
    comparison = write_comparison(data.x_test, a, b, out, "compare")
    sizes = {a.name: a_path.stat().st_size, b.name: b_path.stat().st_size}
    latency = {a.name: single_image_latency_ms(a_path), b.name: single_image_latency_ms(b_path)}
    real_sets, skipped = gate_sets(datasets)
    comparison.update(sizes=sizes, latency_ms_p50=latency, real={}, real_skipped=skipped)
    text = (f"# {a.name} vs {b.name} on the 10,000 MNIST test images\n\n"
            + comparison_markdown(comparison, sizes, latency)
            + "\nFigures: compare_confusion.png, compare_per_class.png, compare_disagreements.png.\n")
    for name, digits in real_sets.items():
        ra, rb = evaluate_real(a_path, digits), evaluate_real(b_path, digits)
        comparison["real"][name] = real_paired(ra, rb, digits)
        figures = write_figures(digits, ra, rb, out, "compare")
        text += (f"\n# {a.name} vs {b.name} on real digits\n\n" + summary_markdown(name, comparison["real"][name])
                 + comparison_markdown(comparison["real"][name]) + "\nFigures: "
                 + ", ".join(p.name for p in figures) + ".\n")
    for reason in skipped.values():
        text += f"\n{reason}.\n"
    write_json(out / "compare.json", comparison)
    write_text(out / "compare.md", text)
    return comparison
