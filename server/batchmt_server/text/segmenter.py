"""Texts into segments (sentences) and back, byte for byte.

A text is cut into *segments*, the pieces sent to the engine, and *separators*, everything between
them that is layout: whitespace, line breaks (``\\n``, ``\\r\\n``, ...), blank lines, indentation,
list markers (``- ``, ``* ``, ``• ``, ``1. ``, ``a) ``), and lines without any letter (``---``,
``12:30``). Segments are spans of the original text, separators the gaps between them, so
``Segmentation.join`` with identity translations gives the input back exactly.

Modes (the request's ``split_sentences``):

- ``"on"``: every line is split into sentences by nupunkt (picked by measurement:
  ``benchmarks/segmentation_eval.py``, ``results/segmentation/report.md``). Its model, trained on
  legal text, lists ~2,400 ordinary words of four letters or more as abbreviations ("book.",
  "bank.", "black."), so it would not split "I went to the bank. It was closed."; those are
  dropped, except a short list of real ones ("approx.", "dept.", "Prof."). Measured: F1 up on both
  test sets;
- ``"newlines"``: one segment per non-blank line;

(in both, a tab inside a line separates columns: it is layout, and each side is its own segment);
- ``"off"``: the text is one segment (only surrounding whitespace is layout).

In every mode a segment longer than ``max_chars`` is cut at a clause boundary (``;``, ``:``, ``,``,
a dash) or else at a space, never refused; a run of ``max_chars`` characters without any space is
cut hard. ``keep`` spans (protected placeholders, URLs) are never cut and never split by a sentence
boundary, and a segment whose only letters are inside ``keep`` spans is layout too.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import nupunkt

SplitMode = Literal["on", "newlines", "off"]
SPLIT_MODES: tuple[str, ...] = ("on", "newlines", "off")

# every line break str.splitlines() knows, CRLF first
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# a list marker at the start of a line (after indentation), followed by at least one space or tab
_LIST_MARKER = re.compile(r"(?:[-*+•·▪‣◦–—]|\d{1,3}[.)]|\(\d{1,3}\)|[a-z]\)|#{1,6}|>)[ \t]+")
# clause boundaries for cutting over-long segments: the cut goes after the punctuation, before the space
_CLAUSE = re.compile(r"[;:,)\]](?=\s)|\s[–—-](?=\s)")

Span = tuple[int, int]

# abbreviations of four letters or more that stay abbreviations (the rest of nupunkt's are words)
_REAL_LONG_ABBREVIATIONS = frozenset(
    "approx assoc blvd bros calif colo conn corp dept dist govt inst intl mfrs mgmt misc mich minn natl nebr okla "
    "prof repr sept supp tenn univ vols".split()
)


@functools.cache
def _model() -> nupunkt.PunktSentenceTokenizer:
    model = nupunkt.load_default_model()  # a fresh instance: changing it touches no one else
    for abbrev in list(model.parameters.abbrev_types):
        if len(abbrev) >= 4 and abbrev.isalpha() and abbrev not in _REAL_LONG_ABBREVIATIONS:
            model.remove_abbreviation(abbrev)
    model.parameters.invalidate_patterns()
    return model


def split_sentences(text: str) -> list[Span]:
    """nupunkt's sentence spans of ``text`` (the model described in the module docstring)."""
    return list(_model().span_tokenize(text))


@dataclass(frozen=True)
class Segmentation:
    """``separators[0] + segments[0] + separators[1] + ... + segments[-1] + separators[-1]`` is the text."""

    segments: tuple[str, ...]
    separators: tuple[str, ...]  # len(segments) + 1
    spans: tuple[tuple[int, int], ...] = ()  # where each segment is in the text

    def join(self, translations: Sequence[str]) -> str:
        if len(translations) != len(self.segments):
            raise ValueError(f"{len(translations)} translations for {len(self.segments)} segments")
        parts = [self.separators[0]]
        for text, sep in zip(translations, self.separators[1:]):
            parts.append(text)
            parts.append(sep)
        return "".join(parts)

    @property
    def text(self) -> str:
        return self.join(self.segments)


class _Keep:
    """The kept spans, merged where they overlap and sorted, for O(log k) look-ups (a scan of every span at every
    position was quadratic: 25k placeholders in a 100k-character text took 13 s)."""

    def __init__(self, spans: Sequence[Span]) -> None:
        merged: list[list[int]] = []
        for a, b in sorted(spans):
            if merged and a < merged[-1][1]:  # overlapping (touching spans stay apart: a cut between them is fine)
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.starts = [a for a, _ in merged]
        self.ends = [b for _, b in merged]

    def inside(self, pos: int) -> bool:
        """Is a cut at ``pos`` (between pos-1 and pos) strictly inside a kept span?"""
        i = bisect.bisect_left(self.starts, pos) - 1
        return i >= 0 and pos < self.ends[i]

    def around(self, pos: int) -> Span | None:
        """The kept span that a cut at ``pos`` falls strictly inside, if any."""
        i = bisect.bisect_left(self.starts, pos) - 1
        return (self.starts[i], self.ends[i]) if i >= 0 and pos < self.ends[i] else None

    def next_from(self, i: int) -> int:
        """The index of the first kept span that ends after position ``i``."""
        return bisect.bisect_right(self.ends, i)


