"""The shapes of the translation memory API (``/v1/memory``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["MemoryImport", "MemoryPurge", "MemoryInfo", "Origin"]

Origin = Literal["human", "model"]


class MemoryImport(BaseModel):
    object: Literal["memory.import"] = "memory.import"
    format: Literal["tmx", "tsv"]
    imported: int = Field(description="entries stored as human translations (new or replacing an earlier import)")
    new: int = Field(description="of them, sources the memory held no human entry for before")
    skipped: dict[str, int] = Field(
        default_factory=dict,
        description="units not imported, by reason: 'no_language_pair' (no English and German variant), 'empty', "
        "'placeholders_differ' (the German lacks or adds a placeholder, URL, ... of the English), 'duplicate' "
        "(the same English again in the file: the last one is kept)",
    )


class MemoryPurge(BaseModel):
    object: Literal["memory.purge"] = "memory.purge"
    deleted: int


class MemoryInfo(BaseModel):
    object: Literal["memory"] = "memory"
    enabled: bool
    human_entries: int = Field(description="imported human entries of this key (never evicted)")
    model_entries: int = Field(description="the model's remembered translations of this key")
    max_human_entries: int = Field(description="the limit of human entries per key")
    max_import_bytes: int
