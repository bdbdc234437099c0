"""What must not be translated: find it, protect it, verify it came back exactly once.

Protected spans (``find_spans``):

- URLs (``https://...``, ``ftp://...``, ``www.``...; trailing sentence punctuation is not part of them),
- e-mail addresses,
- ``code spans`` in backticks,
- template variables: ``{{var}}``, ``${var}``, ``{name}``, ``{0}``, ``{}``,
- printf-style: ``%s``, ``%d``, ``%5.2f``, ``%(name)s``,
- anonymisation tags: ``[PROJECT123]``, ``[PERSON_1]``, ``[EMAIL]`` (upper case, digits, ``_``/``-``).

``protect`` returns the text to send to the engine: with ``style="mask"`` every span is replaced by a
numbered mask (``[PH_1]``, ``[PH_2]``, ...: anonymisation-style tags); with ``style="raw"`` the
text is sent as it is. Measured on the embedded model (``benchmarks/placeholder_probe.py``,
``results/placeholders/probe.md``, 24 sentences, one per prompt): kept intact raw 13/24, ``[X1]``
13/24, ``{1}`` 14/24, ``[PH_1]`` 15/24 (fewest parse failures: 3 against raw's 6). The margin is
small; masks win on two more counts: sentences that differ only in their placeholders become one
engine sentence (coalescing, translation memory), and the model never sees a long URL to mangle.
So masks ``[PH_n]`` are the default. ``restore`` puts the spans back and refuses (``None``) a translation
whose protected spans are not exactly the source's: each span (or mask) exactly once, nothing
invented. The caller then repairs the segment (re-sends it) or fails it in its slot.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_STYLE", "Protected", "check_masks", "find_spans", "mask_spans", "protect", "restore", "verify"]

Style = Literal["mask", "raw"]

# Every pattern runs in time linear in the text (tests/unit/test_scan_linear.py times each on adversarial input):
# an attempt either starts at a rare anchor and scans a run no later attempt scans again, or is bounded.
_URL = r"(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]"
# the local part starts where its run of local-part characters starts (the lookbehind): an attempt at every
# offset of a long run would rescan the rest of it each time (quadratic: 100k characters took 12 s)
_EMAIL = r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_CODE = r"`[^`\n]+`"
_MUSTACHE = r"\{\{[^{}\n]{1,100}\}\}"
_DOLLAR = r"\$\{[^{}\s]{1,64}\}"
_BRACE = r"\{[A-Za-z0-9_.:\[\]!-]{0,64}\}"
# bounded: "[-+#0]*" next to "\d+" backtracked through every split of a run of zeros (10k zeros: 3.5 s)
_PRINTF = r"%(?:\([A-Za-z_]\w{0,63}\))?[-+#0]{0,8}(?:\d{1,6}|\*)?(?:\.\d{1,6})?[sdifFeEgGxXour](?!\w)"
_TAG = r"\[[A-Z][A-Z0-9_-]*[A-Z0-9]\]"
# one alternation: the leftmost match wins; at the same position, the earlier alternative
_SPANS = re.compile("|".join([_URL, _EMAIL, _CODE, _MUSTACHE, _DOLLAR, _BRACE, _PRINTF, _TAG]))

MASK = "[PH_{}]"  # numbered from 1; itself a tag, so find_spans sees masks in the output too
FIXED_MASK = "[TAG_{}]"  # the mask of a fixed span (an inline tag of markup): its order is checked too
_MASK_RE = re.compile(r"\[(?:PH|TAG)_\d+\]")


def find_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every protected span of ``text``, in order, not overlapping."""
    return [m.span() for m in _SPANS.finditer(text)]


