"""Result objects returned by the clients (plain dataclasses, no pydantic)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Mapping, Sequence, overload

from .errors import APIResponseValidationError, TranslationFailed

__all__ = [
    "TranslationError",
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
    """Why one sentence failed (``{"code", "message"}`` of a failed slot)."""

    code: str
    message: str

    @classmethod
    def from_json(cls, data: Any) -> TranslationError:
        if not isinstance(data, Mapping):
            return cls(code="unknown", message=str(data))
        return cls(code=str(data.get("code") or "unknown"), message=str(data.get("message") or ""))


@dataclass(frozen=True)
class Translation:
    """One slot of a response: ``status`` is ``"ok"`` (``text`` set) or ``"failed"`` (``error`` set)."""

    text: str | None
    status: str
    error: TranslationError | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.text is not None

    @classmethod
    def from_json(cls, data: Any) -> Translation:
        if not isinstance(data, Mapping) or "status" not in data:
            raise _invalid("a translation entry is not an object with a status", data)
        text = data.get("text")
        if text is not None and not isinstance(text, str):
            raise _invalid("a translation's text is not a string", data)
        error = data.get("error")
        return cls(
            text=text,
            status=str(data["status"]),
            error=TranslationError.from_json(error) if error is not None else None,
        )


@dataclass(frozen=True)
class Usage:
    """Work the server did for a request; ``+`` sums two of them (chunked requests)."""

    sentences: int = 0
    characters: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_prompts: int = 0
    retries: int = 0
    extra: Mapping[str, int] = field(default_factory=dict)
    """Numeric usage fields this SDK version does not know about (summed as well)."""

    @classmethod
    def from_json(cls, data: Any) -> Usage:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise _invalid("usage is not an object", data)
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: int(v) for k, v in data.items() if k in known and isinstance(v, (int, float))}
        extra = {
            str(k): int(v)
            for k, v in data.items()
            if k not in known and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        return cls(**values, extra=extra)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        summed = {
            f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name != "extra"
        }
        extra = dict(self.extra)
        for k, v in other.extra.items():
            extra[k] = extra.get(k, 0) + v
        return Usage(**summed, extra=extra)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TranslationResult(Sequence["str | None"]):
    """The answer to :meth:`Client.translate`: one slot per input sentence, in input order.

    It behaves like the list of translated strings: ``len(result)``, ``result[i]``, iteration
    and ``list(result)`` give ``result.texts``, where a **failed slot is ``None``** (never silently
    dropped or replaced). Per-slot status and errors are in ``result.translations``.

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
            raise _invalid(f"{len(translations)} translations for {expected} sentences", data)
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

    # -- the list-of-strings view ------------------------------------------------------------
    @property
    def texts(self) -> list[str | None]:
        """The translated strings in input order; ``None`` where a sentence failed."""
        return [t.text if t.ok else None for t in self.translations]

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
        return f"TranslationResult({len(self)} sentences, {n_failed} failed, model={self.model!r})"

    # -- failures ------------------------------------------------------------------------------
    @property
    def failures(self) -> list[tuple[int, Translation]]:
        """``(index, translation)`` for every slot that is not ``ok``."""
        return [(i, t) for i, t in enumerate(self.translations) if not t.ok]

    @property
    def ok(self) -> bool:
        """True when every sentence was translated."""
        return all(t.ok for t in self.translations)

    def raise_for_failures(self) -> TranslationResult:
        """Raise :class:`TranslationFailed` if any slot failed; return ``self`` otherwise."""
        failures = self.failures
        if failures:
            i, first = failures[0]
            why = f"{first.error.code}: {first.error.message}" if first.error else first.status
            raise TranslationFailed(
                f"{len(failures)} of {len(self)} sentences failed (first: sentences[{i}]: {why})",
                failures=failures,
                result=self,
            )
        return self


@dataclass(frozen=True)
class Limits:
    max_sentences_per_request: int
    max_sentence_chars: int | None = None


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
        max_chars = limits.get("max_sentence_chars")
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
                max_sentence_chars=int(max_chars) if isinstance(max_chars, int) and max_chars > 0 else None,
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
