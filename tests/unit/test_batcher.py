"""The micro-batcher over the fake engine: windows, packing, caps, cancellation, repairs."""

from __future__ import annotations

import asyncio
import math

import pytest

from batchmt_server.engines.fake import FakeEngine
from batchmt_server.pipeline.batcher import Batcher, QueueFull
from batchmt_server.pipeline.runner import PromptRunner
from batchmt_server.prompting.template import Template
from batchmt_server.telemetry.stats import Stats

TEMPLATE = Template.load("en-de-packed")


_started: list[Batcher] = []


@pytest.fixture(autouse=True)
async def _close_batchers():
    """Every batcher a test starts is closed after it, pass or fail."""
    yield
    while _started:
        await _started.pop().close()


def make(engine: FakeEngine | None = None, **kw) -> tuple[Batcher, FakeEngine, Stats]:
    engine = engine or FakeEngine()
    stats = Stats()
    kw.setdefault("max_wait_ms", 20)
    runner = PromptRunner(engine, TEMPLATE, stats, max_in_flight=kw.pop("max_prompts_in_flight", 64))
    b = Batcher(runner, stats, **kw)
    b.start()
    _started.append(b)
    return b, engine, stats


async def test_window_packs_sentences_of_several_requests_into_one_prompt():
    b, eng, stats = make(policy="fixed", max_sentences_per_prompt=8)
    f1 = b.submit(["A first sentence here.", "A second sentence here."], request_id=1)
    f2 = b.submit(["A third sentence here."], request_id=2)
    out = await asyncio.gather(*f1, *f2)
    assert [o.text for o in out] == [
        "[de] A first sentence here.",
        "[de] A second sentence here.",
        "[de] A third sentence here.",
    ]
    assert eng.prompts == [["A first sentence here.", "A second sentence here.", "A third sentence here."]]
    assert stats.multi_request_prompts == 1


async def test_window_starts_at_first_item_and_closes_early_when_a_prompt_is_full():
    b, eng, _ = make(policy="fixed", max_sentences_per_prompt=2, max_wait_ms=10_000)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    futs = b.submit(["One sentence.", "Two sentence."], request_id=1)
    await asyncio.gather(*futs)
    assert loop.time() - t0 < 5  # did not wait out the 10 s window: the prompt was full


async def test_token_budget_splits_prompts():
    long = "word " * 60  # ~95 tokens by the fake engine's estimate
    b, eng, _ = make(policy="fixed", max_sentences_per_prompt=8, max_prompt_tokens=200)
    out = await asyncio.gather(*b.submit([long + "a", long + "b", long + "c"], request_id=1))
    assert all(o.text for o in out)
    assert [len(p) for p in eng.prompts] == [2, 1]


async def test_adaptive_policy_sends_singles_while_slots_are_free():
    b, eng, _ = make(policy="adaptive", max_sentences_per_prompt=8, max_prompts_in_flight=16)
    await asyncio.gather(*b.submit([f"Sentence number {i} here." for i in range(6)], request_id=1))
    assert all(len(p) == 1 for p in eng.prompts) and len(eng.prompts) == 6


async def test_adaptive_policy_packs_when_the_queue_outgrows_the_slots():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    b, _, stats = make(eng, policy="adaptive", max_sentences_per_prompt=8, max_prompts_in_flight=2)
    first = b.submit(["Blocker one is here.", "Blocker two is here."], request_id=1)
    while len(eng.prompts) < 2:  # both slots now taken
        await asyncio.sleep(0.005)
    rest = [b.submit([f"Queued sentence {i} here."], request_id=10 + i) for i in range(12)]
    await asyncio.sleep(0.05)
    assert stats.prompts_in_flight == 2  # the semaphore holds the third prompt back
    eng.gate.set()
    await asyncio.gather(*first, *(f for fs in rest for f in fs))
    assert max(len(p) for p in eng.prompts[2:]) > 1
    assert stats.multi_request_prompts >= 1


