"""A template without echoes (``echo = false``, prompts/en-de-list.toml): rendered, stopped, parsed and served."""

from __future__ import annotations

import asyncio

from batchmt_server.engines.fake import FakeEngine
from batchmt_server.pipeline.batcher import Batcher
from batchmt_server.pipeline.runner import PromptRunner
from batchmt_server.prompting.chat import ChatTemplate
from batchmt_server.prompting.template import Template
from batchmt_server.selftrain.improve import completion_for
from batchmt_server.telemetry.stats import Stats

SIX = [f"Sentence number {i} of the packed test." for i in range(1, 7)]
SOURCES = ["The library opens at nine today.", "Please close the window behind you.", "We met at the old station."]


def test_the_list_template_renders_no_echo_and_ends_at_the_first_label() -> None:
    t = Template.load("en-de-list")
    assert not t.echo and Template.load("en-de-zero").echo
    prompt = t.render(SOURCES)
    assert prompt.endswith("Translations:\nGerman 1:")
    assert prompt.count(SOURCES[0]) == 1  # listed once, never echoed
    assert "English 1:" not in prompt
    assert "\nGerman 1:" in t.stop and "\nGerman 4:" in t.stop_for(3) and len(t.stop_for(3)) <= 4


def test_without_echo_the_budget_is_smaller() -> None:
    assert Template.load("en-de-list").max_tokens([20, 20]) < Template.load("en-de-zero").max_tokens([20, 20])


def test_translations_alone_parse_and_gaps_or_copies_are_still_flagged() -> None:
    t = Template.load("en-de-list")
    good = (
        " Die Bibliothek öffnet heute um neun.\nGerman 2: Bitte schließ das Fenster.\n"
        "German 3: Wir trafen uns am alten Bahnhof.\n\n"
    )
    assert [s.reason for s in t.parse(good, SOURCES)] == [None, None, None]
    skipped = " Die Bibliothek öffnet heute um neun.\nGerman 3: Wir trafen uns am alten Bahnhof."
    assert [s.reason for s in t.parse(skipped, SOURCES)][1] == "missing"
    copy = " Die Bibliothek öffnet heute.\nGerman 2: Please close the window behind you.\nGerman 3: Wir trafen uns."
    assert [s.reason for s in t.parse(copy, SOURCES)] == [None, "copy", None]
    # the echo layout flags the same translations-only answer: it has no echoes
    echo = Template.load("en-de-zero")
    assert [s.reason for s in echo.parse(good, SOURCES)][1:] == ["echo", "echo"]


def test_selftrain_completions_follow_the_layout() -> None:
    t = Template.load("en-de-list")
    pairs = list(zip(SOURCES, ["A.", "B.", "C."], strict=True))
    completion = completion_for(t, pairs)
    assert completion == " A.\nGerman 2: B.\nGerman 3: C.\n\n"
    assert [s.text for s in t.parse(completion, SOURCES)] == ["A.", "B.", "C."]


def test_the_chat_form_keeps_the_layout() -> None:
    t = Template.load("en-de-list")

    def render(messages, **_):  # a minimal chat template: turns as "<role>: content" lines, assistant opened
        return "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages) + "<assistant>\n"

    chat = ChatTemplate.from_renderer(t, render)
    assert chat.render(SOURCES).endswith("<assistant>\nGerman 1:")


async def test_packed_prompts_without_echo_round_trip_through_the_batcher() -> None:
    t = Template.load("en-de-list")
    engine = FakeEngine(template=t)
    runner = PromptRunner(engine, t, Stats(), max_in_flight=1)
    batcher = Batcher(runner, Stats(), max_wait_ms=20, policy="fixed", max_sentences_per_prompt=4)
    batcher.start()
    try:
        outs = await asyncio.gather(*batcher.submit(SIX, request_id=1))
    finally:
        await batcher.close()
    assert [o.text for o in outs] == [f"[de] {s}" for s in SIX]
    assert [len(p) for p in engine.prompts] == [4, 2]  # packed, and every slot parsed: nothing re-sent
