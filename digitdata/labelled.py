"""A labelled set on disk: `labels.csv` and its images, the format corrections are exported in and read back.

Owns the folder layout both sides agree on, so that the device that writes it (`digitlite corrections export`,
`edge_app.store.corrections`) and the trainers that read it (`digitlite train-recognizer --extra`,
`train.recognizer_trainer`; `digitlite train --extra`, `train.split`) never import each other:

    DIR/labels.csv                  file,label,kind (the format `digitlite eval DIR` reads: labels are digit
                                    strings, leading zeros count, a space between numbers; files are in DIR or
                                    DIR/images)
    DIR/images/r000123.jpg          the frame the reader read (its digits' boxes in corrections.json)
    DIR/images/r000123.regions.png  the 32x256 inputs the recognizer read, one per number region, stacked top to
                                    bottom (32*M x 256, ink bright on black), aligned with the label's numbers
                                    (split on spaces); absent when they cannot be aligned
    DIR/images/r000123.crops.png    readings stored before reader v3 only: the 28x28 inputs the classifier saw,
                                    side by side (28 x 28*N, white digit on black), aligned with the label's digits
    DIR/corrections.json            per row: reading id, time, original and corrected text, boxes, model sha256

One row per corrected reading: `digitlite eval` reads the frames whole; the recognizer's training reads each
row's regions strip as labelled number regions (`read_regions`), the classifier's each crops strip as labelled
28x28 digits (`read_digits`), both grouped by row so that a held-out share never shares a frame with training.
A row whose own file is a 32x256 grey image with a one-number label is read as a region, and one that is a
28x28 grey image with a one-digit label as a digit (folders of hand-labelled regions or crops). Writes are
atomic, labels.csv last.

Reading any labels.csv goes through `csv_rows` (bounded: a line, a field and the row count have limits, so a
hostile file costs little memory and gets a clear error) and `inside` (a row's file stays inside its folder:
an absolute path, a `..` or a link that leads out is refused), here and in `benchmarks.evaluation` alike.

    python -m digitdata.labelled runs/corrections      # counts what each training would read from a folder
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from digitdata.atomic import write_bytes, write_json, write_text
from digitdata.lines import INPUT_HEIGHT, INPUT_WIDTH

LABELS = "labels.csv"
IMAGES = "images"
MANIFEST = "corrections.json"
CROPS_SUFFIX = ".crops.png"
REGIONS_SUFFIX = ".regions.png"
SIDE = 28  # px: MNIST's digit size, the classifier's input
REGION_HEIGHT, REGION_WIDTH = INPUT_HEIGHT, INPUT_WIDTH  # px: the recognizer's input, one number region
MAX_LINE_CHARS = 64 * 1024  # characters a labels.csv line may hold: a file name, a label, a kind are short
MAX_ROWS = 200_000  # rows one labels.csv may hold (a corrections export of a year of readings is far fewer)

log = logging.getLogger(__name__)


def csv_rows(path: Path, max_line: int = MAX_LINE_CHARS, max_rows: int = MAX_ROWS) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each row of a UTF-8 CSV file, read a line at a time, the header first.

    A line is read at most `max_line` characters at a time (a 100 MB line of commas never becomes 100 million
    cells), a field spanning lines stops at the csv module's field limit, and at most `max_rows` rows are read.

    Raises:
        ValueError: naming the file and line: a line or field too long, too many rows, not UTF-8 CSV.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        def lines() -> Iterator[str]:
            number = 0
            while line := f.readline(max_line + 1):
                number += 1
                if len(line) > max_line and not line.endswith("\n"):
                    raise ValueError(f"{path}, line {number}: longer than {max_line} characters; a labels file "
                                     f"holds one short row per image (file,label,kind)")
                yield line

        reader = csv.reader(lines())
        for count in range(max_rows + 2):  # the header, max_rows rows, and one more to know there are more
            start = reader.line_num + 1  # a quoted field may span lines: a row is named by its first
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}, line {start}: not a UTF-8 CSV file ({exc})") from None
            if count > max_rows:
                raise ValueError(f"{path}: more than {max_rows} rows; split the set into several folders")
            yield start, row


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused when it leads out of `folder` (an absolute path, `..`, a link pointing out).

    Raises:
        ValueError: naming the file and the folder.
    """
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{name!r} is outside {folder}: a labels file names files in its own folder (or its "
                         f"{IMAGES}/), by a relative path")
    return path


