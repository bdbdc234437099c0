"""Request and response bodies of the REST API."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

__all__ = [
    "TranslateRequest",
    "TranslateResponse",
    "Translation",
    "TranslationError",
    "FailedSegment",
    "Usage",
    "Info",
    "Limits",
    "UsageTotals",
    "Prices",
]

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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "texts": ["The museum is closed on Mondays. It opens again on Tuesday.\n\n- Tickets: 12 EUR"],
                    "source_lang": "en",
                    "target_lang": "de",
                },
                {
                    "sentences": ["The museum is closed on Mondays.", "I have lost my keys again."],
                    "source_lang": "en",
                    "target_lang": "de",
                },
            ]
        },
    )

    texts: list[StrictStr] | None = Field(
        None,
        description="Texts to translate (a sentence, a paragraph, a document); each is split into sentences on "
        "the server and comes back whole, with its layout; one translation per entry, in order. Send exactly one of "
        "'texts' and 'sentences'",
    )
    sentences: list[StrictStr] | None = Field(
        None, description="The legacy name of 'texts' (same meaning; error codes keep their old names)"
    )
    split_sentences: Literal["on", "newlines", "off"] = Field(
        "on",
        description="'on': split on sentence punctuation and line breaks; 'newlines': one segment per non-blank "
        "line; 'off': each entry is one segment (pre-split sentences)",
    )
    tag_handling: Literal["html", "xml"] | None = Field(
        None,
        description="'html' / 'xml': the entries are markup; text nodes are translated, tags kept (inline tags "
        "stay inside their sentence)",
    )
    preserve_placeholders: StrictBool = Field(
        True,
        description="protect and verify placeholders ([PROJECT123], {name}, {{var}}, %s), URLs, e-mail addresses "
        "and `code spans`: never translated, and a translation that loses or doubles one is repaired or failed",
    )
    source_lang: StrictStr = Field("en", min_length=2, max_length=16)
    source_lang_check: Literal["flag", "strict", "off"] = Field(
        "flag",
        description="is each text in source_lang? (one language-ID look per text of at least 20 letters) 'flag': "
        "translate it anyway, and mark a text in another language 'suspect' with a warning "
        "'source_lang_mismatch' and its detected_source_lang; 'strict': refuse the request (422 "
        "source_lang_mismatch) before any work or charge; 'off': no check",
    )
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

    @model_validator(mode="after")
    def _texts_or_sentences(self) -> TranslateRequest:
        if (self.texts is None) == (self.sentences is None):
            raise ValueError("send exactly one of 'texts' and 'sentences' (a list of strings)")
        return self

    @property
    def entries(self) -> list[str]:
        """The texts to translate, whichever field carried them."""
        return self.texts if self.texts is not None else self.sentences or []

    @property
    def entries_field(self) -> str:
        """The name of the field the caller used (for error params and codes)."""
        return "texts" if self.texts is not None else "sentences"

    quality: Literal["fast", "balanced", "best"] = Field(
        "fast",
        description="'fast': one pass, packed with other callers' sentences; 'balanced' / 'best': several "
        "rounds in permuted batches, decided per sentence by consensus, a sentence stopping early once two rounds "
        "agree with high confidence (more engine work; see the signature for the rounds used)",
    )
    translation_memory: StrictBool = Field(
        True, description="false: neither read nor write the translation memory (every sentence goes to the engine)"
    )
    glossary_id: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="a glossary of this key (POST /v1/glossaries): its terms are translated as it says (the "
        "method in the signature: prompt hints, or masks); a segment whose translation still misses a term after one "
        "re-send is 'suspect' with reason 'glossary'",
    )
    formality: Literal["default", "more", "less", "prefer_more", "prefer_less"] = Field(
        "default",
        description="German register: 'more' (Sie) / 'less' (du) are enforced (a segment in the wrong register is "
        "re-sent once, then 'suspect' with reason 'formality'); 'prefer_more' / 'prefer_less' steer the same way "
        "without the check; 'default' leaves it to the model",
    )
    confidence: StrictBool = Field(
        False,
        description="true: give each translation of quality 'fast' a confidence (the engine returns the chosen "
        "tokens' log-probabilities, which costs it a log-softmax over the vocabulary at every step: ~3% of its "
        "throughput with Gemma-3-270M on a CPU). Ensemble qualities always carry theirs (their agreement)",
    )


class TranslationError(BaseModel):
    code: str
    message: str


class FailedSegment(BaseModel):
    index: int = Field(description="index into this text's segments")
    code: str
    message: str


class SuspectSegment(BaseModel):
    index: int = Field(description="index into this text's segments")
    reason: Literal["copy", "loop", "run_on", "glossary", "formality"] = Field(
        description="'copy': the output repeats the English source; 'loop': the model ran into its token limit; "
        "'run_on': the output ran on past its sentence (each after a sampled second try); 'glossary': a term of the "
        "request's glossary is missing; 'formality': the wrong register for formality more/less (each after one "
        "re-send)"
    )


class Translation(BaseModel):
    text: str | None = Field(
        description="the whole text, reassembled with its original whitespace, line breaks, list "
        "markers and markup; null only when status is 'failed'"
    )
    status: Literal["ok", "suspect", "partial", "failed"] = Field(
        description="'ok': every segment translated; 'suspect': every segment delivered, but some are still a copy "
        "of the source or a loop after a second try (see suspect_segments), or the text is not in source_lang (see "
        "warnings): worth a human look; 'partial': some "
        "segments failed and are kept in the source language inside 'text'; 'failed': no segment translated"
    )
    error: TranslationError | None = Field(None, description="the first failure (status 'partial' or 'failed')")
    segments: int = Field(1, description="segments (sentences) the text was split into")
    failed_segments: list[FailedSegment] = Field(default_factory=list)
    suspect_segments: list[SuspectSegment] = Field(default_factory=list)
    detected_source_lang: str | None = Field(
        None,
        description="the language this text is written in (ISO 639-1, e.g. 'en', 'de'), as a language-ID model "
        "found it; null when the text has fewer than 20 letters, the model was unsure, or source_lang_check was "
        "'off'",
    )
    warnings: list[TranslationError] = Field(
        default_factory=list,
        description="what is worth a look although the text was translated; 'source_lang_mismatch': the text is "
        "not in source_lang (detected_source_lang says which language it is) and was translated as if it were",
    )
    confidence: float | None = Field(
        None,
        ge=0,
        le=1,
        description="how sure the model was, 0..1, of its weakest "
        "segment: the geometric mean token probability of a one-pass translation (when the request asked for "
        "'confidence'), the agreement among the candidates of an ensemble (quality balanced/best); null "
        "when not asked or unknown (e.g. from the translation memory). Rank by it to send the least "
        "confident texts to human review",
    )
    memory: Literal["human", "model"] | None = Field(
        None,
        description="where the translation memory answered some of its segments: 'human' when at least one came "
        "from an imported human entry (POST /v1/memory/import), 'model' when from the model's earlier answers only; "
        "null when every segment was translated now",
    )


class Usage(BaseModel):
    texts: int = Field(0, description="entries (texts) in the request")
    sentences: int = Field(description="entries (texts) in the request: the older name of 'texts'")
    segments: int = Field(0, description="segments (sentences) the texts were split into")
    characters: int
    prompt_tokens: int = Field(description="this request's share of the engine prompts its sentences travelled in")
    cached_prompt_tokens: int
    completion_tokens: int
    engine_prompts: float = Field(description="engine prompts used, shared prompts counted by this request's share")
    retries: int = Field(description="sentence re-sends caused by output repairs")
    cost: float = Field(0.0, description="estimated cost of this request's share of the engine work, in `currency`")
    baseline_cost: float = Field(
        0.0,
        description="estimated cost of the same sentences sent one per prompt without a prefix cache, in `currency`",
    )
    currency: str = "USD"
    memory_hits: int = Field(0, description="segments answered from the translation memory (no engine work)")
    human_memory_hits: int = Field(
        0, description="of memory_hits, segments answered from imported human entries (POST /v1/memory/import)"
    )


class TranslateResponse(BaseModel):
    id: str
    model: str
    translations: list[Translation]
    usage: Usage
    signature: str


class Limits(BaseModel):
    max_sentences_per_request: int = Field(description="entries (texts) per request")
    max_sentence_chars: int = Field(
        description="longest segment sent to the engine; a longer one is cut at clause or "
        "space boundaries, never refused"
    )
    max_text_chars: int = Field(100_000, description="longest entry")
    max_request_chars: int = Field(1_000_000, description="characters over all entries of a request")


class Info(BaseModel):
    version: str
    model: str
    signature: str
    language_pairs: list[tuple[str, str]]
    limits: Limits
    max_sentences_per_prompt: int = Field(description="the pack size cap in force")
    calibrated_pack_limit: int | None = Field(
        description="largest pack size that keeps quality on this model (calibration); null when calibration is off"
    )
    pack_policy: str
    template: str = Field(
        description="the prompt template in use (id@version+hash); with template 'auto', the variant calibration chose"
    )
    template_variants: list[str] = Field(
        default_factory=list, description="the variants template 'auto' chose among (empty when a template is set)"
    )


class Prices(BaseModel):
    currency: str
    model: Literal["none", "tokens", "engine_hour", "tokens+engine_hour"]
    prompt_per_mtok: float
    cached_prompt_per_mtok: float
    completion_per_mtok: float
    engine_hour: float


class AllJobsUsage(BaseModel):
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
    baseline_cost: float = Field(
        description="estimated cost of the translated sentences one per prompt, no prefix cache"
    )
    saving: float = Field(description="baseline_cost - cost")
    prices: Prices
    jobs: AllJobsUsage | None = Field(None, description="batch jobs (all of them, across restarts)")
