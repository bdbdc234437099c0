"""The HTTP front of the gateway: a pure ASGI middleware that runs before FastAPI parses anything.

In this order, for every HTTP request:

1. **request id**: ``x-request-id`` is taken (if it is 1-128 of ``[A-Za-z0-9._:-]``) or generated, returned on
   the response and put into every log line of the request (:data:`request_id_var`, :class:`RequestIdFilter`);
2. **auth** (when keys are on): ``Authorization: Bearer <key>`` (scheme case-insensitive; or ``Basic`` with the
   key as the password, which a browser asks for on ``/dashboard`` and ``/docs``), looked up by hash and compared
   in constant time. A caller without a valid key gets a bare ``401 unauthorized`` before its body is read: no
   validation detail, nothing counted. ``/healthz`` and ``/readyz`` are open; ``/metrics`` takes the metrics
   token or an admin key; the dashboard an admin or a dashboard key; a dashboard key opens ``/dashboard*`` only.
   Then the key's request rate (429 + Retry-After). The caller's key record is ``scope["state"]["principal"]``
   (:func:`principal_of`);
3. **body limits**: a ``Content-Length`` over ``max_body_bytes`` is refused with 413 before anything is read
   (so ``Expect: 100-continue`` never gets its ``100 Continue``); a chunked body is counted while it is read
   and refused at the first byte over; the whole body must arrive within ``body_timeout_s`` (else 408); a JSON
   body must be UTF-8 and nest at most ``max_json_depth`` levels (400), checked on the bytes, before parsing.
   Uploads (``/v1/files``) are not buffered: they stream through to the form parser, counted against
   ``max_upload_bytes`` (413) and refused when no chunk comes for ``body_timeout_s`` (408);
4. **response headers**: ``x-content-type-options: nosniff``, ``x-frame-options: DENY``, ``referrer-policy``,
   a ``content-security-policy`` on HTML; a redirect never points at another host (the ``Host`` header is the
   client's to forge: ``Location`` is made relative).

Every refusal has the API's one error shape ``{"error": {"code", "message", "param"}}`` and ``connection: close``
when the body was not read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import hmac
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..auth.admission import limit_error
from ..auth.keys import KeyRecord, KeyRing, KeyStoreUnavailable, LimitExceeded

__all__ = ["GuardMiddleware", "GuardConfig", "request_id_var", "RequestIdFilter", "json_depth_exceeds", "principal_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("batchmt.http")

#: the id of the request being served ("-" outside a request)
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("batchmt_request_id", default="-")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_INNERMOST = re.compile(rb"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
#: file uploads (batch jobs, memory imports): their own size limit (``--job-max-file-bytes``, plus the multipart
#: framing)
UPLOAD_PATHS = frozenset({"/v1/files", "/v1/memory/import"})
DASHBOARD_PREFIX = "/dashboard"
#: pages a browser opens: a 401 there asks for Basic auth (the key as the password), so the browser prompts
BROWSER_PREFIXES = ("/dashboard", "/docs", "/redoc", "/openapi.json")
#: the dashboard and the API docs load their scripts and styles from this server only
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record (attach it to the handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def principal_of(scope_or_request: Any) -> KeyRecord | None:
    """The key record of the caller (None when keys are off)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return scope.get("state", {}).get("principal")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when ``body`` (JSON text) nests arrays/objects deeper than ``limit``. Works on the bytes, in C-speed
    passes: strings are blanked, then the innermost ``[]``/``{}`` pairs are removed ``limit`` times."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    s = _STRING.sub(b"", body)
    s = bytes(c for c in s if c in b"[]{}") if len(s) < 4096 else re.sub(rb"[^\[\]{}]+", b"", s)
    for _ in range(limit):
        s, n = _INNERMOST.subn(b"", s)
        if not s or n == 0:
            return False
    return bool(s)


