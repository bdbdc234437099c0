"""BatchPrompt ensembles (BPE + SEAS) over the fake engine: permutation bookkeeping, consensus,
early stopping, fallback, API wiring. Candidates and confidences are scripted."""

from __future__ import annotations

from collections import Counter

import pytest

from batchmt_server.engines.fake import FakeEngine
from batchmt_server.pipeline.consensus import Candidate, agreement, mbr_select, should_stop, span_confidence
from batchmt_server.pipeline.ensemble import Ensemble, EnsembleConfig, chunk
from batchmt_server.pipeline.runner import PromptRunner
from batchmt_server.prompting.template import Template
from batchmt_server.settings import Settings
from batchmt_server.telemetry.stats import Stats
from helpers import parse_metrics, running_gateway

TEMPLATE = Template.load("en-de-packed")
SOURCES = [
    f"Sentence number {w} is right here."
    for w in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven")
]


def ensemble(engine: FakeEngine, **kw) -> tuple[Ensemble, Stats]:
    stats = Stats()
    runner = PromptRunner(engine, TEMPLATE, stats, max_in_flight=kw.pop("max_prompts_in_flight", 64))
    return Ensemble(runner, stats, **kw), stats


# ------------------------------------------------------------------ consensus
def test_mbr_picks_the_candidate_that_agrees_most_with_the_others():
    cands = [
        Candidate("Der Hund schläft im Garten.", -0.2, 0),
        Candidate("Ein völlig anderer Satz über Katzen.", -0.1, 1),
        Candidate("Der Hund schläft in dem Garten.", -0.3, 2),
        Candidate("Der Hund schläft im Garten!", -0.4, 3),
    ]
    assert mbr_select(cands) == 0
    assert mbr_select(cands, weighted=False) == 0


def test_mbr_duplicates_are_votes_and_confidence_weighs_them():
    a, b = "Das Museum ist montags geschlossen.", "Am Montag hat das Museum zu."
    plain = [Candidate(a, -2.0, 0), Candidate(b, -0.01, 1), Candidate(a, -2.0, 2)]
    assert mbr_select(plain, weighted=False) == 0  # majority
    lopsided = [
        Candidate(a, -5.0, 0),
        Candidate(b, -0.01, 1),
        Candidate(b, -0.01, 2),
        Candidate(a, -5.0, 3),
        Candidate(a, -5.0, 4),
    ]
    assert mbr_select(lopsided, weighted=False) == 0  # 3 against 2
    assert lopsided[mbr_select(lopsided, weighted=True)].text == b  # confident votes outweigh unsure ones


def test_mbr_edge_cases_and_ties():
    assert mbr_select([]) is None
    assert mbr_select([Candidate("Nur einer.", None, 0)]) == 0
    two = [Candidate("Erster Satz hier.", -0.5, 0), Candidate("Zweiter Satz dort.", -0.1, 1)]
    assert mbr_select(two, weighted=False) == 1  # symmetric tie: the more confident one
    same = [Candidate("Gleich.", -0.2, 0), Candidate("Gleich.", -0.2, 1)]
    assert mbr_select(same) == 0  # full tie: the earlier round


def test_should_stop_needs_agreement_and_confidence_in_both_rounds():
    x = Candidate("Der Zug fährt um acht Uhr ab.", -0.1, 0)
    y = Candidate("Der Zug fährt um acht Uhr ab.", -0.2, 1)
    z = Candidate("Morgen regnet es in Berlin sehr stark.", -0.1, 1)
    assert should_stop(x, y, agree=90, confidence=-0.5)
    assert not should_stop(x, z, agree=90, confidence=-0.5)  # disagree
    assert not should_stop(x, Candidate(y.text, -0.9, 1), agree=90, confidence=-0.5)  # unsure
    assert not should_stop(x, Candidate(y.text, None, 1), agree=90, confidence=-0.5)  # no logprobs: never confident
    assert not should_stop(None, y, agree=0, confidence=-10)  # a round without a candidate
    assert agreement(x.text, y.text) == 100


