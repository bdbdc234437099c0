"""Cost accounting on the fake engine (no model needed): prices applied to token shares and engine
busy time, the one-per-prompt/no-cache baseline, and /v1/usage == /metrics."""

from __future__ import annotations

import math
import time

from batchmt_server.engines.fake import FakeEngine
from batchmt_server.telemetry.stats import Stats
from helpers import parse_metrics, running_gateway

SENTENCES = [
    "The museum is closed on Mondays.",
    "I have lost my keys again.",
    "It rained all day in the city.",
    "She wrote three letters to her brother.",
]


TOKEN_PRICES = dict(price_prompt_per_mtok=0.5, price_cached_prompt_per_mtok=0.05, price_completion_per_mtok=1.5)


async def test_response_cost_is_token_prices_times_its_share():
    async with running_gateway(translation_memory_size=0, **TOKEN_PRICES, currency="EUR") as (c, _):
        r = await c.post("/v1/translate", json={"sentences": SENTENCES})
        total = (await c.get("/v1/usage")).json()
    u = r.json()["usage"]
    assert u["currency"] == "EUR" and total["currency"] == "EUR"
    expected = (
        (u["prompt_tokens"] - u["cached_prompt_tokens"]) * 0.5
        + u["cached_prompt_tokens"] * 0.05
        + u["completion_tokens"] * 1.5
    ) / 1e6
    assert u["cost"] > 0 and math.isclose(u["cost"], expected, rel_tol=0.02)
    # the only request: the totals are its usage
    assert math.isclose(total["cost"], u["cost"], rel_tol=1e-9)
    assert math.isclose(total["baseline_cost"], u["baseline_cost"], rel_tol=1e-9)
    assert total["prices"]["model"] == "tokens"


async def test_baseline_resends_the_prefix_per_sentence_uncached():
    # the warm-up caches the prefix; packing 4 per prompt shares it: both show up as saving
    async with running_gateway(
        translation_memory_size=0, **TOKEN_PRICES, pack_policy="fixed", max_sentences_per_prompt=4, max_wait_ms=50
    ) as (c, app):
        r = await c.post("/v1/translate", json={"sentences": SENTENCES})
        total = (await c.get("/v1/usage")).json()
        template = app.state.gateway.template
        engine = app.state.gateway.engine
    assert r.json()["usage"]["engine_prompts"] == 1.0
    assert total["baseline_prompts"] == len(SENTENCES)
    one_each = sum(engine.count_tokens(template.render([s])) for s in SENTENCES)
    # calibrated by the engine's own count of the packed prompt: the fake engine counts like count_tokens
    assert math.isclose(total["baseline_prompt_tokens"], one_each, rel_tol=0.05)
    assert total["baseline_prompt_tokens"] > 3 * total["prompt_tokens"]
    assert math.isclose(total["baseline_completion_tokens"], total["completion_tokens"], rel_tol=1e-6)
    assert total["baseline_cost"] > total["cost"] > 0
    assert math.isclose(total["saving"], total["baseline_cost"] - total["cost"])


async def test_engine_hour_cost_is_busy_time_shared_by_concurrent_prompts():
    # 1 per second; 4 one-sentence prompts run side by side for 0.3 s: ~0.3 busy seconds, not 1.2
    engine = FakeEngine(delay=0.3)
    async with running_gateway(
        engine, translation_memory_size=0, price_engine_hour=3600.0, warmup=False, max_sentences_per_prompt=1
    ) as (c, _):
        t0 = time.monotonic()
        r = await c.post("/v1/translate", json={"sentences": SENTENCES})
        wall = time.monotonic() - t0
        total = (await c.get("/v1/usage")).json()
    assert total["prices"]["model"] == "engine_hour"
    assert total["engine_prompts"] == 4
    assert 0.28 <= total["engine_busy_seconds"] <= min(wall, 0.6), (total["engine_busy_seconds"], wall)
    assert math.isclose(total["cost"], total["engine_busy_seconds"], rel_tol=1e-9)
    assert math.isclose(r.json()["usage"]["cost"], total["cost"], rel_tol=0.05)
    assert total["baseline_engine_seconds"] > 0 and total["baseline_cost"] > 0


def test_busy_clock_counts_overlap_once():
    now = [100.0]
    s = Stats(clock=lambda: now[0])  # a fake clock: exact, whatever the machine's load
    s.set_prompts_in_flight(1)
    s.set_prompts_in_flight(2)
    now[0] += 0.2
    first = s.record_prompt(sentences=1, requests=1, ok=True, seconds=0.2)
    s.set_prompts_in_flight(1)
    now[0] += 0.1
    second = s.record_prompt(sentences=1, requests=1, ok=True, seconds=0.3)
    s.set_prompts_in_flight(0)
    now[0] += 5.0  # idle time is charged to nobody
    assert math.isclose(first, 0.1, abs_tol=1e-9)  # half of the 0.2 s it shared
    assert math.isclose(second, 0.2, abs_tol=1e-9)  # its half, then 0.1 s alone
    assert math.isclose(s.snapshot().engine_busy_seconds, 0.3, abs_tol=1e-9)


async def test_usage_equals_metrics_and_needs_the_api_key():
    async with running_gateway(translation_memory_size=0, **TOKEN_PRICES, price_engine_hour=2.0, api_key="k") as (c, _):
        auth = {"authorization": "Bearer k"}
        assert (await c.get("/v1/usage")).status_code == 401
        await c.post("/v1/translate", json={"sentences": SENTENCES}, headers=auth)
        u = (await c.get("/v1/usage", headers=auth)).json()
        assert (await c.get("/metrics")).status_code == 401  # with a key set, /metrics and the dashboard need it too
        assert (await c.get("/dashboard/data")).status_code == 401
        m = parse_metrics((await c.get("/metrics", headers=auth)).text)
        d = (await c.get("/dashboard/data", headers=auth)).json()
    assert m["batchmt_cost_total"] == u["cost"] > 0
    assert m["batchmt_baseline_cost_total"] == u["baseline_cost"] > u["cost"]
    assert m["batchmt_baseline_prompts_total"] == u["baseline_prompts"] == 4
    assert m['batchmt_sentences_total{outcome="translated"}'] == u["sentences"] == 4
    assert m["batchmt_engine_busy_seconds_total"] == u["engine_busy_seconds"]
    assert m['batchmt_price_info{currency="USD",model="tokens+engine_hour"}'] == 1
    assert d["usage"]["cost"] == u["cost"] and d["histograms"]["request_seconds"]["count"] == 1


async def test_dashboard_usage_is_the_usage_endpoint_body(tmp_path):
    async with running_gateway(data_dir=str(tmp_path)) as (c, _):
        await c.post("/v1/translate", json={"texts": ["The museum is closed on Mondays."]})
        usage = (await c.get("/v1/usage")).json()
        board = (await c.get("/dashboard/data")).json()["usage"]
    usage.pop("uptime_seconds"), board.pop("uptime_seconds")
    assert board == usage  # batch-job totals included
