"""The translate path does each thing once (issue 23, "a thin translate path"): markup is parsed once per text,
a key is charged in one place with one mapping of its limits to the API's errors, stats are recorded once per
request from its outcome."""

from __future__ import annotations

import json

import pytest

from helpers import running_gateway

HTML = ["<p>The museum is <b>closed</b> on Mondays.</p>", "<p>It opens again on <i>Tuesday</i>.</p>"]


async def test_markup_is_parsed_once_per_text(monkeypatch):
    calls = _count_markup_parses(monkeypatch)
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


# --- admission: batch-job ensemble work runs in the spare capacity, never against interactive callers ----------


async def test_a_jobs_ensemble_rounds_never_refuse_an_interactive_caller():
    import asyncio

    from batchmt_server.engines.fake import FakeEngine
    from batchmt_server.protocol.schemas import TranslateRequest

    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with running_gateway(eng, max_queue_sentences=12) as (c, app):
        translator = app.state.gateway.translator
        job_line = TranslateRequest(texts=["Good morning to you all.", "See you later today."], quality="best")
        job = asyncio.create_task(translator.translate(job_line, priority=1))  # 2 x 5 rounds = 10 of 12
        while not eng.prompts:
            await asyncio.sleep(0.005)
        assert translator._job_ensemble_load == 10 and translator._ensemble_load == 0
        interactive = asyncio.create_task(
            c.post("/v1/translate", json={"texts": ["Good evening to you."], "quality": "balanced"})  # 3 more
        )
        for _ in range(100):
            if translator._ensemble_load or interactive.done():
                break
            await asyncio.sleep(0.005)
        eng.gate.set()
        r = await interactive
        done = await job
    assert r.status_code == 200, r.text  # before: 429 queue_full (10 + 3 > 12)
    assert [t.status for t in done.translations] == ["ok", "ok"]
    assert translator._job_ensemble_load == 0 and translator._ensemble_load == 0


def test_a_jobs_ensemble_line_is_admitted_within_the_spare_capacity():
    from batchmt_server.pipeline.spare_capacity import SpareCapacity
    from batchmt_server.pipeline.translator import Translator
    from batchmt_server.prompting.template import Template
    from batchmt_server.protocol.errors import APIError
    from batchmt_server.settings import Settings
    from batchmt_server.telemetry.stats import Stats

    class Idle:  # the batcher's side of the signal
        interactive_active = 0

        def retry_after(self) -> float:
            return 2.0

    s = Settings(engine="fake", max_queue_sentences=64, _env_file=None)
    t = Translator(Idle(), Stats(), s, "m", Template.load("en-de-packed"))
    assert t.job_capacity.pressure() == 0
    t._ensemble_load = 3  # interactive ensemble rounds in flight: pressure on the jobs
    assert t.job_capacity.pressure() == 3
    t.job_capacity = SpareCapacity(16, pressure=t._interactive_load, halve_every_s=0.0, grow_every_s=1e9)
    t._check_capacity(4, 5, priority=1)  # no job rounds in flight: the first always runs, whatever the cap
    t._job_ensemble_load = 6
    with pytest.raises(APIError) as exc:
        t._check_capacity(1, 3, priority=1)  # under pressure the cap halves to 8: 6 + 3 > 8
    assert exc.value.status == 429 and exc.value.code == "queue_full" and exc.value.headers == {"Retry-After": "2"}
    assert t.job_capacity.value == 8
    t._ensemble_load = 0  # no pressure: the cap holds (it grows back only after grow_every_s)
    t._job_ensemble_load = 5
    t._check_capacity(1, 3, priority=1)  # 5 + 3 fit 8
    t._job_ensemble_load = 60
    t._check_capacity(60, 1, priority=0)  # interactive work never counts the jobs' rounds