def test_span_confidence_takes_the_tokens_of_the_span():
    #            " Ja"   "\nEnglish"  " 2"  ":" " Nein"
    offsets = [0, 3, 11, 13, 14]
    lps = [-0.1, -1.0, -1.0, -1.0, -0.3]
    assert span_confidence(lps, offsets, 0, 3) == pytest.approx(-0.1)
    assert span_confidence(lps, offsets, 14, 19) == pytest.approx(-0.3)
    assert span_confidence(lps, offsets, 1, 3) == pytest.approx(-0.1)  # a token straddling the start counts
    assert span_confidence(None, None, 0, 3) is None


def test_the_parser_locates_each_translation_in_the_completion():
    srcs = SOURCES[:3]
    text = f" Eins hier.\nEnglish 2: {srcs[1]}\nGerman 2: Zwei dort\nweiter.\nEnglish 3: {srcs[2]}\nGerman 3: Drei."
    spans = [slot.span for slot in TEMPLATE.parse(text, srcs)]
    assert [text[a:b] for a, b in spans] == ["Eins hier.", "Zwei dort\nweiter.", "Drei."]
    assert TEMPLATE.parse(" Nur eins.", srcs[:2])[1].span is None


# ------------------------------------------------------------------ permutation bookkeeping
def test_chunk_is_even_and_keeps_every_index_once():
    assert [len(c) for c in chunk(list(range(9)), 8)] == [5, 4]
    assert [len(c) for c in chunk(list(range(16)), 8)] == [8, 8]
    assert chunk([3, 1, 2], 1) == [[3], [1], [2]]
    assert [len(c) for c in chunk(list(range(4)), 8, tokens=[10, 10, 10, 10], budget=25)] == [2, 2]


async def test_every_sentence_gets_its_own_candidates_back_whatever_the_order():
    eng = FakeEngine(lambda srcs: [f"[de] {s}" for s in srcs])
    ens, stats = ensemble(eng)
    run = await ens.run(SOURCES, EnsembleConfig(rounds=5, pack=4, early_stopping=False))
    assert [r.text for r in run.results] == [f"[de] {s}" for s in SOURCES]
    for src, res in zip(SOURCES, run.results):
        assert [c.round for c in res.candidates] == [0, 1, 2, 3, 4]
        assert all(c.text == f"[de] {src}" for c in res.candidates)
    # round 1 in the original order, later rounds permuted; every round sends every sentence once
    assert run.sent_in_round(0) == list(range(len(SOURCES)))
    for r in range(5):
        assert sorted(run.sent_in_round(r)) == list(range(len(SOURCES)))
    assert any(run.sent_in_round(r) != run.sent_in_round(0) for r in range(1, 5))
    # positions and neighbours change from round to round
    positions = [{i: (k, p) for k, p in enumerate(run.prompts) if p.round == r for i in p.sentences} for r in range(5)]
    assert any(positions[r][0] != positions[0][0] for r in range(1, 5))
    assert stats.ensemble_rounds == 5 and stats.ensemble_sentence_sends == 5 * len(SOURCES)
    assert stats.prompts["ok"] == len(run.prompts) and stats.completion_tokens > 0


async def test_candidates_follow_positions_when_the_model_answers_by_position():
    """A model that answers each slot by its position: whatever the permutation, the answer for a
    position is mapped back to the sentence that sat there."""
    seen: list[list[str]] = []

    def responder(srcs):
        seen.append(list(srcs))
        return [f"Antwort für {s}" for s in srcs]

    ens, _ = ensemble(FakeEngine(responder))
    run = await ens.run(SOURCES[:8], EnsembleConfig(rounds=3, pack=3, early_stopping=False))
    for src, res in zip(SOURCES, run.results):
        assert {c.text for c in res.candidates} == {f"Antwort für {src}"}
    assert sum(len(p) for p in seen) == 3 * 8


