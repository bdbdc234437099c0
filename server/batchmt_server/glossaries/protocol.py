"""Request and response bodies of ``/v1/glossaries`` (DeepL's v2 glossary shapes)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

__all__ = ["CreateGlossary", "GlossaryObject", "GlossaryList"]


class CreateGlossary(BaseModel):
    """DeepL v2's body: ``entries`` as TSV (one ``source<TAB>target`` per line) or CSV text. A TMX file is uploaded
    as ``multipart/form-data`` instead (fields ``file``, ``name``, ``source_lang``, ``target_lang``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Support terms",
                    "source_lang": "en",
                    "target_lang": "de",
                    "entries": "ticket\tVorgang\ndashboard\tÜbersichtsseite",
                    "entries_format": "tsv",
                }
            ]
        },
    )

    name: StrictStr = Field(min_length=1, max_length=256)
    source_lang: StrictStr = Field("en", min_length=2, max_length=16)
    target_lang: StrictStr = Field("de", min_length=2, max_length=16)
    entries: StrictStr = Field(description="the entries as text, in entries_format")
    entries_format: Literal["tsv", "csv"] = "tsv"


class GlossaryObject(BaseModel):
    glossary_id: str
    name: str
    ready: bool = True
    source_lang: str
    target_lang: str
    creation_time: str = Field(description="ISO 8601, UTC")
    entry_count: int
    version: str = Field(description="digest of the entries: translations made with it carry glossary_id@version")


class GlossaryList(BaseModel):
    glossaries: list[GlossaryObject]
