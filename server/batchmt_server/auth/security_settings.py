"""Settings of the HTTP front: keys, limits enforced before parsing, timeouts, logs and tracing.

:class:`SecurityFields` holds the fields; :class:`~batchmt_server.settings.Settings` inherits them (one settings
object, ``BATCHMT_*`` variables and flags as for every other setting). Secrets (``api_key``, tokens) are read from
the environment or from files, never from the command line, where ``ps`` would show them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["SecurityFields", "SECRET_FIELDS", "body_bytes_needed", "check_limits", "default_body_bytes"]

#: settings never offered as command-line flags (``ps`` shows a process's arguments)
SECRET_FIELDS = frozenset({"admin_key", "api_key", "engine_api_key", "metrics_token", "dashboard_key"})


def body_bytes_needed(max_sentences: int, max_chars: int) -> int:
    """Bytes of the largest conforming request: every character written as a JSON escape of up to
    12 bytes (an astral character is two ``\\uXXXX`` escapes), 8 bytes of quotes and commas per
    sentence, 1 KiB for the rest of the object."""
    return max_sentences * (max_chars * 12 + 8) + 1024


def request_chars_limit(s: Any) -> tuple[int, int]:
    """(entries, characters) of the largest conforming translate request: ``max_sentences_per_request`` entries,
    at most ``max_text_chars`` each and ``max_request_chars`` in all."""
    n = s.max_sentences_per_request
    return n, min(s.max_request_chars, n * s.max_text_chars)


def default_body_bytes(s: Any) -> int:
    """The default ``max_body_bytes``: the largest conforming request with every character a 12-byte escape."""
    n, chars = request_chars_limit(s)
    return chars * 12 + n * 8 + 1024


def check_limits(s: Any) -> None:
    """Refuse (``ValueError``) limits that contradict each other, so that no conforming request is refused
    forever: ``batchmt-server`` calls it at start-up."""
    problems = []
    if s.max_queue_sentences < s.max_sentences_per_request:
        problems.append(
            f"max_queue_sentences ({s.max_queue_sentences}) is below max_sentences_per_request "
            f"({s.max_sentences_per_request}): a full-size request could never be queued"
        )
    if s.max_body_bytes is not None:
        n, chars = request_chars_limit(s)
        utf8 = chars * 4 + n * 8 + 1024
        if s.max_body_bytes < utf8:
            problems.append(
                f"max_body_bytes ({s.max_body_bytes}) is below what {n} texts of {chars} characters "
                f"in all take in UTF-8 ({utf8})"
            )
    if problems:
        raise ValueError("contradictory limits: " + "; ".join(problems))


class SecurityFields(BaseModel):
    # --- keys (see keys.py and docs/api.md "Keys")
    api_key_file: Path | None = Field(
        None,
        description="file of API keys, one per line ('name:key[:role]' or 'key'; '#' "
        "starts a comment; a key's id is 'file-' + the start of its SHA-256, stable when lines move); "
        "with BATCHMT_API_KEY or a key store, every endpoint but "
        "/healthz and /readyz needs 'Authorization: Bearer <key>'",
    )
    require_api_key: bool = Field(
        False,
        description="every endpoint but /healthz and /readyz needs a key even before any key exists. Without it, "
        "keys turn on with the first key (environment, file or store) and stay on for good: revoking the last "
        "store key never opens the server (a revoked key still counts)",
    )
    metrics_token: str | None = Field(
        None, description="bearer token for /metrics (env BATCHMT_METRICS_TOKEN; with keys on, an admin key also works)"
    )
    metrics_token_file: Path | None = Field(None, description="file holding the /metrics token")
    dashboard_key: str | None = Field(
        None,
        description="read-only key for /dashboard and /dashboard/data only "
        "(env BATCHMT_DASHBOARD_KEY; the browser asks for it as a password)",
    )

    # --- limits enforced before the body is parsed (middleware.py) and by the HTTP protocol (uvicorn_protocol.py)
    max_body_bytes: int | None = Field(
        None,
        ge=1024,
        description="largest request body; beyond it 413 before "
        "reading (Content-Length) or while reading (chunked). Default: what a "
        "request at the sentence limits needs, JSON escapes included",
    )
    max_json_depth: int = Field(16, ge=2, le=256, description="deepest nesting of arrays/objects in a JSON body")
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="the whole body must arrive within this many seconds "
        "after the headers (a stalled body gets 408 and the connection is closed)",
    )
    upload_timeout_s: float = Field(
        120.0,
        gt=0,
        description="a file upload (/v1/files) must arrive whole within this many seconds after the headers "
        "(408 and close beyond), besides no chunk for body_timeout_s",
    )
    max_concurrent_uploads: int = Field(
        4, ge=1, description="file uploads in progress at once per key (per client address with keys off); 429 beyond"
    )
    max_header_bytes: int = Field(16384, ge=1024, description="request line + headers; beyond it 431 and close")
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a request's headers must arrive within this many "
        "seconds of its first byte (or of the connection); else the connection closes",
    )
    keep_alive_s: float = Field(5.0, gt=0, description="idle keep-alive connections are closed after this")

    # --- faults
    on_engine_death: Literal["exit", "stay"] = Field(
        "exit",
        description="when the in-process engine dies for "
        "good: 'exit' (not ready at once, waiting requests get a "
        "retryable 503, then a graceful shutdown with exit status 70 "
        "for the supervisor to restart); 'stay' (keep answering 503)",
    )
    shutdown_delay_s: float = Field(
        0.0,
        ge=0,
        description="on SIGTERM: /readyz answers 503 at once and the gateway "
        "keeps serving this long (load balancers take it out), then drains and exits",
    )
    fake_engine_delay_ms: float = Field(
        0.0, ge=0, description="engine 'fake' only: latency of each engine call (load and fault tests)"
    )

    # --- observability
    log_format: Literal["text", "json"] = Field(
        "text", description="'json': one JSON object per line (python-json-logger), with request_id"
    )
    otel_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint for OpenTelemetry traces, e.g. http://127.0.0.1:4318 (off when unset)"
    )
    otel_service_name: str = Field("batchmt", description="service.name of the exported traces")
