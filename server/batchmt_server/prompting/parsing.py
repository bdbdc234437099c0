"""Split a packed completion back into one slot per input, and say which slots need a repair.

The prompt (see ``template.py``) ends inside the first pair, ``"...\\nEnglish 1: <source 1>\\nGerman 1:"``,
so the text parsed is ``"German 1:" + completion``, which should read::

    German 1: <translation 1>
    English 2: <source 2, echoed>
    German 2: <translation 2>
    ...

This module is the one home of reading the packed format: the batcher, the ensemble, calibration and
the fake engine all call :func:`parse_completion` (each slot also carries its character span in the
completion, which the ensemble uses for the slot's token confidence).

A slot is accepted only when its alignment is certain: its number came in order, the echo right
before it repeats its own input, and the translation is not a copy of the input, of a neighbour,
or of a few-shot example. Everything doubtful is flagged with a reason and re-sent in a smaller
prompt by the batcher. A slot never takes a neighbour's line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

from ..engines.loop_stop import LoopRule, source_repeats, text_loops

__all__ = ["Slot", "parse_completion", "REASONS", "is_copy", "is_example_copy", "clean"]

#: Every reason a slot can be flagged for repair (metric label values).
REASONS = (
    "missing",  # its number never appeared
    "duplicate",  # a number appeared twice, or numbering restarted: alignment lost from here on
    "reordered",  # numbers went backwards: alignment lost from here on
    "merged",  # the line before a missing number (or a wrapped line) is suspiciously long: two in one
    "extra",  # numbers above N interleaved with real ones (only ignored when run-on at the end)
    "echo",  # the source echo before the translation is absent or does not repeat this input
    "copy",  # the output repeats the English source
    "neighbour",  # the output (or its echo) equals another slot's source, or another slot's output
    "example",  # the output is a few-shot example translation: the model copied the prompt
    "empty",  # nothing after the label
    "truncated",  # the engine stopped at max_tokens inside this slot, or the slot ends in a loop (cut there)
    "engine_error",  # the engine call failed
    "placeholder",  # protected spans (placeholders, inline tags) lost, doubled, invented or reordered (batcher)
)

_WORD = re.compile(r"\w+", re.UNICODE)
#: the loop rule a slot's text is checked with (the engine's default: engines/loop_stop.py)
_LOOP = LoopRule()
#: Echo similarity needed when the echo is not identical (normalised) to its input.
_ECHO_RATIO = 0.85


def clean(text: str) -> str:
    """One line of input as it goes into a prompt: whitespace runs (tabs, CR, newlines, ...) become one space."""
    return " ".join(text.split())


@dataclass
class Slot:
    text: str | None
    reason: str | None = None  # None = accepted
    #: where the slot's translation lies in the completion (character offsets, continuation lines included)
    span: tuple[int, int] | None = None

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


def is_example_copy(source: str, output: str, examples: Sequence[str | tuple[str, str]]) -> bool:
    """True when ``output`` is one of the few-shot translations (three words or more), or a near copy of one
    (four words or more, ``EXAMPLE_SIMILARITY``), and ``source`` is not that example's own source (nor close to
    it). ``examples`` holds translations, or (source, translation) pairs."""
    return _is_example_copy(_norm(source), _norm(output), examples)


#: an output this similar (difflib ratio, normalised words) to a few-shot translation copies it with a word
#: changed ("Die Stadt hat am Dienstag den neuen Haushalt beschlossen." from a fine-tuned model given the example
#: "Der Stadtrat hat am Dienstag ..."), unless the source is as close to that example's source
EXAMPLE_SIMILARITY = 0.8


def _is_example_copy(norm_source: str, out: str, examples: Sequence[str | tuple[str, str]]) -> bool:
    """``is_example_copy`` on texts already normalised (``_norm``)."""
    words = len(out.split())
    if words < 3:
        return False
    index = _example_index(tuple(examples))
    if out in index:
        sources = index[out]
        return None in sources or norm_source not in sources
    if words < 4:
        return False
    for target, sources in index.items():
        if len(target.split()) < 4 or not _close(out, target, EXAMPLE_SIMILARITY):
            continue
        if None in sources or not any(_close(norm_source, s, EXAMPLE_SIMILARITY) for s in sources):
            return True
    return False


def _close(a: str, b: str, threshold: float) -> bool:
    """``_similar(a, b) >= threshold``, with difflib's cheap upper bounds tried first."""
    if a == b:
        return True
    m = SequenceMatcher(None, a, b, autojunk=False)
    return m.real_quick_ratio() >= threshold and m.quick_ratio() >= threshold and m.ratio() >= threshold