async def test_adaptive_policy_skips_the_window_while_every_sentence_has_a_free_place():
    b, eng, _ = make(policy="adaptive", max_sentences_per_prompt=8, max_wait_ms=10_000, max_prompts_in_flight=4)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    out = await asyncio.gather(*b.submit(["Only one sentence waits."], request_id=1))
    assert out[0].text == "[de] Only one sentence waits."
    assert loop.time() - t0 < 5  # sent at once, not after the 10 s window: it would have gone alone anyway
    fixed, _, _ = make(policy="fixed", max_sentences_per_prompt=8, max_wait_ms=300, max_prompts_in_flight=4)
    t0 = loop.time()
    await asyncio.gather(*fixed.submit(["Only one sentence waits."], request_id=1))
    assert loop.time() - t0 >= 0.25  # the fixed policy waits its window to fill the prompt


async def test_adaptive_policy_keeps_the_window_when_places_run_short():
    """With one free place and more sentences queued than places, the window lets the pack fill up."""
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    b, _, _ = make(eng, policy="adaptive", max_sentences_per_prompt=8, max_wait_ms=200, max_prompts_in_flight=2)
    first = b.submit(["The blocker is in flight."], request_id=1)
    while len(eng.prompts) < 1:
        await asyncio.sleep(0.005)
    two = b.submit(["Queued sentence one here.", "Queued sentence two here."], request_id=2)
    await asyncio.sleep(0.05)
    more = b.submit([f"Late sentence {i} here." for i in range(3)], request_id=3)  # inside the window
    while len(eng.prompts) < 2:
        await asyncio.sleep(0.005)
    eng.gate.set()
    await asyncio.gather(*first, *two, *more)
    assert eng.prompts[1] == [  # the late sentences joined the pack the window held open
        "Queued sentence one here.",
        "Queued sentence two here.",
        "Late sentence 0 here.",
        "Late sentence 1 here.",
        "Late sentence 2 here.",
    ]


async def test_cancelled_callers_are_dropped_before_sending():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    b, _, stats = make(eng, policy="fixed", max_sentences_per_prompt=1, max_prompts_in_flight=1)
    blocker = b.submit(["Blocking sentence is here."], request_id=1)
    while not eng.prompts:
        await asyncio.sleep(0.005)
    gone = b.submit(["Nobody waits for this one."], request_id=2)
    kept = b.submit(["Somebody waits for this one."], request_id=3)
    gone[0].cancel()
    eng.gate.set()
    await asyncio.gather(*blocker, *kept)
    sent = [s for p in eng.prompts for s in p]
    assert "Nobody waits for this one." not in sent and "Somebody waits for this one." in sent
    assert stats.sentences["cancelled"] == 1


async def test_abandoned_sentences_leave_the_pending_map():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    b, _, stats = make(eng, policy="fixed", max_sentences_per_prompt=1, max_prompts_in_flight=1)
    first = b.submit(["The one that goes first."], request_id=1)
    await asyncio.sleep(0.05)  # it is in flight, holding the only place
    for round_ in range(4):
        futs = b.submit([f"Queued sentence {round_}-{k} here." for k in range(50)], request_id=2 + round_)
        for f in futs:
            f.cancel()  # the callers go away while their sentences wait
    eng.gate.set()
    await asyncio.gather(*first)
    for _ in range(100):
        if not b._queue:
            break
        await asyncio.sleep(0.01)
    assert len(b._queue) == 0 and len(b._pending) == 0
    assert stats.sentences["cancelled"] == 200


async def test_queue_is_bounded():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    b, _, _ = make(eng, max_queue_sentences=3, max_prompts_in_flight=1, policy="fixed", max_sentences_per_prompt=1)
    b.submit(["a b c", "d e f", "g h i"], request_id=1)
    with pytest.raises(QueueFull) as exc:
        b.submit(["j k l", "m n o"], request_id=2)
    assert exc.value.retry_after >= 1
    eng.gate.set()


async def test_a_bad_slot_is_repaired_alone_and_never_takes_a_neighbours_text():
    def responder(srcs):  # leaves the second slot empty whenever more than one sentence is packed
        return [f"[de] {s}" if i != 1 or len(srcs) == 1 else "" for i, s in enumerate(srcs)]

    b, eng, stats = make(FakeEngine(responder), policy="fixed", max_sentences_per_prompt=4)
    srcs = ["Alpha sentence one.", "Bravo sentence two.", "Charlie sentence three.", "Delta sentence four."]
    out = await asyncio.gather(*b.submit(srcs, request_id=1))
    assert [o.text for o in out] == [f"[de] {s}" for s in srcs]
    assert stats.flagged_slots["empty"] >= 1 and stats.resent_sentences["empty"] >= 1
    assert out[1].usage.resent >= 1 and out[0].usage.resent == 0
    assert [1] in [[len(p)] for p in eng.prompts]  # the repair went down to one sentence per prompt


