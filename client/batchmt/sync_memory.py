# Generated from async_memory.py by scripts/unasync.py: do not edit. Edit async_memory.py, then run
# `python scripts/unasync.py` (scripts/check fails while this file is stale).
"""``client.memory``: the server's translation memory (``/v1/memory``; see :mod:`batchmt.memory`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._concurrency import run_blocking
from .memory import MemoryImport, MemoryInfo, Origin, _query, _read, _write

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Memory"]


class Memory:
    """``client.memory``: import, export and purge the API key's translation memory (see :mod:`batchmt.memory`)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def import_file(self, path: str | os.PathLike[str], *, format: Literal["tmx", "tsv"] | None = None) -> MemoryImport:
        """Import human translations from a TMX (1.4b) or TSV (``English<TAB>German``) file; ``format``: by the
        file name (``.tmx``, ``.tsv``) when not given. Raises :class:`~batchmt.errors.APIError` for a file the
        server refuses (nothing is stored then)."""
        data, name = run_blocking(_read, path)
        return self.import_bytes(data, name, format=format)

    def import_bytes(self, data: bytes, filename: str, *, format: Literal["tmx", "tsv"] | None = None) -> MemoryImport:
        response = self._client._upload(  # a multipart upload: no retries (the body is not replayed)
            "POST",
            "/v1/memory/import",
            files={"file": (filename, data, "application/octet-stream")},
            data={"format": format} if format else None,
        )
        return MemoryImport.from_json(response.json())

    def export(self, path: str | os.PathLike[str], *, origin: Origin | None = None, key: str | None = None) -> Path:
        """Write the memory to ``path`` as TMX 1.4b (``origin``: only ``human`` or ``model`` entries; ``key``: an
        admin key exports another key's memory). Returns the path."""
        r = self._client._request("GET", _query("/v1/memory/export", origin=origin, key=key))
        return run_blocking(_write, path, r.content)

    def purge(self, *, source: str | None = None, origin: Origin | None = None, key: str | None = None) -> int:
        """Delete entries: all of the memory, or those of one English ``source`` sentence and/or one ``origin``
        (``key``: an admin key purges another key's memory). Returns how many were deleted."""
        r = self._client._request("DELETE", _query("/v1/memory", source=source, origin=origin, key=key))
        return int(r.json()["deleted"])

    def info(self, *, key: str | None = None) -> MemoryInfo:
        """How many human and model entries the memory holds, and its limits."""
        r = self._client._request("GET", _query("/v1/memory", key=key))
        return MemoryInfo.from_json(r.json())
