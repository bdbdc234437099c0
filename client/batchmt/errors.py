"""Exceptions raised by the batchmt SDK.

Hierarchy::

    BatchmtError
    ├── APIError                      the server answered with an error (status, code, message, param, body)
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── RequestTimeoutError       408
    │   ├── ConflictError             409 (not retried: the resource's state refuses it)
    │   ├── PayloadTooLargeError      413
    │   ├── UnsupportedMediaTypeError 415
    │   ├── UnprocessableEntityError  422
    │   ├── RateLimitError            429
    │   ├── QuotaExceededError        456 (a key's character quota: retrying does not help until it resets)
    │   ├── InternalServerError       5xx
    │   │   ├── ServiceUnavailableError 503
    │   │   └── GatewayTimeoutError     504
    │   └── APIResponseValidationError  a 2xx answer that does not match the API contract
    ├── APIConnectionError            the server could not be reached / the connection broke
    │   └── APITimeoutError           the request timed out on the client side
    └── TranslationFailed             the request succeeded but some sentences have status "failed"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # pragma: no cover
    from .types import Translation, TranslationResult

__all__ = [
    "BatchmtError",
    "APIError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RequestTimeoutError",
    "ConflictError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "QuotaExceededError",
    "InternalServerError",
    "ServiceUnavailableError",
    "GatewayTimeoutError",
    "APIResponseValidationError",
    "APIConnectionError",
    "APITimeoutError",
    "TranslationFailed",
]


class BatchmtError(Exception):
    """Base class of every exception the SDK raises."""


class APIError(BatchmtError):
    """The server answered with an error status (or an unusable body).

    ``code``, ``message`` and ``param`` come from the ``{"error": {...}}`` body when the server sent
    one; ``body`` is the decoded JSON body (or the raw text when it was not JSON).
    """

    status: int | None
    code: str | None
    message: str
    param: str | None
    body: Any
    response: httpx.Response | None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        body: Any = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.body = body
        self.response = response

    @property
    def retry_after(self) -> str | None:
        """The raw ``Retry-After`` header of the response, if any."""
        if self.response is None:
            return None
        value: str | None = self.response.headers.get("retry-after")
        return value

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, param={self.param!r})"
        )


class BadRequestError(APIError):
    """400: the body is not valid JSON."""


class AuthenticationError(APIError):
    """401: missing or wrong API key."""


class PermissionDeniedError(APIError):
    """403."""


class NotFoundError(APIError):
    """404: wrong base URL or endpoint."""


class RequestTimeoutError(APIError):
    """408 (retried)."""


class ConflictError(APIError):
    """409: the resource's state refuses the action (``batch_not_cancellable``: the batch is finished). Not
    retried: the answer would not change."""


class QuotaExceededError(APIError):
    """456: this key's character quota (per day or month, UTC) is used up (``quota_exceeded``). Not retried; the
    message says which quota and when it resets."""


class PayloadTooLargeError(APIError):
    """413: too many sentences in one request, or a sentence over the length limit."""


class UnsupportedMediaTypeError(APIError):
    """415: the body was not sent as ``application/json``."""


class UnprocessableEntityError(APIError):
    """422: empty sentence(s), wrong types, unsupported language pair."""


class RateLimitError(APIError):
    """429: the gateway's queue is full (retried, honouring ``Retry-After``)."""


class InternalServerError(APIError):
    """5xx (retried)."""


class ServiceUnavailableError(InternalServerError):
    """503: the engine is not ready or failed for the whole request (retried)."""


class GatewayTimeoutError(InternalServerError):
    """504: the request took longer than the server's request timeout (retried)."""


class APIResponseValidationError(APIError):
    """A successful status whose body does not match the API contract."""


class APIConnectionError(BatchmtError):
    """The server could not be reached, or the connection broke before a response arrived."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APITimeoutError(APIConnectionError):
    """The request timed out on the client side (see the ``timeout`` option)."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class TranslationFailed(BatchmtError):
    """Some sentences of an otherwise successful request have ``status == "failed"``.

    Raised by :meth:`TranslationResult.raise_for_failures` and by ``translate_file(...,
    on_failure="raise")``. ``failures`` lists ``(index, translation)`` pairs; ``index`` is the
    0-based position in the input (for files: the 1-based line number, see ``line_numbers``).
    """

    def __init__(
        self,
        message: str,
        *,
        failures: Sequence[tuple[int, Translation]] = (),
        result: TranslationResult | None = None,
        line_numbers: Sequence[int] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.failures = list(failures)
        self.result = result
        self.line_numbers = list(line_numbers)


_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    456: QuotaExceededError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


def error_class_for_status(status: int) -> type[APIError]:
    """The most specific :class:`APIError` subclass for an HTTP status."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    if status >= 500:
        return InternalServerError
    return APIError
