"""Result objects returned by the clients (plain dataclasses, no pydantic)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, overload

from .errors import APIResponseValidationError, TranslationFailed

__all__ = [
    "TranslationError",
    "SegmentFailure",
    "Translation",
    "Usage",
    "TranslationResult",
    "Limits",
    "ServerInfo",
    "Health",
]


def _invalid(what: str, payload: Any) -> APIResponseValidationError:
    return APIResponseValidationError(
        f"Unexpected response from the server: {what}", status=200, code="invalid_response", body=payload
    )


@dataclass(frozen=True)
class TranslationError:
    """Why one text (or one of its segments) failed: ``{"code", "message"}``."""

    code: str
    message: str

    @classmethod
    def from_json(cls, data: Any) -> TranslationError:
        if not isinstance(data, Mapping):
            return cls(code="unknown", message=str(data))
        return cls(code=str(data.get("code") or "unknown"), message=str(data.get("message") or ""))


@dataclass(frozen=True)
class SegmentFailure:
    """A segment (sentence) of a text that the server could not translate; ``index`` counts the
    text's segments from 0."""

    index: int
    code: str
    message: str

    @classmethod
    def from_json(cls, data: Any) -> SegmentFailure:
        if not isinstance(data, Mapping):
            return cls(index=-1, code="unknown", message=str(data))
        index = data.get("index")
        return cls(
            index=int(index) if isinstance(index, int) and not isinstance(index, bool) else -1,
            code=str(data.get("code") or "unknown"),
            message=str(data.get("message") or ""),
        )


@dataclass(frozen=True)
class SuspectSegment:
    """A segment delivered but still not trustworthy after a second try: ``reason`` is ``"copy"`` (it repeats
    the source), ``"loop"`` (it ran into its token limit) or ``"run_on"``."""

    index: int
    reason: str

    @classmethod
    def from_json(cls, data: Any) -> SuspectSegment:
        if not isinstance(data, Mapping):
            return cls(index=-1, reason=str(data))
        index = data.get("index")
        return cls(
            index=index if isinstance(index, int) and not isinstance(index, bool) else -1,
            reason=str(data.get("reason") or "unknown"),
        )


_TRANSLATION_FIELDS = (
    "text",
    "status",
    "error",
    "segments",
    "failed_segments",
    "suspect_segments",
    "confidence",
    "detected_source_lang",
    "warnings",
    "memory",
)


