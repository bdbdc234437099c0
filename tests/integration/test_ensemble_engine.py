"""quality=best on the real vLLM engine (in-process, embedded model): permutation rounds run,
sentences that stopped early are not sent again, and every result stays in its own slot."""

from __future__ import annotations

import re

import httpx
import pytest

from helpers import parse_metrics

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# Each sentence has a number no other one has: a translation holding another's number leaked.
SENTENCES = [
    "The train to Hamburg leaves from platform 7.",
    "My grandmother turned 93 last week.",
    "The bridge is 240 meters long.",
    "We ordered 12 pizzas for the party.",
    "The museum was founded in 1887.",
    "Room 415 is on the fourth floor.",
]


async def test_quality_best_runs_permutation_rounds_with_early_stopping(gateway_app):
    gw = gateway_app.state.gateway
    s = gw.settings
    saved = {
        k: getattr(s, k)
        for k in (
            "ensemble_rounds_best",
            "ensemble_pack",
            "ensemble_agreement",
            "ensemble_confidence",
            "ensemble_early_stopping",
        )
    }
    # K=3, two prompts of 3 per round; lenient thresholds, so that every sentence with a valid
    # candidate in rounds 1 and 2 stops there and only the others reach round 3
    s.ensemble_rounds_best, s.ensemble_pack, s.ensemble_early_stopping = 3, 3, True
    s.ensemble_agreement, s.ensemble_confidence = 0.0, -100.0
    try:
        transport = httpx.ASGITransport(app=gateway_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=900) as client:
            before = parse_metrics((await client.get("/metrics")).text)
            r = await client.post("/v1/translate", json={"sentences": SENTENCES, "quality": "best"})
            after = parse_metrics((await client.get("/metrics")).text)
    finally:
        for k, v in saved.items():
            setattr(s, k, v)

    assert r.status_code == 200, r.text
    body = r.json()
    assert "|quality:best|ens:k3,p3,es:on," in body["signature"]
    run = gw.ensemble.history[-1]
    assert run.config.rounds == 3 and len(run.results) == len(SENTENCES)

    # rounds ran: round 1 in the original order, every round's sends counted in the metrics
    assert run.rounds_run >= 2
    assert run.sent_in_round(0) == list(range(len(SENTENCES)))
    assert sorted(run.sent_in_round(1)) == list(range(len(SENTENCES)))
    delta = {
        k: after[k] - before[k]
        for k in (
            "batchmt_ensemble_rounds_total",
            "batchmt_ensemble_sentence_sends_total",
            "batchmt_early_stopped_sentences_total",
        )
    }
    assert delta["batchmt_ensemble_rounds_total"] == run.rounds_run
    assert delta["batchmt_ensemble_sentence_sends_total"] == sum(
        len(run.sent_in_round(k)) for k in range(run.rounds_run)
    )

    # stopped sentences leave the later rounds: round 3 carries exactly the ones that did not stop
    stopped = {i for i, res in enumerate(run.results) if res.stopped_early}
    two_valid = {i for i, res in enumerate(run.results) if {0, 1} <= {c.round for c in res.candidates}}
    assert stopped == two_valid  # thresholds at their most lenient: agreement and confidence always pass
    assert delta["batchmt_early_stopped_sentences_total"] == len(stopped)
    third = run.sent_in_round(2)
    assert set(third) == set(range(len(SENTENCES))) - stopped
    for i, res in enumerate(run.results):
        assert res.rounds == (2 if i in stopped else 3)

    # results stay in order: one slot per input, no neighbour's number in any translation
    assert len(body["translations"]) == len(SENTENCES)
    numbers = [re.findall(r"\d+", x)[0] for x in SENTENCES]
    kept = 0
    for k, t in enumerate(body["translations"]):
        if t["status"] != "ok":
            continue
        nums = set(re.findall(r"\d+", t["text"]))
        assert not nums & (set(numbers) - {numbers[k]}), f"slot {k} holds another sentence's number: {t['text']}"
        kept += numbers[k] in nums
    assert sum(t["status"] == "ok" for t in body["translations"]) >= len(SENTENCES) - 1
    assert kept >= len(SENTENCES) // 2
    assert body["usage"]["engine_prompts"] >= 2  # at least two rounds of prompts were paid for