def mask_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every piece of ``text`` that looks like a mask (``[PH_n]``, ``[TAG_n]``)."""
    return [m.span() for m in _MASK_RE.finditer(text)]


def _overlaps(a: int, b: int, spans: list[tuple[int, int]]) -> bool:
    """Does (a, b) overlap one of ``spans`` (sorted, not overlapping each other)? By bisection, not a scan."""
    i = bisect.bisect_left(spans, (b, b))  # the spans starting before b
    return i > 0 and spans[i - 1][1] > a


@dataclass(frozen=True)
class Protected:
    """A text ready for the engine, and what to put back."""

    text: str  # what the engine gets
    spans: tuple[str, ...]  # the protected spans of the original, in order
    tokens: tuple[str, ...]  # what stands for each span in ``text`` (the masks, or the spans themselves)
    ordered: tuple[str, ...] = ()  # tokens that must come back in this order (inline tags of markup)

    @property
    def empty(self) -> bool:
        return not self.spans


def protect(
    text: str,
    style: Style = "mask",
    mask: str = MASK,
    *,
    detect: bool = True,
    fixed: Sequence[tuple[int, int]] = (),
    fixed_mask: str = FIXED_MASK,
) -> Protected:
    """Protect ``text``'s spans: those ``find_spans`` finds (unless ``detect`` is false) and the ``fixed`` ones
    (markup's inline-tag markers: always protected, and their order is verified too). ``mask`` (a format with
    one ``{}`` for the number) must itself be a protected span (see ``find_spans``)."""
    spans = sorted(set(fixed))
    # without detection, text that looks like one of our own masks is still protected: left raw, a literal
    # "[TAG_1]" would collide with the mask of an inline tag and the text could never pass the mask check
    found = find_spans(text) if detect else mask_spans(text)
    spans = sorted(spans + [(a, b) for a, b in found if not _overlaps(a, b, spans)])
    originals = tuple(text[a:b] for a, b in spans)
    fixed_set = set(fixed)
    if style == "raw" or not spans:
        kept = tuple(text[a:b] for a, b in spans if (a, b) in fixed_set)
        return Protected(text, originals, originals, kept)
    parts: list[str] = []
    tokens: list[str] = []
    ordered: list[str] = []
    pos = 0
    for i, (a, b) in enumerate(spans, 1):
        if (a, b) in fixed_set:
            tokens.append(fixed_mask.format(i))
            ordered.append(tokens[-1])
        else:
            tokens.append(mask.format(i))
        parts += [text[pos:a], tokens[-1]]
        pos = b
    parts.append(text[pos:])
    return Protected("".join(parts), originals, tuple(tokens), tuple(ordered))


def verify(protected: Protected, translation: str) -> str | None:
    """``None`` when the translation has exactly the protected tokens of its source (each as often, nothing
    invented), else a short reason."""
    if protected.empty:  # nothing to keep: a German text that happens to hold a "{...}" is not a fault
        return None
    want = Counter(protected.tokens)
    # the spans it must have, and any mask (an invented one is damage); other span-like text is not ours
    got = Counter(t for a, b in find_spans(translation) if (t := translation[a:b]) in want or _MASK_RE.fullmatch(t))
    if got == want:
        if protected.ordered:
            keep = set(protected.ordered)
            seq = tuple(t for a, b in find_spans(translation) if (t := translation[a:b]) in keep)
            if seq != protected.ordered:
                return "inline tags out of order"
        return None
    missing = sorted((want - got).elements())
    extra = sorted((got - want).elements())
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if extra:
        parts.append("unexpected " + ", ".join(extra))
    return "; ".join(parts)


def check_masks(source: str, translation: str) -> str | None:
    """``verify`` for a masked engine text alone (the batcher's check of every slot): the masks of ``source``
    each exactly once in ``translation``, no other mask, the inline-tag masks in their order. ``None``: fine."""
    tokens = _MASK_RE.findall(source)
    if not tokens:
        return None
    fixed = tuple(t for t in tokens if t.startswith("[TAG_"))
    return verify(Protected(source, tuple(tokens), tuple(tokens), fixed), translation)


def restore(protected: Protected, translation: str) -> str | None:
    """The translation with the original spans back in place, or ``None`` if it did not keep them."""
    if verify(protected, translation) is not None:
        return None
    if protected.tokens == protected.spans:  # raw, or nothing protected
        return translation
    by_token = dict(zip(protected.tokens, protected.spans))
    return _SPANS.sub(lambda m: by_token.get(m.group(), m.group()), translation)


DEFAULT_STYLE: Style = "mask"