@lru_cache(maxsize=16)
def _example_index(examples: tuple) -> dict[str, frozenset]:
    """normalised example translation -> the normalised sources it translates (None: unknown)."""
    index: dict[str, set] = {}
    for ex in examples:
        ex_src, ex_tgt = (None, ex) if isinstance(ex, str) else ex
        index.setdefault(_norm(ex_tgt), set()).add(None if ex_src is None else _norm(ex_src))
    return {k: frozenset(v) for k, v in index.items()}


def _similar(a: str, b: str) -> float:
    return 1.0 if a == b else SequenceMatcher(None, a, b, autojunk=False).ratio()


def _echo_reason(echo: str, k: int, norm_src: list[str]) -> str | None:
    """None when ``echo`` repeats input ``k`` (0-based), else "neighbour" (it is another input) or "echo"."""
    e = _norm(echo)
    if e == norm_src[k]:  # the usual case, and nothing can beat an exact echo
        return None
    own = _similar(e, norm_src[k])
    others = [(_similar(e, s), j) for j, s in enumerate(norm_src) if j != k and s != norm_src[k]]
    best_other = max(others, default=(0.0, -1))
    if own >= _ECHO_RATIO and own > best_other[0]:
        return None
    if best_other[0] >= _ECHO_RATIO:
        return "neighbour"
    return "echo"


@lru_cache(maxsize=64)
def _label_pattern(label: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(label)}\s*(\d{{1,3}})\s*:\s?(.*)$")


def parse_completion(
    completion: str,
    sources: Sequence[str],
    finish_reason: str | None = None,
    examples: Sequence[str | tuple[str, str]] = (),
    *,
    source_label: str = "English",
    target_label: str = "German",
    echo: bool = True,
) -> list[Slot]:
    """One ``Slot`` per source, in order. ``examples``: the template's few-shot (source, translation) pairs
    (``Template.example_pairs``) or bare translations; outputs equal or close to one are flagged
    "example". Labels must be the template's (``Template.source_label`` / ``.target_label``).
    ``echo=False``: the layout has no source echoes (``Template.echo``); none is required."""
    n = len(sources)
    src_re, tgt_re = _label_pattern(source_label), _label_pattern(target_label)
    norm_src = [_norm(s) for s in sources]

    # 1. Lines -> entries [kind, number, text, wrapped, start, end]; unlabelled lines continue the entry
    #    above. start/end: character offsets of the entry's text in the completion.
    head = f"{target_label} 1:"
    entries: list[list] = []
    offset = -len(head)
    for line in (head + completion).split("\n"):
        m = tgt_re.match(line)
        kind = "tgt"
        if not m:
            m, kind = src_re.match(line), "src"
        if m:
            entries.append(
                [kind, int(m.group(1)), m.group(2), False, max(0, offset + m.start(2)), max(0, offset + len(line))]
            )
        elif line.strip() and entries:
            entries[-1][2] += " " + line.strip()
            entries[-1][3] = True
            entries[-1][5] = max(0, offset + len(line))
        offset += len(line) + 1
    ended_inside = finish_reason == "length" and bool(entries)

    # 2. Walk the entries in order. ``last_echo`` = (number, text) of the last source echo seen;
    #    the prompt itself holds the echo of input 1. Without echoes (``echo=False``) none is checked.
    slots: list[Slot] = [Slot(None, "missing") for _ in range(n)]
    flags: dict[int, str] = {}
    seen: set[int] = set()
    last_echo: tuple[int, str] | None = (1, sources[0]) if n else None
    expected = 1
    lost_from: tuple[int, str] | None = None  # (first slot index whose alignment is lost, reason)
    for pos, (kind, num, text, wrapped, start, end) in enumerate(entries):
        if kind == "src":
            last_echo = (num, text)
            if num > n and expected <= n and lost_from is None:
                lost_from = (expected - 1, "extra")  # a number above N before all N arrived
            continue
        is_last = pos == len(entries) - 1
        if num > n:
            if expected <= n and lost_from is None:
                lost_from = (expected - 1, "extra")
            continue  # run-on after the last slot: ignored
        if num in seen or num < expected:  # seen already, or skipped and now back
            if lost_from is None:
                lost_from = (num - 1, "duplicate" if num in seen else "reordered")
            continue
        # num >= expected: slots expected..num-1 were skipped (they stay "missing")
        if num > expected and expected > 1:
            prev = slots[expected - 2]
            if prev.text is not None and _too_long(sources[expected - 2], prev.text):
                flags[expected - 2] = flags.get(expected - 2) or "merged"
        i = num - 1
        slots[i] = Slot(clean(text), None, (start, end))
        seen.add(num)
        expected = num + 1
        if echo:  # without echoes, alignment rests on the numbering and the content checks below
            # "echo": no echo of this number right before it
            why = "echo" if last_echo is None or last_echo[0] != num else _echo_reason(last_echo[1], i, norm_src)
            if why:
                flags[i] = why
        last_echo = None
        if wrapped and n > 1 and _too_long(sources[i], slots[i].text or ""):
            flags.setdefault(i, "merged")
        if is_last and ended_inside:
            flags.setdefault(i, "truncated")

    for i, reason in flags.items():
        if slots[i].reason is None:
            slots[i].reason = reason
    if lost_from is not None:
        start, reason = lost_from
        for i in range(max(start, 0), n):
            if slots[i].text is not None and slots[i].reason is None:
                slots[i].reason = reason
    _check_contents(slots, sources, norm_src, examples)
    return slots


