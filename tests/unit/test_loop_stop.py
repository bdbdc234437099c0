"""The repetition-loop rule (engines/loop_stop.py): what is a loop, incrementally and at once, and what the
per-request logits processor does with a looping row."""

from __future__ import annotations

import pytest

from batchmt_server.engines.loop_stop import EXTRA_KEY, LoopRule, RequestLoopStop, TailTracker, repeating_tail

RULE = LoopRule(min_tokens=24, min_repeats=4, max_period=16)


def test_a_tail_of_one_block_repeated_is_a_loop():
    words = list(range(100, 110))
    assert repeating_tail(words + [7] * 24, RULE)  # period 1, 24 tokens
    assert not repeating_tail(words + [7] * 23, RULE)  # one short
    assert repeating_tail(words + [5, 6, 7] * 8, RULE)  # period 3, 24 tokens
    assert not repeating_tail(words + [5, 6, 7] * 7 + [5, 6], RULE)  # 23 tokens
    assert repeating_tail(words + list(range(12)) * 4, RULE)  # period 12: 4 repeats, 48 tokens
    assert not repeating_tail(words + list(range(12)) * 3, RULE)  # 36 tokens but only 3 repeats
    assert not repeating_tail(words + list(range(17)) * 4, RULE)  # period 17 > max_period


def test_repetition_that_ended_or_a_plain_sentence_is_not_a_loop():
    assert not repeating_tail([7] * 30 + [1, 2, 3], RULE)  # the tail moved on
    assert not repeating_tail(list(range(200)), RULE)
    assert not repeating_tail([], RULE)
    # "sehr, sehr, sehr" stays far below the rule
    assert not repeating_tail([40, 41, 42, 41, 42, 41, 42, 43], RULE)


@pytest.mark.parametrize("chunk", [1, 3, 50])
def test_the_tracker_fed_in_pieces_agrees_with_the_whole_list(chunk):
    seq = list(range(30)) + [8, 9] * 11 + [1, 2, 3, 4] + [4] * 30
    tracker, ids = TailTracker(RULE), []
    for i in range(0, len(seq), chunk):
        ids.extend(seq[i : i + chunk])  # the engine's output list only grows
        assert tracker.update(ids) == repeating_tail(ids, RULE), len(ids)


def test_the_request_processor_leaves_only_end_of_sequence_once_the_tail_loops():
    torch = pytest.importorskip("torch")
    assert RequestLoopStop.from_extra_args(None) is None
    assert RequestLoopStop.from_extra_args({"other": 1}) is None
    proc = RequestLoopStop.from_extra_args(LoopRule().extra_args([2]))
    assert proc is not None and LoopRule().extra_args([2]) == {EXTRA_KEY: [24, 4, 16, [2]]}
    logits = torch.arange(10, dtype=torch.float32)
    ids = list(range(100, 120))
    assert proc(ids, logits) is logits  # no loop: the row as it was
    assert proc([*ids, 3], logits) is logits  # a line break: one sentence has no slot guard
    ids += [9] * 24
    out = proc(ids, logits)
    assert int(torch.argmax(out)) == 2 and out[2] == 0.0
    assert torch.isinf(out[torch.arange(10) != 2]).all()


def test_a_source_that_repeats_itself_is_found_and_an_ordinary_one_is_not():
    from batchmt_server.engines.loop_stop import source_repeats

    assert source_repeats("The river flows past the old mill, " * 6, RULE)  # a phrase pasted again and again
    assert source_repeats("Go, go, go, go, go, go, go!", RULE)
    assert not source_repeats("The council met on Monday and approved the budget after a long debate.", RULE)
    # many repeated words, but no repeated stretch
    assert not source_repeats("the cat and the dog and the bird and the fish and the cow and the horse ran", RULE)
    assert not source_repeats("", RULE)


async def test_the_runner_asks_for_no_loop_stop_where_the_source_repeats_itself():
    from batchmt_server.engines.fake import FakeEngine
    from batchmt_server.pipeline.runner import PromptRunner
    from batchmt_server.telemetry.stats import Stats

    engine = FakeEngine()
    runner = PromptRunner(engine, engine.template, Stats())
    for source in ("The baker opened his shop at six.", "Go, go, go, go, go, go, go!"):
        await runner.acquire()
        try:
            await runner.call([source], [10])
        finally:
            runner.release()
    assert [p.loop_stop for p in engine.params] == [LoopRule(), None]
    assert PromptRunner(engine, engine.template, Stats(), loop_rule=None).loop_rule is None


