"""Regression tests for the hostile-client findings of issue 13 (1, 4, 5, 6, 7, 8, 9), on the fake engine."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from batchmt_server.engines.fake import FakeEngine
from helpers import parse_metrics, running_gateway


async def test_lone_surrogates_are_refused_with_422_before_any_work():
    eng = FakeEngine()
    async with running_gateway(eng) as (c, _):
        for body in (
            '{"sentences": ["Fine.", "bad \\ud800 one"]}',
            '{"sentences": ["Fine."], "source_lang": "\\udc00"}',
            '{"sentences": ["a \\udfff\\ud800 b"]}',
        ):
            r = await c.post("/v1/translate", content=body.encode(), headers={"content-type": "application/json"})
            assert r.status_code == 422, r.text
            err = r.json()["error"]
            assert err["code"] == "invalid_request" and "surrogate" in err["message"]
        assert (
            "sentences[1]"
            in (
                await c.post(
                    "/v1/translate",
                    content=b'{"sentences": ["ok", "\\ud800"]}',
                    headers={"content-type": "application/json"},
                )
            ).json()["error"]["message"]
        )
        # a proper surrogate pair is one astral character, and fine
        r = await c.post(
            "/v1/translate",
            content=b'{"sentences": ["Smile \\ud83d\\ude00 please."]}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 200 and r.json()["translations"][0]["status"] == "ok"
    assert len(eng.prompts) == 1  # only the valid request reached the engine


async def test_a_request_with_more_segments_than_the_queue_holds_is_not_refused_forever():
    """Finding 4: one entry of 20 lines against a queue of 8 got 429 on an idle server, every time. The one-pass
    path now feeds the batcher in windows; what can never fit (an ensemble, below) is a 413."""
    async with running_gateway(max_queue_sentences=8, max_sentences_per_request=8) as (c, _):
        r = await c.post("/v1/translate", json={"sentences": ["\n".join(f"Line {i} here." for i in range(20))]})
        assert r.status_code == 200, r.text
        assert r.json()["translations"][0]["text"].count("[de] Line") == 20


async def test_quality_best_counts_its_rounds_against_the_queue_cap():
    eng = FakeEngine()
    async with running_gateway(
        eng,
        max_queue_sentences=8,
        max_sentences_per_request=8,
        max_prompts_in_flight=1,
        max_sentences_per_prompt=1,
        ensemble_rounds_best=5,
    ) as (c, _):
        # 2 sentences x 5 rounds = 10 > 8: can never fit
        r = await c.post(
            "/v1/translate", json={"sentences": ["First one here.", "Second one here."], "quality": "best"}
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        eng.gate = asyncio.Event()
        busy = asyncio.create_task(c.post("/v1/translate", json={"sentences": [f"Busy {i} now." for i in range(4)]}))
        while not eng.prompts:
            await asyncio.sleep(0.005)
        r = await c.post("/v1/translate", json={"sentences": ["Waiting for a slot."], "quality": "best"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full" and "retry-after" in r.headers
        eng.gate.set()
        assert (await busy).status_code == 200
        r = await c.post("/v1/translate", json={"sentences": ["Now there is room."], "quality": "best"})
        assert r.status_code == 200


async def test_errors_quote_at_most_a_short_prefix_of_the_input():
    async with running_gateway() as (c, _):
        cases = [
            {"json": {"sentences": ["ok"], "source_lang": "x" * 100_000}},
            {"json": {"sentences": ["ok"], "y" * 100_000: 1}},
            {"json": {"sentences": ["ok"], "quality": "z" * 100_000}},
            {"content": b"sentences", "headers": {"content-type": "text/" + "q" * 8000}},
        ]
        for kw in cases:
            r = await c.post("/v1/translate", **kw)
            assert 400 <= r.status_code < 500 and len(r.content) < 1000, (r.status_code, len(r.content))
            assert set(r.json()) == {"error"}


@pytest.mark.parametrize(
    "method,path,kwargs,status,code",
    [
        ("POST", "/v1/translate", {"content": b'{"sentences": ["\xc3\x28"]}'}, 400, "invalid_json"),
        (
            "POST",
            "/v1/translate",
            {"content": b'{"sentences": ' + b"[" * 10000 + b"]" * 10000 + b"}"},
            400,
            "json_too_deep",
        ),
        ("POST", "/v1/translate", {"content": b"null"}, 422, "invalid_request"),
        ("POST", "/v1/translate", {"content": b"[]"}, 422, "invalid_request"),
        ("GET", "/nowhere", {}, 404, None),
        ("DELETE", "/v1/translate", {}, 405, None),
    ],
)
async def test_one_error_shape_everywhere(method, path, kwargs, status, code):
    async with running_gateway() as (c, _):
        r = await c.request(method, path, headers={"content-type": "application/json"}, **kwargs)
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "param"}
    assert code is None or body["error"]["code"] == code
    assert "None is required" not in body["error"]["message"]


async def test_client_disconnect_is_logged_quietly_and_leaves_nothing_behind(caplog):
    """The ASGI app driven directly: the caller sends its body, then goes away while its sentences wait."""
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with running_gateway(eng, max_prompts_in_flight=1, max_sentences_per_prompt=1) as (c, app):
        body = json.dumps({"sentences": [f"Gone {i} soon." for i in range(6)]}).encode()
        gone = asyncio.Event()
        sent: list[dict] = []

        async def receive():
            if not sent:
                sent.append({})
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/translate",
            "raw_path": b"/v1/translate",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 5),
            "server": ("t", 80),
            "state": {},
        }
        caplog.set_level(logging.DEBUG)
        task = asyncio.create_task(app(scope, receive, send))
        while not eng.prompts:
            await asyncio.sleep(0.005)
        gone.set()
        await asyncio.wait_for(task, 5)  # returns normally: no exception escapes to the server
        eng.gate.set()
        batcher = app.state.gateway.batcher
        for _ in range(200):
            if not batcher._pending:
                break
            await asyncio.sleep(0.01)
        assert batcher._pending == {}  # abandoned sentences leave the pending map (finding 6)
        m = parse_metrics((await c.get("/metrics")).text)
    assert m.get('batchmt_requests_total{outcome="cancelled"}', 0) == 1
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not bad, [(r.name, r.getMessage()) for r in bad]
    assert any("disconnected" in r.getMessage() for r in caplog.records)
