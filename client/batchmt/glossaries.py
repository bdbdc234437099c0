"""Glossaries on the server (``/v1/glossaries``): the record, and how entries are sent.

``client.glossaries`` (:class:`~batchmt.async_glossaries.AsyncGlossaries`, or the generated synchronous
``Glossaries``) creates, lists, reads and deletes them; ``client.translate(..., glossary=g)`` uses one (a
:class:`Glossary` or its id). A glossary belongs to the API key that created it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Glossary", "entries_tsv", "file_upload", "glossary_id", "parse_tsv"]


@dataclass(frozen=True)
class Glossary:
    glossary_id: str
    name: str
    source_lang: str
    target_lang: str
    entry_count: int
    creation_time: str
    version: str = ""
    ready: bool = True

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Glossary:
        return cls(
            glossary_id=str(data["glossary_id"]),
            name=str(data.get("name", "")),
            source_lang=str(data.get("source_lang", "en")),
            target_lang=str(data.get("target_lang", "de")),
            entry_count=int(data.get("entry_count", 0)),
            creation_time=str(data.get("creation_time", "")),
            version=str(data.get("version", "")),
            ready=bool(data.get("ready", True)),
        )


def glossary_id(glossary: Glossary | str | None) -> str | None:
    """The id a translate request carries for ``glossary`` (a :class:`Glossary` or an id)."""
    if glossary is None or isinstance(glossary, str):
        return glossary
    if isinstance(glossary, Glossary):
        return glossary.glossary_id
    raise TypeError(f"glossary must be a Glossary or its id, not {type(glossary).__name__}")


def entries_tsv(entries: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Entries as DeepL's TSV text (one ``source<TAB>target`` per line)."""
    pairs = entries.items() if isinstance(entries, Mapping) else entries
    lines = []
    for source, target in pairs:
        if "\t" in source + target or "\n" in source + target:
            raise ValueError(f"a glossary term holds a tab or a line break: {source!r} -> {target!r}")
        lines.append(f"{source}\t{target}\n")
    return "".join(lines)


def parse_tsv(text: str) -> list[tuple[str, str]]:
    """The server's ``GET /v1/glossaries/{id}/entries`` answer as pairs."""
    return [(row[0], row[1]) for row in csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE) if row]


def file_upload(path: str | os.PathLike[str]) -> tuple[str, bytes, str]:
    """(filename, content, entries_format) of a glossary file: ``.tmx``, ``.tsv``/``.txt`` or ``.csv``."""
    p = Path(path)
    suffix = p.suffix.lower().lstrip(".")
    fmt = {"tmx": "tmx", "csv": "csv", "tsv": "tsv", "txt": "tsv"}.get(suffix)
    if fmt is None:
        raise ValueError(f"{p.name}: a glossary file is .tmx, .tsv or .csv")
    return p.name, p.read_bytes(), fmt