def _as_keep(keep: Sequence[Span] | _Keep) -> _Keep:
    return keep if isinstance(keep, _Keep) else _Keep(keep)


def _inside(pos: int, keep: _Keep) -> bool:
    return keep.inside(pos)


def _has_text(text: str, start: int, end: int, keep: _Keep) -> bool:
    """Is there a letter in ``text[start:end]`` outside the kept spans? (Kept spans are jumped over.)"""
    i, k = start, keep.next_from(start)
    while i < end:
        if k < len(keep.starts) and keep.starts[k] <= i:
            i = keep.ends[k]
            k += 1
            continue
        stop = min(end, keep.starts[k]) if k < len(keep.starts) else end
        for j in range(i, stop):
            if text[j].isalpha():
                return True
        i = stop
    return False


def _trim(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _lines(text: str) -> list[Span]:
    """(start, end) of every line's content, line breaks excluded."""
    spans, pos = [], 0
    for m in _LINE_BREAK.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return spans


def _cells(text: str, keep: _Keep) -> list[Span]:
    """The non-blank pieces of every line between tabs (a tab inside a line separates columns: layout), trimmed."""
    out = []
    for a, b in _lines(text):
        start = a
        tabs, i = [], text.find("\t", a, b)  # (str.find, not a look at every character)
        while i >= 0:
            if not _inside(i, keep):
                tabs.append(i)
            i = text.find("\t", i + 1, b)
        for pos in [*tabs, b]:
            c, d = _trim(text, start, pos)
            if d > c:
                out.append((c, d))
            start = pos + 1
    return out


def _sentences(text: str, start: int, end: int, keep: _Keep) -> list[Span]:
    starts = [start + a for a, _ in split_sentences(text[start:end])]
    starts = [s for s in starts if s == start or not _inside(s, keep)]
    bounds = [*starts[1:], end] if starts else [end]
    return [_trim(text, a, b) for a, b in zip(starts or [start], bounds)]


def cut_long(text: str, start: int, end: int, max_chars: int, keep: Sequence[Span] | _Keep = ()) -> list[Span]:
    """Cut ``text[start:end]`` into spans of at most ``max_chars`` (outer whitespace left between them)."""
    keep = _as_keep(keep)
    out: list[Span] = []
    while end - start > max_chars:
        limit = start + max_chars
        cut = -1
        # the last clause boundary in the second half of the window, else the last space in the window
        for m in _CLAUSE.finditer(text, start + max_chars // 2, limit):
            pos = m.start() if m.group()[0].isspace() else m.start() + 1
            if not _inside(pos, keep):
                cut = pos
        if cut < 0:
            for pos in range(limit, start, -1):
                if text[pos].isspace() and not _inside(pos, keep):
                    cut = pos
                    break
        if cut <= start:
            cut = limit
            # a hard cut must not fall inside a kept span: move it to the span's start (or end)
            span = keep.around(cut)
            if span is not None:
                a, b = span
                cut = a if a > start else b
        a, b = _trim(text, start, cut)
        if b > a:
            out.append((a, b))
        start, end = _trim(text, cut, end)
    if end > start:
        out.append((start, end))
    return out


def segment_spans(
    text: str, mode: SplitMode = "on", max_chars: int = 1000, keep: Sequence[Span] | _Keep = ()
) -> list[Span]:
    """The (start, end) of every segment of ``text``, in order, not overlapping."""
    if mode not in SPLIT_MODES:
        raise ValueError(f"split mode must be one of {SPLIT_MODES}, not {mode!r}")
    keep = _as_keep(keep)
    if mode == "off":
        spans = [_trim(text, 0, len(text))]
    else:
        spans = []
        for a, b in _cells(text, keep):
            m = _LIST_MARKER.match(text, a, b)
            if m and m.end() < b and not _inside(m.end(), keep):
                a = m.end()
            spans.extend([(a, b)] if mode == "newlines" else _sentences(text, a, b, keep))
    out: list[Span] = []
    for a, b in spans:
        if b > a and _has_text(text, a, b, keep):
            out.extend(cut_long(text, a, b, max_chars, keep) if b - a > max_chars else [(a, b)])
    return out


def segment_text(text: str, mode: SplitMode = "on", max_chars: int = 1000, keep: Sequence[Span] = ()) -> Segmentation:
    spans = segment_spans(text, mode, max_chars, keep)
    segments, separators, pos = [], [], 0
    for a, b in spans:
        separators.append(text[pos:a])
        segments.append(text[a:b])
        pos = b
    separators.append(text[pos:])
    return Segmentation(tuple(segments), tuple(separators), tuple(spans))
