"""The evaluation report: a summary for the terminal, report.json, report.md and misses.png, written atomically.

Owns how `digitlite eval` and `digitlite eval-scenes` present the numbers `benchmarks.evaluation` computes:
one table with a row per reader (exact overall and per kind, per-digit, time per image), the misses, and a
contact sheet of every image some reader missed (the image scaled down, the truth, each reader's reading
and the boxes it found, one colour per reader).

    digitlite eval tests/data/golden --out runs/eval-golden
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from benchmarks.evaluation import ItemResult, summarise

TILE_SIZE = (260, 180)  # (width, height) px of a tile's image area on the contact sheet
MAX_UPSCALE = 4.0  # small crops (about 40 px) are enlarged at most this much on a tile
LINE_PX = 18  # px per text line under a tile's image
SHEET_COLUMNS = 5  # tiles per row
MAX_TILES = 60  # tiles on one sheet: the first misses, in the labels' order
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45  # about 9 px per character
MAX_CHARS = 27  # characters of a reading that fit on a tile line
# BGR colour of each reader's boxes and text line, in the order the readers are given.
READER_COLOURS = [(200, 90, 0), (0, 120, 230), (150, 0, 150), (0, 140, 0)]
MISSES_LISTED = 10  # misses per reader printed in the terminal summary


def thumbnail(frame_bgr: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame scaled to fit a tile (enlarged at most MAX_UPSCALE times), and that scale."""
    h, w = frame_bgr.shape[:2]
    scale = min(TILE_SIZE[0] / w, TILE_SIZE[1] / h, MAX_UPSCALE)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(frame_bgr, size, interpolation=interpolation), scale


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 2] + ".."


def _tile(item: ItemResult, readers: list[str]) -> np.ndarray:
    tw, th = TILE_SIZE
    tile = np.full((th + LINE_PX * (2 + len(readers)) + 6, tw, 3), 255, np.uint8)
    tile[:th] = 90
    if item.thumbnail is not None:
        img = item.thumbnail.copy()
        for k, name in enumerate(readers):
            for x, y, w, h in item.reads[name].boxes:
                s = item.thumbnail_scale
                cv2.rectangle(img, (round(x * s), round(y * s)), (round((x + w) * s), round((y + h) * s)),
                              READER_COLOURS[k % len(READER_COLOURS)], 1)
        oy, ox = (th - img.shape[0]) // 2, (tw - img.shape[1]) // 2
        tile[oy:oy + img.shape[0], ox:ox + img.shape[1]] = img
    else:
        cv2.putText(tile, "unreadable image", (10, th // 2), FONT, FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    lines = [(f"{item.name}" + (f"  [{item.kind}]" if item.kind else ""), (60, 60, 60)),
             (f"truth {item.label or '(none)'}", (0, 0, 0))]
    for k, name in enumerate(readers):
        read = item.reads[name]
        mark = "ok" if item.exact(name) else "MISS"
        shown = read.text or ("(error)" if read.error else "(nothing)")
        lines.append((f"{mark} {name}: {shown}", READER_COLOURS[k % len(READER_COLOURS)]))
    for i, (text, colour) in enumerate(lines):
        cv2.putText(tile, _clip(text), (4, th + LINE_PX * (i + 1)), FONT, FONT_SCALE, colour, 1, cv2.LINE_AA)
    return tile


def contact_sheet(results: list[ItemResult], readers: list[str]) -> np.ndarray:
    """Tiles of the images some reader missed (at most MAX_TILES), in rows of SHEET_COLUMNS; a note if none."""
    missed = [item for item in results if not all(item.exact(name) for name in readers)][:MAX_TILES]
    if not missed:
        sheet = np.full((40, TILE_SIZE[0], 3), 255, np.uint8)
        cv2.putText(sheet, "no misses", (8, 26), FONT, 0.6, (0, 120, 0), 1, cv2.LINE_AA)
        return sheet
    tiles = [_tile(item, readers) for item in missed]
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % SHEET_COLUMNS)
    rows = [np.hstack([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=200)
                       for t in tiles[i:i + SHEET_COLUMNS]]) for i in range(0, len(tiles), SHEET_COLUMNS)]
    return np.vstack(rows)


# ---------------------------------------------------------------------------------------------- the report


def build_report(results: list[ItemResult], readers: dict[str, str], meta: dict) -> dict:
    """The whole report: `meta` (command, data), the readers and what each is, the numbers, every image."""
    return {**meta, "created": datetime.now(UTC).isoformat(timespec="seconds"), "reader_descriptions": readers,
            **summarise(results, list(readers)), "items": [item.to_dict() for item in results]}


def _percent(score: dict) -> str:
    return f"{score['exact_accuracy']:.1%} ({score['exact']}/{score['images']})" if score["images"] else "-"