def _too_long(source: str, output: str) -> bool:
    return len(output) > 2.2 * len(source) + 20


def _check_contents(
    slots: list[Slot], sources: Sequence[str], norm_src: list[str], examples: Sequence[str | tuple[str, str]]
) -> None:
    n = len(sources)
    outputs: dict[str, list[int]] = {}
    for i, slot in enumerate(slots):
        if slot.text is None:
            continue
        if not slot.text.strip():
            slot.reason = slot.reason or "empty"
            continue
        out = _norm(slot.text)
        outputs.setdefault(out, []).append(i)
        if slot.reason is not None:
            continue
        if text_loops(slot.text, _LOOP) and not source_repeats(sources[i], _LOOP):
            slot.reason = "truncated"  # a packed slot's loop, ended by the engine's slot guard (loop_stop.py)
        elif len(norm_src[i].split()) >= 3 and out == norm_src[i]:  # is_copy(sources[i], slot.text), normalised once
            slot.reason = "copy"
        elif n > 1 and any(out == norm_src[j] and len(norm_src[j].split()) >= 3 for j in range(n) if j != i):
            slot.reason = "neighbour"
        elif examples and _is_example_copy(norm_src[i], out, examples):
            slot.reason = "example"
        elif n > 1 and _translates_a_neighbour(i, slot.text, sources):
            slot.reason = "neighbour"
    for out, idx in outputs.items():
        # two different sources with one identical (non-trivial) translation: one of them is wrong
        if len(idx) > 1 and len(out.split()) >= 3 and len({norm_src[i] for i in idx}) > 1:
            for i in idx:
                slots[i].reason = slots[i].reason or "neighbour"


_DIGITS = re.compile(r"\d+")

#: a translation shares clearly more character trigrams with another input than with its own
NEIGHBOUR_MARGIN = 0.1
NEIGHBOUR_FLOOR = 0.2


def _trigrams(text: str) -> frozenset[str]:
    t = " " + _norm(text) + " "
    return frozenset(t[i : i + 3] for i in range(len(t) - 2))


#: inputs' trigrams, cached: every slot of a prompt is compared with every input of it
_source_trigrams = lru_cache(maxsize=4096)(_trigrams)


@lru_cache(maxsize=4096)
def _digits(text: str) -> frozenset[str]:
    return frozenset(_DIGITS.findall(text))


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / max(1, min(len(a), len(b)))


def _translates_a_neighbour(i: int, text: str, sources: Sequence[str]) -> bool:
    """True when the translation in slot ``i`` is evidently of another input of the same prompt.

    The echo proves the model wrote the right English line, not that the German line after it
    translates it: a small model drifts to a neighbour. Two cross-lingual signals catch that:
    a number of another input that the own input does not have, and clearly more shared character
    trigrams (names, numbers, cognates) with another input than with the own one.
    """
    own_digits = _digits(sources[i])
    out_digits = frozenset(_DIGITS.findall(text))
    if out_digits - own_digits and any((out_digits - own_digits) & _digits(s) for j, s in enumerate(sources) if j != i):
        return True
    grams = _trigrams(text)
    own = _overlap(grams, _source_trigrams(sources[i]))
    other = max((_overlap(grams, _source_trigrams(s)) for j, s in enumerate(sources) if j != i), default=0.0)
    return other >= NEIGHBOUR_FLOOR and other > own + NEIGHBOUR_MARGIN