@dataclass
class GuardConfig:
    keys: KeyRing = field(default_factory=KeyRing)
    max_body_bytes: int = 2 * 1024 * 1024
    max_json_depth: int = 16
    body_timeout_s: float = 30.0
    metrics_token: str | None = None
    max_upload_bytes: int = 100 * 1024 * 1024 + 64 * 1024
    upload_timeout_s: float = 120.0
    max_concurrent_uploads: int = 4

    @classmethod
    def from_settings(cls, settings: Any, keys: KeyRing | None = None) -> GuardConfig:
        from ..auth.security_settings import default_body_bytes

        token = settings.metrics_token
        if token is None and settings.metrics_token_file is not None:
            token = settings.metrics_token_file.read_text(encoding="utf-8").strip() or None
        body = settings.max_body_bytes or default_body_bytes(settings)
        return cls(
            keys=keys or KeyRing.from_settings(settings),
            max_body_bytes=body,
            max_json_depth=settings.max_json_depth,
            body_timeout_s=settings.body_timeout_s,
            metrics_token=token,
            max_upload_bytes=settings.job_max_file_bytes + 64 * 1024,
            upload_timeout_s=settings.upload_timeout_s,
            max_concurrent_uploads=settings.max_concurrent_uploads,
        )


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, close: bool = False
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": {"code": code, "message": message, "param": None}}).encode()
    hs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        hs.append((b"connection", b"close"))
    return status, hs, body


class _Refused(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None, close: bool = True
    ) -> None:
        super().__init__(message)
        self.response = _error(status, code, message, headers, close)