def table(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and one row per reader: exact overall, per kind group and per kind, per-digit accuracy, false
    readings (where some labels are empty), time per image."""
    columns = [*report.get("kind_groups", {}), *report["kinds"]]
    empty = any(r["scores"]["all"].get("empty") for r in report["readers"].values())
    header = ["reader", "exact", *(f"exact {k}" for k in columns), "per-digit",
              *(["false readings"] if empty else []), "s/image", "images/s"]
    rows = []
    for name, r in report["readers"].items():
        scores, speed = r["scores"], r["speed"]
        overall = scores["all"]
        rows.append([name, _percent(overall), *(_percent(scores[k]) for k in columns),
                     f"{overall['per_digit_accuracy']:.1%}",
                     *([f"{overall['false_readings']}/{overall['empty']}"] if empty else []),
                     f"{speed['s_per_image']:.4f}" if speed["images"] else "-",
                     f"{speed['images_per_second']:.1f}" if speed.get("images_per_second") else "-"])
    return header, rows


def _about(report: dict) -> str:
    if "labels" not in report:  # scenes: rendered in memory, nothing to decode
        return f"{report['images']} images ({report.get('source', '')})"
    decode = report["decode_ms_mean"]
    return (f"{report['images']} images ({report['labels']})"
            + (f", decoding {decode:.1f} ms per image, not in the times below" if decode is not None else ""))


def summary_text(report: dict, out: Path | None = None) -> str:
    """What the terminal shows: the table, the misses of each reader, unreadable images."""
    header, rows = table(report)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [_about(report), ""]
    lines += ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
              for row in [header, *rows]]
    for name, r in report["readers"].items():
        misses = r["misses"]
        if misses:
            listed = "; ".join(f"{m['file']}: {m['label'] or '(none)'} read {m['read'] or '(nothing)'}"
                               for m in misses[:MISSES_LISTED])
            more = f" (and {len(misses) - MISSES_LISTED} more)" if len(misses) > MISSES_LISTED else ""
            lines.append(f"misses of {name}: {listed}{more}")
    for u in report["unreadable"]:
        lines.append(f"unreadable: {u['file']}: {u['error']}")
    if out is not None:
        lines.append(f"report: {out / 'report.md'}, {out / 'report.json'}, {out / 'misses.png'}")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """report.md: the command, the table, how it is scored, what each reader is, the misses and the sheet."""
    header, rows = table(report)
    md = [f"# Evaluation: {report.get('folder') or report.get('source', '')}", "",
          f"Command: `{report['command']}` ({report['created']}). {_about(report)}.", "",
          "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    md += ["", "Exact: the reading with whitespace removed equals the label with whitespace removed (leading zeros "
           "count; an empty label, no number on the image, is matched only by an empty reading, and anything read "
           "there is a false reading). Kinds joined by + are scored together. Per-digit: 1 - (sum of digit edit "
           "distances) / (sum of label digits), see `benchmarks/evaluation.py`. Times: the read call alone, after "
           "one untimed warm-up read.", ""]
    md += [f"- **{name}**: {about}" for name, about in report["reader_descriptions"].items()]
    readers = list(report["readers"])
    missed = [item for item in report["items"] if not all(item["reads"][r]["exact"] for r in readers)]
    if missed:
        md += ["", f"## Misses ({len(missed)} images)", "",
               "| file | kind | label | " + " | ".join(readers) + " |", "|---|---|---|" + "---|" * len(readers)]
        for item in missed:
            cells = [("" if item["reads"][r]["exact"] else "✗ ") + (item["reads"][r]["text"] or "(nothing)")
                     + (f" ({item['reads'][r]['error']})" if item["reads"][r].get("error") else "") for r in readers]
            md.append(f"| {item['file']} | {item['kind']} | {item['label'] or '(none)'} | " + " | ".join(cells) + " |")
        shown = f" (the first {MAX_TILES})" if len(missed) > MAX_TILES else ""
        md += ["", f"![the images some reader missed{shown}](misses.png)"]
    return "\n".join(md) + "\n"


def write_report(out: Path, report: dict, results: list[ItemResult]) -> list[Path]:
    """report.json, report.md and misses.png in `out`, each written atomically (temp file, then rename)."""
    from digitdata.atomic import write_bytes, write_json, write_text

    ok, png = cv2.imencode(".png", contact_sheet(results, list(report["readers"])))
    if not ok:
        raise ValueError("OpenCV could not encode the contact sheet as PNG")
    paths = [out / "report.json", out / "report.md", out / "misses.png"]
    write_json(paths[0], report)
    write_text(paths[1], markdown(report))
    write_bytes(paths[2], png.tobytes())
    return paths
