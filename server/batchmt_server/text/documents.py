"""A request entry (a sentence, a paragraph, a document; plain text or markup) as segments for the engine.

``prepare`` cuts an entry into segments (segmenter.py), protects each segment's placeholders and
inline-tag markers (placeholders.py, markup.py) and gives the engine texts, one per segment.
``PreparedEntry.assemble`` takes one translation per segment (``None``: the segment failed and keeps
its source) and gives the entry's text back with its layout, spans and markup restored. A
translation whose protected spans are damaged is refused here too (``damaged``), as a last guard:
the batcher already flags and repairs such slots (``check_masks``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from .langid import DetectedLanguage
from .markup import MarkupDocument, TagHandling, parse_markup
from .placeholders import Protected, find_spans, mask_spans, protect, restore
from .segmenter import Segmentation, SplitMode, segment_text

__all__ = ["PreparedEntry", "PreparedText", "prepare"]


@dataclass(frozen=True)
class PreparedText:
    """One plain text (an entry, or one run of a markup document) cut into protected segments."""

    segmentation: Segmentation
    protected: tuple[Protected, ...]  # per segment

    def assemble(self, translations: Sequence[str | None]) -> tuple[str, list[int]]:
        """The text with each segment's translation (its source where ``None`` or damaged); the indices kept
        in the source."""
        out, kept = [], []
        for i, (src, p, tr) in enumerate(zip(self.segmentation.segments, self.protected, translations)):
            restored = restore(p, tr) if tr is not None else None
            if restored is None:
                kept.append(i)
                out.append(src)
            else:
                out.append(restored)
        return self.segmentation.join(out), kept


def _prepare_text(
    text: str, mode: SplitMode, max_chars: int, preserve: bool, markers: Sequence[tuple[int, int]] = ()
) -> PreparedText:
    keep = sorted(set(markers) | set(find_spans(text) if preserve else mask_spans(text)))
    seg = segment_text(text, mode, max_chars, keep)
    prots = []
    ordered = sorted(markers)
    starts = [a for a, _ in ordered]
    for segment, (start, end) in zip(seg.segments, seg.spans):
        # the markers inside this segment, found by bisection (a scan of all of them per segment is quadratic)
        lo, hi = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
        fixed = [(a - start, b - start) for a, b in ordered[lo:hi] if b <= end]
        prots.append(protect(segment, detect=preserve, fixed=fixed))
    return PreparedText(seg, tuple(prots))


@dataclass(frozen=True)
class PreparedEntry:
    parts: tuple[PreparedText, ...]  # one for plain text; one per run for markup
    document: MarkupDocument | None = None
    language: DetectedLanguage | None = None  # the source language found (langid.py); None: too short, or not checked

    @property
    def engine_texts(self) -> list[str]:
        """What the engine translates, one per segment, in order."""
        return [p.text for part in self.parts for p in part.protected]

    @property
    def segments(self) -> int:
        return sum(len(part.protected) for part in self.parts)

    def words(self, source: str, limit: int) -> str:
        """About the first ``limit`` characters of the entry's own words: ``source`` itself for plain text; the text
        nodes of markup, without its tags (what a language check reads)."""
        if self.document is None:
            return source[:limit]
        pieces, size = [], 0
        for run in self.document.runs:
            for slot in run.slots:
                piece = getattr(*slot) or ""
                pieces.append(piece)
                size += len(piece)
                if size >= limit:
                    return " ".join(pieces)[:limit]
        return " ".join(pieces)

    def assemble(self, translations: Sequence[str | None]) -> tuple[str, list[int]]:
        """The entry's text from one translation per segment (``None``: failed), and the indices of the segments
        left in the source language (failed, or refused as damaged)."""
        if len(translations) != self.segments:
            raise ValueError(f"{len(translations)} translations for {self.segments} segments")
        texts, kept, k = [], [], 0
        for part in self.parts:
            n = len(part.protected)
            text, part_kept = part.assemble(translations[k : k + n])
            texts.append(text)
            kept += [k + i for i in part_kept]
            k += n
        if self.document is None:
            return texts[0], kept
        return self.document.render(texts), kept


def prepare(
    text: str,
    mode: SplitMode = "on",
    max_chars: int = 1000,
    preserve: bool = True,
    tag_handling: TagHandling | None = None,
) -> PreparedEntry:
    """Raises :class:`~batchmt_server.text.markup.MarkupError` for markup that does not parse."""
    if tag_handling is None:
        return PreparedEntry((_prepare_text(text, mode, max_chars, preserve),))
    doc = parse_markup(text, tag_handling)
    parts = []
    for run in doc.runs:
        source = run.source()
        parts.append(_prepare_text(source, mode, max_chars, preserve, run.marker_spans(source)))
    return PreparedEntry(tuple(parts), doc)