@dataclass
class Row:
    """One labelled image to write: its frame (JPEG bytes), and the number regions aligned with the label's
    numbers (or, for a reading stored before reader v3, the digit crops aligned with its digits)."""

    name: str  # file stem, e.g. r000123
    label: str  # digits, numbers separated by single spaces (kept: they separate the regions' numbers)
    kind: str  # "corrected" (the reading was wrong) or "confirmed" (a user confirmed it)
    frame_jpeg: bytes | None
    crops: np.ndarray | None = None  # (N, 28, 28) uint8 aligned with the label's digits, or None
    meta: dict = field(default_factory=dict)
    regions: np.ndarray | None = None  # (M, 32, 256) uint8 aligned with the label's numbers, or None


def crops_strip(crops: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (28, 28*N): the crops side by side."""
    return np.concatenate(list(crops), axis=1) if len(crops) else np.zeros((SIDE, 0), np.uint8)


def regions_strip(regions: np.ndarray) -> np.ndarray:
    """(M, 32, 256) -> (32*M, 256): the regions stacked top to bottom."""
    return np.asarray(regions, np.uint8).reshape(-1, REGION_WIDTH)


def _write_strip(path: Path, strip: np.ndarray | None) -> None:
    """The strip as PNG at `path`, or no file there when None."""
    if strip is None:
        path.unlink(missing_ok=True)
        return
    ok, png = cv2.imencode(".png", strip)
    if not ok:
        raise ValueError(f"could not encode {path.name} as PNG")
    write_bytes(path, png.tobytes())


def write_set(folder: str | Path, rows: list[Row]) -> dict:
    """Write `rows` as a labelled set in `folder` (created; files of the same names replaced).

    Returns:
        Counts: rows (in labels.csv), regions (labelled number regions written), digits (labelled 28x28 crops
        written), frame_only (rows with neither).

    Raises:
        ValueError: regions that are not (M, 32, 256) uint8.
    """
    folder = Path(folder)
    listed, manifest, counts = [], [], {"regions": 0, "digits": 0, "frame_only": 0}
    for row in rows:
        label = " ".join(row.label.split())
        if row.frame_jpeg is None:
            continue
        write_bytes(folder / IMAGES / f"{row.name}.jpg", row.frame_jpeg)
        regions = None
        if row.regions is not None and len(row.regions) == len(label.split()):
            if np.asarray(row.regions).shape[1:] != (REGION_HEIGHT, REGION_WIDTH):
                raise ValueError(f"{row.name}: regions of shape {np.asarray(row.regions).shape}, not (M, "
                                 f"{REGION_HEIGHT}, {REGION_WIDTH})")
            regions = regions_strip(row.regions)
            counts["regions"] += len(row.regions)
        digits = label.replace(" ", "")
        crops = None
        if row.crops is not None and len(row.crops) == len(digits):
            crops = crops_strip(row.crops)
            counts["digits"] += len(digits)
        _write_strip(folder / IMAGES / f"{row.name}{REGIONS_SUFFIX}", regions)
        _write_strip(folder / IMAGES / f"{row.name}{CROPS_SUFFIX}", crops)
        counts["frame_only"] += regions is None and crops is None
        listed.append((f"{row.name}.jpg", label, row.kind))
        manifest.append({"file": f"{row.name}.jpg", "label": label, "kind": row.kind, **row.meta})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "label", "kind"])
    writer.writerows(listed)
    write_json(folder / MANIFEST, manifest)
    write_text(folder / LABELS, out.getvalue())
    return {"rows": len(listed), **counts}


@dataclass
class Digits:
    """Labelled 28x28 digits read from labelled sets."""

    images: np.ndarray  # (N, 28, 28) uint8, white on black
    labels: np.ndarray  # (N,) int64
    groups: np.ndarray  # (N,) int64: which row (frame) each digit came from, unique across folders
    skipped: list[str] = field(default_factory=list)  # rows that gave no digits, and why

    def __len__(self) -> int:
        return len(self.labels)


def find_image(folder: Path, name: str) -> Path | None:
    """Where a labels row's file is: in the folder or in its images/ subfolder; None if in neither.

    Raises:
        ValueError: the name leads out of the folder (`inside`).
    """
    for sub in (".", IMAGES):
        path = inside(folder, str(Path(sub) / name))
        if path.is_file():
            return path
    return None


def _read_rows(labels: Path) -> list[tuple[str, str]]:
    """(file, label) of each row of a labels file, the label's numbers separated by single spaces."""
    rows = csv_rows(labels)
    header = [h.strip().lower() for h in next(rows, (0, []))[1]]
    column = next((c for c in ("label", "text") if c in header), None)
    if "file" not in header or column is None:
        raise ValueError(f"{labels}: columns {header or '(none)'}; a labels file needs `file` and `label`")
    i_file, i_label = header.index("file"), header.index(column)
    return [(row[i_file].strip(), " ".join(row[i_label].split())) for _, row in rows
            if len(row) > max(i_file, i_label) and row[i_file].strip()]


def _labels_file(folder: Path) -> Path:
    path = folder / LABELS
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {LABELS}: give a folder written by `digitlite corrections "
                                f"export` (labels.csv, images/)")
    return path


def _labelled_rows(folders: list[str | Path]) -> Iterator[tuple[int, Path, str, str]]:
    """(row number across all folders, folder, file, label) of every row of the folders' labels.csv files."""
    group = 0
    for folder in map(Path, folders):
        for name, label in _read_rows(_labels_file(folder)):
            group += 1
            yield group, folder, name, label


def _strip_pixels(folder: Path, name: str, suffix: str, shape: tuple[int, int], what: str,
                  no_strip: str) -> np.ndarray | str:
    """The grey pixels of a row's strip (its file's stem + `suffix`), else of its own file, when they are `shape`;
    else why not (a file outside the folder, none there, unreadable, another size: `what` it should hold, and
    `no_strip` when the row has no strip)."""
    try:
        strip = find_image(folder, Path(name).stem + suffix)
        own = find_image(folder, name)
    except ValueError as exc:
        return str(exc)
    source = strip or own
    if source is None:
        return f"{folder / name}: no image"
    pixels = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    if pixels is None or pixels.shape != shape:
        why = "unreadable" if pixels is None else f"{pixels.shape[1]}x{pixels.shape[0]} px"
        return f"{source}: {why}, not {what}" + ("" if strip else f" ({no_strip})")
    return pixels


def _warn_skipped(skipped: list[str], rows: int, folders: list, what: str) -> None:
    if skipped:
        log.warning("%d of %d labelled rows in %s give no %s and are left out; the first: %s", len(skipped), rows,
                    ", ".join(map(str, folders)), what, "; ".join(skipped[:3]))


def read_digits(folders: list[str | Path]) -> Digits:
    """Every labelled 28x28 digit in `folders` (labelled sets as `write_set` writes them).

    Rows that give no digit are listed in `skipped` (and logged as a warning, so the console shows them).

    Raises:
        FileNotFoundError: a folder without labels.csv. ValueError: a malformed labels.csv (a line or field too
            long, too many rows).
    """
    images, labels, groups, skipped, group = [], [], [], [], 0
    for group, folder, name, numbers in _labelled_rows(folders):
        label = numbers.replace(" ", "")
        if not label.isascii() or not label.isdigit():
            skipped.append(f"{folder / name}: label {label!r} is not digits")
            continue
        pixels = _strip_pixels(folder, name, CROPS_SUFFIX, (SIDE, SIDE * len(label)),
                               f"{len(label)} digit(s) of {SIDE}x{SIDE}",
                               "no crops: the corrected digit count differs from the read one")
        if isinstance(pixels, str):
            if find_image(folder, Path(name).stem + REGIONS_SUFFIX) is not None:
                pixels = (f"{folder / name}: number regions ({REGIONS_SUFFIX}), not 28x28 digit crops; "
                          f"`digitlite train-recognizer --extra` learns from them")
            skipped.append(pixels)
            continue
        images += [pixels[:, k * SIDE:(k + 1) * SIDE] for k in range(len(label))]
        labels += [int(d) for d in label]
        groups += [group] * len(label)
    _warn_skipped(skipped, group, folders, "digit")
    stack = np.stack(images).astype(np.uint8) if images else np.zeros((0, SIDE, SIDE), np.uint8)
    return Digits(stack, np.array(labels, np.int64), np.array(groups, np.int64), skipped)


@dataclass
class Regions:
    """Labelled number regions read from labelled sets: the recognizer's inputs and the numbers they show."""

    images: np.ndarray  # (M, 32, 256) uint8, ink bright on black (digitdata.lines.line_input)
    texts: list[str]  # (M,) digit strings, leading zeros kept
    groups: np.ndarray  # (M,) int64: which row (frame) each region came from, unique across folders
    skipped: list[str] = field(default_factory=list)  # rows that gave no region, and why

    def __len__(self) -> int:
        return len(self.texts)


def read_regions(folders: list[str | Path]) -> Regions:
    """Every labelled number region in `folders` (labelled sets as `write_set` writes them): each row's
    `.regions.png` strip cut into 32x256 regions, labelled with the row's numbers in order; or a row's own
    file when it is one 32x256 grey region with a one-number label.

    Rows that give no region are listed in `skipped` (and logged as a warning, so the console shows them).

    Raises:
        FileNotFoundError: a folder without labels.csv. ValueError: a malformed labels.csv (a line or field too
            long, too many rows).
    """
    images, texts, groups, skipped, group = [], [], [], [], 0
    for group, folder, name, label in _labelled_rows(folders):
        numbers = label.split()
        if not numbers or not all(n.isascii() and n.isdigit() for n in numbers):
            skipped.append(f"{folder / name}: label {label!r} is not numbers of digits")
            continue
        pixels = _strip_pixels(folder, name, REGIONS_SUFFIX, (REGION_HEIGHT * len(numbers), REGION_WIDTH),
                               f"{len(numbers)} region(s) of {REGION_WIDTH}x{REGION_HEIGHT}",
                               "no regions: the corrected number count differs from the read one, or the reading "
                               "is older than reader v3")
        if isinstance(pixels, str):
            skipped.append(pixels)
            continue
        images += list(pixels.reshape(len(numbers), REGION_HEIGHT, REGION_WIDTH))
        texts += numbers
        groups += [group] * len(numbers)
    _warn_skipped(skipped, group, folders, "number region")
    stack = np.stack(images).astype(np.uint8) if images else np.zeros((0, REGION_HEIGHT, REGION_WIDTH), np.uint8)
    return Regions(stack, texts, np.array(groups, np.int64), skipped)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m digitdata.labelled FOLDER...", file=sys.stderr)
        return 2
    regions = read_regions(argv)
    print(f"{len(regions)} labelled number regions from {len(set(regions.groups.tolist()))} rows "
          f"(`digitlite train-recognizer --extra`); {len(regions.skipped)} rows skipped")
    digits = read_digits(argv)
    counts = np.bincount(digits.labels, minlength=10)
    print(f"{len(digits)} labelled 28x28 digits from {len(set(digits.groups.tolist()))} rows (`digitlite train "
          f"--extra`); per class: {counts.tolist()}; {len(digits.skipped)} rows skipped")
    for line in (regions.skipped + digits.skipped)[:20]:
        print(f"  skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
