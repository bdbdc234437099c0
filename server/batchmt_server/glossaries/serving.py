"""The glossaries' logic: create (limits checked before anything is stored), list, read, delete; and resolving a
``glossary_id`` of a translate request for its caller (404 for an unknown id and for another key's).

A glossary belongs to the key that created it (``owner``; ``None`` with keys off). Only that key reads, uses or
deletes it; an admin key lists and reads every glossary but uses only its own in translations (a translation's
steer is the caller's). Glossaries are immutable (as DeepL's): a change is a new glossary.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from ..protocol.errors import APIError
from ..protocol.validation import LANGUAGE_PAIRS
from ..stores import Store
from ..stores.base import GlossaryRecord
from .protocol import GlossaryList, GlossaryObject
from .terms import Limits, TermIndex, check_entries, digest, parse_entries, parse_tmx

__all__ = ["GlossaryServing", "LoadedGlossary", "Caller"]


@dataclass(frozen=True)
class Caller:
    owner: str | None = None
    admin: bool = True  # keys off: the one caller sees everything

    def sees(self, owner: str | None) -> bool:
        return self.admin or owner == self.owner


@dataclass(frozen=True)
class LoadedGlossary:
    record: GlossaryRecord
    index: TermIndex

    @property
    def ref(self) -> str:
        """``id@version``: what the signature and the memory key carry."""
        return f"{self.record.id}@{self.record.digest}"


def _object(rec: GlossaryRecord) -> GlossaryObject:
    return GlossaryObject(
        glossary_id=rec.id,
        name=rec.name,
        source_lang=rec.source_lang,
        target_lang=rec.target_lang,
        creation_time=datetime.fromtimestamp(rec.created_at, UTC).isoformat().replace("+00:00", "Z"),
        entry_count=rec.entry_count,
        version=rec.digest,
    )


def _not_found(glossary_id: str) -> APIError:
    return APIError(404, "glossary_not_found", f"no glossary {glossary_id[:64]!r} for this key", param="glossary_id")


class GlossaryServing:
    def __init__(
        self, store: Store, *, max_entries: int, max_term_chars: int, max_per_key: int, cache: int = 64
    ) -> None:
        self.store = store
        self.limits = Limits(max_entries, max_term_chars)
        self.max_per_key = max_per_key
        self._cache: OrderedDict[str, LoadedGlossary] = OrderedDict()  # "id@digest" -> index
        self._cache_size = cache

    @classmethod
    def from_settings(cls, store: Store, settings) -> GlossaryServing:
        return cls(
            store,
            max_entries=settings.glossary_max_entries,
            max_term_chars=settings.glossary_max_term_chars,
            max_per_key=settings.glossary_max_per_key,
        )

    # ------------------------------------------------------------------ create
    def _langs(self, source_lang: str, target_lang: str) -> tuple[str, str]:
        pair = (source_lang.strip().lower(), target_lang.strip().lower())
        if pair not in LANGUAGE_PAIRS:
            served = ", ".join(f"{a}->{b}" for a, b in LANGUAGE_PAIRS)
            raise APIError(
                422,
                "unsupported_language_pair",
                f"{source_lang}->{target_lang} is not served; supported: {served}",
                param="target_lang",
            )
        return pair

    def read_entries(
        self, source_lang: str, target_lang: str, *, text: str | None = None, fmt: str = "tsv", tmx: bytes | None = None
    ) -> tuple[tuple[str, str], list[tuple[str, str]]]:
        """Parse and check the entries (nothing stored yet): the language pair and the entries."""
        langs = self._langs(source_lang, target_lang)
        if tmx is not None:
            raw = parse_tmx(tmx, self.limits, *langs)
        else:
            raw = parse_entries(text or "", fmt, self.limits, *langs)
        return langs, check_entries(raw, self.limits)

    async def create(
        self, caller: Caller, name: str, langs: tuple[str, str], entries: list[tuple[str, str]]
    ) -> GlossaryObject:
        name = name.strip()
        if not name or len(name) > 256:
            raise APIError(422, "invalid_name", "name must be 1 to 256 characters", param="name")
        rec = GlossaryRecord(
            id=f"gl-{secrets.token_hex(12)}",
            owner=caller.owner,
            name=name,
            source_lang=langs[0],
            target_lang=langs[1],
            entry_count=len(entries),
            digest=digest(entries),
            created_at=int(time.time()),
        )
        if not await self.store.glossary_create(rec, entries, self.max_per_key):
            raise APIError(
                409,
                "too_many_glossaries",
                f"this key has {self.max_per_key} glossaries, the limit: delete one first",
            )
        return _object(rec)

    # ------------------------------------------------------------------ read, delete
    async def _mine(self, caller: Caller, glossary_id: str) -> GlossaryRecord:
        rec = await self.store.glossary_get(glossary_id)
        if rec is None or not caller.sees(rec.owner):
            raise _not_found(glossary_id)
        return rec

    async def list(self, caller: Caller) -> GlossaryList:
        # an admin key sees every key's; keys off (owner None), the unowned ones (all there are)
        recs = await self.store.glossary_list(caller.owner, every=caller.admin and caller.owner is not None)
        return GlossaryList(glossaries=[_object(r) for r in recs])

    async def get(self, caller: Caller, glossary_id: str) -> GlossaryObject:
        return _object(await self._mine(caller, glossary_id))

    async def entries_tsv(self, caller: Caller, glossary_id: str) -> str:
        rec = await self._mine(caller, glossary_id)
        return "".join(f"{s}\t{t}\n" for s, t in await self.store.glossary_entries(rec.id))

    async def delete(self, caller: Caller, glossary_id: str) -> None:
        rec = await self._mine(caller, glossary_id)
        await self.store.glossary_delete(rec.id)
        for key in [k for k in self._cache if k.startswith(f"{rec.id}@")]:
            del self._cache[key]

    # ------------------------------------------------------------------ use in a translation
    async def resolve(self, glossary_id: str, tenant: str | None, source_lang: str, target_lang: str) -> LoadedGlossary:
        """The glossary a translate request names, for its caller (``tenant``: the key id, None with keys off);
        404 when unknown or another key's, 422 when its languages are not the request's."""
        rec = await self.store.glossary_get(glossary_id)
        if rec is None or rec.owner != tenant:
            raise _not_found(glossary_id)
        if (rec.source_lang, rec.target_lang) != (source_lang.lower(), target_lang.lower()):
            raise APIError(
                422,
                "glossary_language_mismatch",
                f"the glossary is {rec.source_lang}->{rec.target_lang}; the request is {source_lang}->{target_lang}",
                param="glossary_id",
            )
        ref = f"{rec.id}@{rec.digest}"
        hit = self._cache.get(ref)
        if hit is None:
            hit = LoadedGlossary(rec, TermIndex(await self.store.glossary_entries(rec.id)))
            self._cache[ref] = hit
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(ref)
        return hit
