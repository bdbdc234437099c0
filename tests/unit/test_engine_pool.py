"""The pool of engine replicas (engines/openai_http.EnginePool) against scripted HTTP fakes: each replica is an
httpx.MockTransport route that answers like a vLLM api_server (``/health``, ``/v1/models``, ``/v1/completions``,
backed by the FakeEngine's perfect translations) and can be told to hang, drop connections, refuse them,
answer 5xx or 4xx. The same logic against two real vLLM api_server processes: tests/integration/test_engine_pool.py."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from batchmt_server.engines.base import EngineError, GenerationParams
from batchmt_server.engines.fake import FakeEngine
from batchmt_server.engines.openai_http import EnginePool, HTTPEngine, ReplicaCollector, parse_engine_urls
from helpers import running_gateway

PARAMS = GenerationParams(max_tokens=64)


class FakeReplica:
    """One scripted OpenAI-compatible server. ``mode``: ok | hang | drop | refuse | 5xx | 4xx;
    ``healthy``: what /health answers; ``gate`` holds completions until set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.healthy = True
        self.gate: asyncio.Event | None = None
        self.engine = FakeEngine()
        self.received: list[str] = []  # prompts that reached /v1/completions
        self.answered: list[str] = []  # prompts answered 200
        self.hanging = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if path == "/health":
            return httpx.Response(200 if self.healthy else 503)
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "org/fake-model"}]})
        assert path == "/v1/completions"
        body = __import__("json").loads(request.content)
        self.received.append(body["prompt"])
        if self.gate is not None:
            await self.gate.wait()
        if self.mode == "hang":
            self.hanging += 1
            await asyncio.Event().wait()
        if self.mode == "drop":
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        if self.mode == "5xx":
            return httpx.Response(500, json={"error": "boom"})
        if self.mode == "4xx":
            return httpx.Response(400, json={"error": "prompt too long"})
        c = await self.engine.generate(body["prompt"], PARAMS)
        self.answered.append(body["prompt"])
        return httpx.Response(
            200,
            json={
                "choices": [{"text": c.text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens},
            },
        )


class Fleet:
    def __init__(self, n: int) -> None:
        self.replicas = {f"r{i}": FakeReplica(f"r{i}") for i in range(n)}
        self.transport = httpx.MockTransport(self.route)

    async def route(self, request: httpx.Request) -> httpx.Response:
        return await self.replicas[request.url.host].handle(request)

    @property
    def urls(self) -> list[str]:
        return [f"http://{name}:8000" for name in self.replicas]

    def __getitem__(self, name: str) -> FakeReplica:
        return self.replicas[name]


def pool_for(fleet: Fleet, **kw) -> EnginePool:
    kw = {"health_interval_s": 0.05, "no_replica_wait_s": 2.0, **kw}
    return EnginePool(fleet.urls, transport=fleet.transport, **kw)


def stats(pool: EnginePool) -> dict[str, object]:
    return {s.replica.split("//")[1].split(":")[0]: s for s in pool.replica_stats()}


def prompt(i: int) -> str:
    return FakeEngine().template.render([f"Sentence number {i} is here."])


async def until(cond, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_engine_urls_from_a_comma_list_or_repeated_flags():
    assert parse_engine_urls("http://a:1, http://b:2/,http://a:1") == ["http://a:1", "http://b:2"]
    assert parse_engine_urls(["http://a:1", "http://b:2,http://c:3"]) == ["http://a:1", "http://b:2", "http://c:3"]
    assert parse_engine_urls(None) == []
    with pytest.raises(ValueError):
        EnginePool([" , "])


def test_repeated_engine_url_flags_build_a_pool_and_one_url_the_plain_http_engine():
    from batchmt_server.cli import _build_parser, parse_settings
    from batchmt_server.engines import build_engine

    ns = _build_parser().parse_args(["serve", "--engine-url", "http://a:1", "--engine-url", "http://b:2"])
    settings = parse_settings(ns)
    assert settings.engine == "http" and settings.engine_url == "http://a:1,http://b:2"
    pool = build_engine(settings)
    assert isinstance(pool, EnginePool) and pool.urls == ["http://a:1", "http://b:2"]
    one = build_engine(parse_settings(_build_parser().parse_args(["--engine-url", "http://a:1"])))
    assert type(one) is HTTPEngine


async def test_start_learns_the_model_and_fails_when_no_replica_answers():
    fleet = Fleet(2)
    fleet["r0"].mode = "refuse"
    pool = pool_for(fleet)
    await pool.start()
    try:
        assert pool.model_name == "fake-model" and await pool.ready()
        assert [s.healthy for s in pool.replica_stats()] == [False, True]
    finally:
        await pool.close()
    fleet["r1"].mode = "refuse"
    pool = pool_for(fleet)
    with pytest.raises(EngineError, match="no engine replica answers"):
        await pool.start()
    await pool.close()


async def test_each_prompt_goes_to_the_replica_with_fewest_outstanding():
    fleet = Fleet(2)
    fleet["r0"].gate = asyncio.Event()  # r0 holds its prompts
    pool = pool_for(fleet)
    await pool.start()
    try:
        first = [asyncio.create_task(pool.generate(prompt(i), PARAMS)) for i in range(2)]
        await until(lambda: len(fleet["r0"].received) == 1 and len(fleet["r1"].answered) == 1)
        # r0 has one outstanding, r1 none: the next three all go to r1 (each answered before the next is sent)
        for i in range(2, 5):
            await pool.generate(prompt(i), PARAMS)
        assert len(fleet["r0"].received) == 1 and len(fleet["r1"].answered) == 4
        assert stats(pool)["r0"].outstanding == 1
        # with both held, ten concurrent prompts split evenly
        fleet["r1"].gate = asyncio.Event()
        more = [asyncio.create_task(pool.generate(prompt(i), PARAMS)) for i in range(5, 15)]
        await until(lambda: sum(s.outstanding for s in pool.replica_stats()) == 11)
        assert {s.outstanding for s in pool.replica_stats()} == {5, 6}
        fleet["r0"].gate.set()
        fleet["r1"].gate.set()
        await asyncio.gather(*first, *more)
        assert all(s.outstanding == 0 and s.errors == 0 for s in pool.replica_stats())
    finally:
        await pool.close()


async def test_a_replica_that_drops_its_connections_is_ejected_and_its_prompts_answered_once_elsewhere():
    fleet = Fleet(3)
    for r in fleet.replicas.values():
        r.gate = asyncio.Event()
    pool = pool_for(fleet, health_interval_s=10)  # ejection by the failed prompts alone
    await pool.start()
    try:
        prompts = [prompt(i) for i in range(30)]
        tasks = [asyncio.create_task(pool.generate(p, PARAMS)) for p in prompts]
        await until(lambda: sum(len(r.received) for r in fleet.replicas.values()) == 30)
        assert len(fleet["r0"].received) == 10
        fleet["r0"].mode = "drop"
        for r in fleet.replicas.values():
            r.gate.set()
        results = await asyncio.gather(*tasks)
        answered = fleet["r1"].answered + fleet["r2"].answered
        assert sorted(answered) == sorted(prompts), "every prompt answered exactly once"
        assert all("[de] Sentence number" in c.text for c in results)
        s = stats(pool)
        assert not s["r0"].healthy and s["r0"].ejections == 1
        assert s["r0"].errors >= 1 and s["r0"].resent == 10 and s["r0"].outstanding == 0
        # while ejected it gets nothing
        await asyncio.gather(*(pool.generate(prompt(i), PARAMS) for i in range(30, 40)))
        assert len(fleet["r0"].received) == 10
    finally:
        await pool.close()


async def test_a_hung_replica_failing_health_checks_is_ejected_its_prompts_resent_then_readmitted():
    fleet = Fleet(2)
    fleet["r0"].mode = "hang"
    fleet["r1"].gate = asyncio.Event()
    pool = pool_for(fleet, failed_checks_to_eject=2)
    await pool.start()
    try:
        prompts = [prompt(i) for i in range(6)]
        tasks = [asyncio.create_task(pool.generate(p, PARAMS)) for p in prompts]
        await until(lambda: fleet["r0"].hanging == 3 and len(fleet["r1"].received) == 3)
        fleet["r1"].gate.set()
        fleet["r0"].healthy = False  # vLLM's /health fails: the engine is stuck
        results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert len(results) == 6 and sorted(fleet["r1"].answered) == sorted(prompts)
        s = stats(pool)["r0"]
        assert (s.healthy, s.ejections, s.resent, s.outstanding) == (False, 1, 3, 0)
        # it recovers: re-admitted at its first good check, then shares the load again
        fleet["r0"].mode, fleet["r0"].healthy = "ok", True
        await until(lambda: stats(pool)["r0"].healthy)
        await asyncio.gather(*(pool.generate(prompt(i), PARAMS) for i in range(10, 20)))
        assert len(fleet["r0"].answered) >= 4
        assert stats(pool)["r0"].ejections == 1
    finally:
        await pool.close()


async def test_a_refused_replica_is_ejected_at_the_next_check_and_readmitted_after_restart():
    fleet = Fleet(2)
    pool = pool_for(fleet)
    await pool.start()
    try:
        fleet["r1"].mode = "refuse"  # the process died
        await until(lambda: not stats(pool)["r1"].healthy)
        await asyncio.gather(*(pool.generate(prompt(i), PARAMS) for i in range(5)))
        assert len(fleet["r0"].answered) == 5 and fleet["r1"].received == []
        fleet["r1"].mode = "ok"  # restarted
        await until(lambda: stats(pool)["r1"].healthy)
        assert stats(pool)["r1"].ejections == 1
    finally:
        await pool.close()


async def test_5xx_is_resent_and_ejects_after_consecutive_errors_but_4xx_is_the_prompts_fault():
    fleet = Fleet(2)
    fleet["r0"].mode = "5xx"
    pool = pool_for(fleet, errors_to_eject=2, health_interval_s=10)
    await pool.start()
    try:
        results = [await pool.generate(prompt(i), PARAMS) for i in range(6)]  # one at a time
        assert len(results) == 6 and len(fleet["r1"].answered) == 6
        s = stats(pool)["r0"]
        assert s.errors == 2 and s.ejections == 1 and not s.healthy
        fleet["r1"].mode = "4xx"
        with pytest.raises(EngineError, match="400") as info:
            await pool.generate(prompt(99), PARAMS)
        assert type(info.value) is EngineError  # not a ReplicaUnavailable: not re-sent
        assert stats(pool)["r1"].healthy and stats(pool)["r1"].errors == 1
    finally:
        await pool.close()


async def test_with_no_healthy_replica_a_prompt_waits_for_one_then_gives_up():
    fleet = Fleet(2)
    pool = pool_for(fleet, no_replica_wait_s=0.3)
    await pool.start()
    try:
        for r in fleet.replicas.values():
            r.mode = "refuse"
        await until(lambda: not any(s.healthy for s in pool.replica_stats()))
        assert not await pool.ready()
        with pytest.raises(EngineError, match="no healthy engine replica"):
            await pool.generate(prompt(1), PARAMS)
        pool.no_replica_wait_s = 5
        waiting = asyncio.create_task(pool.generate(prompt(2), PARAMS))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        fleet["r1"].mode = "ok"
        assert "[de] Sentence number 2" in (await asyncio.wait_for(waiting, 3)).text
    finally:
        await pool.close()


async def test_resends_are_bounded_when_every_replica_keeps_failing():
    fleet = Fleet(2)
    for r in fleet.replicas.values():
        r.mode = "5xx"
    pool = pool_for(fleet, errors_to_eject=100, max_resends=3, health_interval_s=10)
    await pool.start()
    try:
        with pytest.raises(EngineError, match="after 4 sends"):
            await pool.generate(prompt(1), PARAMS)
        assert sum(s.prompts for s in pool.replica_stats()) == 4
    finally:
        await pool.close()


async def test_replica_metrics_carry_a_replica_label():
    fleet = Fleet(2)
    pool = pool_for(fleet, health_interval_s=10)
    await pool.start()
    try:
        fleet["r0"].mode = "drop"
        await asyncio.gather(*(pool.generate(prompt(i), PARAMS) for i in range(4)))
        families = {f.name: f for f in ReplicaCollector(lambda: pool).collect()}
        value = {
            (f, s.labels["replica"]): s.value
            for f, fam in families.items()
            for s in fam.samples
            if not s.name.endswith("_created")
        }
        assert value[("batchmt_engine_replica_up", "http://r0:8000")] == 0
        assert value[("batchmt_engine_replica_up", "http://r1:8000")] == 1
        assert value[("batchmt_engine_replica_ejections", "http://r0:8000")] == 1
        assert value[("batchmt_engine_replica_errors", "http://r0:8000")] >= 1
        assert value[("batchmt_engine_replica_prompts", "http://r1:8000")] == 4
        assert value[("batchmt_engine_replica_outstanding_prompts", "http://r1:8000")] == 0
        assert list(ReplicaCollector(lambda: object()).collect()) == []
    finally:
        await pool.close()


async def test_the_gateway_over_a_pool_loses_no_sentence_when_a_replica_dies_mid_request():
    fleet = Fleet(2)
    fleet["r0"].gate = asyncio.Event()
    pool = pool_for(fleet, health_interval_s=10)
    sentences = [f"Replica test sentence {i}." for i in range(24)]
    async with running_gateway(pool, max_sentences_per_prompt=1) as (client, _app):
        call = asyncio.create_task(client.post("/v1/translate", json={"sentences": sentences}))
        await until(lambda: len(fleet["r0"].received) >= 1)
        fleet["r0"].mode = "drop"
        fleet["r0"].gate.set()
        r = await call
        assert r.status_code == 200
        out = r.json()["translations"]
        assert [t["status"] for t in out] == ["ok"] * 24
        assert [t["text"] for t in out] == [f"[de] {s}" for s in sentences]
        sent = Counter(s for p in fleet["r1"].answered for s in FakeEngine().query_sources(p))
        assert set(sent) == set(sentences) and max(sent.values()) == 1
        metrics = (await client.get("/metrics")).text
        assert 'batchmt_engine_replica_ejections_total{replica="http://r0:8000"} 1.0' in metrics
        assert (await client.get("/readyz")).status_code == 200


async def test_an_http_engine_sends_at_most_four_stop_strings_the_ones_that_must_hold_first():
    """The OpenAI completions API (and servers that copy it) reject more than four stop strings; the template's
    fifth (the translations restarting at 1) is for engines without that limit."""

    bodies: list[dict] = []

    def route(request: httpx.Request) -> httpx.Response:
        bodies.append(__import__("json").loads(request.content))
        return httpx.Response(200, json={"choices": [{"text": " Hallo.", "finish_reason": "stop"}], "usage": {}})

    tpl = FakeEngine().template
    eng = HTTPEngine("http://engine:8000", model="fake", transport=httpx.MockTransport(route))
    await eng.start()
    try:
        await eng.generate(tpl.render(["Hello."]), GenerationParams(max_tokens=8, stop=tpl.stop_for(1)))
    finally:
        await eng.close()
    assert len(tpl.stop_for(1)) == 5 and bodies[-1]["stop"] == list(tpl.stop_for(1)[:4])
