"""The classifier's gate on real digits: the held-out part of nsysu-digits, beside the MNIST test set.

MNIST's test digits were written by the same kind of writers as its training digits; the digits a device sees
were not. The gate therefore also reads the held-out part of a real single-digit set (`digitdata.realsets`:
nsysu-digits held out by semester, 484 digits of 18 exams, never trained on), each image prepared as the device
prepares one (`digitdata.crops.digit_to_mnist`). The set lives outside the repository (../shared/datasets or
$DIGITLITE_DATASETS); where it is not there, this part of the gate is skipped and says so, and the MNIST part
still decides. Its images never enter the release folder: the manifest records accuracy, per class, McNemar and
the names of the disagreeing files, and the figures that show them go to the report folder (`--report`).

    python -c "from convert.real_digits import gate_sets; print(gate_sets())"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convert.evaluate import Evaluation, evaluate_images, paired
from digitdata import plots, realsets

GATE_SETS = (realsets.NSYSU,)  # the real single-digit sets whose held-out part the classifier's gate reads
PART = "held"


def gate_sets(root: str | Path | None = None) -> tuple[dict[str, realsets.RealDigits], dict[str, str]]:
    """The held-out parts that are there, and for each that is not, why its part of the gate is skipped."""
    found, skipped = {}, {}
    for name in GATE_SETS:
        reason = realsets.missing_reason(name, root)
        if reason:
            skipped[name] = f"{name} gate part skipped: {reason}"
        else:
            found[name] = realsets.digits(name, PART, root)
    return found, skipped


def evaluate_real(model_path: Path, digits: realsets.RealDigits, manifest_path: Path | None = None,
                  pixels: dict | None = None) -> Evaluation:
    return evaluate_images(model_path, digits.x, digits.y, manifest_path=manifest_path, pixels=pixels)


def accuracy_block(ev: Evaluation, digits: realsets.RealDigits) -> dict:
    """A manifest entry's record of one model on one real part: which part (its checksum), accuracy, per class."""
    return {**digits.record(), "accuracy": {"overall": ev.accuracy, "errors": int((~ev.correct).sum()),
                                            "per_class": ev.per_class(),
                                            "support": [int((ev.labels == c).sum()) for c in range(10)]}}


def real_paired(a: Evaluation, b: Evaluation, digits: realsets.RealDigits) -> dict:
    """`paired` on a real part, with the disagreeing images named by their file (the images stay outside)."""
    comparison = paired(a, b)
    comparison["disagreeing_files"] = [{"file": digits.files[i], "label": int(a.labels[i]),
                                        a.name: int(a.predictions[i]), b.name: int(b.predictions[i])}
                                       for i in comparison["disagreements"]]
    comparison["set"] = digits.record()
    return comparison


def write_figures(digits: realsets.RealDigits, a: Evaluation, b: Evaluation, out: Path, stem: str) -> list[Path]:
    """The disagreement grid, confusion matrices and per-class bars of A vs B on a real part, into `out` (a report
    folder: never the release folder, where no image of the set may go)."""
    out.mkdir(parents=True, exist_ok=True)
    idx = np.flatnonzero(a.predictions != b.predictions)[:60]
    short = [e.name.split("_")[-1].split(".")[0] for e in (a, b)]
    paths = [out / f"{stem}_{digits.name}_{suffix}.png" for suffix in ("disagreements", "confusion", "per_class")]
    plots.digit_grid(digits.x[idx], [f"{digits.files[i]}\ntrue {a.labels[i]}\n{short[0]} {a.predictions[i]} / "
                                     f"{short[1]} {b.predictions[i]}" for i in idx], paths[0],
                     title=f"{len(idx)} {digits.name} {digits.part} digits where {a.name} and {b.name} disagree")
    plots.confusion([a.confusion(), b.confusion()], [f"{a.name}: {a.accuracy:.2%}", f"{b.name}: {b.accuracy:.2%}"],
                    paths[1])
    plots.per_class_bars({a.name: a.per_class(), b.name: b.per_class()}, paths[2])
    return paths


def write_errors_figure(digits: realsets.RealDigits, ev: Evaluation, path: Path) -> None:
    """Every digit of the part that `ev`'s model misreads (at most 80), captioned with its file and both labels."""
    idx = np.flatnonzero(~ev.correct)[:80]
    plots.digit_grid(digits.x[idx], [f"{digits.files[i]}\ntrue {ev.labels[i]} read {ev.predictions[i]}" for i in idx],
                     path, title=f"{len(np.flatnonzero(~ev.correct))} {digits.name} {digits.part} digits "
                                 f"{ev.name} misreads")


def summary_markdown(name: str, comparison: dict) -> str:
    """The heading line of a real part's A vs B table."""
    s = comparison["set"]
    part = "held-out" if s["part"] == "held" else s["part"]
    return (f"**{name}, {part} part** ({s['images']} digits of {s['groups']} exams, {s['split']}; never "
            f"trained on; each prepared by `{s['preparation']}`):\n\n")
