"""Scoring readers on labelled images: exact numbers, digits, per kind, and time per image.

Owns what a score is, whichever reader produced the strings: a reader is any `predict(frame_bgr) -> (text,
boxes)` callable, so the project's reader, a second reader and an OCR peer are scored by the same code on the
same frames. Also owns the labels file (`labels.csv`: `file,label[,kind]`, every value read as text, read by
`digitdata.labelled.csv_rows` within its line and row limits; every file kept inside the folder). No OpenCV
and no model here: the report files are `benchmarks.eval_report`, the command is `digitlite eval`.

    digitlite eval ../shared/datasets/real-photos --out runs/eval

**Exact** (as in shared/datasets/real-photos/README.md): the reading with all whitespace removed equals the
label with all whitespace removed: same digits, same order, same count, leading zeros included. A label's
spaces separate numbers on different lines or cells (`37 50`, shared/datasets/real-pages/README.md). An
**empty** label says the image holds no number: only an empty reading is right there, and anything read on it
is a **false reading**, counted apart. Anything else in the reading (a stray letter, a hyphen) is a wrong
character, not something to strip.

**Kind groups**: where kinds carry a suffix (`page-printed`, `none-printed`), the kinds without one are scored
together as the headline and those of each suffix together apart (real-pages: page+none, then -printed).

**Per-digit accuracy** is OCR's character accuracy (Rice, Jenkins and Nartker's ISRI tests): over a set of
images, `1 - sum(edit distance) / sum(label length)`, floored at 0. The edit distance is Levenshtein's on
the digit strings: a digit missed, a digit too many and a wrong digit each cost one. "1234" for "12345"
costs 1 edit of 5 digits (80 %), and so does "2345": a position-by-position comparison would give the
shifted reading nothing and the right digits no credit. An unreadable image, or a reader that failed on
it, reads as nothing: every label digit is missed. A false reading's digits are edits too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from digitdata.labelled import csv_rows, find_image
from digitdata.progress import progress

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels
Predict = Callable[[np.ndarray], tuple[str, list[Box]]]

LABELS_FILES = ("labels.csv", "truth.csv")  # looked for in this order; truth.csv is what the golden folder has
LABEL_COLUMNS = ("label", "text")  # `text`: the column name of truth.csv (tests/data/golden)
MAX_LISTED = 5  # file names quoted in one error message


class LabelsError(ValueError):
    """A labels file that cannot be scored against: missing, malformed, or naming files that are not there."""


# ---------------------------------------------------------------------------------------------- scoring


def normalise(text: str) -> str:
    """The reading as scored: all whitespace removed (numbers on a page are joined), nothing else touched."""
    return re.sub(r"\s+", "", text)


def digit_edits(label: str, read: str) -> int:
    """Levenshtein distance between two digit strings: insertions, deletions and substitutions, each 1."""
    previous = list(range(len(read) + 1))
    for i, a in enumerate(label, 1):
        current = [i]
        for j, b in enumerate(read, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


@dataclass
class Score:
    """Counts over a set of images; the accuracies are derived from them."""

    images: int = 0
    exact: int = 0
    label_digits: int = 0
    digit_edits: int = 0
    empty: int = 0  # images whose label is empty: no number on them
    false_readings: int = 0  # of those, the ones where something was read

    def add(self, label: str, read: str) -> None:
        label, read = normalise(label), normalise(read)  # numbers on different lines or cells are joined
        self.images += 1
        self.exact += read == label
        self.label_digits += len(label)
        self.digit_edits += digit_edits(label, read)
        self.empty += not label
        self.false_readings += not label and bool(read)

    def __iadd__(self, other: Score) -> Score:
        for name in ("images", "exact", "label_digits", "digit_edits", "empty", "false_readings"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def exact_accuracy(self) -> float:
        return self.exact / self.images if self.images else 0.0

    @property
    def per_digit_accuracy(self) -> float:
        return max(0.0, 1.0 - self.digit_edits / self.label_digits) if self.label_digits else 0.0

    def to_dict(self) -> dict:
        return {"images": self.images, "exact": self.exact, "exact_accuracy": round(self.exact_accuracy, 4),
                "label_digits": self.label_digits, "digit_edits": self.digit_edits,
                "per_digit_accuracy": round(self.per_digit_accuracy, 4), "empty": self.empty,
                "false_readings": self.false_readings}


# ---------------------------------------------------------------------------------------------- running readers


@dataclass(frozen=True)
class Sample:
    """One labelled image. `load()` returns its BGR uint8 frame, or raises OSError/ValueError saying why not."""

    name: str
    label: str
    kind: str  # "" when the labels have no kind column
    load: Callable[[], np.ndarray]


@dataclass
class Read:
    """One reader's outcome on one image."""

    text: str  # as the reader returned it
    boxes: list[Box] = field(default_factory=list)
    seconds: float = 0.0  # the predict call alone (decoding the file is timed separately)
    error: str = ""  # the image could not be read, or the reader raised

    @property
    def digits(self) -> str:
        return normalise(self.text)

    def to_dict(self, label: str) -> dict:
        label = normalise(label)
        out = {"text": self.text, "exact": self.digits == label, "digit_edits": digit_edits(label, self.digits),
               "ms": round(self.seconds * 1e3, 3), "boxes": [[int(v) for v in box] for box in self.boxes]}
        return {**out, "error": self.error} if self.error else out


