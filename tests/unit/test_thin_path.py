"""The translate path does each thing once (issue 23, "a thin translate path"): markup is parsed once per text,
a key is charged in one place with one mapping of its limits to the API's errors, stats are recorded once per
request from its outcome."""

from __future__ import annotations

import json

import pytest

from helpers import running_gateway

HTML = ["<p>The museum is <b>closed</b> on Mondays.</p>", "<p>It opens again on <i>Tuesday</i>.</p>"]


async def test_markup_is_parsed_once_per_text(monkeypatch):
    from batchmt_server.protocol import validation
    from batchmt_server.text import documents, markup

    calls: list[str] = []
    real = markup.parse_markup

    def counting(text, kind):
        calls.append(text)
        return real(text, kind)

    monkeypatch.setattr(documents, "parse_markup", counting)
    monkeypatch.setattr(validation, "parse_markup", counting)
    async with running_gateway() as (c, _app):
        r = await c.post("/v1/translate", json={"texts": HTML, "tag_handling": "html"})
    assert r.status_code == 200, r.text
    assert [t["status"] for t in r.json()["translations"]] == ["ok", "ok"]
    assert sorted(calls) == sorted(HTML)  # once each, not validated and then prepared


async def test_markup_that_does_not_parse_is_still_refused_before_any_work():
    async with running_gateway() as (c, app):
        r = await c.post(
            "/v1/translate", json={"texts": ["<p>ok</p>", "<p>open</q>"], "tag_handling": "xml", "quality": "best"}
        )
        prompts = list(app.state.gateway.engine.prompts)
        stats = app.state.gateway.stats.snapshot()
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_markup" and err["param"] == "texts[1]"
    assert prompts == [] and stats.requests.get("rejected") == 1


def test_validate_request_still_checks_markup_for_batch_lines():
    from batchmt_server.protocol.errors import APIError
    from batchmt_server.protocol.schemas import TranslateRequest
    from batchmt_server.protocol.validation import validate_request
    from batchmt_server.settings import Settings

    req = TranslateRequest(texts=["<p>open</q>"], tag_handling="xml")
    with pytest.raises(APIError) as exc:
        validate_request(req, Settings(engine="fake", _env_file=None))
    assert exc.value.code == "invalid_markup"
    validate_request(req, Settings(engine="fake", _env_file=None), markup=False)  # the translator parses it next


def test_one_mapping_of_a_key_limit_to_the_api_error():
    from batchmt_server.auth.admission import limit_error
    from batchmt_server.auth.keys import LimitExceeded

    err = limit_error(LimitExceeded(456, "quota_exceeded", "the key's daily characters are used up", 0.2))
    assert (err.status, err.code, err.message) == (456, "quota_exceeded", "the key's daily characters are used up")
    assert err.headers == {"Retry-After": "1"}  # whole seconds, at least 1


async def test_every_door_refuses_a_key_over_its_limit_in_the_same_shape():
    """/v1/translate and batch creation charge through one helper; the request rate (the HTTP front) maps its
    refusal with the same one: code, message and a Retry-After header, and nothing charged."""
    import asyncio

    import httpx

    from batchmt_server.auth.keys import KeyRecord, KeyRing, MemoryKeyStore, hash_key
    from batchmt_server.engines.fake import FakeEngine
    from batchmt_server.http.app import create_app
    from batchmt_server.settings import Settings

    quota, rated = "quota-key-0123456789abcdef", "rated-key-0123456789abcdef"
    store = MemoryKeyStore()
    store._keys["q"] = KeyRecord(id="q", name="q", key_hash=hash_key(quota), chars_per_day=40)
    store._keys["r"] = KeyRecord(id="r", name="r", key_hash=hash_key(rated), rate_requests=0.001)
    s = Settings(engine="fake", max_wait_ms=1, warmup=False, calibration="off")
    app = create_app(s, engine=FakeEngine(), keys=KeyRing(store, [], refresh_s=0.0))
    text = "The museum is closed on Mondays, sadly."  # 39 characters
    line = {"custom_id": "a", "method": "POST", "url": "/v1/translate", "body": {"texts": [text]}}
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 5)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            auth = {"authorization": f"Bearer {quota}"}
            assert (await c.post("/v1/translate", json={"texts": [text]}, headers=auth)).status_code == 200
            refused = [await c.post("/v1/translate", json={"texts": [text]}, headers=auth)]
            f = await c.post(
                "/v1/files",
                data={"purpose": "batch"},
                files={"file": ("in.jsonl", (json.dumps(line) + "\n").encode(), "application/jsonl")},
                headers=auth,
            )
            batch = {"input_file_id": f.json()["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
            refused.append(await c.post("/v1/batches", json=batch, headers=auth))
            usage = (await c.get("/v1/usage", headers=auth)).json()
            rauth = {"authorization": f"Bearer {rated}"}
            await c.get("/v1/info", headers=rauth)  # the bucket's one request
            rate = await c.post("/v1/translate", json={"texts": [text]}, headers=rauth)
    for r in refused:
        assert r.status_code == 456 and r.json()["error"]["code"] == "quota_exceeded", r.text
        assert int(r.headers["retry-after"]) >= 1
    assert refused[0].json()["error"]["message"] == refused[1].json()["error"]["message"]
    assert usage["today"]["characters"] == 39  # the refusals charged nothing
    assert rate.status_code == 429 and rate.json()["error"]["code"] == "rate_limited" and rate.headers["retry-after"]


async def test_each_request_is_recorded_once_from_its_outcome():
    async with running_gateway(max_queue_sentences=4) as (c, app):
        stats = app.state.gateway.stats
        seen: list[str] = []
        real = stats.record_request

        def once(outcome, seconds=None):
            seen.append(outcome)
            real(outcome, seconds)

        stats.record_request = once
        assert (await c.post("/v1/translate", json={"texts": ["One. Two.", "Three."]})).status_code == 200
        assert (await c.post("/v1/translate", json={"texts": []})).status_code == 422  # invalid
        too_big = {"texts": ["One. Two. Three."], "quality": "best"}  # 3 segments x rounds > 4 queued
        assert (await c.post("/v1/translate", json=too_big)).status_code == 413
        assert (await c.post("/v1/translate", json={"texts": ["<p>x</q>"], "tag_handling": "xml"})).status_code == 422
        snap = stats.snapshot()
    assert seen == ["ok", "rejected", "rejected", "rejected"]
    assert snap.sentences["translated"] == 2 and snap.characters == len("One. Two.") + len("Three.")