class GuardMiddleware:
    def __init__(self, app: ASGIApp, config: GuardConfig | None = None) -> None:
        self.app = app
        self.config = config or GuardConfig()
        self._uploads: dict[str, int] = {}  # uploads in progress per key (or client address with keys off)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = self._request_id(scope)
        token = request_id_var.set(rid)
        try:
            await self._http(scope, receive, self._wrap_send(send, rid))
        finally:
            request_id_var.reset(token)

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _request_id(scope: Scope) -> str:
        for k, v in scope.get("headers", ()):
            if k == b"x-request-id":
                value = v.decode("latin-1")
                if _REQUEST_ID.fullmatch(value):
                    return value
                break
        return _uuid4_hex()

    def _wrap_send(self, send: Send, rid: str) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in (b"server",)]
                names = {k.lower() for k, _ in headers}
                headers.append((b"x-request-id", rid.encode()))
                for k, v in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ):
                    if k not in names:
                        headers.append((k, v))
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html") and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                if 300 <= message["status"] < 400:
                    headers = [(k, _relative(v) if k.lower() == b"location" else v) for k, v in headers]
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    async def _respond(self, send: Send, response: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
        status, headers, body = response
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _authorize(self, scope: Scope, headers: dict[bytes, bytes]) -> KeyRecord | None:
        """The caller's key record; raises :class:`_Refused` when the path needs a key it does not have."""
        path: str = scope.get("path", "")
        keys = self.config.keys
        if path in PUBLIC_PATHS:
            return None
        await keys.refresh()
        token = self.config.metrics_token if path == "/metrics" else None
        if not keys.enabled and token is None:
            return None
        secret = _credential(headers.get(b"authorization", b""))
        if (
            token is not None
            and secret is not None
            and hmac.compare_digest(secret.encode("utf-8", "surrogatepass"), token.encode("utf-8"))
        ):
            return None
        rec = await keys.authenticate(secret) if secret else None
        if rec is None:
            hdr = {
                "WWW-Authenticate": 'Basic realm="batchmt", charset="UTF-8"'
                if path.startswith(BROWSER_PREFIXES)
                else "Bearer"
            }
            raise _Refused(401, "unauthorized", "missing or invalid API key", hdr)
        dashboard = path.startswith(DASHBOARD_PREFIX)
        allowed = (
            rec.role == "admin"
            or (rec.role == "user" and path != "/metrics" and not dashboard)
            or (rec.role == "dashboard" and dashboard)
        )
        if not allowed:
            if path == "/metrics":
                needed = "an admin key (or the metrics token)"
            elif dashboard:
                needed = "an admin or dashboard key"
            else:
                needed = "a user or admin key"
            raise _Refused(403, "forbidden", f"{path} needs {needed}; this key ({rec.name}) has the role {rec.role}")
        return rec

    @staticmethod
    def _check_length(headers: dict[bytes, bytes], limit: int) -> None:
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise _Refused(400, "invalid_request", "Content-Length is not a number") from None
            if declared > limit:
                raise _Refused(413, "body_too_large", f"the body has {declared} bytes; the limit is {limit}")

    async def _run_streaming(self, scope: Scope, stream: _CountedBody, send: Send) -> None:
        """Run the app on a counted body; if the body goes over the limit or stalls, the app sees a disconnect,
        its answer is dropped, and the caller gets the 413/408."""
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if stream.refused is not None:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, stream, guarded_send)
        except Exception:
            if stream.refused is None:
                raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if (task is not None and task.cancelling()) or stream.refused is None:
                raise
        if stream.refused is not None and not started:
            log.info("refused %s %s: %d", scope.get("method"), scope.get("path"), stream.refused[0])
            await self._respond(send, stream.refused)

    async def _read_body(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        cfg = self.config
        limit = cfg.max_body_bytes
        self._check_length(headers, limit)
        chunks: list[bytes] = []
        size = 0
        try:
            # one deadline for the whole body (asyncio.timeout: no task per chunk, unlike wait_for)
            async with asyncio.timeout(cfg.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _Refused(413, "body_too_large", f"the body is over the limit of {limit} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(408, "request_timeout", f"the body did not arrive within {cfg.body_timeout_s:g}s") from None

    def _check_json(self, headers: dict[bytes, bytes], body: bytes) -> None:
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json" or not body:
            return
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused(
                400, "invalid_json", f"the body is not valid UTF-8 (byte {exc.start})", close=False
            ) from None
        if json_depth_exceeds(body, self.config.max_json_depth):
            raise _Refused(
                400,
                "json_too_deep",
                f"the JSON body nests deeper than {self.config.max_json_depth} levels",
                close=False,
            )

    def _upload(
        self, scope: Scope, headers: dict[bytes, bytes], rec: KeyRecord | None, receive: Receive
    ) -> tuple[str, _CountedBody]:
        """Who uploads (the key, or the client address with keys off) and the counted body; refuses an upload
        over the size limit or beyond the caller's concurrent uploads."""
        cfg = self.config
        self._check_length(headers, cfg.max_upload_bytes)
        uploader = rec.id if rec is not None else "addr:" + str((scope.get("client") or ("-",))[0])
        if self._uploads.get(uploader, 0) >= cfg.max_concurrent_uploads:
            raise _Refused(
                429,
                "too_many_uploads",
                f"{cfg.max_concurrent_uploads} uploads of this key are in progress; retry after one ends",
                {"Retry-After": "1"},
            )
        return uploader, _CountedBody(receive, cfg.max_upload_bytes, cfg.body_timeout_s, cfg.upload_timeout_s)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        try:
            rec = await self._authorize(scope, headers)
            if rec is not None:
                try:
                    self.config.keys.admit_request(rec)
                except LimitExceeded as exc:
                    err = limit_error(exc)
                    raise _Refused(err.status, err.code, err.message, err.headers) from None
                scope.setdefault("state", {})["principal"] = rec
            stream = None
            uploader = None
            if scope.get("method") in ("POST", "PUT", "PATCH") and scope.get("path") in UPLOAD_PATHS:
                # uploads stream through (the form parser spools them to disk), counted, never buffered here
                uploader, stream = self._upload(scope, headers, rec, receive)
                receive = stream
            elif scope.get("method") in ("POST", "PUT", "PATCH"):
                body = await self._read_body(scope, headers, receive)
                self._check_json(headers, body)
                receive = _replay(body, receive)
        except KeyStoreUnavailable:
            await self._respond(
                send,
                _error(
                    503,
                    "key_store_unavailable",
                    "the key store cannot be read; retry later",
                    {"Retry-After": "5"},
                    close=True,
                ),
            )
            return
        except _Refused as refused:
            log.info("refused %s %s: %d", scope.get("method"), scope.get("path"), refused.response[0])
            await self._respond(send, refused.response)
            return
        except _Disconnected:
            log.debug("client went away while sending its body")
            return
        if stream is not None and uploader is not None:
            self._uploads[uploader] = self._uploads.get(uploader, 0) + 1
            try:
                await self._run_streaming(scope, stream, send)
            finally:
                left = self._uploads.pop(uploader) - 1
                if left:
                    self._uploads[uploader] = left
            return
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the server is cancelling us (shutdown): not ours to swallow
            # the app gave up on a caller that went away (translator.py cancels its sentences): normal, no traceback
            log.info("client disconnected before the answer: %s %s", scope.get("method"), scope.get("path"))


class _Disconnected(Exception):
    pass


class _CountedBody:
    """A receive channel that counts the body: over ``limit`` bytes, no chunk for ``idle_s`` seconds, or the whole
    body not in within ``total_s`` (a trickle of one byte per second would pass the idle check forever), and the
    app sees ``http.disconnect`` while ``refused`` holds the answer for the caller."""

    def __init__(self, receive: Receive, limit: int, idle_s: float, total_s: float | None = None) -> None:
        self.receive, self.limit, self.idle_s, self.total_s = receive, limit, idle_s, total_s
        self.deadline = None if total_s is None else asyncio.get_running_loop().time() + total_s
        self.size = 0
        self.done = False
        self.refused: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None

    async def __call__(self) -> Message:
        if self.refused is not None:
            return {"type": "http.disconnect"}
        if self.done:
            return await self.receive()
        wait, whole = self.idle_s, False
        if self.deadline is not None:
            left = self.deadline - asyncio.get_running_loop().time()
            if left < wait:
                wait, whole = max(0.0, left), True
        try:
            message = await asyncio.wait_for(self.receive(), wait)
        except TimeoutError:
            why = f"the upload did not arrive within {self.total_s:g}s" if whole else f"no data for {wait:g}s"
            why = why if whole else f"the upload stalled: {why}"
            self.refused = _error(408, "request_timeout", why, close=True)
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                self.refused = _error(
                    413, "body_too_large", f"the upload is over the limit of {self.limit} bytes", close=True
                )
                return {"type": "http.disconnect"}
            self.done = not message.get("more_body", False)
        return message


def _uuid4_hex() -> str:
    """``uuid.uuid4().hex`` (random, version 4, RFC 4122 variant), without building a UUID object."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return b.hex()


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, then the real channel (the app awaits it for ``http.disconnect``)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _credential(value: bytes) -> str | None:
    """The secret of an ``Authorization`` header: ``Bearer <key>`` (any case), or ``Basic`` with the key as the
    password (or as the user name with an empty password, as Stripe's ``curl -u key:``)."""
    try:
        text = value.decode("latin-1").strip()
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        return None
    scheme, _, rest = text.partition(" ")
    scheme, rest = scheme.lower(), rest.strip()
    if scheme == "bearer" and rest:
        return rest
    if scheme == "basic" and rest:
        try:
            user, _, password = base64.b64decode(rest, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None


def _relative(location: bytes) -> bytes:
    """``http://forged.example/healthz`` -> ``/healthz``: a redirect stays on this server."""
    try:
        parts = urlsplit(location.decode("latin-1"))
    except ValueError:
        return b"/"
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    path = "/" + path.lstrip("/")  # never '//host' (a scheme-relative URL)
    return (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")
