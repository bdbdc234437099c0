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

**Packed prompts** (``LoopRule.lines`` > 0: the completion should hold that many line breaks before it ends). One
looping slot must not cost its neighbours: a loop before the last line ends only that line (the newline token is
the one choice left, and the count starts again on the next line), and the completion cannot end (end-of-sequence
or a blank line) before its lines are there, so a model that stops early still writes the slots it skipped. The
parser flags the looping slot (:func:`text_loops`) and the gateway re-sends it alone; the others are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXTRA_KEY",
    "LoopRule",
    "RequestLoopStop",
    "TailTracker",
    "TokenIds",
    "repeating_tail",
    "source_repeats",
    "text_loops",
]

_UNIT = re.compile(r"\w+|[^\w\s]")

#: the key in ``SamplingParams.extra_args``:
#: ``[min_tokens, min_repeats, max_period, [eos ids...], lines, [newline id], [blank-line ids...]]``
EXTRA_KEY = "batchmt_loop_stop"


@dataclass(frozen=True)
class TokenIds:
    """The tokens the check steers to: end-of-sequence, the one-newline token, and tokens of two or more newlines
    (a blank line: the templates' stop string). Found once per tokenizer (:meth:`of`)."""

    eos: tuple[int, ...] = ()
    newline: tuple[int, ...] = ()
    blank: tuple[int, ...] = ()

    @classmethod
    def of(cls, tokenizer: Any) -> TokenIds:
        if tokenizer is None:  # an engine started without its tokenizer: nothing to steer with
            return cls()
        eos = getattr(tokenizer, "eos_token_id", None)

        def single(text: str) -> int | None:
            ids = tokenizer.encode(text, add_special_tokens=False)
            return int(ids[0]) if len(ids) == 1 else None

        nl = single("\n")
        blank = {t for k in range(2, 9) if (t := single("\n" * k)) is not None}
        return cls((int(eos),) if eos is not None else (), (nl,) if nl is not None else (), tuple(sorted(blank)))


@dataclass(frozen=True)
class LoopRule:
    """A tail of one block of 1..``max_period`` tokens repeated ``min_repeats`` times or more, ``min_tokens`` long or
    more, is a loop. The defaults need ~24 tokens of pure repetition: a translation that repeats a word for
    emphasis ("sehr, sehr, sehr") is far from it."""

    min_tokens: int = 24
    min_repeats: int = 4
    max_period: int = 16
    #: a packed prompt's line breaks before its completion may end (0: one sentence, no slot guard)
    lines: int = 0

    def extra_args(self, ids: TokenIds | Sequence[int]) -> dict[str, Any]:
        if not isinstance(ids, TokenIds):
            ids = TokenIds(tuple(ids))
        spec = [self.min_tokens, self.min_repeats, self.max_period, list(ids.eos)]
        if self.lines and ids.newline:
            spec += [self.lines, list(ids.newline), list(ids.blank)]
        return {EXTRA_KEY: spec}


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


def _loose(rule: LoopRule) -> LoopRule:
    """The rule on words and punctuation marks (each at least one token): half the length, one repeat fewer."""
    return LoopRule(rule.min_tokens // 2, max(2, rule.min_repeats - 1), rule.max_period)


def source_repeats(text: str, rule: LoopRule) -> bool:
    """Does the source itself hold a repetition its translation would rightly repeat ("go, go, go, go, ...", a
    phrase pasted forty times)? Then the loop stop would cut a faithful translation: the caller does not ask for it.
    Words and punctuation marks stand in for tokens (a word is at least one), against half the rule's length and
    one repeat fewer, so a repetition the output rule could see is found here first."""
    units = _UNIT.findall(text)
    loose = _loose(rule)
    # a stretch of that length and period repeats at least 2/3 of its units: without as many repeated units, none
    if len(units) < loose.min_tokens or len(units) - len(set(units)) < 2 * loose.min_tokens // 3:
        return False
    tracker, seen = TailTracker(loose), list[str]()
    for u in units:
        seen.append(u)
        if tracker.update(seen):
            return True
    return False


def text_loops(text: str, rule: LoopRule) -> bool:
    """Does a translation end in a loop that :class:`RequestLoopStop` cut (a packed slot's line, ended by the slot
    guard)? Words and punctuation marks stand in for tokens, against the loose rule of :func:`source_repeats`."""
    units = _UNIT.findall(text)
    loose = _loose(rule)
    return len(units) >= loose.min_tokens and TailTracker(loose).update(units)


class RequestLoopStop:
    """One request's check: the logits row untouched until the tail is a loop, then only end-of-sequence left.

    With ``lines`` (a packed prompt, :class:`LoopRule`): until the completion holds that many newlines, a loop
    ends the line instead (only the newline token left) and the completion cannot end (end-of-sequence, a blank
    line, or a newline right after a newline are taken away)."""

    def __init__(
        self, rule: LoopRule, eos_ids: list[int], lines: int = 0, newline: Sequence[int] = (), blank: Sequence[int] = ()
    ) -> None:
        self.rule = rule
        self.tracker = TailTracker(rule)
        self.eos_ids = eos_ids
        self.lines = lines if newline else 0
        self.newline, self.newline_set = list(newline), frozenset(newline)
        self.ends = [*eos_ids, *blank]
        self._seen, self._breaks = 0, 0

    def __call__(self, output_ids: list[int], logits: Any) -> Any:
        if self.lines:
            for i in range(self._seen, len(output_ids)):
                self._breaks += output_ids[i] in self.newline_set
            self._seen = len(output_ids)
        looping = self.tracker.update(output_ids)
        line_open = bool(output_ids) and output_ids[-1] in self.newline_set  # a line begun, nothing on it yet
        if not self.lines or self._breaks > self.lines or (self._breaks == self.lines and not line_open):
            # one sentence, or the last line of a packed one under way: the end as before
            return self._only(logits, self.eos_ids) if looping else logits
        if looping and self._breaks < self.lines:  # a packed slot loops: end its line; the next counts afresh
            self.tracker = TailTracker(self.rule)
            self.tracker.seen = len(output_ids)
            return self._only(logits, self.newline)
        logits[self.ends + self.newline if line_open else self.ends] = float("-inf")  # lines to come: no end yet
        return logits

    @staticmethod
    def _only(logits: Any, ids: list[int]) -> Any:
        import torch

        out = torch.full_like(logits, float("-inf"))
        out[ids] = 0.0  # finite whatever another processor did to them: the only tokens left
        return out

    @classmethod
    def from_extra_args(cls, extra_args: dict[str, Any] | None) -> RequestLoopStop | None:
        """The check a request asked for in ``SamplingParams.extra_args`` (:meth:`LoopRule.extra_args`), or None."""
        spec = (extra_args or {}).get(EXTRA_KEY)
        if not spec:
            return None
        min_tokens, min_repeats, max_period, eos_ids, *packed = spec
        rule = LoopRule(int(min_tokens), int(min_repeats), int(max_period))
        eos = [int(t) for t in eos_ids]
        if not packed:
            return cls(rule, eos)
        lines, newline, blank = packed
        return cls(rule, eos, int(lines), [int(t) for t in newline], [int(t) for t in blank])
