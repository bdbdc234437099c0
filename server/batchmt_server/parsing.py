"""Split a packed completion back into one slot per input, and say which slots need a repair.

The completion continues a prompt that ends in ``"1."``, so the text parsed is ``"1." + completion``.
A slot is accepted only when its alignment is certain; everything doubtful is flagged with a reason
and re-sent in a smaller prompt by the batcher. A slot never takes a neighbour's line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .template import clean

__all__ = ["Slot", "parse_completion", "REASONS", "is_copy"]

#: Every reason a slot can be flagged for repair (metric label values).
REASONS = (
    "missing",      # its number never appeared
    "duplicate",    # its number appeared twice, or numbering restarted: alignment lost from here on
    "reordered",    # numbers went backwards
    "merged",       # the line before a missing number is suspiciously long: two translations in one
    "extra",        # numbers above N interleaved with real ones (only counted when run-on at the end)
    "copy",         # the output repeats the English source
    "neighbour",    # the output equals another slot's source or another slot's output
    "empty",        # nothing after the number
    "truncated",    # the engine stopped at max_tokens inside this slot
    "engine_error", # the engine call failed
)

_NUMBERED = re.compile(r"^\s*(\d{1,3})\s*[.)]\s?(.*)$")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Slot:
    text: str | None
    reason: str | None = None  # None = accepted

    @property
    def ok(self) -> bool:
        return self.reason is None


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def is_copy(source: str, output: str) -> bool:
    """True when ``output`` is the source again (case, punctuation and spacing aside).

    Short inputs (one or two words: names, numbers, "OK") legitimately come back unchanged.
    """
    s = _norm(source)
    return len(s.split()) >= 3 and s == _norm(output)


def parse_completion(completion: str, sources: list[str], finish_reason: str | None = None) -> list[Slot]:
    n = len(sources)
    entries: list[list] = []  # [number, text]
    for line in ("1." + completion).split("\n"):
        m = _NUMBERED.match(line)
        if m:
            entries.append([int(m.group(1)), m.group(2)])
        elif line.strip():
            if entries:  # a wrapped line: part of the entry above (its slot is checked below)
                entries[-1][1] += " " + line.strip()
                entries[-1].append("wrapped")
    slots: list[Slot] = [Slot(None, "missing") for _ in range(n)]
    expected = 1
    lost_from: tuple[int, str] | None = None  # (first slot index with lost alignment, reason)
    wrapped: set[int] = set()
    for entry in entries:
        num, text = entry[0], entry[1]
        if num > n:
            if expected <= n:  # a number above N before all N arrived: the numbering is off
                lost_from = lost_from or (expected - 1, "extra")
            continue  # run-on after the last slot: ignored
        if num < expected:  # seen already, or skipped and now back: alignment is lost from here
            lost_from = lost_from or (num - 1, "duplicate" if slots[num - 1].text is not None else "reordered")
            continue
        # num >= expected: slots expected..num-1 were skipped (stay "missing")
        if num > expected and expected > 1:
            prev = slots[expected - 2]
            if prev.text is not None and _too_long(sources[expected - 2], prev.text):
                prev.reason = "merged"
        slots[num - 1] = Slot(clean(text), None)
        if len(entry) > 2:
            wrapped.add(num - 1)
        expected = num + 1
    if lost_from is not None:
        start, reason = lost_from
        for i in range(max(start, 0), n):
            if slots[i].reason is None or slots[i].reason == "missing":
                slots[i] = Slot(slots[i].text, reason if slots[i].text is not None else slots[i].reason)
    if finish_reason == "length":
        last = max((i for i, s in enumerate(slots) if s.text is not None), default=None)
        if last is not None and slots[last].reason is None:
            slots[last].reason = "truncated"
    for i in wrapped:
        if slots[i].reason is None and n > 1 and _too_long(sources[i], slots[i].text or ""):
            slots[i].reason = "merged"
    _check_contents(slots, sources)
    return slots


def _too_long(source: str, output: str) -> bool:
    return len(output) > 2.2 * len(source) + 20


def _check_contents(slots: list[Slot], sources: list[str]) -> None:
    n = len(sources)
    norm_src = [_norm(s) for s in sources]
    outputs: dict[str, list[int]] = {}
    for i, slot in enumerate(slots):
        if slot.text is None:
            continue
        if not slot.text.strip():
            slot.reason = slot.reason or "empty"
            continue
        out = _norm(slot.text)
        outputs.setdefault(out, []).append(i)
        if slot.reason is None and is_copy(sources[i], slot.text):
            slot.reason = "copy"
        elif slot.reason is None and n > 1 and any(
            out == norm_src[j] and len(norm_src[j].split()) >= 3 for j in range(n) if j != i
        ):
            slot.reason = "neighbour"
    for out, idx in outputs.items():
        # two different sources with one identical (non-trivial) translation: one of them is wrong
        if len(idx) > 1 and len(out.split()) >= 3 and len({norm_src[i] for i in idx}) > 1:
            for i in idx:
                slots[i].reason = slots[i].reason or "neighbour"
