"""The translation memory: translations remembered in the store across restarts, the one place that caches them.

Each entry belongs to a **scope**: the API key whose memory it is (``''`` with keys off: one shared memory), so one
tenant never learns from a hit (or its zero cost) that another translated a sentence. Within a scope, an entry is
keyed by the translation signature (everything that decides the output: model, template, pack cap, quality and
ensemble knobs, ...) and the normalised source sentence, so a change of model or quality never serves an old
answer. Its **origin** is ``model`` (a delivered, unflagged translation: the caller decides, see ``Translator``) or
``human`` (imported from TMX or TSV, :mod:`batchmt_server.memory`): a human entry answers under every signature,
wins over a model entry, and is never evicted. Model entries are bounded: the least recently used go first beyond
``max_entries``.

A small in-process LRU in front (the hot tier, ``hot_entries``) keeps the hot entries off the database; an entry is
served from it for at most ``hot_ttl_s`` (so an import or purge on another gateway sharing a PostgreSQL store is seen
within that time; on this gateway at once). New entries are written in batches every ``flush_s`` (50 ms; one
transaction for all the requests of that time instead of one each): a crash loses at most that much of the memory,
never a translation a caller is waiting for.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence

from ..stores import Store
from ..stores.base import MemoryEntry, MemoryHit

__all__ = ["TranslationMemory", "MemoryHit", "normalise", "ANONYMOUS_SCOPE"]

log = logging.getLogger("batchmt.memory")

#: the scope of every entry when keys are off: one memory shared by every caller
ANONYMOUS_SCOPE = ""


def normalise(text: str) -> str:
    """The memory's key of a source sentence: Unicode NFC, whitespace runs collapsed, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class TranslationMemory:
    def __init__(
        self,
        store: Store,
        max_entries: int,
        *,
        hot_entries: int = 4096,
        hot_ttl_s: float = 5.0,
        flush_s: float = 0.05,
        max_human_entries: int = 100_000,
    ) -> None:
        self.store = store
        self.max_entries = max_entries
        self.max_human_entries = max_human_entries
        self.hot_entries = min(hot_entries, max_entries)
        self.hot_ttl_s = hot_ttl_s
        self.flush_s = flush_s
        #: (scope, signature, normalised source) -> (entry, when it was read or written)
        self._hot: OrderedDict[tuple[str, str, str], tuple[MemoryHit, float]] = OrderedDict()
        #: (scope, signature) -> {normalised source: translation}: model entries not written yet
        self._pending: dict[tuple[str, str], dict[str, str]] = {}
        self._flusher: asyncio.Task | None = None
        #: (scope, signature) -> (normalised sources wanted, their answer): the lookups of this turn of the event loop
        self._reads: dict[tuple[str, str], tuple[set[str], asyncio.Future[dict[str, MemoryHit]]]] = {}
        self._readers: set[asyncio.Task] = set()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    async def lookup(self, scope: str, signature: str, texts: Sequence[str]) -> dict[str, MemoryHit]:
        """``{text: entry}`` for the texts remembered in ``scope`` (a human entry, else a model entry under
        ``signature``); keys as given, not normalised."""
        if not self.enabled or not texts:
            return {}
        keys = {t: normalise(t) for t in texts}
        out: dict[str, MemoryHit] = {}
        missing: list[str] = []
        now = time.monotonic()
        for text, key in keys.items():
            hot = self._hot.get((scope, signature, key))
            if hot is not None and now - hot[1] <= self.hot_ttl_s:
                self._hot.move_to_end((scope, signature, key))
                out[text] = hot[0]
            else:
                missing.append(key)
        if missing:
            found = await self._read(scope, signature, missing)
            for text, key in keys.items():
                if key in found:
                    out[text] = found[key]
                    self._remember_hot(scope, signature, key, found[key])
        return out

    async def _read(self, scope: str, signature: str, keys: list[str]) -> dict[str, MemoryHit]:
        """The store's entries for ``keys``, read together with the other lookups of this turn of the loop."""
        batch = self._reads.get((scope, signature))
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._reads[(scope, signature)] = (set(), loop.create_future())
            loop.call_soon(self._start_read, scope, signature)
        batch[0].update(keys)
        found = await asyncio.shield(batch[1])  # a caller that goes away does not cancel the others' read
        return {k: found[k] for k in keys if k in found}

    def _start_read(self, scope: str, signature: str) -> None:
        task = asyncio.get_running_loop().create_task(self._read_batch(scope, signature))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _read_batch(self, scope: str, signature: str) -> None:
        keys, answer = self._reads.pop((scope, signature))
        try:
            answer.set_result(await self.store.tm_get(scope, signature, list(keys), time.time()))
        except Exception as exc:
            answer.set_exception(exc)
            answer.exception()  # retrieved here too: every waiter may have gone away

    async def remember(self, scope: str, signature: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Store the model's (source, translation) pairs: only delivered, unflagged translations (the caller's
        duty)."""
        if not self.enabled or not pairs:
            return
        pending = self._pending.setdefault((scope, signature), {})
        for s, t in pairs:
            key = normalise(s)
            pending[key] = t
            self._remember_hot(scope, signature, key, MemoryHit(t, "model"))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def import_pairs(self, scope: str, pairs: Sequence[tuple[str, str]]) -> int:
        """Store (source, translation) pairs as human entries of ``scope`` (they win over the model's and are never
        evicted); raises :class:`~batchmt_server.stores.base.MemoryFull` beyond ``max_human_entries`` (nothing is
        stored then). Returns how many sources were new."""
        new = await self.store.tm_import(
            scope, [(normalise(s), t) for s, t in pairs], time.time(), self.max_human_entries
        )
        self._forget_hot(scope)
        return new

    async def purge(self, scope: str | None, *, source: str | None = None, origin: str | None = None) -> int:
        """Delete ``scope``'s entries (None: every scope's), only those of ``source`` and/or ``origin`` when given;
        what is waiting to be written goes too. Returns how many were stored."""
        key = normalise(source) if source is not None else None
        if origin in (None, "model"):
            for (sc, _sig), entries in self._pending.items():
                if scope is None or sc == scope:
                    if key is None:
                        entries.clear()
                    else:
                        entries.pop(key, None)
        n = await self.store.tm_purge(scope, source=key, origin=origin)
        self._forget_hot(scope)
        return n

    async def entries(self, scope: str, origin: str | None = None, page: int = 1000) -> AsyncIterator[MemoryEntry]:
        """Every entry of ``scope`` (``origin``: only those), page by page (written ones: flushed first)."""
        await self.flush()
        after: tuple[str, str] | None = None
        while True:
            rows = await self.store.tm_entries(scope, origin, after=after, limit=page)
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = (rows[-1].signature, rows[-1].source)

    async def count(self, scope: str, origin: str | None = None) -> int:
        return await self.store.tm_count(scope, origin)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_s)
        try:
            await self.flush()
        except Exception:  # the memory is an optimisation: log, keep serving
            log.exception("could not write the translation memory")

    async def flush(self) -> None:
        """Write the entries remembered since the last write (one transaction per scope and signature)."""
        pending, self._pending = self._pending, {}
        for (scope, signature), entries in pending.items():
            if entries:
                await self.store.tm_put(scope, signature, list(entries.items()), time.time(), self.max_entries)

    async def close(self) -> None:
        """Write what is pending (graceful shutdown)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()

    def _remember_hot(self, scope: str, signature: str, key: str, entry: MemoryHit) -> None:
        if self.hot_entries <= 0:
            return
        self._hot[(scope, signature, key)] = (entry, time.monotonic())
        self._hot.move_to_end((scope, signature, key))
        while len(self._hot) > self.hot_entries:
            self._hot.popitem(last=False)

    def _forget_hot(self, scope: str | None) -> None:
        """Drop the hot tier's entries of ``scope`` (None: all): an import or purge changed what it must answer."""
        if scope is None:
            self._hot.clear()
            return
        for k in [k for k in self._hot if k[0] == scope]:
            del self._hot[k]

    async def size(self) -> int:
        """Model entries stored (what ``max_entries`` bounds)."""
        return await self.store.tm_size()