async def test_flagged_slots_are_no_candidates_and_the_consensus_ignores_them():
    calls = Counter()

    def responder(srcs):  # copies the source (flagged 'copy') the first time it sees a sentence
        out = []
        for s in srcs:
            calls[s] += 1
            out.append(s if calls[s] == 1 else f"[de] {s}")
        return out

    ens, stats = ensemble(FakeEngine(responder))
    run = await ens.run(SOURCES[:4], EnsembleConfig(rounds=3, pack=4, early_stopping=False))
    for src, res in zip(SOURCES, run.results):
        assert res.text == f"[de] {src}"
        assert [c.round for c in res.candidates] == [1, 2]
        assert res.slots[0] == (0, src, "copy")
    assert stats.flagged_slots["copy"] == 4


async def test_one_sentence_prompts_sample_after_the_first_round():
    eng = FakeEngine()
    ens, _ = ensemble(eng)
    await ens.run(SOURCES[:2], EnsembleConfig(rounds=3, pack=1, early_stopping=False, temperature=0.7))
    temps = [p.temperature for p in eng.params]
    assert temps[:2] == [0.0, 0.0] and temps[2:] == [0.7] * 4
    seeds = [p.seed for p in eng.params[2:]]
    assert None not in seeds and len(set(seeds)) == 4
    assert all(p.logprobs for p in eng.params)


# ------------------------------------------------------------------ early stopping
VARIANTS = [
    "Das Wetter ist heute schön",
    "Ich gehe morgen in die Stadt",
    "Der Zug hat leider Verspätung",
    "Wir essen gerne italienisch",
    "Sie liest ein spannendes Buch",
]


async def test_confident_agreeing_sentences_leave_later_rounds():
    """Sentences 0-3 are answered confidently the same way each time; 4-7 change every round."""
    calls = Counter()
    unsure = set(SOURCES[4:8])

    def responder(srcs):
        out = []
        for s in srcs:
            calls[s] += 1
            out.append(f"{VARIANTS[calls[s] - 1]} ({s.split()[2]})" if s in unsure else f"[de] {s}")
        return out

    eng = FakeEngine(responder)
    eng.confidence = lambda target: -0.05
    ens, stats = ensemble(eng)
    run = await ens.run(SOURCES[:8], EnsembleConfig(rounds=5, pack=4, agree=95, confidence=-0.5))
    stopped = {i for i, r in enumerate(run.results) if r.stopped_early}
    assert stopped == {0, 1, 2, 3}
    assert sorted(run.sent_in_round(0)) == sorted(run.sent_in_round(1)) == list(range(8))
    for r in (2, 3, 4):  # stopped sentences are not re-sent; the rest continue in smaller batches
        assert sorted(run.sent_in_round(r)) == [4, 5, 6, 7]
    assert all(calls[s] == 2 for s in SOURCES[:4]) and all(calls[s] == 5 for s in SOURCES[4:8])
    assert [r.rounds for r in run.results] == [2, 2, 2, 2, 5, 5, 5, 5]
    assert stats.early_stopped_sentences == 4 and stats.ensemble_sentence_sends == 8 + 8 + 3 * 4
    assert run.results[0].text == f"[de] {SOURCES[0]}"
    assert run.results[0].usage.prompt_tokens < run.results[4].usage.prompt_tokens  # fewer rounds, less cost


async def test_low_confidence_keeps_a_sentence_in_the_rounds():
    eng = FakeEngine()
    eng.confidence = lambda target: -2.0  # the same answers, but unsure
    ens, stats = ensemble(eng)
    run = await ens.run(SOURCES[:4], EnsembleConfig(rounds=3, pack=4, agree=90, confidence=-0.5))
    assert not any(r.stopped_early for r in run.results) and run.rounds_run == 3
    assert stats.early_stopped_sentences == 0


async def test_early_stopping_off_runs_every_round():
    ens, _ = ensemble(FakeEngine())
    run = await ens.run(SOURCES[:4], EnsembleConfig(rounds=3, pack=2, early_stopping=False))
    assert all(r.rounds == 3 for r in run.results) and run.rounds_run == 3


