"""The checks of a translate request, the same at every door: ``/v1/translate`` and each line of a batch job.

:func:`prepare_request` is the edge of both doors: the request checked (:func:`validate_request`) and its entries cut
into protected segments (:func:`prepare_entries`), their markup parsed once; the translator takes those entries
and does no check of its own but the source language's (it looks at each entry once, for its answer too).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..text.documents import PreparedEntry, prepare
from ..text.langid import DetectedLanguage
from ..text.markup import MarkupError, parse_markup
from .errors import APIError
from .schemas import TranslateRequest

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings

__all__ = [
    "LANGUAGE_PAIRS",
    "prepare_request",
    "prepare_entries",
    "validate_request",
    "markup_error",
    "check_source_languages",
    "mismatch_message",
]

LANGUAGE_PAIRS = (("en", "de"),)
#: a request with more characters than this is prepared off the event loop (~15 ms per 50k characters)
BIG_REQUEST_CHARS = 50_000


async def prepare_request(req: TranslateRequest, settings: Settings) -> list[PreparedEntry]:
    """A translate request checked before any work (:func:`validate_request`) and its entries prepared for it
    (:func:`prepare_entries`: markup parsed once, ``422 invalid_markup``); a big one off the event loop. Raises
    :class:`~.errors.APIError`."""
    validate_request(req, settings, markup=False)
    if sum(map(len, req.entries)) > BIG_REQUEST_CHARS:
        return await asyncio.to_thread(prepare_entries, req, settings)
    return prepare_entries(req, settings)


def prepare_entries(req: TranslateRequest, settings: Settings) -> list[PreparedEntry]:
    """Every entry of a checked request cut into protected segments (text/documents.py); its markup is parsed here,
    once, and the prepared entry carries the parsed document. Raises ``invalid_markup`` (422) for markup that does
    not parse, as :func:`validate_request` would."""
    name, out = req.entries_field, []
    for i, text in enumerate(req.entries):
        try:
            entry = prepare(
                text, req.split_sentences, settings.max_sentence_chars, req.preserve_placeholders, req.tag_handling
            )
        except MarkupError as exc:
            raise markup_error(name, i, exc) from None
        out.append(entry)
    return out


def validate_request(req: TranslateRequest, settings: Settings, *, markup: bool = True) -> None:
    """The checks of a translate request before any work, for ``/v1/translate`` and for every line of a batch
    job: the language pair, the entries' count and sizes, and their markup (``tag_handling``). Raises
    :class:`~.errors.APIError`. ``markup=False``: the caller parses the markup next, once, for the work itself
    (:func:`prepare_entries` raises the same ``invalid_markup``)."""
    s = settings
    if (req.source_lang.lower(), req.target_lang.lower()) not in LANGUAGE_PAIRS:
        pairs = ", ".join(f"{a}->{b}" for a, b in LANGUAGE_PAIRS)
        raise APIError(
            422,
            "unsupported_language_pair",
            f"{req.source_lang}->{req.target_lang} is not served; supported: {pairs}",
            param="target_lang",
        )
    entries, name = req.entries, req.entries_field
    legacy = name == "sentences"  # the old field keeps its old error codes
    if not entries:
        raise APIError(422, f"empty_{name}", f"{name} is empty: send at least one text", param=name)
    if len(entries) > s.max_sentences_per_request:
        raise APIError(
            413,
            "too_many_sentences" if legacy else "too_many_texts",
            f"{len(entries)} {name} in one request; the limit is {s.max_sentences_per_request}: "
            "split the list (the Python SDK does this for you)",
            param=name,
        )
    total = 0
    for i, text in enumerate(entries):
        if not text.strip():
            raise APIError(
                422,
                "empty_sentence" if legacy else "empty_text",
                f"{name}[{i}] is empty or whitespace only",
                param=f"{name}[{i}]",
            )
        if len(text) > s.max_text_chars:
            raise APIError(
                413,
                "text_too_long",
                f"{name}[{i}] has {len(text)} characters; the limit is {s.max_text_chars} per text",
                param=f"{name}[{i}]",
            )
        total += len(text)
    if total > s.max_request_chars:
        raise APIError(
            413,
            "request_too_large",
            f"the {name} have {total} characters in all; the limit is "
            f"{s.max_request_chars} per request: send them in several requests",
            param=name,
        )
    if markup:
        _check_markup(req)


def _check_markup(req: TranslateRequest) -> None:
    """Markup that does not parse (``tag_handling``) is refused before any work."""
    name = req.entries_field
    if req.tag_handling is not None:
        for i, text in enumerate(req.entries):
            try:
                parse_markup(text, req.tag_handling)
            except MarkupError as exc:
                raise markup_error(name, i, exc) from None


def markup_error(name: str, i: int, exc: MarkupError) -> APIError:
    """The API's answer to markup that does not parse, wherever it is found (checked, or cut into segments)."""
    return APIError(422, "invalid_markup", f"{name}[{i}]: {exc}", param=f"{name}[{i}]")


def mismatch_message(found: DetectedLanguage, source_lang: str) -> str:
    return f"this text looks like '{found.lang}' ({found.score:.0%} sure), not source_lang '{source_lang}'"


def check_source_languages(req: TranslateRequest, found: list[DetectedLanguage | None]) -> None:
    """``source_lang_check: "strict"``: a text found in another language than ``source_lang`` refuses the request
    (``422 source_lang_mismatch``) before any work or charge. ``found``: one detection per entry (None: not
    judged)."""
    if req.source_lang_check != "strict":
        return
    name = req.entries_field
    for i, lang in enumerate(found):
        if lang is not None and lang.differs_from(req.source_lang):
            raise APIError(
                422,
                "source_lang_mismatch",
                f"{name}[{i}]: {mismatch_message(lang, req.source_lang)}; send {req.source_lang} text, or "
                "source_lang_check 'flag' to translate it anyway (marked suspect)",
                param=f"{name}[{i}]",
            )
