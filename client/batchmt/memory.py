"""The server's translation memory from the SDK: ``client.memory`` (``/v1/memory``).

>>> with batchmt.Client() as client:
...     client.memory.import_file("style-guide.tmx")   # human translations, served before the model
...     client.memory.export("memory.tmx")             # everything the key's memory holds, as TMX 1.4b
...     client.memory.purge(source="A wrong sentence.") # one sentence; purge() alone: the whole memory

Imported entries are ``human``: they answer under every model and setting, win over the model's remembered
answers and are never evicted. The memory is the API key's own (one shared memory when the server runs without
keys). This module holds what both clients share; the methods are :class:`~batchmt.async_memory.AsyncMemory`
(the one hand-written copy) and :class:`~batchmt.sync_memory.Memory` (generated from it by scripts/unasync.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

__all__ = ["MemoryImport", "MemoryInfo", "Origin"]

Origin = Literal["human", "model"]


@dataclass(frozen=True)
class MemoryImport:
    """What an import stored: ``imported`` entries (``new`` of them for sources not held before) and the units
    ``skipped``, by reason (``no_language_pair``, ``empty``, ``placeholders_differ``, ``duplicate``)."""

    format: str
    imported: int
    new: int
    skipped: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MemoryImport:
        return cls(
            format=str(data.get("format")),
            imported=int(data.get("imported", 0)),
            new=int(data.get("new", 0)),
            skipped={str(k): int(v) for k, v in (data.get("skipped") or {}).items()},
        )


@dataclass(frozen=True)
class MemoryInfo:
    enabled: bool
    human_entries: int
    model_entries: int
    max_human_entries: int
    max_import_bytes: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MemoryInfo:
        return cls(
            enabled=bool(data.get("enabled")),
            human_entries=int(data.get("human_entries", 0)),
            model_entries=int(data.get("model_entries", 0)),
            max_human_entries=int(data.get("max_human_entries", 0)),
            max_import_bytes=int(data.get("max_import_bytes", 0)),
        )


def _query(path: str, **params: str | None) -> str:
    given = {k: v for k, v in params.items() if v is not None}
    return f"{path}?{urlencode(given)}" if given else path


def _read(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    p = Path(path)
    return p.read_bytes(), p.name


def _write(path: str | os.PathLike[str], data: bytes) -> Path:
    p = Path(path)
    p.write_bytes(data)
    return p