@dataclass(frozen=True)
class Translation:
    """One slot of a response, for one input text.

    ``status`` is ``"ok"`` (every segment translated), ``"suspect"`` (every segment delivered, but
    ``suspect_segments`` are still a copy of the source or a loop after a second try: worth a human look),
    ``"partial"`` (``text`` is the whole text with the failed segments kept in the source language;
    ``failed_segments`` says which) or ``"failed"`` (``text`` is ``None``, ``error`` says why). ``segments``
    is how many segments (sentences) the server split the text into (``None`` from servers older than
    texts). ``confidence`` (0..1; ``None`` unless ``translate(..., confidence=True)`` asked for it, or when
    unknown) is how sure the model was of the text's weakest segment. ``detected_source_lang`` is the language
    the server found the text in (``None``: too short to judge, or not checked); a text in another language than
    ``source_lang`` is ``"suspect"`` with a ``source_lang_mismatch`` entry in ``warnings``. Fields this SDK version
    does not know are kept in ``extra``.
    """

    text: str | None
    status: str
    error: TranslationError | None = None
    segments: int | None = None
    failed_segments: tuple[SegmentFailure, ...] = ()
    suspect_segments: tuple[SuspectSegment, ...] = ()
    confidence: float | None = None
    #: ``"human"`` when the server's translation memory answered a segment from an imported human translation,
    #: ``"model"`` when from the model's earlier answers only, ``None`` when everything was translated now
    memory: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    detected_source_lang: str | None = None
    warnings: tuple[TranslationError, ...] = ()

    @property
    def suspect(self) -> bool:
        """Delivered, but with segments that are still a copy of the source or a loop, or not in ``source_lang``."""
        return self.status == "suspect" and self.text is not None

    @property
    def delivered(self) -> bool:
        """The whole text came back: ``ok`` or ``suspect``."""
        return self.status in ("ok", "suspect") and self.text is not None

    @property
    def ok(self) -> bool:
        """True only when the whole text was translated (``status == "ok"``)."""
        return self.status == "ok" and self.text is not None

    @property
    def partial(self) -> bool:
        return self.status == "partial" and self.text is not None

    @classmethod
    def failed(cls, code: str, message: str) -> Translation:
        """A failed slot (used by the SDK for a text it did not send, e.g. over ``max_text_chars``)."""
        return cls(text=None, status="failed", error=TranslationError(code=code, message=message))

    @classmethod
    def from_json(cls, data: Any) -> Translation:
        if not isinstance(data, Mapping) or "status" not in data:
            raise _invalid("a translation entry is not an object with a status", data)
        text = data.get("text")
        if text is not None and not isinstance(text, str):
            raise _invalid("a translation's text is not a string", data)
        error = data.get("error")
        segments = data.get("segments")
        failed_segments = data.get("failed_segments") or ()
        if not isinstance(failed_segments, Sequence) or isinstance(failed_segments, (str, bytes)):
            raise _invalid("a translation's failed_segments is not a list", data)
        suspects = data.get("suspect_segments") or ()
        if not isinstance(suspects, Sequence) or isinstance(suspects, (str, bytes)):
            raise _invalid("a translation's suspect_segments is not a list", data)
        confidence = data.get("confidence")
        warnings = data.get("warnings") or ()
        if not isinstance(warnings, Sequence) or isinstance(warnings, (str, bytes)):
            raise _invalid("a translation's warnings is not a list", data)
        detected = data.get("detected_source_lang")
        return cls(
            text=text,
            status=str(data["status"]),
            error=TranslationError.from_json(error) if error is not None else None,
            segments=segments if isinstance(segments, int) and not isinstance(segments, bool) else None,
            failed_segments=tuple(SegmentFailure.from_json(f) for f in failed_segments),
            suspect_segments=tuple(SuspectSegment.from_json(f) for f in suspects),
            confidence=float(confidence)
            if isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
            else None,
            memory=str(data["memory"]) if isinstance(data.get("memory"), str) else None,
            extra={str(k): v for k, v in data.items() if k not in _TRANSLATION_FIELDS},
            detected_source_lang=detected if isinstance(detected, str) else None,
            warnings=tuple(TranslationError.from_json(w) for w in warnings),
        )


Number = int | float


def _add_values(a: Any, b: Any) -> Any:
    """Sum two usage values: numbers add (an int stays an int), anything else keeps the first
    value that is set (e.g. ``currency``)."""
    numeric = (int, float)
    if isinstance(a, numeric) and isinstance(b, numeric) and not isinstance(a, bool) and not isinstance(b, bool):
        return a + b
    return a if a is not None else b