async def test_a_sentence_that_never_parses_fails_in_its_own_slot():
    def responder(srcs):
        return ["" if "poison" in s else f"[de] {s}" for s in srcs]

    b, _, stats = make(FakeEngine(responder), policy="fixed", max_sentences_per_prompt=4, max_attempts=2)
    out = await asyncio.gather(*b.submit(["Fine sentence one.", "The poison pill.", "Fine sentence three."], 1))
    assert out[0].text == "[de] Fine sentence one." and out[2].text == "[de] Fine sentence three."
    assert out[1].text is None and out[1].error_code == "unparseable_output"


async def test_engine_errors_are_retried_then_reported_per_slot():
    eng = FakeEngine()
    eng.fail_next = 1
    b, _, stats = make(eng, policy="fixed", max_sentences_per_prompt=2)
    out = await asyncio.gather(*b.submit(["First one here.", "Second one here."], 1))
    assert [o.text for o in out] == ["[de] First one here.", "[de] Second one here."]
    assert stats.prompts["error"] == 1 and stats.resent_sentences["engine_error"] == 2
    eng.fail_next = 100
    out = await asyncio.gather(*b.submit(["Third one here."], 2))
    assert out[0].text is None and out[0].error_code == "engine_error"


async def test_usage_is_shared_by_the_sentences_of_a_prompt():
    b, _, stats = make(policy="fixed", max_sentences_per_prompt=4)
    out = await asyncio.gather(*b.submit(["Short one.", "A somewhat longer second sentence."], 1))
    assert sum(o.usage.prompt_tokens for o in out) == pytest.approx(stats.prompt_tokens)
    assert out[1].usage.prompt_tokens > out[0].usage.prompt_tokens
    assert sum(o.usage.engine_prompts for o in out) == pytest.approx(1.0)


async def test_identical_sentences_in_flight_share_one_engine_slot():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    b, _, stats = make(eng, policy="fixed", max_sentences_per_prompt=8)
    a = b.submit(["The same sentence again.", "Another one here."], request_id=1)
    c = b.submit(["The same sentence again."], request_id=2)
    eng.gate.set()
    out = await asyncio.gather(*a, *c)
    assert out[0].text == out[2].text == "[de] The same sentence again."
    assert sum(p.count("The same sentence again.") for p in eng.prompts) == 1
    assert out[2].coalesced and out[2].usage.prompt_tokens == 0 and out[0].usage.prompt_tokens > 0
    assert stats.reused["coalesced"] == 1


async def test_a_coalesced_caller_that_leaves_does_not_cancel_the_other():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    b, _, _ = make(eng, policy="fixed", max_sentences_per_prompt=1, max_prompts_in_flight=1)
    blocker = b.submit(["Blocking sentence is here."], request_id=1)
    while not eng.prompts:
        await asyncio.sleep(0.005)
    first = b.submit(["Shared sentence is here."], request_id=2)
    second = b.submit(["Shared sentence is here."], request_id=3)
    first[0].cancel()
    eng.gate.set()
    out = await asyncio.gather(*blocker, *second)
    assert out[1].text == "[de] Shared sentence is here."


async def test_an_english_copy_gets_a_sampled_second_try_and_is_kept_when_that_translates():
    eng = FakeEngine()
    # greedy decoding copies the English source; sampling translates
    eng.responder = lambda srcs: list(srcs) if eng.last_params.temperature == 0 else [f"[de] {s}" for s in srcs]
    b, _, stats = make(eng, policy="fixed", max_sentences_per_prompt=1, suspect_second_try=True)
    (out,) = await asyncio.gather(*b.submit(["The weather will be warm all week long."], request_id=1))
    assert out.text == "[de] The weather will be warm all week long." and out.suspect is None and not out.flagged
    assert [p.temperature > 0 for p in eng.params] == [False, True]  # the second try was sampled
    assert stats.resent_sentences["copy"] == 1 and not stats.suspect


