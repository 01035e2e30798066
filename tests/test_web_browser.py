"""The web page in a real headless Chromium (Debian's, driven by Playwright): it loads, shows the live reading and
stream, reads an uploaded photo, and classifies a digit drawn on the canvas with the mouse.

Playwright never downloads a browser here: it drives /usr/bin/chromium (`make system-deps` installs it).

    .venv/bin/pytest -m browser tests/test_web_browser.py
    DIGITLITE_SCREENSHOT=/tmp/digitlite-web.png ...   # also keep a screenshot of the page
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from web_support import Pages, clear_examples, make_state, model_path, number_page, png_bytes, running_server

pytestmark = pytest.mark.browser
pytest.importorskip("fastapi", reason="the [web] extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "browser-token"
WAIT_MS = 60_000  # for an element to appear: generous, the machine may be busy; no speed is asserted

# Pen paths of real digit shapes, in canvas fractions (0-1), one list per stroke, as a person draws them.
STROKES = {
    "7": [[(0.22, 0.2), (0.5, 0.19), (0.76, 0.2), (0.62, 0.45), (0.5, 0.65), (0.42, 0.84)]],
    "1": [[(0.5, 0.14), (0.5, 0.5), (0.49, 0.86)]],
    "4": [[(0.35, 0.15), (0.25, 0.55), (0.75, 0.55)], [(0.62, 0.3), (0.62, 0.88)]],
}


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("Debian's chromium is not installed: `apt-get install chromium` (make system-deps does it)")


class PageSource:
    def __init__(self, frame_bgr):
        self.frame_bgr = frame_bgr

    def read(self):
        return self.frame_bgr.copy()

    def close(self):
        pass


@pytest.fixture(scope="module")
def setup(mnist):
    from edge_app.runtime import Classifier

    classifier = Classifier(model_path())
    examples = clear_examples(mnist, classifier)
    state = make_state(classifier, feed_source=PageSource(number_page(examples, "4071", size=(640, 480))),
                       stable_frames=2, max_fps=5)
    with running_server(state, token=TOKEN) as server:
        yield server, examples


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data dir: no state from other runs
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, timeout=WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(setup, browser_context):
    server, _ = setup
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.url}?token={TOKEN}", wait_until="domcontentloaded", timeout=WAIT_MS)
    page.errors = errors
    yield page
    page.close()


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=12)
        page.mouse.up()


def test_page_loads_with_status_live_reading_and_stream(page):
    expect = sync_api.expect
    expect(page).to_have_title("digitlite")
    expect(page.locator("#status")).to_contain_text(".tflite", timeout=WAIT_MS)
    expect(page.locator("#status")).to_contain_text("FPS", timeout=WAIT_MS)
    expect(page.locator("#stable")).to_have_text("4071", timeout=WAIT_MS)
    expect(page.locator("#history li").first).to_contain_text("4071", timeout=WAIT_MS)
    # Reads the property through the driver; a wait_for_function string would be eval'd, which the page's
    # Content-Security-Policy (script-src 'self') rightly refuses.
    sync_api.expect(page.locator("#stream")).to_have_js_property("naturalWidth", 640, timeout=WAIT_MS)
    assert page.locator("#photo-input").get_attribute("accept") == "image/*"
    assert page.locator("#photo-input").get_attribute("capture") == "environment"
    assert page.errors == []


@pytest.mark.parametrize("digit", list(STROKES))
def test_drawing_a_digit_shows_its_prediction(page, digit):
    expect = sync_api.expect
    draw(page, STROKES[digit])
    expect(page.locator("#draw-digit")).to_have_text(digit, timeout=WAIT_MS)
    expect(page.locator("#top3 li")).to_have_count(3)
    expect(page.locator("#top3 li").first).to_contain_text(digit)
    page.locator("#clear").click()
    expect(page.locator("#prediction")).to_be_hidden()
    assert page.errors == []


def test_uploading_a_photo_shows_the_reading(page, setup):
    expect = sync_api.expect
    _, examples = setup
    photo = png_bytes(number_page(examples, "35"))
    page.set_input_files("#photo-input", files=[{"name": "sheet.png", "mimeType": "image/png", "buffer": photo}])
    expect(page.locator("#photo-text")).to_have_text("35", timeout=WAIT_MS)
    expect(page.locator("#photo-detail")).to_contain_text("2 digits")
    sync_api.expect(page.locator("#photo-annotated")).to_have_js_property("naturalWidth", 800, timeout=WAIT_MS)
    draw(page, STROKES["7"])
    expect(page.locator("#draw-digit")).to_have_text("7", timeout=WAIT_MS)
    screenshot = os.environ.get("DIGITLITE_SCREENSHOT")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    assert page.errors == []


def test_uploading_a_sheet_as_a_table_shows_the_grid_it_read(page, mnist):
    from digitdata.sheets import render_sheet

    expect = sync_api.expect
    sheet = render_sheet(np.random.default_rng(5), mnist.x_test, mnist.y_test)
    page.locator("#photo-table").check()
    page.set_input_files("#photo-input", files=[{"name": "sheet.png", "mimeType": "image/png",
                                                 "buffer": png_bytes(sheet.image_bgr)}])
    expect(page.locator("#table-grid tr")).to_have_count(len(sheet.cells), timeout=WAIT_MS)
    expect(page.locator("#table-grid tr").first.locator("td")).to_have_count(len(sheet.cells[0]))
    expect(page.locator("#table-detail")).to_contain_text(f"{len(sheet.cells)} rows")
    expect(page.locator("#table-csv")).to_have_attribute("href", re.compile("^blob:"))
    expect(page.locator("#photo-result")).to_be_hidden()
    assert page.errors == []


def test_a_bad_upload_shows_the_servers_message(page):
    expect = sync_api.expect
    page.set_input_files("#photo-input", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                 "buffer": b"not a photo"}])
    expect(page.locator("#photo-error")).to_contain_text("not accepted", timeout=WAIT_MS)
    page.set_input_files("#photo-input", files=[{"name": "broken.jpg", "mimeType": "image/jpeg",
                                                 "buffer": np.arange(500, dtype=np.uint8).tobytes()}])
    expect(page.locator("#photo-error")).to_contain_text("not a JPEG", timeout=WAIT_MS)


@pytest.fixture(scope="module")
def counter(mnist):
    from edge_app.runtime import Classifier
    from edge_app.store.plausibility import Plausibility

    classifier = Classifier(model_path())
    examples = clear_examples(mnist, classifier)
    pages = [number_page(examples, text, size=(640, 480)) for text in ("4071", "35")]
    state = make_state(classifier, feed_source=Pages(pages, hold_last=True), stable_frames=2, max_fps=20)
    state.loop.plausibility = Plausibility(expect="increasing")
    with running_server(state, token=TOKEN) as server:
        yield server, state


def test_a_suspect_reading_is_flagged_and_corrected_on_the_page(counter, browser_context):
    expect = sync_api.expect
    server, state = counter
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{server.url}?token={TOKEN}", wait_until="domcontentloaded", timeout=WAIT_MS)
        suspect = page.locator("#history li.suspect")
        expect(suspect).to_have_count(1, timeout=WAIT_MS)
        expect(suspect.locator(".text")).to_have_text("35")
        expect(page.locator("#stable-suspect")).to_contain_text("below the previous value 4071", timeout=WAIT_MS)
        suspect.locator("button.fix").click()
        expect(page.locator("#correction")).to_be_visible()
        page.locator("#correction-text").fill("36")
        page.locator("#correction-save").click()
        expect(page.locator("#correction-done")).to_contain_text("1 number region kept as training examples",
                                                                 timeout=WAIT_MS)
        fixed = page.locator("#history li.corrected")
        expect(fixed).to_have_count(1, timeout=WAIT_MS)
        expect(fixed.locator(".text")).to_have_text("36")
        expect(fixed.locator(".was")).to_have_text("35")  # what was read stays visible, struck through
        expect(page.locator("#history li.suspect")).to_have_count(0)
        expect(page.locator("#stable")).to_have_text("36", timeout=WAIT_MS)  # the reading on view, corrected
        expect(page.locator("#stable-suspect")).to_be_hidden()
        record = next(r for r in state.history.since() if r["text"] == "35")
        assert record["corrected_text"] == "36" and record["suspect"], "the original and its flag are kept"
        assert state.history.examples_of(record["id"])["labels"] == ["36"]  # one region, labelled with its number
        # Letters are refused before anything is sent (the field's pattern): the form stays, nothing changes.
        page.locator("#history li.corrected button.fix").click()
        page.locator("#correction-text").fill("3b")
        page.locator("#correction-save").click()
        expect(page.locator("#correction")).to_be_visible()
        assert page.locator("#correction-text").evaluate("el => el.validity.patternMismatch")
        page.locator("#correction-cancel").click()
        expect(page.locator("#correction")).to_be_hidden()
        expect(fixed.locator(".text")).to_have_text("36")
        screenshot = os.environ.get("DIGITLITE_SCREENSHOT")
        if screenshot:
            page.screenshot(path=screenshot.replace(".png", "-correction.png"), full_page=True)
        assert errors == []
    finally:
        page.close()


@pytest.fixture
def graph_page(browser_context, classifier, tmp_path, monkeypatch):
    """The page of a server whose history holds numeric readings of the last hour, one of them suspect, and whose
    model store kept a refused update."""
    from datetime import UTC, datetime, timedelta

    from edge_app.config import MODEL_STORE_ENV
    from edge_app.store.history import ReadingStore
    from edge_app.store.models import ModelStore

    monkeypatch.setenv(MODEL_STORE_ENV, str(tmp_path / "models"))
    ModelStore().record_update("v7", "refused", "the new bundle reads this device's corrections worse")
    history = ReadingStore(":memory:")
    start = datetime.now(UTC) - timedelta(hours=1)
    for minutes, text, suspect in ((0, "100", None), (10, "104", None), (20, "9999", "more than 50 above 104"),
                                   (30, "108", None), (40, "12 07", None), (50, "113", None)):
        reading = {"text": text, "digits": [{"digit": int(c), "confidence": 0.9, "box": [0, 0, 1, 1]}
                                            for c in text if c != " "]}
        record = history.add(reading, "test", "ab" * 32, time=(start + timedelta(minutes=minutes)).isoformat(),
                             suspect=suspect)
    history.correct(record["id"], "118")
    state = make_state(classifier, history=history)
    with running_server(state, token=TOKEN) as server:
        page = browser_context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}?token={TOKEN}", wait_until="domcontentloaded", timeout=WAIT_MS)
        page.errors = errors
        yield page
        page.close()


def test_the_readings_graph_marks_suspect_readings_and_shows_the_model_and_last_update(graph_page):
    expect = sync_api.expect
    points = graph_page.locator("#graph circle")
    expect(points).to_have_count(5, timeout=WAIT_MS)  # 100, 104, 9999, 108, 118 (corrected); "12 07" is no number
    expect(graph_page.locator("#graph circle.suspect")).to_have_count(1)
    expect(graph_page.locator("#graph circle.suspect title")).to_contain_text("9999")
    expect(graph_page.locator("#graph-note")).to_contain_text("5 numeric readings")
    expect(graph_page.locator("#graph-note")).to_contain_text("1 suspect")
    titles = [points.nth(i).locator("title").text_content() for i in range(5)]
    assert [t.split(" at ")[0] for t in titles] == ["100", "104", "9999", "108", "118"]
    # The suspect reading is off the line: the line joins the four plausible values only.
    assert len(graph_page.locator("#graph polyline").get_attribute("points").split()) == 4
    expect(graph_page.locator("#model-line")).to_contain_text("the models installed with digitlite",
                                                              timeout=WAIT_MS)
    expect(graph_page.locator("#model-line")).to_contain_text("last update: v7 refused")
    assert graph_page.errors == []
