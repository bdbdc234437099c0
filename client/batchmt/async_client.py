"""The asynchronous client."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

import httpx

from ._base_client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, BaseClient
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
                    method, path, response.status_code, attempt + 1, retries, delay,
                )
                await response.aclose()
            await self._sleep(delay)
            attempt += 1

    # -- endpoints -----------------------------------------------------------------------------
    async def translate(
        self,
        sentences: Iterable[str],
        source_lang: str = "en",
        target_lang: str = "de",
    ) -> TranslationResult:
        """Translate a list of sentences; one result slot per sentence, in order.

        Lists longer than the server's ``max_sentences_per_request`` are split into chunks sent
        concurrently (at most ``max_concurrency`` at a time) and joined in input order; ``usage``
        is summed. If one chunk fails, the others are cancelled and its error is raised.
        """
        items = self._sentences(sentences)
        if not items:
            return self._empty_result()
        size = await self._chunk_size(len(items))
        chunks = self._chunks(items, size)
        if len(chunks) == 1:
            return await self._translate_chunk(0, chunks[0][1], source_lang, target_lang)
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def bounded(offset: int, chunk: Sequence[str]) -> TranslationResult:
            async with semaphore:
                return await self._translate_chunk(offset, chunk, source_lang, target_lang)

        tasks = [asyncio.ensure_future(bounded(offset, chunk)) for offset, chunk in chunks]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return TranslationResult.concat(parts)

    async def _translate_chunk(
        self, offset: int, chunk: Sequence[str], source_lang: str, target_lang: str
    ) -> TranslationResult:
        try:
            response = await self._request(
                "POST", "/v1/translate", body=self._translate_body(chunk, source_lang, target_lang)
            )
        except APIError as err:
            raise self._shift_error(err, offset) from None
        return TranslationResult.from_json(self._json(response), expected=len(chunk))

    async def info(self) -> ServerInfo:
        """``GET /v1/info``: version, model, signature, language pairs and limits."""
        return await self._info()

    async def _info(self, max_retries: int | None = None) -> ServerInfo:
        response = await self._request("GET", "/v1/info", max_retries=max_retries)
        return self._remember_info(self._json(response))

    async def _chunk_size(self, n: int) -> int:
        known = self._known_limit(n)
        if known is not None:
            return known
        try:
            await self._info(max_retries=0)
        except BatchmtError as err:
            log.debug("GET /v1/info failed (%s); using the default chunk size", err)
            return self._limit_after_info_error(err)
        assert self._max_per_request is not None
        return self._max_per_request

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
    ) -> FileReport:
        """Like :meth:`Client.translate_file`; each batch holds ``max_concurrency`` requests'
        worth of lines, which are sent concurrently. (File reads/writes are small and blocking.)"""
        with FileJob(src, dst, resume=resume, progress=progress, on_failure=on_failure, encoding=encoding) as job:
            size = await self._chunk_size(2)
            for batch in job.batches(size * self.max_concurrency):
                job.write(batch, await self.translate(batch.sentences, source_lang, target_lang))
        return job.report