@dataclass(frozen=True)
class Usage:
    """Work the server did for a request; ``+`` sums two of them (chunked requests).

    Numbers keep the type the server sent (``cost`` and ``engine_prompts`` are floats); fields this
    SDK version does not know are kept in ``extra`` (numbers are summed, other values kept).
    """

    sentences: int = 0
    characters: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_prompts: Number = 0
    """Engine prompts, a shared prompt counted by this request's share (a float)."""
    retries: int = 0
    cost: Number = 0
    """Estimated cost of this request's share of the engine work, in ``currency``."""
    baseline_cost: Number = 0
    """The same texts sent one sentence per prompt without a prefix cache, in ``currency``."""
    currency: str | None = None
    segments: int = 0
    """Segments (sentences) the request's texts were split into (0 from older servers)."""
    texts: int = 0
    """Texts (entries) of the request, as ``sentences`` counts them (0 from older servers)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Usage fields this SDK version does not know about."""

    @classmethod
    def from_json(cls, data: Any) -> Usage:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise _invalid("usage is not an object", data)
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {}
        for k, v in data.items():
            if k not in known:
                continue
            if k == "currency":
                values[k] = str(v) if v is not None else None
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                values[k] = v
        extra = {str(k): v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        if self.currency and other.currency and self.currency != other.currency:
            raise ValueError(f"cannot add usage in {self.currency} to usage in {other.currency}")
        summed = {
            f.name: _add_values(getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if f.name != "extra"
        }
        extra = dict(self.extra)
        for k, v in other.extra.items():
            extra[k] = _add_values(extra.get(k), v)
        return Usage(**summed, extra=extra)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        """Every field, the unknown ones included, as the server named them."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out


class TranslationResult(Sequence["str | None"]):
    """The answer to :meth:`Client.translate`: one slot per input text, in input order.

    It behaves like the list of translated strings: ``len(result)``, ``result[i]``, iteration
    and ``list(result)`` give ``result.texts``, where a **slot that is not fully translated is
    ``None``** (never silently dropped or replaced). Per-slot status, errors and segment counts are
    in ``result.translations``; a ``"partial"`` slot's text (failed segments kept in the source
    language, layout intact) is ``result.translations[i].text``.

    * ``result.ok`` / ``result.failures`` tell whether (and where) something failed;
    * ``result.raise_for_failures()`` raises :class:`TranslationFailed` if any slot failed and
      otherwise returns the result, so ``client.translate(xs).raise_for_failures().texts`` is a
      list of ``str`` only.
    """

    __slots__ = ("translations", "usage", "model", "signature", "ids")

    def __init__(
        self,
        translations: Sequence[Translation],
        *,
        usage: Usage | None = None,
        model: str | None = None,
        signature: str | None = None,
        ids: Sequence[str] = (),
    ) -> None:
        self.translations: list[Translation] = list(translations)
        self.usage: Usage = usage if usage is not None else Usage()
        self.model: str | None = model
        self.signature: str | None = signature
        self.ids: list[str] = list(ids)
        """The server's request id(s): one per HTTP request the input was split into."""

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Any, *, expected: int | None = None) -> TranslationResult:
        if not isinstance(data, Mapping) or not isinstance(data.get("translations"), list):
            raise _invalid("no 'translations' list in the body", data)
        translations = [Translation.from_json(t) for t in data["translations"]]
        if expected is not None and len(translations) != expected:
            raise _invalid(f"{len(translations)} translations for {expected} texts", data)
        rid = data.get("id")
        return cls(
            translations,
            usage=Usage.from_json(data.get("usage")),
            model=data.get("model"),
            signature=data.get("signature"),
            ids=[str(rid)] if rid is not None else [],
        )

    @classmethod
    def concat(cls, parts: Sequence[TranslationResult]) -> TranslationResult:
        """Join the results of consecutive chunks (order kept, usage summed)."""
        translations: list[Translation] = []
        usage = Usage()
        ids: list[str] = []
        for part in parts:
            translations.extend(part.translations)
            usage = usage + part.usage
            ids.extend(part.ids)
        signatures = {p.signature for p in parts if p.signature}
        if len(signatures) > 1:
            warnings.warn(
                f"the server's signature changed between chunks of one request: {sorted(signatures)}",
                RuntimeWarning,
                stacklevel=3,
            )
        first = parts[0] if parts else None
        return cls(
            translations,
            usage=usage,
            model=first.model if first else None,
            signature=first.signature if first else None,
            ids=ids,
        )

    @classmethod
    def assemble(
        cls,
        n: int,
        parts: Sequence[tuple[Sequence[int], TranslationResult]],
        local: Mapping[int, Translation] | None = None,
    ) -> TranslationResult:
        """Put the results of requests back in input order: ``parts`` pairs each request's result
        with the input indices it covered; ``local`` fills the slots the SDK answered itself
        (texts it did not send)."""
        slots: list[Translation | None] = [None] * n
        for i, t in (local or {}).items():
            slots[i] = t
        for indices, part in parts:
            for i, t in zip(indices, part.translations):
                slots[i] = t
        missing = [i for i, t in enumerate(slots) if t is None]
        if missing:
            raise RuntimeError(f"no result for texts {missing[:5]}")  # a bug in the chunking, never the server
        joined = cls.concat([part for _, part in parts]) if parts else cls([])
        return cls(
            [t for t in slots if t is not None],
            usage=joined.usage,
            model=joined.model,
            signature=joined.signature,
            ids=joined.ids,
        )

    # -- the list-of-strings view ------------------------------------------------------------
    @property
    def texts(self) -> list[str | None]:
        """The translated strings in input order; ``None`` where a text failed (or partly failed). A ``suspect``
        text is delivered (``translations[i].suspect`` says so)."""
        return [t.text if t.delivered else None for t in self.translations]

    def __len__(self) -> int:
        return len(self.translations)

    @overload
    def __getitem__(self, index: int) -> str | None: ...

    @overload
    def __getitem__(self, index: slice) -> list[str | None]: ...

    def __getitem__(self, index: int | slice) -> str | None | list[str | None]:
        if isinstance(index, slice):
            return self.texts[index]
        t = self.translations[index]
        return t.text if t.ok else None

    def __iter__(self) -> Iterator[str | None]:
        return iter(self.texts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TranslationResult):
            return self.translations == other.translations
        if isinstance(other, (list, tuple)):
            return self.texts == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n_failed = len(self.failures)
        return f"TranslationResult({len(self)} texts, {n_failed} not ok, model={self.model!r})"

    # -- failures ------------------------------------------------------------------------------
    @property
    def failures(self) -> list[tuple[int, Translation]]:
        """``(index, translation)`` for every slot that is not ``ok`` (``failed`` or ``partial``)."""
        return [(i, t) for i, t in enumerate(self.translations) if not t.ok]

    @property
    def ok(self) -> bool:
        """True when every text was fully translated."""
        return all(t.ok for t in self.translations)

    def raise_for_failures(self) -> TranslationResult:
        """Raise :class:`TranslationFailed` if any slot failed; return ``self`` otherwise."""
        failures = self.failures
        if failures:
            i, first = failures[0]
            why = f"{first.error.code}: {first.error.message}" if first.error else first.status
            raise TranslationFailed(
                f"{len(failures)} of {len(self)} texts were not fully translated (first: texts[{i}]: {why})",
                failures=failures,
                result=self,
            )
        return self


