# Generated from async_client.py by scripts/unasync.py: do not edit. Edit async_client.py, then run
# `python scripts/unasync.py` (scripts/check fails while this file is stale).
"""The client of a batchmt server: translate, info, health, files, batch jobs, translation memory."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from ._base_client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, BaseClient, ChunkLimits
from ._concurrency import gather_bounded
from .errors import APIError, BatchmtError
from .file_translation import Destination, FileJob, FileReport, OnFailure, Source
from .glossaries import Glossary, glossary_id
from .sync_batches import Batches
from .sync_glossaries import Glossaries
from .sync_memory import Memory
from .types import Health, ServerInfo, TranslationResult

__all__ = ["Client"]

log = logging.getLogger("batchmt")


class Client(BaseClient):
    """Client of a batchmt server.

    >>> with Client() as client:  # BATCHMT_BASE_URL / BATCHMT_API_KEY
    ...     result = client.translate(["The museum is closed on Mondays."])
    ...     result.texts  # ['Das Museum ist montags geschlossen.']

    ``base_url`` and ``api_key`` default to the env vars ``BATCHMT_BASE_URL`` (else
    ``http://127.0.0.1:8000``) and ``BATCHMT_API_KEY``. ``timeout`` is in seconds (or an
    ``httpx.Timeout``); ``max_retries`` retries connection errors, timeouts, 408/429/5xx.
    ``chunk_size`` overrides the texts per request (otherwise read from ``/v1/info``).
    Pass ``http_client=`` (an ``httpx.Client`` you own and close) or ``transport=`` to control
    the HTTP layer, e.g. ``transport=httpx.MockTransport(handler)`` in tests (or ``httpx.ASGITransport(app=app)``).
    The asyncio client also takes ``max_concurrency``: how many chunks of one long ``translate()`` call are in
    flight at once (the synchronous client sends them one after the other).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        chunk_size: int | None = None,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            chunk_size=chunk_size,
            default_headers=default_headers,
        )
        if http_client is not None and transport is not None:
            raise ValueError("pass either http_client or transport, not both")
        self._owns_http_client = http_client is None
        self._client = http_client if http_client is not None else httpx.Client(transport=transport)
        # Injectable for tests, so that retries do not really sleep.
        self._sleep: Callable[[float], Any] = time.sleep

    @property
    def batches(self) -> Batches:
        """Batch jobs on the server (``/v1/batches``): :class:`~batchmt.sync_batches.Batches`."""
        return Batches(self)

    @property
    def glossaries(self) -> Glossaries:
        """Glossaries on the server (``/v1/glossaries``): :class:`~batchmt.sync_glossaries.Glossaries`."""
        return Glossaries(self)

    @property
    def memory(self) -> Memory:
        """The key's translation memory on the server (``/v1/memory``): :class:`~batchmt.sync_memory.Memory`."""
        return Memory(self)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the underlying HTTP client (unless it was passed in as ``http_client``)."""
        if self._owns_http_client:
            self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the send/retry loop -------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any | None = None,
        max_retries: int | None = None,
        raise_for_status: bool = True,
    ) -> httpx.Response:
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            request = self._client.build_request(**self._request_kwargs(method, path, body))
            try:
                response = self._client.send(request)
            except httpx.TransportError as exc:
                delay = self._retry_delay(attempt, retries, error=exc)
                if delay is None:
                    raise self._connection_error(exc, request) from exc
                log.info("%s %s failed (%s); retry %d/%d in %.2fs", method, path, exc, attempt + 1, retries, delay)
            else:
                if response.is_success or not raise_for_status:
                    return response
                delay = self._retry_delay(attempt, retries, response=response)
                if delay is None:
                    raise self._status_error(response)
                log.info(
                    "%s %s answered %d; retry %d/%d in %.2fs",
                    method,
                    path,
                    response.status_code,
                    attempt + 1,
                    retries,
                    delay,
                )
                response.close()
            self._sleep(delay)
            attempt += 1

    def _upload(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One multipart upload (``files=``, ``data=``): sent once, never retried (the body is not replayed)."""
        request = self._client.build_request(
            method, self._url(path), headers=self.headers, timeout=self.timeout, **kwargs
        )
        try:
            response = self._client.send(request)
        except httpx.TransportError as exc:
            raise self._connection_error(exc, request) from exc
        if not response.is_success:
            raise self._status_error(response)
        return response

    # -- endpoints -----------------------------------------------------------------------------
    def translate(
        self,
        texts: str | Iterable[str],
        source_lang: str = "en",
        target_lang: str = "de",
        *,
        quality: str | None = None,
        split_sentences: str | None = None,
        tag_handling: str | None = None,
        preserve_placeholders: bool | None = None,
        confidence: bool | None = None,
        glossary: Glossary | str | None = None,
        formality: str | None = None,
        source_lang_check: str | None = None,
    ) -> TranslationResult:
        """Translate a list of texts (sentences, paragraphs, documents); one result slot per text, in order.
        A single string is one text: ``client.translate("Hello.").texts[0]``.

        ``quality`` is ``"fast"`` | ``"balanced"`` | ``"best"``; ``split_sentences`` ``"on"`` (split
        on sentence punctuation and newlines) | ``"newlines"`` | ``"off"`` (the text is one
        segment); ``tag_handling`` ``"html"`` | ``"xml"``; ``preserve_placeholders`` protects
        ``{name}``, ``%s``, URLs, ... (see docs/api.md); ``confidence=True`` gives each translation
        a ``confidence`` (0..1; it costs the engine some throughput: see docs/api.md); ``glossary`` is a
        :class:`~batchmt.glossaries.Glossary` of this key (or its id: ``client.glossaries.create``);
        ``formality`` is ``"default"`` | ``"more"`` (Sie) | ``"less"`` (du) | ``"prefer_more"`` |
        ``"prefer_less"``; ``source_lang_check`` ``"flag"`` (a text not in ``source_lang`` comes back ``suspect``
        with a warning) | ``"strict"`` (such a text refuses the request: ``APIError`` ``source_lang_mismatch``) |
        ``"off"``. ``None`` leaves the server's default.

        Lists are split into requests within the server's limits (texts and characters per
        request, from ``/v1/info``), sent at most ``max_concurrency`` at a time (the synchronous client: one
        after the other) and joined in input order; ``usage`` is summed. If a request fails, the others are
        cancelled and its error is raised. A text longer than the server's ``max_text_chars`` is not sent and
        gets a failed slot (code ``text_too_long``). Per-text failures do not raise: see ``result.ok``,
        ``result.failures`` and ``result.raise_for_failures()``. An empty list returns an empty
        result without a request.
        """
        items = self._texts(texts)
        options = self._translate_options(
            quality=quality,
            split_sentences=split_sentences,
            tag_handling=tag_handling,
            preserve_placeholders=preserve_placeholders,
            confidence=confidence,
            glossary=glossary,
            formality=formality,
            source_lang_check=source_lang_check,
        )
        if not items:
            return self._empty_result()
        chunks, local = self._plan(items, self._chunk_limits(items))
        calls = [
            functools.partial(self._translate_indices, items, indices, source_lang, target_lang, options)
            for indices in chunks
        ]
        parts = gather_bounded(calls, self.max_concurrency)
        if len(parts) == 1 and not local:
            return parts[0][1]
        return TranslationResult.assemble(len(items), parts, local)

    def _translate_indices(
        self,
        items: Sequence[str],
        indices: list[int],
        source_lang: str,
        target_lang: str,
        options: Mapping[str, Any],
    ) -> tuple[list[int], TranslationResult]:
        chunk = [items[i] for i in indices]
        return indices, self._translate_chunk(chunk, indices, source_lang, target_lang, options)

    def _translate_chunk(
        self,
        chunk: list[str],
        indices: Sequence[int],
        source_lang: str,
        target_lang: str,
        options: Mapping[str, Any],
    ) -> TranslationResult:
        while True:
            body = self._translate_body(chunk, source_lang, target_lang, options)
            try:
                response = self._request("POST", "/v1/translate", body=body)
            except APIError as err:
                if self._is_legacy_rejection(err, options):
                    continue
                raise self._shift_error(err, indices) from None
            return TranslationResult.from_json(self._json(response), expected=len(chunk))

    def info(self) -> ServerInfo:
        """``GET /v1/info``: version, model, signature, language pairs and limits."""
        return self._info()

    def _info(self, max_retries: int | None = None) -> ServerInfo:
        response = self._request("GET", "/v1/info", max_retries=max_retries)
        return self._remember_info(self._json(response))

    def _chunk_limits(self, items: Sequence[str]) -> ChunkLimits:
        known = self._known_limits(items)
        if known is not None:
            return known
        try:
            self._info(max_retries=0)
        except BatchmtError as err:
            log.debug("GET /v1/info failed (%s); using the default limits", err)
            return self._limits_after_info_error(err)
        assert self._limits is not None
        return self._limits

    def health(self) -> Health:
        """``GET /healthz`` and ``GET /readyz`` (no retries). Raises only if the server is unreachable."""
        live = self._request("GET", "/healthz", max_retries=0, raise_for_status=False)
        ready = None
        if live.is_success:
            ready = self._request("GET", "/readyz", max_retries=0, raise_for_status=False)
        return self._health(live, ready)

    # -- files ---------------------------------------------------------------------------------
    def translate_file(
        self,
        src: Source,
        dst: Destination,
        *,
        source_lang: str = "en",
        target_lang: str = "de",
        resume: bool = True,
        progress: bool | None = None,
        on_failure: OnFailure = "empty",
        encoding: str = "utf-8",
        format: str | None = None,
        unit: str = "line",
        field: str = "text",
        column: str = "text",
        quality: str | None = None,
        split_sentences: str | None = None,
        tag_handling: str | None = None,
        preserve_placeholders: bool | None = None,
        glossary: Glossary | str | None = None,
        formality: str | None = None,
        restart_hint: str = "pass resume=False",
        review: bool = True,
        source_lang_check: str | None = None,
    ) -> FileReport:
        """Translate a file into ``dst`` in the same format, unit by unit (see :mod:`batchmt.file_translation`
        and :mod:`batchmt.formats`).

        ``src`` is a path, a text stream or a list of lines; ``dst`` a path (resumable) or a text
        stream. ``format`` is ``text`` | ``jsonl`` | ``csv`` | ``tsv`` | ``srt`` | ``po`` |
        ``xliff`` | ``html`` (default: from ``src``'s extension, else ``text``); ``unit`` is
        ``line`` or ``paragraph`` for text; ``field`` names the JSONL field and ``column`` the
        CSV/TSV column to translate. ``on_failure`` is ``"empty"`` | ``"source"`` | ``"raise"``.
        The translation options are those of :meth:`translate`. A progress bar goes to stderr
        when it is a terminal (``progress=None``, the default; logs and pipes get none); ``True`` always,
        ``False`` never. ``review`` marks machine translation for review where the format can (PO ``fuzzy``,
        XLIFF states; see :mod:`batchmt.formats`). ``restart_hint`` is the
        advice given when a resume is refused (the CLI says ``--no-resume``). Each batch of units holds
        ``max_concurrency`` requests' worth, sent as :meth:`translate` sends them. (File reads and writes are
        small and blocking.)
        """
        with FileJob(
            src,
            dst,
            resume=resume,
            progress=progress,
            on_failure=on_failure,
            encoding=encoding,
            format=format,
            unit=unit,
            field=field,
            column=column,
            source_lang=source_lang,
            target_lang=target_lang,
            options={
                "quality": quality,
                "split_sentences": split_sentences,
                "tag_handling": tag_handling,
                "preserve_placeholders": preserve_placeholders,
                "glossary": glossary_id(glossary),
                "formality": formality,
                "source_lang_check": source_lang_check,
            },
            restart_hint=restart_hint,
            review=review,
        ) as job:
            limits = self._file_limits()
            max_chars = limits.max_request_chars * self.max_concurrency if limits.max_request_chars else None
            for batch in job.batches(limits.max_texts * self.max_concurrency, max_chars):
                job.record(batch, self.translate(batch.texts, **job.request_options(batch)))
            return job.finish()

    def _file_limits(self) -> ChunkLimits:
        if self._limits is not None:
            return self._limits
        try:
            self._info(max_retries=0)
        except BatchmtError as err:
            log.debug("GET /v1/info failed (%s); using the default limits", err)
            return self._limits_after_info_error(err)
        assert self._limits is not None
        return self._limits
