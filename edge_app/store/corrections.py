"""Corrections: a user says what a stored reading really reads, and the device keeps it as training data.

A correction is stored by `edge_app.store.history.ReadingStore.correct` (what `digitlite correct` and the web
view's "correct" button call: the original text stays; the reading's kept number regions become labelled, each
with its number); `describe` says what it kept, and `export` (`digitlite corrections export DIR`) writes every
correction as a labelled set (`digitdata.labelled`: labels.csv,
the frames, the regions) that `digitlite eval DIR` scores a reader on and `digitlite train-recognizer --extra
DIR` learns from (and `digitlite train --extra DIR`, from the 28x28 digit crops of readings stored before
reader v3).

    digitlite history --since 1h                 # find the misread reading's id
    digitlite correct 123 4509                   # it reads 4509
    digitlite corrections export runs/corrections
"""

from __future__ import annotations

from pathlib import Path

from digitdata.labelled import Row, write_set
from edge_app.store.history import REGION_SHAPE, ReadingStore


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
