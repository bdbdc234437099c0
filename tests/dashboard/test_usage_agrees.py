"""``GET /v1/usage``, ``/metrics`` and ``/dashboard/data`` read the same Stats: after real traffic
they agree number for number, and the responses' own usage adds up to the totals."""

from __future__ import annotations

import math
import uuid

import httpx
import pytest

from helpers import parse_metrics

from .conftest import Live, source_sentences, wait_quiet

pytestmark = pytest.mark.engine

PAIRS = {  # /v1/usage field -> /metrics sample
    "sentences": 'batchmt_sentences_total{outcome="translated"}',
    "failed_sentences": 'batchmt_sentences_total{outcome="failed"}',
    "characters": "batchmt_source_characters_total",
    "prompt_tokens": "batchmt_prompt_tokens_total",
    "cached_prompt_tokens": "batchmt_cached_prompt_tokens_total",
    "completion_tokens": "batchmt_completion_tokens_total",
    "engine_busy_seconds": "batchmt_engine_busy_seconds_total",
    "cost": "batchmt_cost_total",
    "baseline_cost": "batchmt_baseline_cost_total",
    "baseline_prompts": "batchmt_baseline_prompts_total",
    "baseline_prompt_tokens": "batchmt_baseline_prompt_tokens_total",
    "baseline_completion_tokens": "batchmt_baseline_completion_tokens_total",
    "baseline_engine_seconds": "batchmt_baseline_engine_seconds_total",
}


def snapshot(url: str) -> tuple[dict, dict[str, float], dict]:
    """usage, metrics, usage again: retried until nothing moved in between."""
    for _ in range(20):
        u1 = httpx.get(url + "/v1/usage", timeout=30).json()
        m = parse_metrics(httpx.get(url + "/metrics", timeout=30).text)
        d = httpx.get(url + "/dashboard/data", timeout=30).json()
        u2 = httpx.get(url + "/v1/usage", timeout=30).json()
        strip = lambda u: {k: v for k, v in u.items() if k != "uptime_seconds"}
        if strip(u1) == strip(u2) == strip(d["usage"]):
            return u1, m, d
    pytest.fail("the counters kept moving: is other traffic running?")


def test_usage_metrics_and_dashboard_agree_after_real_traffic(live_gateway: Live):
    url = live_gateway.url
    before = httpx.get(url + "/v1/usage", timeout=30).json()
    # sentences no earlier traffic sent (a fresh number each run): none comes from the translation memory
    tag = uuid.uuid4().int % 10**8
    sentences = [
        f"Parcel {tag + k} was delivered to the wrong house on the hill." for k in range(3)
    ] + source_sentences()[-3:]
    r = httpx.post(url + "/v1/translate", json={"sentences": sentences}, timeout=600)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    wait_quiet(url)
    after, metrics, _ = snapshot(url)

    # every total in /v1/usage is exactly what /metrics exports
    for field, sample in PAIRS.items():
        assert sample in metrics, f"{sample} missing from /metrics"
        assert math.isclose(after[field], metrics[sample], rel_tol=1e-12, abs_tol=1e-12), (
            field,
            after[field],
            metrics[sample],
        )
    assert metrics[f'batchmt_price_info{{currency="{after["currency"]}",model="{after["prices"]["model"]}"}}'] == 1
    assert math.isclose(after["saving"], after["baseline_cost"] - after["cost"], abs_tol=1e-12)

    # this request moved the totals by (at least) its own usage; the baseline counted each sentence once
    translated = sum(t["status"] == "ok" for t in r.json()["translations"])
    assert after["sentences"] - before["sentences"] >= translated
    assert after["characters"] - before["characters"] >= usage["characters"]
    assert after["completion_tokens"] - before["completion_tokens"] >= usage["completion_tokens"] - 1
    assert usage["engine_prompts"] > 0  # fresh sentences: engine work, not the translation memory
    # the baseline counts each sentence the engine translated once, as if sent alone
    from_engine = sum(t["status"] == "ok" for t in r.json()["translations"][:3])
    assert after["baseline_prompts"] - before["baseline_prompts"] >= from_engine
    assert after["baseline_prompt_tokens"] > before["baseline_prompt_tokens"]
    # one sentence per prompt re-sends the whole prefix per sentence: more prompt tokens than packed + cached
    assert after["baseline_prompt_tokens"] > after["prompt_tokens"] - after["cached_prompt_tokens"]
    assert usage["currency"] == after["currency"]
    # prices are set for this gateway (tests/conftest.py): real work costs money, and one prompt per sentence
    # without a prefix cache costs more than what batchmt sent
    assert usage["cost"] > 0 and usage["baseline_cost"] > usage["cost"]
