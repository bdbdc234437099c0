"""The persistent translation memory: translations remembered in the store across restarts.

Keyed by the translation signature (everything that decides the output: model, template, pack cap, quality
and ensemble knobs, ...) and the normalised source sentence, so a change of model or quality never serves an
old answer, and ensemble results live under their own signature. Bounded: the least recently used entries go
first beyond ``max_entries``. Only delivered, unflagged translations are stored (the caller decides; see
``Translator``). A small in-process LRU in front keeps the hot entries off the database.
"""

from __future__ import annotations

import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence

from .stores import Store

__all__ = ["TranslationMemory", "normalise"]


def normalise(text: str) -> str:
    """The memory's key of a source sentence: Unicode NFC, whitespace runs collapsed, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class TranslationMemory:
    def __init__(self, store: Store, max_entries: int, *, hot_entries: int = 4096) -> None:
        self.store = store
        self.max_entries = max_entries
        self.hot_entries = min(hot_entries, max_entries)
        self._hot: OrderedDict[tuple[str, str], str] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    async def lookup(self, signature: str, texts: Sequence[str]) -> dict[str, str]:
        """``{text: translation}`` for the texts remembered under ``signature`` (keys as given, not normalised)."""
        if not self.enabled or not texts:
            return {}
        keys = {t: normalise(t) for t in texts}
        out: dict[str, str] = {}
        missing: list[str] = []
        for text, key in keys.items():
            hit = self._hot.get((signature, key))
            if hit is not None:
                self._hot.move_to_end((signature, key))
                out[text] = hit
            else:
                missing.append(key)
        if missing:
            found = await self.store.tm_get(signature, missing, time.time())
            for text, key in keys.items():
                if key in found:
                    out[text] = found[key]
                    self._remember_hot(signature, key, found[key])
        return out

    async def remember(self, signature: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Store (source, translation) pairs: only delivered, unflagged translations (the caller's duty)."""
        if not self.enabled or not pairs:
            return
        norm = list({normalise(s): t for s, t in pairs}.items())
        await self.store.tm_put(signature, norm, time.time(), self.max_entries)
        for key, target in norm:
            self._remember_hot(signature, key, target)

    def _remember_hot(self, signature: str, key: str, target: str) -> None:
        if self.hot_entries <= 0:
            return
        self._hot[(signature, key)] = target
        self._hot.move_to_end((signature, key))
        while len(self._hot) > self.hot_entries:
            self._hot.popitem(last=False)

    async def size(self) -> int:
        return await self.store.tm_size()
