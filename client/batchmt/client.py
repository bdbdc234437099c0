"""The synchronous client."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Mapping

import httpx

from ._base_client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, BaseClient
from .errors import APIError, BatchmtError
from .files import Destination, FileJob, FileReport, OnFailure, Source
from .types import Health, ServerInfo, TranslationResult

__all__ = ["Client"]

log = logging.getLogger("batchmt")


class Client(BaseClient):
    """Synchronous client of a batchmt server.

    >>> with Client() as client:                       # BATCHMT_BASE_URL / BATCHMT_API_KEY
    ...     result = client.translate(["The museum is closed on Mondays."])
    ...     result.texts                               # ['Das Museum ist montags geschlossen.']

    ``base_url`` and ``api_key`` default to the env vars ``BATCHMT_BASE_URL`` (else
    ``http://127.0.0.1:8000``) and ``BATCHMT_API_KEY``. ``timeout`` is in seconds (or an
    ``httpx.Timeout``); ``max_retries`` retries connection errors, timeouts, 408/409/429/5xx.
    ``chunk_size`` overrides the sentences per request (otherwise read from ``/v1/info``).
    Pass ``http_client=`` (an ``httpx.Client`` you own and close) or ``transport=`` to control
    the HTTP layer, e.g. ``transport=httpx.MockTransport(handler)`` in tests.
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
                    method, path, response.status_code, attempt + 1, retries, delay,
                )
                response.close()
            self._sleep(delay)
            attempt += 1

    # -- endpoints -----------------------------------------------------------------------------
    def translate(
        self,
        sentences: Iterable[str],
        source_lang: str = "en",
        target_lang: str = "de",
    ) -> TranslationResult:
        """Translate a list of sentences; one result slot per sentence, in order.

        Lists longer than the server's ``max_sentences_per_request`` are split into several
        requests (sent one after the other) and joined; ``usage`` is summed. Per-sentence
        failures do not raise: see ``result.ok``, ``result.failures`` and
        ``result.raise_for_failures()``. An empty list returns an empty result without a request.
        """
        items = self._sentences(sentences)
        if not items:
            return self._empty_result()
        size = self._chunk_size(len(items))
        parts = []
        for offset, chunk in self._chunks(items, size):
            try:
                response = self._request("POST", "/v1/translate", body=self._translate_body(chunk, source_lang, target_lang))
            except APIError as err:
                raise self._shift_error(err, offset) from None
            parts.append(TranslationResult.from_json(self._json(response), expected=len(chunk)))
        return parts[0] if len(parts) == 1 else TranslationResult.concat(parts)

    def info(self) -> ServerInfo:
        """``GET /v1/info``: version, model, signature, language pairs and limits."""
        return self._info()

    def _info(self, max_retries: int | None = None) -> ServerInfo:
        response = self._request("GET", "/v1/info", max_retries=max_retries)
        return self._remember_info(self._json(response))

    def _chunk_size(self, n: int) -> int:
        known = self._known_limit(n)
        if known is not None:
            return known
        try:
            self._info(max_retries=0)
        except BatchmtError as err:
            log.debug("GET /v1/info failed (%s); using the default chunk size", err)
            return self._limit_after_info_error(err)
        assert self._max_per_request is not None
        return self._max_per_request

    def health(self) -> Health:
        """``GET /healthz`` and ``GET /readyz`` (no retries). Raises only if the server is unreachable."""
        live = self._request("GET", "/healthz", max_retries=0, raise_for_status=False)
        ready = self._request("GET", "/readyz", max_retries=0, raise_for_status=False) if live.is_success else None
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
        progress: bool | None = True,
        on_failure: OnFailure = "empty",
        encoding: str = "utf-8",
    ) -> FileReport:
        """Translate ``src`` line by line into ``dst`` (see :mod:`batchmt.files` for the rules:
        blank lines kept, resume of a partial ``dst``, ``on_failure="empty"|"raise"``).

        ``src`` is a path, a text stream or a list of lines; ``dst`` a path or a text stream.
        A progress bar goes to stderr unless ``progress=False`` (``None``: only if stderr is a TTY).
        """
        with FileJob(src, dst, resume=resume, progress=progress, on_failure=on_failure, encoding=encoding) as job:
            for batch in job.batches(self._chunk_size(2)):
                job.write(batch, self.translate(batch.sentences, source_lang, target_lang))
        return job.report
