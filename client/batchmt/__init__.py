"""batchmt: Python SDK and CLI of the batchmt English→German batch translation server.

>>> import batchmt
>>> with batchmt.Client(base_url="http://127.0.0.1:8000") as client:
...     result = client.translate(["The museum is closed on Mondays."])
...     print(result.raise_for_failures().texts)

Only needs httpx and tqdm (never the server's packages); the file formats SRT, PO and
XLIFF need the extra ``formats`` (srt, polib, lxml), imported when such a file is read.
"""

from __future__ import annotations

from ._base_client import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from .async_client import AsyncClient
from .batches import Batch, BatchFailed, BatchList, RequestCounts
from .client import Client
from .errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchmtError,
    ConflictError,
    GatewayTimeoutError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    TranslationFailed,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from .file_translation import FileReport, UnitFailure
from .formats import FileFormatError
from .glossaries import Glossary
from .types import (
    Health,
    Limits,
    SegmentFailure,
    ServerInfo,
    Translation,
    TranslationError,
    TranslationResult,
    Usage,
)
from .version import __version__

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "Glossary",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    # results
    "TranslationResult",
    "Translation",
    "TranslationError",
    "SegmentFailure",
    "Usage",
    "ServerInfo",
    "Limits",
    "Health",
    "FileReport",
    "UnitFailure",
    "Batch",
    "BatchList",
    "RequestCounts",
    "BatchFailed",
    # errors
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
    "FileFormatError",
]