async def test_a_sentence_still_copied_after_the_second_try_is_delivered_as_suspect_not_ok():
    eng = FakeEngine(responder=lambda srcs: list(srcs))  # the model only ever copies
    b, _, stats = make(eng, policy="fixed", max_sentences_per_prompt=1, suspect_second_try=True)
    (out,) = await asyncio.gather(*b.submit(["The weather will be warm all week long."], request_id=1))
    assert out.text == "The weather will be warm all week long." and out.suspect == "copy"
    assert len(eng.prompts) == 2 and stats.suspect["copy"] == 1
    assert out.flagged  # the Translator remembers unflagged outcomes only: a suspect answer never


async def test_a_translation_asked_for_carries_the_models_confidence_in_it():
    eng = FakeEngine()
    eng.confidence = lambda target: -0.5 if "second" in target else -0.1  # per translation line, as the model says
    b, _, _ = make(eng, policy="fixed", max_sentences_per_prompt=4)
    sents = ["A first sentence here.", "A second sentence here."]
    out = await asyncio.gather(*b.submit(sents, request_id=1, logprobs=True))
    assert [o.confidence for o in out] == pytest.approx([math.exp(-0.1), math.exp(-0.5)])
    assert all(p.logprobs for p in eng.params)


async def test_without_a_caller_asking_the_engine_is_not_asked_for_log_probabilities():
    """Log-probabilities cost the engine a log-softmax over the vocabulary at every step: only on request."""
    eng = FakeEngine()
    b, _, _ = make(eng, policy="fixed", max_sentences_per_prompt=1)
    out = await asyncio.gather(*b.submit(["Nobody asked for this one."], request_id=1))
    assert out[0].text == "[de] Nobody asked for this one." and out[0].confidence is None
    assert [p.logprobs for p in eng.params] == [False]
    asked = await asyncio.gather(*b.submit(["Somebody asked for this one."], request_id=2, logprobs=True))
    assert asked[0].confidence is not None and [p.logprobs for p in eng.params] == [False, True]


async def test_without_the_second_try_a_copy_is_delivered_as_suspect_at_once():
    eng = FakeEngine(responder=lambda srcs: list(srcs))
    b, _, stats = make(eng, policy="fixed", max_sentences_per_prompt=1)  # the default: no extra engine work
    (out,) = await asyncio.gather(*b.submit(["The weather will be warm all week long."], request_id=1))
    assert out.suspect == "copy" and out.text == "The weather will be warm all week long."
    assert len(eng.prompts) == 1 and stats.suspect["copy"] == 1


def test_the_gateway_keeps_twice_the_engines_sequence_slots_in_flight_by_default():
    """A full batch waits in vLLM's own queue, so a finished sequence's place is refilled at once; an engine that
    does not say how many sequences it runs (HTTP, fake) gets 64."""
    from types import SimpleNamespace

    from batchmt_server.pipeline.gateway import default_prompts_in_flight

    assert default_prompts_in_flight(SimpleNamespace(max_num_seqs=64)) == 128  # type: ignore[arg-type]
    assert default_prompts_in_flight(FakeEngine()) == 64


async def test_a_one_sentence_repair_is_sampled_and_goes_before_the_engines_waiting_prompts():
    """Alone in its prompt, a flagged slot's greedy re-send would be the same prompt with the same answer: the
    repair is sampled, and it goes to the engine ahead of the prompts waiting there (its caller waited once)."""
    eng = FakeEngine()

    def answer(srcs: list[str]):
        assert eng.last_params is not None
        return "\n" if eng.last_params.temperature == 0 else [f"[de] {s}" for s in srcs]

    eng.responder = answer
    b, _, stats = make(eng, policy="fixed", max_sentences_per_prompt=1)
    (out,) = await asyncio.gather(*b.submit(["A sentence the model fumbles."], request_id=1))
    assert out.text == "[de] A sentence the model fumbles." and out.error_code is None
    assert [(p.temperature > 0, p.priority) for p in eng.params] == [(False, 0), (True, -1)]
    assert sum(stats.resent_sentences.values()) == 1


async def test_a_failed_engine_call_is_retried_greedy():
    eng = FakeEngine()
    eng.fail_next = 1
    b, _, _ = make(eng, policy="fixed", max_sentences_per_prompt=1)
    (out,) = await asyncio.gather(*b.submit(["The engine hiccups once."], request_id=1))
    assert out.text == "[de] The engine hiccups once."
    assert [p.temperature for p in eng.params] == [0.0, 0.0]  # not the output's fault: the same prompt again