@dataclass
class ItemResult:
    """Every reader's outcome on one image, and a thumbnail when some reader missed it (for the contact sheet)."""

    name: str
    label: str
    kind: str
    reads: dict[str, Read]
    decode_seconds: float = 0.0
    error: str = ""  # the image itself could not be loaded
    thumbnail: np.ndarray | None = None
    thumbnail_scale: float = 1.0  # thumbnail px per frame px

    def exact(self, reader: str) -> bool:
        return self.reads[reader].digits == normalise(self.label)

    def to_dict(self) -> dict:
        out = {"file": self.name, "label": self.label, "kind": self.kind,
               "decode_ms": round(self.decode_seconds * 1e3, 3),
               "reads": {name: read.to_dict(self.label) for name, read in self.reads.items()}}
        return {**out, "error": self.error} if self.error else out


def _call(predict: Predict, frame_bgr: np.ndarray) -> Read:
    started = time.perf_counter()
    try:
        text, boxes = predict(frame_bgr)
    except Exception as exc:  # any reader, any failure: one image it cannot handle is a miss to report, not a crash
        return Read("", [], time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    return Read(str(text), [tuple(int(v) for v in box) for box in boxes], time.perf_counter() - started)


def evaluate(samples: Iterable[Sample], readers: dict[str, Predict],
             thumbnail: Callable[[np.ndarray], tuple[np.ndarray, float]] | None = None,
             warm_up: bool = True, total: int | None = None) -> list[ItemResult]:
    """Read every sample with every reader, on the same decoded frame.

    Args:
        samples: the labelled images; loaded one at a time, so a generator of scenes is never held whole.
        readers: name -> predict(frame_bgr) -> (text, boxes).
        thumbnail: frame -> (small image, scale), kept for images some reader missed (the contact sheet).
        warm_up: read the first image once untimed per reader, so a first call's set-up cost (sessions,
            caches, lazy allocation) is not charged to one image.
        total: how many samples there are, where `samples` has no len (a generator): for the progress shown
            (`digitdata.progress`: a bar on a terminal, one line in a log).

    Returns:
        One ItemResult per sample, in order. An image that cannot be loaded, or that a reader raises on, is
        a miss with the error recorded.
    """
    results = []
    warm = not warm_up
    for sample in progress(samples, f"reading with {', '.join(readers)}", total=total, unit="images"):
        started = time.perf_counter()
        try:
            frame_bgr = sample.load()
        except (OSError, ValueError) as exc:
            error = f"unreadable image: {exc}"
            reads = {name: Read("", error=error) for name in readers}
            results.append(ItemResult(sample.name, sample.label, sample.kind, reads, error=error))
            continue
        decode_seconds = time.perf_counter() - started
        if not warm:
            for predict in readers.values():
                _call(predict, frame_bgr)
            warm = True
        reads = {name: _call(predict, frame_bgr) for name, predict in readers.items()}
        item = ItemResult(sample.name, sample.label, sample.kind, reads, decode_seconds)
        if thumbnail is not None and not all(item.exact(name) for name in readers):
            item.thumbnail, item.thumbnail_scale = thumbnail(frame_bgr)
        results.append(item)
    return results


# ---------------------------------------------------------------------------------------------- summaries


def kind_groups(kinds: Iterable[str]) -> dict[str, list[str]]:
    """Kinds scored together, when some carry a suffix: the plain kinds ("page+none") and those of each suffix
    ("page-printed+none-printed"), named by their members joined with "+"; {} when no kind has a suffix.

    A group of one kind is that kind's own score under the same name, so it is left out: the report lists each
    kind once (a set of one kind, `nsysu-digits-held`, or of `letters` beside `page-printed`, makes no group).
    """
    kinds = sorted(set(kinds))
    by_suffix: dict[str, list[str]] = {}
    for kind in kinds:
        by_suffix.setdefault(kind.rpartition("-")[2] if "-" in kind else "", []).append(kind)
    if set(by_suffix) <= {""}:
        return {}
    return {"+".join(members): members for _, members in sorted(by_suffix.items()) if len(members) > 1}


def scores(results: list[ItemResult], reader: str) -> dict[str, Score]:
    """One Score for all images ("all"), then one per kind group (`kind_groups`), then one per kind, sorted (an
    image without a kind is in "all" only)."""
    by_kind: dict[str, Score] = {"all": Score()}
    for item in results:
        digits = item.reads[reader].digits
        by_kind["all"].add(item.label, digits)
        if item.kind:
            by_kind.setdefault(item.kind, Score()).add(item.label, digits)
    overall = by_kind.pop("all")
    groups = {}
    for name, members in kind_groups(by_kind).items():
        groups[name] = Score()
        for kind in members:
            groups[name] += by_kind[kind]
    return {"all": overall, **groups, **dict(sorted(by_kind.items()))}


def speed(results: list[ItemResult], reader: str) -> dict:
    """Time per image of the predict call over the images that were loaded (decoding excluded)."""
    seconds = np.array([item.reads[reader].seconds for item in results if not item.error], dtype=np.float64)
    if seconds.size == 0:
        return {"images": 0}
    return {"images": int(seconds.size), "s_per_image": round(float(seconds.mean()), 5),
            "ms_p50": round(float(np.percentile(seconds, 50)) * 1e3, 3),
            "ms_p90": round(float(np.percentile(seconds, 90)) * 1e3, 3),
            "images_per_second": round(float(seconds.size / seconds.sum()), 2) if seconds.sum() > 0 else None}


def summarise(results: list[ItemResult], readers: list[str]) -> dict:
    """The report's numbers: per reader its scores (overall, per kind), speed and misses; decode time."""
    decoded = [item.decode_seconds for item in results if not item.error]
    kinds = sorted({item.kind for item in results if item.kind})
    out = {"images": len(results), "kinds": kinds, "kind_groups": kind_groups(kinds),
           "decode_ms_mean": round(1e3 * float(np.mean(decoded)), 3) if decoded else None,
           "unreadable": [{"file": item.name, "error": item.error} for item in results if item.error],
           "readers": {}}
    for reader in readers:
        misses = [{"file": item.name, "label": item.label, "kind": item.kind, "read": item.reads[reader].text,
                   **({"error": item.reads[reader].error} if item.reads[reader].error else {})}
                  for item in results if not item.exact(reader)]
        out["readers"][reader] = {"scores": {k: s.to_dict() for k, s in scores(results, reader).items()},
                                  "speed": speed(results, reader), "misses": misses}
    return out


# ---------------------------------------------------------------------------------------------- labels files


def find_labels(folder: Path) -> Path:
    """The labels file of a folder: labels.csv, else truth.csv."""
    if not folder.is_dir():
        raise LabelsError(f"{folder} is not a folder; give a folder that holds labels.csv and the images")
    for name in LABELS_FILES:
        if (folder / name).is_file():
            return folder / name
    raise LabelsError(f"{folder} has no {' or '.join(LABELS_FILES)}: write a labels.csv with the header "
                      "`file,label[,kind]` and one row per image (labels are digit strings: leading zeros count)")


def read_labels(path: Path) -> list[tuple[str, str, str]]:
    """(file, label, kind) rows of a labels file; every value is text, the label without whitespace.

    Raises:
        LabelsError: not UTF-8 CSV, a line or field too long, too many rows, no `file` or label column, a label
            that is not digits (and spaces), a file listed twice.
    """
    try:
        return _read_labels(path)
    except LabelsError:
        raise
    except ValueError as exc:  # digitdata.labelled.csv_rows: the file, the line and what is wrong
        raise LabelsError(str(exc)) from None


def _read_labels(path: Path) -> list[tuple[str, str, str]]:
    lines = csv_rows(path)
    header = [h.strip().lower() for h in next(lines, (0, []))[1]]
    label_column = next((c for c in LABEL_COLUMNS if c in header), None)
    if "file" not in header or label_column is None:
        raise LabelsError(f"{path}: columns {header or '(none)'}; a labels file needs the columns `file` and "
                          "`label` (and optionally `kind`), e.g. the header `file,label,kind`")
    i_file, i_label = header.index("file"), header.index(label_column)
    i_kind = header.index("kind") if "kind" in header else None
    rows, seen = [], {}
    for line, row in lines:
        if not any(cell.strip() for cell in row):
            continue
        cells = row + [""] * (len(header) - len(row))
        name, label = cells[i_file].strip(), normalise(cells[i_label])
        if not name:
            raise LabelsError(f"{path}, line {line}: no file name")
        if label and not (label.isascii() and label.isdigit()):
            raise LabelsError(f"{path}, line {line}: label {cells[i_label]!r} for {name} is not a digit string "
                              "(labels are digits only, e.g. 0427, numbers on different lines separated by a "
                              "space, e.g. 37 50; empty when the image holds no number; leading zeros count)")
        if name in seen:
            raise LabelsError(f"{path}, line {line}: {name} is listed twice (also on line {seen[name]})")
        seen[name] = line
        rows.append((name, label, cells[i_kind].strip() if i_kind is not None else ""))
    if not rows:
        raise LabelsError(f"{path}: a header but no rows")
    return rows


def labelled_samples(folder: Path, load: Callable[[Path], np.ndarray],
                     labels: Path | None = None) -> tuple[Path, list[Sample]]:
    """The labels file used and one Sample per row, each loaded by `load(path)` when evaluated.

    Raises:
        LabelsError: the labels file is missing or malformed, or names files that are not in the folder (or
            that lead out of it: an absolute path, `..`, a link pointing out).
    """
    labels = labels or find_labels(folder)
    if not labels.is_file():
        raise LabelsError(f"no such labels file: {labels}")
    rows = read_labels(labels)
    outside = []
    paths = {}
    for name, _, _ in rows:
        try:
            paths[name] = find_image(folder, name)
        except ValueError:
            outside.append(name)
    if outside:
        quoted = _listed([repr(name) for name in outside])
        raise LabelsError(f"{labels}: {len(outside)} listed files lead out of {folder} ({quoted}); name the images "
                          f"by paths relative to the folder, inside it")
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        raise LabelsError(f"{labels}: {len(missing)} of {len(rows)} listed files are neither in {folder} nor in "
                          f"{folder / 'images'}: {_listed(missing)}")
    return labels, [Sample(name, label, kind, partial(load, paths[name])) for name, label, kind in rows]


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def from_reader(reader) -> Predict:
    """A predict callable from a reader object whose `read(frame)` returns a Reading (.text, .digits[i].box)."""

    def predict(frame_bgr: np.ndarray) -> tuple[str, list[Box]]:
        reading = reader.read(frame_bgr)
        return reading.text, [d.box for d in reading.digits]

    return predict