# ---------------------------------------------------------------- packed prompts: the slot guard
NL, BLANK, EOS = 3, 4, 2


def _guard(lines: int) -> RequestLoopStop:
    from batchmt_server.engines.loop_stop import TokenIds

    proc = RequestLoopStop.from_extra_args(LoopRule(lines=lines).extra_args(TokenIds((EOS,), (NL,), (BLANK,))))
    assert proc is not None
    return proc


def test_a_packed_slot_that_loops_ends_its_line_and_the_next_line_counts_afresh():
    torch = pytest.importorskip("torch")
    proc = _guard(lines=2)  # three slots: two line breaks before the end
    ids = list(range(100, 110)) + [9] * 24  # slot 1 loops
    out = proc(ids, torch.zeros(10))
    assert int(torch.argmax(out)) == NL and torch.isinf(out[torch.arange(10) != NL]).all()
    ids += [NL] + list(range(200, 210))  # slot 2, a fresh line: no loop, and no end yet
    out = proc(ids, torch.zeros(10))
    assert not torch.isinf(out[9]) and torch.isinf(out[EOS]) and torch.isinf(out[BLANK])
    ids += [NL]  # the last line begun: not empty (a blank line would stop the completion there)
    out = proc(ids, torch.zeros(10))
    assert torch.isinf(out[NL]) and torch.isinf(out[EOS]) and torch.isinf(out[BLANK])
    ids += list(range(300, 305))  # the last line under way: it may end, and a loop there ends the completion
    assert proc(ids, torch.zeros(10)).isfinite().all()
    out = proc(ids + [8] * 24, torch.zeros(10))
    assert int(torch.argmax(out)) == EOS and torch.isinf(out[NL])


def test_one_sentence_keeps_the_plain_rule_and_engines_without_a_newline_token_get_no_guard():
    from batchmt_server.engines.loop_stop import TokenIds

    assert LoopRule().extra_args(TokenIds((EOS,), (NL,), (BLANK,))) == {EXTRA_KEY: [24, 4, 16, [EOS]]}
    assert LoopRule(lines=3).extra_args(TokenIds((EOS,), (), ())) == {EXTRA_KEY: [24, 4, 16, [EOS]]}
    spec = LoopRule(lines=3).extra_args(TokenIds((EOS,), (NL,), (BLANK,)))
    assert spec == {EXTRA_KEY: [24, 4, 16, [EOS], 3, [NL], [BLANK]]}


def test_token_ids_are_read_off_the_tokenizer():
    from batchmt_server.engines.loop_stop import TokenIds

    class Tok:
        eos_token_id = 1
        vocab = {"\n": 5, "\n\n": 6, "\n\n\n": 7}

        def encode(self, text, add_special_tokens=False):
            return [self.vocab[text]] if text in self.vocab else [5] * len(text)

    assert TokenIds.of(Tok()) == TokenIds((1,), (5,), (6, 7))


def test_a_slot_that_ends_in_a_loop_is_flagged_and_its_neighbours_are_kept():
    from batchmt_server.prompting.parsing import parse_completion

    sources = ["The meeting starts at nine.", "Bring your own lunch, please.", "The rooms are on the second floor."]
    loop = "Bitte bringen Sie Ihr eigenes " + "Mittagessen, " * 14
    completion = f" Das Treffen beginnt um neun.\nGerman 2: {loop}\nGerman 3: Die Räume sind im zweiten Stock.\n\n"
    slots = parse_completion(completion, sources, "stop", echo=False)
    assert [s.reason for s in slots] == [None, "truncated", None]
    # a source that repeats itself may be translated with the repetition
    rep = ["Go, go, go, go, go, go, go, go, go, go, go, go, go, go!"]
    assert parse_completion(" Los, " * 14 + "los!\n\n", rep, "stop", echo=False)[0].reason is None
