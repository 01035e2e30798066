"""A labelled set on disk: `labels.csv` and its images, the format corrections are exported in and read back.

Owns the folder layout both sides agree on, so that the device that writes it (`digitlite corrections export`,
`edge_app.corrections`) and the trainer that reads it (`digitlite train --extra`, `train.split`) never import
each other:

    DIR/labels.csv                  file,label,kind (the format `digitlite eval DIR` reads: labels are digit
                                    strings, leading zeros count; files are in DIR or DIR/images)
    DIR/images/r000123.jpg          the frame the reader read (its digits' boxes in corrections.json)
    DIR/images/r000123.crops.png    the 28x28 inputs the classifier saw, side by side (28 x 28*N, white digit on
                                    black), aligned with the label's digits; absent when they cannot be aligned
    DIR/corrections.json            per row: reading id, time, original and corrected text, boxes, model sha256

One row per corrected reading: `digitlite eval` reads the frames whole; training reads each row's crops strip
as labelled 28x28 digits (`read_digits`), grouped by row so that a held-out share never shares a frame with
training. A row whose own file is a 28x28 grey image with a one-digit label is read as a digit too (a folder of
hand-labelled crops). Writes are atomic, labels.csv last.

Reading any labels.csv goes through `csv_rows` (bounded: a line, a field and the row count have limits, so a
hostile file costs little memory and gets a clear error) and `inside` (a row's file stays inside its folder:
an absolute path, a `..` or a link that leads out is refused), here and in `edge_app.evaluation` alike.

    python -m digitdata.labelled runs/corrections      # counts what training would read from a folder
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

LABELS = "labels.csv"
IMAGES = "images"
MANIFEST = "corrections.json"
CROPS_SUFFIX = ".crops.png"
SIDE = 28  # px: MNIST's digit size, the classifier's input
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
    """One labelled image to write: its frame (JPEG bytes) and the crops aligned with the label's digits."""

    name: str  # file stem, e.g. r000123
    label: str  # digits, numbers separated by spaces (written without them: eval compares digits only)
    kind: str  # "corrected" (the reading was wrong) or "confirmed" (a user confirmed it)
    frame_jpeg: bytes | None
    crops: np.ndarray | None  # (N, 28, 28) uint8 aligned with the label's digits, or None
    meta: dict = field(default_factory=dict)


def crops_strip(crops: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (28, 28*N): the crops side by side."""
    return np.concatenate(list(crops), axis=1) if len(crops) else np.zeros((SIDE, 0), np.uint8)


def write_set(folder: str | Path, rows: list[Row]) -> dict:
    """Write `rows` as a labelled set in `folder` (created; files of the same names replaced).

    Returns:
        Counts: rows (in labels.csv), digits (crops written), without_crops (rows with a frame only).
    """
    folder = Path(folder)
    listed, manifest, digits, without_crops = [], [], 0, 0
    for row in rows:
        label = row.label.replace(" ", "")
        if row.frame_jpeg is None:
            continue
        write_bytes(folder / IMAGES / f"{row.name}.jpg", row.frame_jpeg)
        strip = folder / IMAGES / f"{row.name}{CROPS_SUFFIX}"
        if row.crops is not None and len(row.crops) == len(label):
            ok, png = cv2.imencode(".png", crops_strip(row.crops))
            if not ok:
                raise ValueError(f"could not encode the crops of {row.name} as PNG")
            write_bytes(strip, png.tobytes())
            digits += len(label)
        else:
            strip.unlink(missing_ok=True)
            without_crops += 1
        listed.append((f"{row.name}.jpg", label, row.kind))
        manifest.append({"file": f"{row.name}.jpg", "label": label, "kind": row.kind, **row.meta})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "label", "kind"])
    writer.writerows(listed)
    write_json(folder / MANIFEST, manifest)
    write_text(folder / LABELS, out.getvalue())
    return {"rows": len(listed), "digits": digits, "without_crops": without_crops}


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
    rows = csv_rows(labels)
    header = [h.strip().lower() for h in next(rows, (0, []))[1]]
    column = next((c for c in ("label", "text") if c in header), None)
    if "file" not in header or column is None:
        raise ValueError(f"{labels}: columns {header or '(none)'}; a labels file needs `file` and `label`")
    i_file, i_label = header.index("file"), header.index(column)
    return [(row[i_file].strip(), "".join(row[i_label].split())) for _, row in rows
            if len(row) > max(i_file, i_label) and row[i_file].strip()]


def read_digits(folders: list[str | Path]) -> Digits:
    """Every labelled 28x28 digit in `folders` (labelled sets as `write_set` writes them).

    Rows that give no digit are listed in `skipped` (and logged as a warning, so the console shows them).

    Raises:
        FileNotFoundError: a folder without labels.csv. ValueError: a malformed labels.csv (a line or field too
            long, too many rows).
    """
    images, labels, groups, skipped = [], [], [], []
    group = 0
    for folder in map(Path, folders):
        path = folder / LABELS
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {LABELS}: give a folder written by `digitlite corrections "
                                    f"export` (labels.csv, images/)")
        for name, label in _read_rows(path):
            group += 1
            if not label.isascii() or not label.isdigit():
                skipped.append(f"{folder / name}: label {label!r} is not digits")
                continue
            try:
                own = find_image(folder, name)
                strip = find_image(folder, Path(name).stem + CROPS_SUFFIX)
            except ValueError as exc:
                skipped.append(str(exc))
                continue
            source = strip or own
            if source is None:
                skipped.append(f"{folder / name}: no image")
                continue
            pixels = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
            if pixels is None or pixels.shape[0] != SIDE or pixels.shape[1] != SIDE * len(label):
                why = "unreadable" if pixels is None else f"{pixels.shape[1]}x{pixels.shape[0]} px"
                skipped.append(f"{source}: {why}, not {len(label)} digit(s) of {SIDE}x{SIDE}"
                               + ("" if strip else " (no crops: the corrected digit count differs from the read one)"))
                continue
            for k, digit in enumerate(label):
                images.append(pixels[:, k * SIDE:(k + 1) * SIDE])
                labels.append(int(digit))
                groups.append(group)
    if skipped:
        log.warning("%d of %d labelled rows in %s give no digit and are left out; the first: %s", len(skipped), group,
                    ", ".join(map(str, folders)), "; ".join(skipped[:3]))
    stack = np.stack(images).astype(np.uint8) if images else np.zeros((0, SIDE, SIDE), np.uint8)
    return Digits(stack, np.array(labels, np.int64), np.array(groups, np.int64), skipped)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m digitdata.labelled FOLDER...", file=sys.stderr)
        return 2
    digits = read_digits(argv)
    counts = np.bincount(digits.labels, minlength=10)
    print(f"{len(digits)} labelled digits from {len(set(digits.groups.tolist()))} rows; per class: "
          f"{counts.tolist()}; {len(digits.skipped)} rows skipped")
    for line in digits.skipped[:20]:
        print(f"  skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
