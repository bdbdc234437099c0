"""The persistent translation memory: translations remembered in the store across restarts.

Keyed by the translation signature (everything that decides the output: model, template, pack cap, quality
and ensemble knobs, ...) and the normalised source sentence, so a change of model or quality never serves an
old answer, and ensemble results live under their own signature. Bounded: the least recently used entries go
first beyond ``max_entries``. Only delivered, unflagged translations are stored (the caller decides; see
``Translator``). A small in-process LRU in front keeps the hot entries off the database, and new entries are
written in batches every ``flush_s`` (50 ms; one transaction for all the requests of that time instead of one
each): a crash loses at most that much of the memory, never a translation a caller is waiting for.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence

from ..stores import Store

__all__ = ["TranslationMemory", "normalise"]

log = logging.getLogger("batchmt.memory")


def normalise(text: str) -> str:
    """The memory's key of a source sentence: Unicode NFC, whitespace runs collapsed, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class TranslationMemory:
    def __init__(self, store: Store, max_entries: int, *, hot_entries: int = 4096, flush_s: float = 0.05) -> None:
        self.store = store
        self.max_entries = max_entries
        self.hot_entries = min(hot_entries, max_entries)
        self.flush_s = flush_s
        self._hot: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._pending: dict[str, dict[str, str]] = {}  # signature -> {normalised source: translation}, unwritten
        self._flusher: asyncio.Task | None = None
        #: signature -> (normalised sources wanted, their answer): the lookups of this turn of the event loop
        self._reads: dict[str, tuple[set[str], asyncio.Future[dict[str, str]]]] = {}
        self._readers: set[asyncio.Task] = set()

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
            found = await self._read(signature, missing)
            for text, key in keys.items():
                if key in found:
                    out[text] = found[key]
                    self._remember_hot(signature, key, found[key])
        return out

    async def _read(self, signature: str, keys: list[str]) -> dict[str, str]:
        """The store's entries for ``keys``, read together with the other lookups of this turn of the loop."""
        batch = self._reads.get(signature)
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._reads[signature] = (set(), loop.create_future())
            loop.call_soon(self._start_read, signature)
        batch[0].update(keys)
        found = await asyncio.shield(batch[1])  # a caller that goes away does not cancel the others' read
        return {k: found[k] for k in keys if k in found}

    def _start_read(self, signature: str) -> None:
        task = asyncio.get_running_loop().create_task(self._read_batch(signature))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _read_batch(self, signature: str) -> None:
        keys, answer = self._reads.pop(signature)
        try:
            answer.set_result(await self.store.tm_get(signature, list(keys), time.time()))
        except Exception as exc:
            answer.set_exception(exc)
            answer.exception()  # retrieved here too: every waiter may have gone away

    async def remember(self, signature: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Store (source, translation) pairs: only delivered, unflagged translations (the caller's duty)."""
        if not self.enabled or not pairs:
            return
        pending = self._pending.setdefault(signature, {})
        for s, t in pairs:
            key = normalise(s)
            pending[key] = t
            self._remember_hot(signature, key, t)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_s)
        try:
            await self.flush()
        except Exception:  # the memory is an optimisation: log, keep serving
            log.exception("could not write the translation memory")

    async def flush(self) -> None:
        """Write the entries remembered since the last write (one transaction per signature)."""
        pending, self._pending = self._pending, {}
        for signature, entries in pending.items():
            await self.store.tm_put(signature, list(entries.items()), time.time(), self.max_entries)

    async def close(self) -> None:
        """Write what is pending (graceful shutdown)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()

    def _remember_hot(self, signature: str, key: str, target: str) -> None:
        if self.hot_entries <= 0:
            return
        self._hot[(signature, key)] = target
        self._hot.move_to_end((signature, key))
        while len(self._hot) > self.hot_entries:
            self._hot.popitem(last=False)

    async def size(self) -> int:
        return await self.store.tm_size()
