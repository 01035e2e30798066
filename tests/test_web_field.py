"""The web API for integrators and field users (issue 14), over real HTTP with a live loop: `GET /api/value`,
`GET /api/history?since=`, and correcting a stored reading (its number regions become labelled, issue 21),
documented in the OpenAPI schema behind the token. The pages are read by a scripted reader (`fakes.ScriptedReader`:
no reader models needed); the drawing endpoint's classifier is the released one.

    .venv/bin/pytest tests/test_web_field.py
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fakes import ScriptedReader, region_of
from waiting import wait_for
from web_support import Pages, make_state, number_page, png_bytes, request, running_server

from edge_app.store.plausibility import Plausibility

pytest.importorskip("fastapi", reason="the [web] extra is not installed")

TOKEN = "field-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(classifier, examples):
    # A counter: 4071, then 35 (below it: suspect), then 4096.
    pages = {text: number_page(examples, text, size=(640, 480)) for text in ("4071", "35", "4096")}
    state = make_state(classifier, feed_source=Pages(list(pages.values())), stable_frames=2, max_fps=50,
                       reader=ScriptedReader(pages))
    state.loop.plausibility = Plausibility(expect="increasing")
    with running_server(state, token=TOKEN) as server:
        wait_for(lambda: state.history.count() == 3, "three stable readings")
        yield server, state


def get(server, path):
    reply = request(server, "GET", path, headers=AUTH)
    assert reply.status == 200, reply
    return reply.json()


def post_json(server, path, body):
    return request(server, "POST", path, json.dumps(body).encode(), {**AUTH, "Content-Type": "application/json"})


def test_history_since_lists_the_stored_readings_oldest_first(server):
    server, state = server
    everything = get(server, "/api/history")
    assert [(r["text"], r["suspect"] is not None) for r in everything["readings"]] == [
        ("4071", False), ("35", True), ("4096", False)]
    assert everything["count"] == 3 and everything["since"] is None
    first = everything["readings"][0]
    assert first["value"] == "4071" and len(first["digits"]) == 4 and first["origin"] == "live"
    later = get(server, "/api/history?since=" + quote(everything["readings"][1]["time"]))
    assert [r["text"] for r in later["readings"]] == ["35", "4096"]
    assert get(server, "/api/history?since=15m")["count"] == 3
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")  # no offset: UTC for the API
    assert get(server, f"/api/history?since={future}")["readings"] == []
    assert get(server, "/api/history?limit=1")["readings"][0]["text"] == "4071"
    bad = request(server, "GET", "/api/history?since=yesterday", headers=AUTH)
    assert bad.status == 422 and "15m" in bad.json()["detail"]


def test_value_is_the_last_plausible_stable_reading_and_a_correction_changes_it(server):
    server, state = server
    value = get(server, "/api/value")
    assert value["value"] == "4096" and value["origin"] == "live" and not value["corrected"]
    stored = state.history.get(value["id"])
    assert value["time"] == stored["time"]
    assert value["confidence"] == pytest.approx(min(d["confidence"] for d in stored["digits"]))

    # A user corrects the last reading: the value follows, the original stays, its region is labelled.
    reply = post_json(server, f"/api/readings/{value['id']}/correction", {"text": "4098"})
    assert reply.status == 200, reply
    corrected = reply.json()
    assert corrected["text"] == "4096" and corrected["corrected_text"] == "4098" and corrected["value"] == "4098"
    assert corrected["examples"] == {"crops": 1, "kind": "regions", "labelled": True, "frame": True}
    example = state.history.examples_of(value["id"])
    assert example["labels"] == ["4098"] and (example["crops"] == region_of("4096")[None]).all()
    assert get(server, "/api/value")["value"] == "4098" and get(server, "/api/value")["corrected"]


def test_a_correction_that_cannot_be_stored_says_why(server):
    server, state = server
    suspect = next(r for r in state.history.since() if r["suspect"])
    assert post_json(server, f"/api/readings/{suspect['id']}/correction", {"text": "4o71"}).status == 422
    missing = post_json(server, "/api/readings/99999/correction", {"text": "1"})
    assert missing.status == 404 and "no reading #99999" in missing.json()["detail"]
    assert post_json(server, f"/api/readings/{suspect['id']}/correction", {}).status == 422


def test_an_uploaded_photo_is_stored_with_its_id_and_can_be_corrected(server, examples):
    server, state = server
    reply = request(server, "POST", "/api/read", png_bytes(number_page(examples, "35", size=(640, 480))),
                    {**AUTH, "Content-Type": "image/png"})
    assert reply.status == 200, reply
    uploaded = reply.json()
    assert uploaded["text"] == "35" and uploaded["numbers"] == ["35"]
    stored = state.history.get(uploaded["id"])
    assert stored["origin"] == "upload" and stored["model_sha256"] == state.reader.integrity.sha256
    two = post_json(server, f"/api/readings/{uploaded['id']}/correction", {"text": "3 6"}).json()["examples"]
    assert two == {"crops": 1, "kind": "regions", "labelled": False, "frame": True}, "2 numbers for 1 region"
    one = post_json(server, f"/api/readings/{uploaded['id']}/correction", {"text": "36"}).json()["examples"]
    assert one["labelled"] and state.history.examples_of(uploaded["id"])["labels"] == ["36"]
    assert get(server, "/api/value")["origin"] == "live", "an upload is never the live value"


def test_the_schema_documents_value_history_and_correction(server):
    server, _ = server
    paths = get(server, "/openapi.json")["paths"]
    assert {"/api/value", "/api/history", "/api/readings/{reading_id}/correction"} <= set(paths)
    assert {p["name"] for p in paths["/api/history"]["get"]["parameters"]} == {"since", "limit"}
    assert "404" in paths["/api/value"]["get"]["responses"]
    value_schema = paths["/api/value"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert value_schema["$ref"].endswith("/Value")
    body = paths["/api/readings/{reading_id}/correction"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/CorrectionIn")


def test_value_without_any_reading_is_a_404(classifier):
    with running_server(make_state(classifier, reader=ScriptedReader({})), token=TOKEN) as empty:
        reply = request(empty, "GET", "/api/value", headers=AUTH)
        assert reply.status == 404 and "no reading yet" in reply.json()["detail"]