@dataclass(frozen=True)
class Limits:
    """The server's request limits (``GET /v1/info``); ``None``: the server did not say."""

    max_sentences_per_request: int
    """Entries (texts) per request."""
    max_sentence_chars: int | None = None
    """The longest segment the server sends to its engine (older servers: the longest entry)."""
    max_text_chars: int | None = None
    """The longest entry (servers that take texts)."""
    max_request_chars: int | None = None
    """The most characters in one request, summed over its entries."""


@dataclass(frozen=True)
class ServerInfo:
    """``GET /v1/info``."""

    version: str | None
    model: str | None
    signature: str | None
    language_pairs: list[tuple[str, str]]
    limits: Limits
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Any, *, default_max_sentences: int) -> ServerInfo:
        if not isinstance(data, Mapping):
            raise _invalid("/v1/info is not an object", data)
        raw_limits = data.get("limits")
        limits: Mapping[str, Any] = raw_limits if isinstance(raw_limits, Mapping) else {}
        max_n = limits.get("max_sentences_per_request")

        def positive(name: str) -> int | None:
            value = limits.get(name)
            return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

        pairs = []
        for pair in data.get("language_pairs") or []:
            if isinstance(pair, Sequence) and len(pair) == 2:
                pairs.append((str(pair[0]), str(pair[1])))
        return cls(
            version=data.get("version"),
            model=data.get("model"),
            signature=data.get("signature"),
            language_pairs=pairs,
            limits=Limits(
                max_sentences_per_request=int(max_n) if isinstance(max_n, int) and max_n > 0 else default_max_sentences,
                max_sentence_chars=positive("max_sentence_chars"),
                max_text_chars=positive("max_text_chars"),
                max_request_chars=positive("max_request_chars"),
            ),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Health:
    """``GET /healthz`` (``live``) and ``GET /readyz`` (``ready``)."""

    live: bool
    ready: bool
    status: str
    """``"ready"``, or the ``/readyz`` error code (``"not_ready"``), or ``"down"``."""
    message: str | None = None

    def __bool__(self) -> bool:
        return self.live and self.ready