async def test_interactive_traffic_never_runs_the_job_controller():
    async with running_gateway() as (c, app):
        batcher = app.state.gateway.batcher
        looks: list[int] = []
        real = batcher.job_capacity.current
        batcher.job_capacity.current = lambda: looks.append(1) or real()
        for i in range(3):
            r = await c.post("/v1/translate", json={"texts": [f"Sentence number {i}. And one more."]})
            assert r.status_code == 200
    assert looks == []  # no job sentence waited: the job cap was never stepped


# --- a batch line is parsed once: its prepared entries go from the batch's creation to its run -------------------


async def _run_batch(c, rows: list[dict]) -> tuple[dict, list[dict]]:
    import asyncio
    import time

    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    f = await c.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content, "application/jsonl")})
    body = {"input_file_id": f.json()["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
    b = (await c.post("/v1/batches", json=body)).json()
    deadline = time.monotonic() + 20
    while b["status"] != "completed":
        assert time.monotonic() < deadline and b["status"] in ("validating", "in_progress", "finalizing"), b
        await asyncio.sleep(0.02)
        b = (await c.get(f"/v1/batches/{b['id']}")).json()
    out = await c.get(f"/v1/files/{b['output_file_id']}/content")
    return b, [json.loads(x) for x in out.text.splitlines()]


def _count_markup_parses(monkeypatch) -> list[str]:
    from batchmt_server.protocol import validation
    from batchmt_server.text import documents, markup

    calls: list[str] = []
    real = markup.parse_markup

    def counting(text, kind):
        calls.append(text)
        return real(text, kind)

    monkeypatch.setattr(documents, "parse_markup", counting)
    monkeypatch.setattr(validation, "parse_markup", counting)
    return calls


async def test_a_batch_lines_markup_is_parsed_once_over_create_and_run(monkeypatch):
    calls = _count_markup_parses(monkeypatch)
    rows = [
        {"custom_id": f"l{i}", "url": "/v1/translate", "body": {"texts": [text], "tag_handling": "html"}}
        for i, text in enumerate(HTML)
    ]
    async with running_gateway() as (c, app):
        batch, out = await _run_batch(c, rows)
        kept = len(app.state.jobs.prepared)
    assert batch["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    assert sorted(o["response"]["body"]["translations"][0]["status"] for o in out) == ["ok", "ok"]
    assert sorted(calls) == sorted(HTML)  # once each: validated and prepared at creation, run from that
    assert kept == 0  # taken by the run, nothing left behind


async def test_a_batch_line_not_prepared_here_is_parsed_again_to_run(monkeypatch):
    """Past the bound on what is kept (or created by another gateway, or before a restart), a line is parsed from
    its stored body when it runs, and checked again: the same result."""
    calls = _count_markup_parses(monkeypatch)
    rows = [{"custom_id": "a", "url": "/v1/translate", "body": {"texts": [HTML[0]], "tag_handling": "html"}}]
    async with running_gateway() as (c, app):
        app.state.jobs.prepared.max_chars = 0
        batch, out = await _run_batch(c, rows)
    assert batch["request_counts"]["completed"] == 1 and out[0]["response"]["status_code"] == 200
    assert calls == [HTML[0], HTML[0]]  # checked at creation, parsed again for the run


def test_prepared_lines_are_bounded_and_dropped_with_their_job():
    from batchmt_server.jobs.worker import PreparedLine, PreparedLines
    from batchmt_server.protocol.schemas import TranslateRequest

    def prepared(text: str) -> PreparedLine:
        return PreparedLine(TranslateRequest(texts=[text]), [])

    kept = PreparedLines(max_chars=10)
    kept.put("j1", {1: prepared("abcd"), 2: prepared("efgh")})
    kept.put("j2", {1: prepared("ijkl")})  # 12 > 10: the oldest goes
    assert kept.take("j1", 1) is None and kept.take("j1", 2) is not None
    assert kept.take("j1", 2) is None  # taken once
    kept.put("j3", {1: prepared("mn"), 2: prepared("op")})
    kept.drop("j3")
    assert len(kept) == 1 and kept.take("j2", 1) is not None and len(kept) == 0
