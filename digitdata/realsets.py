"""The real handwriting the trainers learn from, and the held-out part of each that judges them.

Two sets live outside the repository, in `../shared/datasets` (or `$DIGITLITE_DATASETS`); their images are
never copied here. Read each set's README for its source and licence, and keep the attribution:

    orand-car-a/   1,053 real cheque amounts (ORAND-CAR-2014 via Fzkuji/Labeled_ORAND-CAR-A, MIT; ORAND's images
                   as research data). Labels hold the handwritten digits only.
    nsysu-digits/  1,890 real single digits from scanned exam answer boxes (SageLabTW/auto-grading; made
                   available by Veronica Hong, Jephian Lin and Chan-Yu Pan under ODbL 1.0, contents under DbCL 1.0).

The held-out part of each is fixed once, by a rule on the sets' own provenance, never by a random image:

    nsysu-digits   held out by semester: every exam of semesters 1101 and 1112 (a class writes every quiz of
                   its semester, so no student's paper is on both sides): 484 of 1,890 digits.
    orand-car-a    held out by blocks of 50 consecutive source cheque ids (neighbouring ids come from the same
                   batch of scans): every 5th block, 210 of 1,053 amounts.

`python -m digitdata.realsets` prints the counts of each part (and writes the file lists with `--out`).
`digits(name, part)` gives a single-digit set's part as the classifier's input, prepared by the one preparation
every single digit goes through (`digitdata.crops.digit_to_mnist`); `fingerprint` is what the release gate records
of the part it measured (a checksum of its files and labels, never the images).
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from digitdata.atomic import write_json, write_text

DATASETS_ENV = "DIGITLITE_DATASETS"  # a folder holding orand-car-a/ and nsysu-digits/, instead of ../shared/datasets
NSYSU = "nsysu-digits"
ORAND = "orand-car-a"
NSYSU_HELD_SEMESTERS = ("1101", "1112")  # nsysu exam ids start with the semester (1101_2m_1: semester 1101)
ORAND_BLOCK = 50  # consecutive source cheque ids per block ...
ORAND_HELD_EVERY = 5  # ... and every 5th block is held out
MAX_SIDE = 2048  # px: a real set's image larger than this is refused (they are 28x28 crops and cheque fields)
PARTS = ("train", "held", "all")


@dataclass(frozen=True)
class RealSet:
    """One real set's rows: image paths, digit-string labels, the group each row is split by, held-out or not."""

    name: str
    files: tuple[Path, ...]
    labels: tuple[str, ...]
    groups: tuple[str, ...]
    held: tuple[bool, ...]

    def part(self, which: str) -> RealSet:
        """The rows of one part: "train", "held" (the judge) or "all"."""
        if which not in PARTS:
            raise ValueError(f"part {which!r}: valid parts are {', '.join(PARTS)}")
        keep = [i for i, h in enumerate(self.held) if which == "all" or h == (which == "held")]
        return RealSet(self.name, tuple(self.files[i] for i in keep), tuple(self.labels[i] for i in keep),
                       tuple(self.groups[i] for i in keep), tuple(self.held[i] for i in keep))

    def __len__(self) -> int:
        return len(self.files)

    def gray(self, i: int) -> np.ndarray:
        """Row i's image as grey uint8 (dark ink on light paper, as scanned)."""
        image = cv2.imread(str(self.files[i]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"{self.files[i]}: not a readable image")
        if max(image.shape) > MAX_SIDE:
            raise ValueError(f"{self.files[i]}: {image.shape[1]}x{image.shape[0]} px, larger than {MAX_SIDE} px")
        return image


def datasets_dir(root: str | Path | None = None) -> Path | None:
    """The folder holding the real sets: `root`, else $DIGITLITE_DATASETS, else ../shared/datasets beside the
    checkout; None when none of them exists."""
    candidates = [root] if root else [os.environ.get(DATASETS_ENV) or None,
                                      Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def _rows(folder: Path) -> tuple[list[dict], dict[str, dict]]:
    if not (folder / "labels.csv").is_file():
        raise FileNotFoundError(f"{folder}: no labels.csv; expected the set as ../shared/datasets ships it "
                                f"(set ${DATASETS_ENV} to the folder that holds {folder.name}/)")
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        labels = list(csv.DictReader(f))
    with open(folder / "provenance.csv", newline="", encoding="utf-8") as f:
        provenance = {r["file"]: r for r in csv.DictReader(f)}
    return labels, provenance


def _split(name: str, root: str | Path | None, field: str, pattern: str, what: str, group_of, held_of) -> RealSet:
    """A set's rows, each grouped by the id `pattern` finds in its provenance `field` (`group_of(id)`), held out
    when `held_of(id)`."""
    folder = _folder(root, name)
    labels, provenance = _rows(folder)
    files, texts, groups, held = [], [], [], []
    for row in labels:
        found = re.search(pattern, provenance[row["file"]][field])
        if found is None:
            raise ValueError(f"{folder}/provenance.csv: no {what} for {row['file']}")
        files.append(folder / "images" / row["file"])
        texts.append(row["label"])
        groups.append(group_of(found.group(1)))
        held.append(held_of(found.group(1)))
    return RealSet(name, tuple(files), tuple(texts), tuple(groups), tuple(held))


def nsysu(root: str | Path | None = None) -> RealSet:
    """nsysu-digits, held out by semester (`NSYSU_HELD_SEMESTERS`): an exam id starts with its semester."""
    return _split(NSYSU, root, "notes", r"exam (\S+)", "exam id", lambda exam: exam,
                  lambda exam: exam[:4] in NSYSU_HELD_SEMESTERS)


def orand(root: str | Path | None = None) -> RealSet:
    """orand-car-a, held out by blocks of consecutive source cheque ids (`ORAND_BLOCK`, `ORAND_HELD_EVERY`)."""
    return _split(ORAND, root, "source_path", r"a_car_(\d+)", "a_car id",
                  lambda car: f"block{int(car) // ORAND_BLOCK}",
                  lambda car: int(car) // ORAND_BLOCK % ORAND_HELD_EVERY == ORAND_HELD_EVERY - 1)


def _folder(root: str | Path | None, name: str) -> Path:
    base = datasets_dir(root)
    if base is None or not (base / name).is_dir():
        raise FileNotFoundError(f"no {name}/ found (looked in {root or '$' + DATASETS_ENV + ', ../shared/datasets'}); "
                                f"set ${DATASETS_ENV} to the folder that holds it")
    return base / name


SETS = {NSYSU: nsysu, ORAND: orand}
DIGIT_SETS = (NSYSU,)  # the sets of single digits, which the classifier trains on (`train`) and is judged on (`held`)
SPLIT_RULES = {NSYSU: f"held out by semester: every exam of semesters {' and '.join(NSYSU_HELD_SEMESTERS)}",
               ORAND: f"held out by blocks of {ORAND_BLOCK} consecutive source cheque ids: every "
                      f"{ORAND_HELD_EVERY}th block"}


@dataclass(frozen=True)
class RealDigits:
    """One part of a real single-digit set as the classifier sees it."""

    name: str  # "nsysu-digits"
    part: str  # "train", "held" or "all"
    x: np.ndarray  # (N, 28, 28) uint8, MNIST-style (digitdata.crops.digit_to_mnist)
    y: np.ndarray  # (N,) int64
    files: tuple[str, ...]  # the image file names, in the set's order
    groups: tuple[str, ...]  # the exam (or block) of each
    sha256: str  # `fingerprint` of the part

    def __len__(self) -> int:
        return len(self.y)

    def record(self) -> dict:
        """What a manifest or report says about the part: which, how split, how many, its checksum."""
        return {"set": self.name, "part": self.part, "split": SPLIT_RULES[self.name], "images": len(self),
                "groups": len(set(self.groups)), "sha256": self.sha256,
                "preparation": "digitdata.crops.digit_to_mnist"}


def fingerprint(s: RealSet) -> str:
    """sha256 over each row's file name, file content and label, in order: the same part gives the same value."""
    h = hashlib.sha256()
    for path, label in zip(s.files, s.labels, strict=True):
        h.update(f"{path.name}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\t{label}\n".encode())
    return h.hexdigest()


def digits(name: str = NSYSU, part: str = "held", root: str | Path | None = None) -> RealDigits:
    """A real single-digit set's part, each image prepared by `digitdata.crops.digit_to_mnist`.

    Raises:
        FileNotFoundError: the set is not there (no ../shared/datasets and no $DIGITLITE_DATASETS).
        ValueError: an unknown set or part, or an image that cannot be read.
    """
    from digitdata.crops import digit_to_mnist

    if name not in DIGIT_SETS:
        raise ValueError(f"{name!r} is not a single-digit set; valid: {', '.join(DIGIT_SETS)}")
    s = SETS[name](root).part(part)
    x = np.stack([digit_to_mnist(s.gray(i)) for i in range(len(s))]) if len(s) else np.zeros((0, 28, 28), np.uint8)
    y = np.array([int(t) for t in s.labels], np.int64)
    return RealDigits(name, part, x, y, tuple(f.name for f in s.files), s.groups, fingerprint(s))


def missing_reason(name: str = NSYSU, root: str | Path | None = None) -> str | None:
    """None when the set is there; else one line that says where it was looked for and how to point at it."""
    base = datasets_dir(root)
    if base is not None and (base / name / "labels.csv").is_file():
        return None
    return (f"{name}/ not found (looked in {root or '$' + DATASETS_ENV + ' and ../shared/datasets beside the checkout'}"
            f"); set ${DATASETS_ENV} to the folder that holds it")


REAL_DIGIT_REPEATS = 5  # nsysu training digits join MNIST's in the engine's pool this many times (~13 %)


def amount_inputs(part: str, copies: int = 1, seed: int = 0,
                  root: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """orand-car-a's `part` as recognizer inputs (N, 32, 256) uint8 (`lines.line_input`, dark ink) and their
    digit strings; with `copies` > 1, every copy after the first is varied as a camera and a cut would vary
    it (margins, scale, blur, contrast, JPEG), from `seed`."""
    from digitdata.lines import line_input

    s = orand(root).part(part)
    rng = np.random.default_rng(seed)
    x, texts = [], []
    for i in range(len(s)):
        gray = s.gray(i)
        for c in range(copies):
            x.append(line_input(gray if c == 0 else _varied(rng, gray), True))
            texts.append(s.labels[i])
    return (np.stack(x) if x else np.zeros((0, 32, 256), np.uint8)), texts


def _varied(rng: np.random.Generator, gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    pad = (rng.uniform(0, 0.25, 4) * h).astype(int)
    g = cv2.copyMakeBorder(gray, pad[0], pad[1], pad[2], pad[3], cv2.BORDER_REPLICATE)
    f = rng.uniform(0.5, 1.6)
    g = cv2.resize(g, (max(8, round(g.shape[1] * f)), max(8, round(g.shape[0] * f))), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.4:
        g = cv2.GaussianBlur(g, (0, 0), rng.uniform(0.3, 1.2))
    lo = rng.uniform(0, 60)
    g = (lo + g.astype(np.float32) * rng.uniform(0.6, 1.0) * (255 - lo) / 255).clip(0, 255).astype(np.uint8)
    quality = int(rng.integers(40, 95))
    return cv2.imdecode(cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)


def real_digit_pool(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The real digits the data engine writes with beside MNIST's training digits: nsysu's training part,
    `REAL_DIGIT_REPEATS` times; empty when the set is not there (a fresh clone without ../shared). Read once
    per process and folder (every rendering chunk asks for it; read-only arrays)."""
    return _pool(datasets_dir(root))


@functools.lru_cache(maxsize=4)
def _pool(base: Path | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        if base is None:
            raise FileNotFoundError(NSYSU)
        real = digits(NSYSU, "train", base)
    except FileNotFoundError:
        images, labels = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64)
    else:
        images, labels = np.tile(real.x, (REAL_DIGIT_REPEATS, 1, 1)), np.tile(real.y, REAL_DIGIT_REPEATS)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def summary(root: str | Path | None = None) -> dict:
    """Per set: rows in each part, and the held-out part's files (the record of the split)."""
    out = {}
    for name, load in SETS.items():
        s = load(root)
        held = s.part("held")
        out[name] = {"all": len(s), "train": len(s) - len(held), "held": len(held),
                     "held_groups": sorted(set(held.groups)), "held_files": [f.name for f in held.files]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--root", help="folder holding the sets (default: $DIGITLITE_DATASETS, ../shared/datasets)")
    parser.add_argument("--out", type=Path, help="write the split (counts and held-out files) as JSON here")
    parser.add_argument("--labels-out", type=Path, default=None, metavar="DIR",
                        help="write DIR/<set>-<part>.csv for each part: `digitlite eval <set folder> --labels` "
                             "reads one part")
    args = parser.parse_args(argv)
    try:
        record = summary(args.root)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in record.items():
        print(f"{name}: {r['all']} rows, {r['train']} train, {r['held']} held out ({', '.join(r['held_groups'][:8])}"
              f"{' ...' if len(r['held_groups']) > 8 else ''})")
    if args.out:
        write_json(args.out, record)
    if args.labels_out:
        for name, load in SETS.items():
            s = load(args.root)
            for part in ("train", "held"):
                rows = s.part(part)
                text = "file,label,kind\n" + "".join(f"{f.name},{label},{name}-{part}\n"
                                                     for f, label in zip(rows.files, rows.labels, strict=True))
                write_text(args.labels_out / f"{name}-{part}.csv", text)
        print(f"labels of each part in {args.labels_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
