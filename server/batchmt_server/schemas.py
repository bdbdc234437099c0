"""Request and response bodies of the REST API."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

__all__ = ["TranslateRequest", "TranslateResponse", "Translation", "TranslationError", "Usage", "Info", "Limits",
           "UsageTotals", "Prices"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path of the first string holding a lone surrogate (``sentences[3]``), or None."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            if _SURROGATE.search(key):
                return f"{path}.<key>" if path else "a key"
            found = _lone_surrogate(v, f"{path}.{key[:32]}" if path else key[:32])
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _lone_surrogate(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"sentences": ["The museum is closed on Mondays.", "I have lost my keys again."],
         "source_lang": "en", "target_lang": "de"}]})

    sentences: list[StrictStr] = Field(description="Sentences to translate; one translation comes back per entry, in order")
    source_lang: StrictStr = Field("en", min_length=2, max_length=16)
    target_lang: StrictStr = Field("de", min_length=2, max_length=16)

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        """Refuse text that is not Unicode (a lone UTF-16 surrogate such as ``"\\ud800"`` is valid JSON but
        cannot be encoded): 422 before any work, naming the field."""
        where = _lone_surrogate(data)
        if where is not None:
            raise ValueError(f"{where or 'the body'} contains a lone UTF-16 surrogate: send valid Unicode text")
        return data
    quality: Literal["fast", "balanced", "best"] = Field(
        "fast", description="'fast': one pass, packed with other callers' sentences; 'balanced' / 'best': several "
        "rounds in permuted batches, decided per sentence by consensus, a sentence stopping early once two rounds "
        "agree with high confidence (more engine work; see the signature for the rounds used)")
    translation_memory: bool = Field(True, description="false: neither read nor write the translation memory "
                                     "(every sentence goes to the engine)")


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
    cost: float = Field(0.0, description="estimated cost of this request's share of the engine work, in `currency`")
    baseline_cost: float = Field(0.0, description="estimated cost of the same sentences sent one per prompt without a "
                                 "prefix cache, in `currency`")
    currency: str = "USD"


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
    max_sentences_per_prompt: int = Field(description="the pack size cap in force")
    calibrated_pack_limit: int | None = Field(description="largest pack size that keeps quality on this model "
                                              "(calibration); null when calibration is off")
    pack_policy: str
    template: str = Field(description="the prompt template in use (id@version+hash); with template 'auto', the variant "
                          "calibration chose")
    template_variants: list[str] = Field(default_factory=list, description="the variants template 'auto' chose among "
                                         "(empty when a template is set)")


class Prices(BaseModel):
    currency: str
    model: Literal["none", "tokens", "engine_hour", "tokens+engine_hour"]
    prompt_per_mtok: float
    cached_prompt_per_mtok: float
    completion_per_mtok: float
    engine_hour: float


class JobsUsage(BaseModel):
    """The batch jobs' part of ``GET /v1/usage``: every job in the store, summed (each job's own numbers are in
    ``GET /v1/batches/{id}``, ``usage``)."""

    jobs: int = Field(description="batch jobs in the store")
    sentences: int
    characters: int
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    engine_prompts: float
    memory_hits: int
    cost: float
    baseline_cost: float
    saving: float


class UsageTotals(BaseModel):
    """``GET /v1/usage``: totals since the gateway started."""

    since: str = Field(description="start of the counting period (process start), ISO 8601 UTC")
    uptime_seconds: float
    requests: int = Field(description="translate requests, whatever their outcome")
    sentences: int = Field(description="sentences translated")
    failed_sentences: int
    characters: int = Field(description="source characters accepted")
    prompt_tokens: int = Field(description="prompt tokens sent to the engine, cached ones included")
    cached_prompt_tokens: int
    completion_tokens: int
    engine_prompts: int
    engine_busy_seconds: float = Field(description="engine busy time, each second shared by the prompts in flight")
    currency: str
    cost: float = Field(description="estimated cost so far, in `currency`")
    baseline_prompts: int = Field(description="prompts the translated sentences would take one per prompt")
    baseline_prompt_tokens: float
    baseline_completion_tokens: float
    baseline_engine_seconds: float
    baseline_cost: float = Field(description="estimated cost of the translated sentences one per prompt, no prefix cache")
    saving: float = Field(description="baseline_cost - cost")
    prices: Prices
    jobs: JobsUsage | None = Field(None, description="batch jobs (all of them, across restarts)")
