"""What the sync and async clients share: options, env fallback, building requests, the retry
decision, backoff, error mapping, chunking. Only the send/retry loop is written twice (in
``client.py`` and ``async_client.py``); everything here is I/O-free.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    BatchmtError,
    error_class_for_status,
)
from .glossaries import glossary_id
from .types import Health, ServerInfo, Translation, TranslationResult
from .version import __version__

__all__ = [
    "BaseClient",
    "ChunkLimits",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_SENTENCES_PER_REQUEST",
    "ENV_BASE_URL",
    "ENV_API_KEY",
]

ENV_BASE_URL = "BATCHMT_BASE_URL"
ENV_API_KEY = "BATCHMT_API_KEY"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# Translating a full request on a CPU engine can take minutes; connecting should not.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
DEFAULT_MAX_RETRIES = 3
# Used when /v1/info cannot tell us the server's limits.
DEFAULT_MAX_SENTENCES_PER_REQUEST = 64
DEFAULT_MAX_REQUEST_CHARS = 1_000_000
# A request of texts this small needs no /v1/info round trip: every server takes it.
SMALL_TEXT_CHARS = 1000
SMALL_REQUEST_CHARS = 8000

INITIAL_RETRY_DELAY = 0.5  # seconds; doubled per attempt ...
MAX_RETRY_DELAY = 8.0  # ... up to this, with full jitter
MAX_RETRY_AFTER = 60.0  # a server's Retry-After is honoured up to this many seconds

_TEXT_PARAM = re.compile(r"(texts|sentences)\[(\d+)\]")


@dataclass(frozen=True)
class ChunkLimits:
    """What one request may hold: entries, characters per entry, characters in all."""

    max_texts: int
    max_text_chars: int | None = None
    max_request_chars: int | None = None


def _is_retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500  # 409 and 456 would answer the same again


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``Retry-After-Ms`` / ``Retry-After`` (delta-seconds or an
    HTTP-date); ``None`` if absent or unparseable. Negative values become 0."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class BaseClient:
    """Options and request logic shared by :class:`~batchmt.Client` and :class:`~batchmt.AsyncClient`."""

    base_url: str
    api_key: str | None
    timeout: httpx.Timeout
    max_retries: int
    #: chunks of one long ``translate()`` in flight at once: an option of the asyncio client, 1 in the other
    max_concurrency: int = 1

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        chunk_size: int | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        base_url = base_url.strip().rstrip("/")
        if not re.match(r"^https?://", base_url):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if api_key is None:
            api_key = os.environ.get(ENV_API_KEY) or None
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self._default_headers = dict(default_headers or {})
        # Texts per request given explicitly; the other limits are learnt from /v1/info on first use.
        self._chunk_size: int | None = chunk_size
        self._limits: ChunkLimits | None = None
        # Set once a server older than texts refused the field: send "sentences" from then on.
        self._legacy_field = False
        self._server_info: ServerInfo | None = None
        # Injectable for tests: random() in [0, 1) drives the backoff jitter.
        self._random: Callable[[], float] = random.random

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- requests ------------------------------------------------------------------------------
    @property
    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"batchmt-python/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(self._default_headers)
        return headers

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _request_kwargs(self, method: str, path: str, body: Any | None) -> dict[str, Any]:
        """Arguments for ``httpx.(Async)Client.build_request``."""
        kwargs: dict[str, Any] = {
            "method": method,
            "url": self._url(path),
            "headers": self.headers,
            "timeout": self.timeout,
        }
        if body is not None:
            kwargs["json"] = body
        return kwargs

    # -- retries -------------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(8, 0.5 * 2**attempt))."""
        ceiling = min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * (2**attempt))
        return float(ceiling * self._random())

    def _retry_delay(
        self,
        attempt: int,
        max_retries: int,
        *,
        response: httpx.Response | None = None,
        error: BaseException | None = None,
    ) -> float | None:
        """Seconds to sleep before retry number ``attempt + 1``, or ``None`` not to retry.

        Retried: connection errors and timeouts, and statuses 408, 429 and 5xx (not 409 or 456). A
        ``Retry-After`` header is honoured (capped at ``MAX_RETRY_AFTER``).
        """
        if attempt >= max_retries:
            return None
        if response is not None:
            if not _is_retryable_status(response.status_code):
                return None
            retry_after = parse_retry_after(response.headers)
            if retry_after is not None:
                return min(retry_after, MAX_RETRY_AFTER)
            return self._backoff(attempt)
        if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
            return None  # a bug on our side; retrying will not help
        if isinstance(error, httpx.TransportError):
            return self._backoff(attempt)
        return None

    # -- errors --------------------------------------------------------------------------------
    @staticmethod
    def _connection_error(exc: httpx.TransportError, request: httpx.Request) -> APIConnectionError:
        """The one place httpx exceptions become SDK exceptions."""
        where = f"{request.method} {request.url}"
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"Request timed out: {where} ({type(exc).__name__})", request=request)
        detail = str(exc) or type(exc).__name__
        return APIConnectionError(f"Connection error: {where}: {detail}", request=request)

    @staticmethod
    def _status_error(response: httpx.Response) -> APIError:
        """Map an error response to the matching :class:`APIError` subclass."""
        status = response.status_code
        try:
            body: Any = response.json()
        except (ValueError, UnicodeDecodeError):
            body = response.text
        code = param = None
        message = None
        if isinstance(body, Mapping):
            err = body.get("error")
            if isinstance(err, Mapping):
                code = err.get("code")
                message = err.get("message")
                param = err.get("param")
            elif isinstance(body.get("detail"), str):  # a framework's default error shape
                message = body["detail"]
        if not message:
            text = body if isinstance(body, str) else json.dumps(body)
            message = text.strip()[:500] or response.reason_phrase or f"HTTP {status}"
        cls = error_class_for_status(status)
        return cls(
            str(message),
            status=status,
            code=str(code) if code is not None else None,
            param=str(param) if param is not None else None,
            body=body,
            response=response,
        )

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise APIResponseValidationError(
                f"The server's response to {response.request.method} {response.request.url} is not JSON",
                status=response.status_code,
                code="invalid_response",
                body=response.text,
                response=response,
            ) from exc

    # -- translate -----------------------------------------------------------------------------
    @staticmethod
    def _texts(texts: str | Iterable[str]) -> list[str]:
        if isinstance(texts, str):  # one text (DeepL's translate_text takes one too): a result with one slot
            return [texts]
        if isinstance(texts, bytes):
            raise TypeError("translate() takes str texts, not bytes: decode them first")
        items = list(texts)
        for i, s in enumerate(items):
            if not isinstance(s, str):
                raise TypeError(f"texts[{i}] is {type(s).__name__}, not str")
        return items

    @staticmethod
    def _translate_options(
        *,
        quality: str | None,
        split_sentences: str | None,
        tag_handling: str | None,
        preserve_placeholders: bool | None,
        confidence: bool | None = None,
        glossary: Any = None,
        formality: str | None = None,
        source_lang_check: str | None = None,
    ) -> dict[str, Any]:
        """The request fields the caller set; ``None`` leaves the server's default (and keeps the
        body valid for servers that predate the option)."""
        options: dict[str, Any] = {}
        named = (
            ("quality", quality),
            ("split_sentences", split_sentences),
            ("tag_handling", tag_handling),
            ("formality", formality),
            ("source_lang_check", source_lang_check),
        )
        for name, value in named:
            if value is not None:
                if not isinstance(value, str):
                    raise TypeError(f"{name} must be a string, not {type(value).__name__}")
                options[name] = value
        if preserve_placeholders is not None:
            if not isinstance(preserve_placeholders, bool):
                raise TypeError("preserve_placeholders must be True or False")
            options["preserve_placeholders"] = preserve_placeholders
        if confidence is not None:
            if not isinstance(confidence, bool):
                raise TypeError("confidence must be True or False")
            options["confidence"] = confidence
        gid = glossary_id(glossary)
        if gid is not None:
            options["glossary_id"] = gid
        return options

    def _translate_body(
        self, texts: Sequence[str], source_lang: str, target_lang: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        field = "sentences" if self._legacy_field else "texts"
        return {field: list(texts), "source_lang": source_lang, "target_lang": target_lang, **options}

    def _is_legacy_rejection(self, err: APIError, options: Mapping[str, Any]) -> bool:
        """A server older than texts rejected the ``texts`` field: resend as ``sentences`` (only
        when no option newer than that server was asked for; otherwise its error stands)."""
        if self._legacy_field or err.status != 422 or err.code != "invalid_request":
            return False
        if err.param not in ("texts", "sentences"):
            return False
        if set(options) - {"quality"}:
            err.message += " (this server predates texts and their options: upgrade it or leave the options unset)"
            err.args = (err.message,)
            return False
        self._legacy_field = True
        return True

    def _plan(self, items: Sequence[str], limits: ChunkLimits) -> tuple[list[list[int]], dict[int, Translation]]:
        """Split ``items`` into requests that respect the server's limits: at most
        ``max_texts`` entries and ``max_request_chars`` characters each. A text the server would
        refuse for its length is not sent: it gets a failed slot of its own (``local``)."""
        chunks: list[list[int]] = []
        local: dict[int, Translation] = {}
        current: list[int] = []
        chars = 0
        for i, text in enumerate(items):
            n = len(text)
            if limits.max_text_chars is not None and n > limits.max_text_chars:
                local[i] = Translation.failed(
                    "text_too_long",
                    f"texts[{i}] has {n} characters; the server's limit is {limits.max_text_chars} per text "
                    "(max_text_chars); not sent",
                )
                continue
            if limits.max_request_chars is not None and n > limits.max_request_chars:
                local[i] = Translation.failed(
                    "request_too_large",
                    f"texts[{i}] has {n} characters; the server takes at most {limits.max_request_chars} "
                    "per request (max_request_chars); not sent",
                )
                continue
            too_many = len(current) >= limits.max_texts
            too_long = limits.max_request_chars is not None and chars + n > limits.max_request_chars
            if current and (too_many or too_long):
                chunks.append(current)
                current, chars = [], 0
            current.append(i)
            chars += n
        if current:
            chunks.append(current)
        return chunks, local

    @staticmethod
    def _shift_error(err: APIError, indices: Sequence[int]) -> APIError:
        """Make ``param="texts[i]"`` (or ``sentences[i]``) of a request's error refer to the
        caller's whole list."""
        if err.param:
            m = _TEXT_PARAM.fullmatch(err.param)
            if m and int(m.group(2)) < len(indices):
                new = f"{m.group(1)}[{indices[int(m.group(2))]}]"
                if new != err.param:
                    err.message = err.message.replace(err.param, new)
                    err.param = new
                    err.args = (err.message,)
        return err

    @staticmethod
    def _empty_result() -> TranslationResult:
        return TranslationResult([])

    # -- limits / info -------------------------------------------------------------------------
    def _known_limits(self, items: Sequence[str]) -> ChunkLimits | None:
        """The limits to chunk ``items`` by if no /v1/info round trip is needed: known already, or
        a request small enough for any server (a few short texts)."""
        if self._limits is not None:
            return self._limits
        small = all(len(t) <= SMALL_TEXT_CHARS for t in items) and sum(map(len, items)) <= SMALL_REQUEST_CHARS
        if not small:
            return None
        if self._chunk_size is not None:
            return ChunkLimits(max_texts=self._chunk_size)
        if len(items) <= 1:
            return ChunkLimits(max_texts=1)
        return None

    def _remember_info(self, data: Any) -> ServerInfo:
        info = ServerInfo.from_json(data, default_max_sentences=DEFAULT_MAX_SENTENCES_PER_REQUEST)
        self._server_info = info
        limits = info.limits
        # A server older than texts refuses an entry over max_sentence_chars; a newer one cuts
        # long segments itself and refuses only entries over max_text_chars.
        per_text = limits.max_text_chars if limits.max_text_chars is not None else limits.max_sentence_chars
        self._limits = ChunkLimits(
            max_texts=self._chunk_size if self._chunk_size is not None else limits.max_sentences_per_request,
            max_text_chars=per_text,
            max_request_chars=limits.max_request_chars,
        )
        return info

    def _limits_after_info_error(self, err: BatchmtError) -> ChunkLimits:
        """/v1/info failed: use the fallback, and keep it unless the failure looks transient."""
        transient = isinstance(err, APIConnectionError) or (
            isinstance(err, APIError) and err.status is not None and _is_retryable_status(err.status)
        )
        limits = ChunkLimits(
            max_texts=self._chunk_size if self._chunk_size is not None else DEFAULT_MAX_SENTENCES_PER_REQUEST,
            max_request_chars=DEFAULT_MAX_REQUEST_CHARS,
        )
        if not transient:
            self._limits = limits
        return limits

    # -- health --------------------------------------------------------------------------------
    @staticmethod
    def _health(live: httpx.Response, ready: httpx.Response | None) -> Health:
        if not live.is_success:
            return Health(live=False, ready=False, status="down", message=f"/healthz answered {live.status_code}")
        assert ready is not None
        if ready.is_success:
            return Health(live=True, ready=True, status="ready")
        err = BaseClient._status_error(ready)
        return Health(live=True, ready=False, status=err.code or f"http_{ready.status_code}", message=err.message)
