"""Corrections: a user says what a stored reading really reads, and the device keeps it as training data.

Owns the two commands around the readings history's corrections (`edge_app.history.ReadingStore.correct`,
which the web view's "correct" button calls too): `digitlite correct <reading-id> <text>` stores one (the
original text stays; the reading's kept number regions become labelled, each with its number), and
`digitlite corrections export DIR` writes every correction as a labelled set (`digitdata.labelled`: labels.csv,
the frames, the regions) that `digitlite eval DIR` scores a reader on and `digitlite train-recognizer --extra
DIR` learns from (and `digitlite train --extra DIR`, from the 28x28 digit crops of readings stored before
reader v3).

    digitlite history --since 1h                 # find the misread reading's id
    digitlite correct 123 4509                   # it reads 4509
    digitlite corrections export runs/corrections
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from digitdata.labelled import Row, write_set
from digitlite import HelpFormatter
from edge_app.history import REGION_SHAPE, ReadingStore, default_history_path


def _history_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=None,
                        help="the history database; default: [history] path of the configuration file, else "
                             f"{default_history_path()}")
    parser.add_argument("--config", default=None, help="TOML config whose [history] path is the default --db "
                                                       "(default: $DIGITLITE_CONFIG, else /etc/digitlite.toml)")


def _with_store(args: argparse.Namespace, prog: str, work, errors: tuple = (ValueError, KeyError, OSError)):
    """`work(store)` on the history of --db (else the configured one), closed after; (result, 0), or (None, 2)
    after printing why the history cannot be opened or `work` refused."""
    from edge_app import settings

    try:
        db = args.db or Path(settings.load_run_config(args.config).get("history") or default_history_path())
        store = ReadingStore(db, create=False)
    except (ValueError, OSError) as exc:
        print(f"digitlite {prog}: {exc}", file=sys.stderr)
        return None, 2
    try:
        return work(store), 0
    except errors as exc:
        print(f"digitlite {prog}: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return None, 2
    finally:
        store.close()


def describe(record: dict) -> str:
    """One line saying what a correction kept."""
    kept, corrected = record["examples"], record["corrected_text"]
    if kept["crops"] == 0:
        examples = "no regions were kept for it (older than the last readings kept, or read before issue 14)"
    elif kept.get("kind") == "digits":  # a reading stored before reader v3: one 28x28 crop per digit
        examples = (f"its {kept['crops']} digit crops are labelled {corrected.replace(' ', '')}" if kept["labelled"]
                    else f"{kept['crops']} digits were read and {len(corrected.replace(' ', ''))} are there: the "
                         f"frame is kept for `digitlite eval`, the crops cannot be labelled one to one")
    elif kept["labelled"]:
        examples = f"its {kept['crops']} number region(s) are labelled {', '.join(corrected.split())}"
    else:
        examples = (f"{kept['crops']} number region(s) were kept for {len(record['text'].split())} number(s) read "
                    f"and {len(corrected.split())} are there: the frame is kept for `digitlite eval`, the regions "
                    f"cannot be labelled one to one")
    return f"#{record['id']} {record['text']!r} corrected to {record['corrected_text']!r}; {examples}"


def correct_main(argv: list[str]) -> int:
    """`digitlite correct <reading-id> <text>`."""
    parser = argparse.ArgumentParser(prog="digitlite correct", formatter_class=HelpFormatter,
                                     description="Correct a stored reading: keep what it really reads beside the "
                                                 "original, and label its number regions as training "
                                                 "examples.")
    parser.add_argument("reading_id", type=int, help="the reading's id (`digitlite history` lists them)")
    parser.add_argument("text", nargs="+", help="what it really reads: digits, numbers separated by a space")
    _history_options(parser)
    args = parser.parse_args(argv)
    record, code = _with_store(args, "correct", lambda store: store.correct(args.reading_id, " ".join(args.text)))
    if record is not None:
        print(describe(record))
    return code


def export(store: ReadingStore, folder: str | Path) -> dict:
    """Write every correction in `store` with its frame as a labelled set in `folder` (`digitdata.labelled`).

    Returns:
        Counts: corrections, rows (written), regions (labelled number regions), digits (labelled 28x28 crops of
        readings stored before reader v3), frame_only, without_frame.
    """
    rows, without_frame, corrections = [], 0, 0
    for c in store.corrections():
        corrections += 1
        if c["frame_jpeg"] is None:
            without_frame += 1
            continue
        kind = "confirmed" if c["corrected_text"] == c["text"] else "corrected"
        labelled = c["crops"] if c["labels"] is not None else None
        regions = labelled if labelled is not None and labelled.shape[1:] == REGION_SHAPE else None
        rows.append(Row(f"r{c['id']:06d}", c["corrected_text"], kind, c["frame_jpeg"],
                        labelled if regions is None else None,
                        {"reading_id": c["id"], "time": c["time"], "read": c["text"],
                         "corrected": c["corrected_text"], "corrected_time": c["corrected_time"],
                         "boxes": [d["box"] for d in c["digits"]], "source": c["source"],
                         "model_sha256": c["model_sha256"]}, regions=regions))
    counts = write_set(folder, rows)
    return {"corrections": corrections, **counts, "without_frame": without_frame}


def corrections_main(argv: list[str]) -> int:
    """`digitlite corrections export DIR`."""
    parser = argparse.ArgumentParser(prog="digitlite corrections", formatter_class=HelpFormatter,
                                     description="The corrections stored in the readings history.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="export")
    out = sub.add_parser("export", formatter_class=HelpFormatter,
                         help="write them as a labelled set for `digitlite eval` and `digitlite "
                              "train-recognizer --extra`",
                         description="Write every corrected reading as labels.csv (file,label,kind), its frame "
                                     "and its labelled 32x256 number regions: `digitlite eval DIR` reads the "
                                     "frames, `digitlite train-recognizer --extra DIR` the regions (and "
                                     "`digitlite train --extra DIR` the 28x28 digit crops of readings stored "
                                     "before reader v3).")
    out.add_argument("folder", type=Path, help="the folder to write (created)")
    _history_options(out)
    args = parser.parse_args(argv)
    counts, code = _with_store(args, "corrections", lambda store: export(store, args.folder))
    if counts is None:
        return code
    lost = f"; {counts['without_frame']} had no frame kept and are left out" if counts["without_frame"] else ""
    old = f", {counts['digits']} labelled 28x28 digits from before reader v3" if counts["digits"] else ""
    print(f"{counts['rows']} corrections written to {args.folder} ({counts['regions']} labelled number regions"
          f"{old}; {counts['frame_only']} with a frame only){lost}")
    if not counts["corrections"]:
        print("no corrections in the history yet: `digitlite correct <reading-id> <text>` or the web view's "
              "correct button adds one", file=sys.stderr)
    return 0
