"""Stop a degenerate repetition loop in the engine, at the step it becomes one.

A small model under greedy decoding often falls into a loop ("Taste-Taste-Taste-...", "in der Vergangenheit in der
Vergangenheit ...") and decodes it to the token budget. On the bench set (Gemma-3-270M, one sentence per prompt)
8% of the completions did, and they were 31% of all decoded tokens: engine time for text the parser then flags as
truncated anyway. The gateway asks vLLM to end such a completion once its last tokens are one block of at most
``max_period`` tokens repeated ``min_repeats`` times, covering at least ``min_tokens`` tokens (:class:`LoopRule`).

- :func:`repeating_tail` is the rule on a token list; :class:`TailTracker` keeps it incrementally (a few
  comparisons per token, in the engine core's sampling loop).
- :class:`~batchmt_server.engines.loop_stop_vllm.LoopStop` is a vLLM logits processor (in the engine arguments:
  ``logits_processors=[LoopStop]``): for a request whose ``SamplingParams.extra_args`` carry :data:`EXTRA_KEY` (the
  rule and the end-of-sequence token ids) it leaves only the end-of-sequence tokens possible once the tail is a
  loop (:class:`RequestLoopStop`). Other requests are not touched (plain vLLM in the benchmark does not ask).
- The engine wrapper runs :func:`repeating_tail` on the finished completion's tokens to tell a loop-stopped
  completion from a natural end: it is reported with ``finish_reason="length"`` (cut short, as the budget would
  have cut it), so the parser flags it like any truncated slot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["EXTRA_KEY", "LoopRule", "RequestLoopStop", "TailTracker", "repeating_tail", "source_repeats"]

_UNIT = re.compile(r"\w+|[^\w\s]")

#: the key in ``SamplingParams.extra_args``: ``[min_tokens, min_repeats, max_period, [eos ids...]]``
EXTRA_KEY = "batchmt_loop_stop"


@dataclass(frozen=True)
class LoopRule:
    """A tail of one block of 1..``max_period`` tokens repeated ``min_repeats`` times or more, ``min_tokens`` long or
    more, is a loop. The defaults need ~24 tokens of pure repetition: a translation that repeats a word for
    emphasis ("sehr, sehr, sehr") is far from it."""

    min_tokens: int = 24
    min_repeats: int = 4
    max_period: int = 16

    def extra_args(self, eos_ids: Sequence[int]) -> dict[str, Any]:
        return {EXTRA_KEY: [self.min_tokens, self.min_repeats, self.max_period, list(eos_ids)]}


class TailTracker:
    """``runs[p-1]``: how many of the last tokens equal the token ``p`` before them. The tail is a loop of period
    ``p`` when ``runs[p-1] + p`` (the repeated stretch) reaches both ``min_tokens`` and ``min_repeats * p``."""

    __slots__ = ("rule", "runs", "seen")

    def __init__(self, rule: LoopRule) -> None:
        self.rule = rule
        self.runs = [0] * rule.max_period
        self.seen = 0

    def update(self, ids: Sequence[object]) -> bool:
        """Take the tokens (or any comparable units) of ``ids`` not seen yet (the list only grows); is the tail now a
        loop?"""
        runs, rule = self.runs, self.rule
        for i in range(self.seen, len(ids)):
            tok = ids[i]
            for p in range(1, min(rule.max_period, i) + 1):
                runs[p - 1] = runs[p - 1] + 1 if ids[i - p] == tok else 0
        self.seen = len(ids)
        return any(r + p >= rule.min_tokens and r + p >= rule.min_repeats * p for p, r in enumerate(runs, start=1) if r)


def repeating_tail(ids: Sequence[int], rule: LoopRule) -> bool:
    """Does ``ids`` end in a loop by ``rule``? (What :class:`RequestLoopStop` checks at every step, at once.)"""
    return TailTracker(rule).update(ids)


def source_repeats(text: str, rule: LoopRule) -> bool:
    """Does the source itself hold a repetition its translation would rightly repeat ("go, go, go, go, ...", a
    phrase pasted forty times)? Then the loop stop would cut a faithful translation: the caller does not ask for it.
    Words and punctuation marks stand in for tokens (a word is at least one), against half the rule's length and
    one repeat fewer, so a repetition the output rule could see is found here first."""
    units = _UNIT.findall(text)
    loose = LoopRule(rule.min_tokens // 2, max(2, rule.min_repeats - 1), rule.max_period)
    # a stretch of that length and period repeats at least 2/3 of its units: without as many repeated units, none
    if len(units) < loose.min_tokens or len(units) - len(set(units)) < 2 * loose.min_tokens // 3:
        return False
    tracker, seen = TailTracker(loose), list[str]()
    for u in units:
        seen.append(u)
        if tracker.update(seen):
            return True
    return False


class RequestLoopStop:
    """One request's check: the logits row untouched until the tail is a loop, then only end-of-sequence left."""

    def __init__(self, rule: LoopRule, eos_ids: list[int]) -> None:
        self.tracker = TailTracker(rule)
        self.eos_ids = eos_ids

    def __call__(self, output_ids: list[int], logits: Any) -> Any:
        if not self.tracker.update(output_ids):
            return logits
        import torch

        out = torch.full_like(logits, float("-inf"))
        out[self.eos_ids] = 0.0  # finite whatever another processor did to them: the only tokens left
        return out

    @classmethod
    def from_extra_args(cls, extra_args: dict[str, Any] | None) -> RequestLoopStop | None:
        """The check a request asked for in ``SamplingParams.extra_args`` (:meth:`LoopRule.extra_args`), or None."""
        spec = (extra_args or {}).get(EXTRA_KEY)
        if not spec:
            return None
        min_tokens, min_repeats, max_period, eos_ids = spec
        return cls(LoopRule(int(min_tokens), int(min_repeats), int(max_period)), [int(t) for t in eos_ids])