async def test_engine_errors_cost_a_round_not_the_sentence():
    eng = FakeEngine()
    eng.fail_next = 1
    ens, stats = ensemble(eng)
    run = await ens.run(SOURCES[:3], EnsembleConfig(rounds=3, pack=4, early_stopping=False))
    assert [r.text for r in run.results] == [f"[de] {s}" for s in SOURCES[:3]]
    assert stats.prompts["error"] == 1 and all(len(r.candidates) == 2 for r in run.results)


def test_config_rejects_even_rounds():
    with pytest.raises(ValueError):
        EnsembleConfig(rounds=4)
    with pytest.raises(ValueError):
        Settings(ensemble_rounds_best=4)


# ------------------------------------------------------------------ through the API
async def test_quality_best_runs_rounds_and_the_signature_says_so():
    eng = FakeEngine()
    async with running_gateway(eng, ensemble_pack=4, ensemble_rounds_best=5) as (c, app):
        fast = await c.post("/v1/translate", json={"sentences": SOURCES[:2]})
        r = await c.post("/v1/translate", json={"sentences": SOURCES[:6], "quality": "best"})
        metrics = parse_metrics((await c.get("/metrics")).text)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [t["text"] for t in body["translations"]] == [f"[de] {s}" for s in SOURCES[:6]]
    assert "|quality:" not in fast.json()["signature"]
    assert body["signature"].startswith(fast.json()["signature"] + "|quality:best|ens:k5,p4,es:on,")
    assert metrics["batchmt_ensemble_rounds_total"] == 2  # the fake's answers agree with confidence: stop after 2
    assert metrics["batchmt_early_stopped_sentences_total"] == 6
    assert metrics["batchmt_ensemble_sentence_sends_total"] == 12
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["engine_prompts"] == pytest.approx(4, abs=0.01)
    assert app.state.gateway.ensemble.history[-1].rounds_run == 2


async def test_quality_is_validated():
    async with running_gateway(FakeEngine()) as (c, _):
        r = await c.post("/v1/translate", json={"sentences": ["Hello there you."], "quality": "perfect"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "quality"


async def test_a_sentence_without_any_candidate_falls_back_to_the_batcher_in_its_own_slot():
    bad = SOURCES[1]

    def responder(srcs):  # in every ensemble round (all three in one prompt) the model copies one source
        return [s if s == bad and len(srcs) > 1 else f"[de] {s}" for s in srcs]

    eng = FakeEngine(responder)
    async with running_gateway(
        eng,
        ensemble_pack=4,
        ensemble_rounds_balanced=3,
        pack_policy="fixed",
        max_sentences_per_prompt=4,
        ensemble_early_stopping=False,
    ) as (c, _):
        r = await c.post("/v1/translate", json={"sentences": SOURCES[:3], "quality": "balanced"})
    body = r.json()
    assert [t["text"] for t in body["translations"]] == [f"[de] {s}" for s in SOURCES[:3]]
    assert body["usage"]["retries"] == 1  # the fallback
    assert [bad] in eng.prompts  # sent alone at last


def test_ensemble_pack_follows_the_calibrated_limit_unless_set():
    from batchmt_server.pipeline.translator import Translator
    from batchmt_server.prompting.template import Template
    from batchmt_server.settings import Settings
    from batchmt_server.telemetry.stats import Stats

    tpl = Template.load("en-de-packed")
    ens = object()  # only its presence matters to ensemble_config
    s = Settings(engine="fake", _env_file=None)
    assert (
        Translator(None, Stats(), s, "m", tpl, calibrated_pack_limit=1, ensemble=ens).ensemble_config("best").pack == 1
    )
    assert (
        Translator(None, Stats(), s, "m", tpl, calibrated_pack_limit=None, ensemble=ens).ensemble_config("best").pack
        == 8
    )
    explicit = s.model_copy(update={"ensemble_pack": 4})
    assert (
        Translator(None, Stats(), explicit, "m", tpl, calibrated_pack_limit=1, ensemble=ens)
        .ensemble_config("best")
        .pack
        == 4
    )
    assert Translator(None, Stats(), s, "m", tpl, calibrated_pack_limit=1, ensemble=ens).ensemble_config("fast") is None
