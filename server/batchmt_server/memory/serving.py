"""The translation memory API's logic: who owns which entries (the scope), limits, and the formats.

Scope: with keys on, a key's memory is its own (its id is the scope); an admin key may name another key's id to
purge or export that key's memory. With keys off (or the single static ``--api-key``), every caller shares one
memory (the scope ``''``).

An imported pair is stored the way a translation is looked up: its English is normalised and its protected spans
(placeholders, URLs, e-mail addresses, ...; text/placeholders.py) masked as ``[PH_n]``, and the same spans of the
German get the same masks, so ``Hello {name}!`` answers for any value of ``{name}``. A pair whose German does not
hold exactly the English's spans is skipped (``placeholders_differ``). A unit is matched as one segment: a unit of
several sentences answers requests whose segment is that whole text (``split_sentences: "off"``, or an entry the
segmenter keeps whole).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

from ..pipeline.memory import ANONYMOUS_SCOPE, TranslationMemory, normalise
from ..protocol.errors import APIError
from ..settings import Settings
from ..stores.base import MemoryFull
from ..text.placeholders import check_masks, protect
from .formats import TMX_TAIL, FormatError, Parsed, parse_tmx, parse_tsv, sniff, tmx_head, tmx_unit
from .protocol import MemoryImport, MemoryInfo, MemoryPurge, Origin

__all__ = ["MemoryServing", "mask_pair", "scope_of"]


def scope_of(key_id: str | None, admin: bool, asked: str | None) -> str:
    """The scope a caller works on: its own key's; an admin key may name another key (``asked``)."""
    if asked is not None and asked != (key_id or ANONYMOUS_SCOPE):
        if key_id is None:
            raise APIError(400, "invalid_request", "'key' names a key's memory: keys are off here", param="key")
        if not admin:
            raise APIError(403, "forbidden", "only an admin key may use another key's memory", param="key")
        return asked
    return key_id if key_id is not None else ANONYMOUS_SCOPE


def mask_pair(source: str, target: str) -> tuple[str, str] | None:
    """The pair as the memory keeps it: the English's protected spans masked, the German's same spans given the
    same masks; None when the German's spans are not exactly the English's."""
    src = protect(source)
    if src.empty:
        return source, target
    tgt = protect(target)
    if Counter(tgt.spans) != Counter(src.spans):
        return None
    free: dict[str, list[str]] = {}
    for span, token in zip(src.spans, src.tokens):
        free.setdefault(span, []).append(token)
    parts, pos = [], 0
    text = target
    # the German's spans, in order, replaced by the English's masks (a span twice: its masks in order)
    for span in tgt.spans:
        at = text.index(span, pos)
        parts += [text[pos:at], free[span].pop(0)]
        pos = at + len(span)
    parts.append(text[pos:])
    masked = "".join(parts)
    return (src.text, masked) if check_masks(src.text, masked) is None else None


