"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

__all__ = ["TranslateRequest", "TranslateResponse", "Translation", "TranslationError", "Usage", "Info", "Limits"]


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"sentences": ["The museum is closed on Mondays.", "I have lost my keys again."],
         "source_lang": "en", "target_lang": "de"}]})

    sentences: list[StrictStr] = Field(description="Sentences to translate; one translation comes back per entry, in order")
    source_lang: StrictStr = "en"
    target_lang: StrictStr = "de"


class TranslationError(BaseModel):
    code: str
    message: str


class Translation(BaseModel):
    text: str | None
    status: Literal["ok", "failed"]
    error: TranslationError | None = None


class Usage(BaseModel):
    sentences: int
    characters: int
    prompt_tokens: int = Field(description="this request's share of the engine prompts its sentences travelled in")
    cached_prompt_tokens: int
    completion_tokens: int
    engine_prompts: float = Field(description="engine prompts used, shared prompts counted by this request's share")
    retries: int = Field(description="sentence re-sends caused by output repairs")


class TranslateResponse(BaseModel):
    id: str
    model: str
    translations: list[Translation]
    usage: Usage
    signature: str


class Limits(BaseModel):
    max_sentences_per_request: int
    max_sentence_chars: int


class Info(BaseModel):
    version: str
    model: str
    signature: str
    language_pairs: list[tuple[str, str]]
    limits: Limits
    max_sentences_per_prompt: int
    pack_policy: str
