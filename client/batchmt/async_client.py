"""The asynchronous client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from ._base_client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, BaseClient, ChunkLimits
from .batches import AsyncBatches
from .errors import APIError, BatchmtError
from .files import Destination, FileJob, FileReport, OnFailure, Source
from .types import Health, ServerInfo, TranslationResult

__all__ = ["AsyncClient", "DEFAULT_MAX_CONCURRENCY"]

log = logging.getLogger("batchmt")

DEFAULT_MAX_CONCURRENCY = 4


class AsyncClient(BaseClient):
    """Asynchronous client of a batchmt server; same options as :class:`~batchmt.Client`, plus
    ``max_concurrency``: how many chunks of one long ``translate()`` call are in flight at once.

    >>> async with AsyncClient() as client:
    ...     result = await client.translate(sentences)

    ``http_client=`` takes an ``httpx.AsyncClient``; ``transport=`` an async transport such as
    ``httpx.ASGITransport(app=app)`` or ``httpx.MockTransport(handler)``.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        chunk_size: int | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
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
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.max_concurrency = max_concurrency
        self._owns_http_client = http_client is None
        self._client = http_client if http_client is not None else httpx.AsyncClient(transport=transport)
        # Injectable for tests, so that retries do not really sleep.
        self._sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep

    @property
    def batches(self) -> AsyncBatches:
        """Batch jobs on the server (``/v1/batches``): :class:`~batchmt.batches.AsyncBatches`."""
        return AsyncBatches(self)

    # -- lifecycle -----------------------------------------------------------------------------
    async def close(self) -> None:
        """Close the underlying HTTP client (unless it was passed in as ``http_client``)."""
        if self._owns_http_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the send/retry loop -------------------------------------------------------------------
    async def _request(
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
                response = await self._client.send(request)
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
                await response.aclose()
            await self._sleep(delay)
            attempt += 1

    # -- endpoints -----------------------------------------------------------------------------
    async def translate(
        self,
        texts: Iterable[str],
        source_lang: str = "en",
        target_lang: str = "de",
        *,
        quality: str | None = None,
        split_sentences: str | None = None,
        tag_handling: str | None = None,
        preserve_placeholders: bool | None = None,
        confidence: bool | None = None,
    ) -> TranslationResult:
        """Like :meth:`Client.translate`; the requests a long list is split into are sent
        concurrently (at most ``max_concurrency`` at a time) and joined in input order. If one
        request fails, the others are cancelled and its error is raised.
        """
        items = self._texts(texts)
        options = self._translate_options(
            quality=quality,
            split_sentences=split_sentences,
            tag_handling=tag_handling,
            preserve_placeholders=preserve_placeholders,
            confidence=confidence,
        )
        if not items:
            return self._empty_result()
        chunks, local = self._plan(items, await self._chunk_limits(items))
        if len(chunks) == 1 and not local:
            return await self._translate_chunk(
                [items[i] for i in chunks[0]], chunks[0], source_lang, target_lang, options
            )
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def bounded(indices: list[int]) -> tuple[list[int], TranslationResult]:
            async with semaphore:
                chunk = [items[i] for i in indices]
                return indices, await self._translate_chunk(chunk, indices, source_lang, target_lang, options)

        tasks = [asyncio.ensure_future(bounded(indices)) for indices in chunks]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return TranslationResult.assemble(len(items), parts, local)

    async def _translate_chunk(
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
                response = await self._request("POST", "/v1/translate", body=body)
            except APIError as err:
                if self._is_legacy_rejection(err, options):
                    continue
                raise self._shift_error(err, indices) from None
            return TranslationResult.from_json(self._json(response), expected=len(chunk))

    async def info(self) -> ServerInfo:
        """``GET /v1/info``: version, model, signature, language pairs and limits."""
        return await self._info()

    async def _info(self, max_retries: int | None = None) -> ServerInfo:
        response = await self._request("GET", "/v1/info", max_retries=max_retries)
        return self._remember_info(self._json(response))

    async def _chunk_limits(self, items: Sequence[str]) -> ChunkLimits:
        known = self._known_limits(items)
        if known is not None:
            return known
        try:
            await self._info(max_retries=0)
        except BatchmtError as err:
            log.debug("GET /v1/info failed (%s); using the default limits", err)
            return self._limits_after_info_error(err)
        assert self._limits is not None
        return self._limits

    async def health(self) -> Health:
        """``GET /healthz`` and ``GET /readyz`` (no retries). Raises only if the server is unreachable."""
        live = await self._request("GET", "/healthz", max_retries=0, raise_for_status=False)
        ready = None
        if live.is_success:
            ready = await self._request("GET", "/readyz", max_retries=0, raise_for_status=False)
        return self._health(live, ready)

    # -- files ---------------------------------------------------------------------------------
    async def translate_file(
        self,
        src: Source,
        dst: Destination,
        *,
        source_lang: str = "en",
        target_lang: str = "de",
        resume: bool = True,
        progress: bool | None = True,
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
        restart_hint: str = "pass resume=False",
    ) -> FileReport:
        """Like :meth:`Client.translate_file`; each batch holds ``max_concurrency`` requests'
        worth of units, which are sent concurrently. (File reads/writes are small and blocking.)"""
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
            },
            restart_hint=restart_hint,
        ) as job:
            limits = await self._file_limits()
            max_chars = limits.max_request_chars * self.max_concurrency if limits.max_request_chars else None
            for batch in job.batches(limits.max_texts * self.max_concurrency, max_chars):
                job.record(batch, await self.translate(batch.texts, **job.request_options(batch)))
            return job.finish()

    async def _file_limits(self) -> ChunkLimits:
        if self._limits is not None:
            return self._limits
        try:
            await self._info(max_retries=0)
        except BatchmtError as err:
            log.debug("GET /v1/info failed (%s); using the default limits", err)
            return self._limits_after_info_error(err)
        assert self._limits is not None
        return self._limits