class MemoryServing:
    def __init__(self, memory: TranslationMemory | None, settings: Settings) -> None:
        self.memory, self.settings = memory, settings

    @property
    def max_import_bytes(self) -> int:
        return self.settings.memory_import_max_bytes

    def _memory(self) -> TranslationMemory:
        if self.memory is None or not self.memory.enabled:
            raise APIError(
                409, "memory_off", "the translation memory is off on this gateway (--translation-memory-size 0)"
            )
        return self.memory

    def parse(self, data: bytes, filename: str | None, fmt: str | None) -> tuple[str, Parsed]:
        """The file's pairs (masked, checked against the limits), or a 4xx before anything is stored."""
        if len(data) > self.max_import_bytes:
            raise APIError(
                413, "file_too_large", f"memory imports are limited to {self.max_import_bytes} bytes", param="file"
            )
        if not data.strip():
            raise APIError(422, "empty_file", "the file is empty", param="file")
        if fmt not in (None, "", "tmx", "tsv"):
            raise APIError(422, "invalid_format", "format must be 'tmx' or 'tsv'", param="format")
        kind = fmt or sniff(data, filename)
        try:
            parsed = parse_tmx(data) if kind == "tmx" else parse_tsv(data)
        except FormatError as exc:
            raise APIError(400, exc.code, exc.message, param="file") from None
        return kind, self._entries(parsed)

    def _entries(self, parsed: Parsed) -> Parsed:
        """The pairs as the memory keeps them (masked, normalised, one per English), checked against the limits."""
        limit = self.settings.max_sentence_chars
        out = Parsed(skipped=dict(parsed.skipped))
        seen: dict[str, int] = {}
        for n, (source, target) in enumerate(parsed.pairs, 1):
            if len(source) > limit or len(target) > 4 * limit:
                raise APIError(
                    422,
                    "segment_too_long",
                    f"entry {n}: {len(source)} characters of English / {len(target)} of German; the limit is "
                    f"{limit} (German: {4 * limit})",
                    param="file",
                )
            pair = mask_pair(source, target)
            if pair is None:
                out.skip("placeholders_differ")
                continue
            key = normalise(pair[0])
            if key in seen:  # the same English again: the last one wins
                out.skip("duplicate")
                out.pairs[seen[key]] = (key, pair[1])
                continue
            seen[key] = len(out.pairs)
            out.pairs.append((key, pair[1]))
        if not out.pairs:
            raise APIError(
                422,
                "no_entries",
                f"no English-German pair to import (skipped: {out.skipped or 'none'})",
                param="file",
            )
        if len(out.pairs) > self.settings.memory_max_human_entries:
            raise APIError(
                413,
                "too_many_entries",
                f"the file has {len(out.pairs)} entries; a key's memory holds at most "
                f"{self.settings.memory_max_human_entries} human entries",
                param="file",
            )
        return out

    async def import_file(self, scope: str, data: bytes, filename: str | None, fmt: str | None) -> MemoryImport:
        memory = self._memory()
        kind, parsed = self.parse(data, filename, fmt)
        try:
            new = await memory.import_pairs(scope, parsed.pairs)
        except MemoryFull as exc:
            raise APIError(
                413,
                "memory_full",
                f"this key's memory holds {exc.have} human entries; the {exc.adding} new ones of this file would pass "
                f"its limit of {exc.limit}: purge some first (DELETE /v1/memory?origin=human)",
                param="file",
            ) from None
        return MemoryImport(format=kind, imported=len(parsed.pairs), new=new, skipped=parsed.skipped)

    def export(self, scope: str, origin: Origin | None) -> AsyncIterator[str]:
        """The scope's entries as a TMX 1.4b document, piece by piece (a memory that is off: the 409 now, before
        the response starts)."""
        return self._export(self._memory(), scope, origin)

    @staticmethod
    async def _export(memory: TranslationMemory, scope: str, origin: Origin | None) -> AsyncIterator[str]:
        yield tmx_head()
        async for entry in memory.entries(scope, origin):
            yield tmx_unit(entry)
        yield TMX_TAIL

    async def purge(self, scope: str, source: str | None, origin: Origin | None) -> MemoryPurge:
        memory = self._memory()
        if source is not None and not source.strip():
            raise APIError(422, "invalid_request", "source must not be empty", param="source")
        key = None
        if source is not None:
            key = protect(source).text  # as the translate path keys it (its protected spans masked)
        return MemoryPurge(deleted=await memory.purge(scope, source=key, origin=origin))

    async def info(self, scope: str) -> MemoryInfo:
        on = self.memory is not None and self.memory.enabled
        human = await self.memory.count(scope, "human") if on and self.memory is not None else 0
        model = await self.memory.count(scope, "model") if on and self.memory is not None else 0
        return MemoryInfo(
            enabled=on,
            human_entries=human,
            model_entries=model,
            max_human_entries=self.settings.memory_max_human_entries,
            max_import_bytes=self.max_import_bytes,
        )
