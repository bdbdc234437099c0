# Generated from async_glossaries.py by scripts/unasync.py: do not edit. Edit async_glossaries.py, then run
# `python scripts/unasync.py` (scripts/check fails while this file is stale).
"""``client.glossaries``: glossaries on the server (``/v1/glossaries``; see :mod:`batchmt.glossaries`)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ._concurrency import run_blocking
from .glossaries import Glossary, entries_tsv, file_upload, glossary_id, parse_tsv

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Glossaries"]


class Glossaries:
    """``client.glossaries``: create, list, get, read entries of and delete glossaries."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
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
        response = self._client._request("POST", "/v1/glossaries", body=body)
        return Glossary.from_json(self._client._json(response))

    def create_from_file(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        source_lang: str = "en",
        target_lang: str = "de",
    ) -> Glossary:
        """Create a glossary from a ``.tmx``, ``.tsv`` or ``.csv`` file (uploaded as it is; no retries)."""
        filename, content, fmt = run_blocking(file_upload, path)
        c = self._client
        response = c._upload(
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

    def list(self) -> list[Glossary]:
        response = self._client._request("GET", "/v1/glossaries")
        return [Glossary.from_json(g) for g in self._client._json(response).get("glossaries", [])]

    def get(self, glossary: Glossary | str) -> Glossary:
        response = self._client._request("GET", f"/v1/glossaries/{glossary_id(glossary)}")
        return Glossary.from_json(self._client._json(response))

    def entries(self, glossary: Glossary | str) -> builtins.list[tuple[str, str]]:
        """The glossary's (source, target) pairs, sorted by source term."""
        response = self._client._request("GET", f"/v1/glossaries/{glossary_id(glossary)}/entries")
        return parse_tsv(response.text)

    def delete(self, glossary: Glossary | str) -> None:
        self._client._request("DELETE", f"/v1/glossaries/{glossary_id(glossary)}")
