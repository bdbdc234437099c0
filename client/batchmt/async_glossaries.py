"""``client.glossaries``: glossaries on the server (``/v1/glossaries``; see :mod:`batchmt.glossaries`)."""

# The one hand-written copy: sync_glossaries.py is generated from this file by scripts/unasync.py.  # async-only

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ._concurrency import async_run_blocking
from .glossaries import Glossary, entries_tsv, file_upload, glossary_id, parse_tsv

if TYPE_CHECKING:  # pragma: no cover
    from .async_client import AsyncClient

__all__ = ["AsyncGlossaries"]


class AsyncGlossaries:
    """``client.glossaries``: create, list, get, read entries of and delete glossaries."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        entries: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        source_lang: str = "en",
        target_lang: str = "de",
    ) -> Glossary:
        """Create a glossary from ``{source: target}`` (or pairs); sent as DeepL's v2 body (TSV entries)."""
        body = {
            "name": name,
            "source_lang": source_lang,
            "target_lang": target_lang,
            "entries": entries_tsv(entries),
            "entries_format": "tsv",
        }
        response = await self._client._request("POST", "/v1/glossaries", body=body)
        return Glossary.from_json(self._client._json(response))

    async def create_from_file(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        source_lang: str = "en",
        target_lang: str = "de",
    ) -> Glossary:
        """Create a glossary from a ``.tmx``, ``.tsv`` or ``.csv`` file (uploaded as it is; no retries)."""
        filename, content, fmt = await async_run_blocking(file_upload, path)
        c = self._client
        response = await c._upload(
            "POST",
            "/v1/glossaries",
            data={
                "name": name or filename,
                "source_lang": source_lang,
                "target_lang": target_lang,
                "entries_format": fmt,
            },
            files={"file": (filename, content)},
        )
        return Glossary.from_json(c._json(response))

    async def list(self) -> list[Glossary]:
        response = await self._client._request("GET", "/v1/glossaries")
        return [Glossary.from_json(g) for g in self._client._json(response).get("glossaries", [])]

    async def get(self, glossary: Glossary | str) -> Glossary:
        response = await self._client._request("GET", f"/v1/glossaries/{glossary_id(glossary)}")
        return Glossary.from_json(self._client._json(response))

    async def entries(self, glossary: Glossary | str) -> builtins.list[tuple[str, str]]:
        """The glossary's (source, target) pairs, sorted by source term."""
        response = await self._client._request("GET", f"/v1/glossaries/{glossary_id(glossary)}/entries")
        return parse_tsv(response.text)

    async def delete(self, glossary: Glossary | str) -> None:
        await self._client._request("DELETE", f"/v1/glossaries/{glossary_id(glossary)}")
