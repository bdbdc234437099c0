"""uvicorn's HTTP/1.1 protocol (httptools) with two limits it lacks: header size and header time.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but neither bounds the request line and
headers with the httptools parser nor closes a connection whose headers never finish. This subclass answers
``431`` once the request line and headers pass ``max_header_bytes`` (counted as they arrive, so an 8 MB header
is refused after its first 16 KiB, not buffered), and closes a connection whose headers have not all arrived
``header_timeout_s`` after the connection or the request's first byte (``408`` if some arrived). Stalled
bodies are the middleware's (``body_timeout_s``, see middleware.py).

Use :func:`protocol_class` as uvicorn's ``http=`` argument.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["protocol_class", "GuardedHttpToolsProtocol"]

log = logging.getLogger("batchmt.http")


class _HeadersTooLarge(Exception):
    pass


def _plain(status: bytes, msg: str) -> bytes:
    code = "headers_too_large" if status.startswith(b"431") else "request_timeout"
    body = json.dumps({"error": {"code": code, "message": msg, "param": None}}).encode()
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 16384
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_headers = True
        self._raw = 0
        self._hdr = 0
        self._discarding = False
        self._hdr_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        if getattr(self, "_hdr_timer", None) is not None:
            self._hdr_timer.cancel()  # type: ignore[union-attr]
            self._hdr_timer = None

    def _header_timeout(self) -> None:
        self._hdr_timer = None
        if self.transport.is_closing() or not self._in_headers:
            return
        if self._raw:
            log.info("closing a connection whose headers did not arrive within %gs", self.header_timeout_s)
            self.transport.write(_plain(b"408 Request Timeout", "the request headers did not arrive in time"))
        self.transport.close()

    def _refuse_headers(self) -> None:
        log.info("refusing request headers over %d bytes", self.max_header_bytes)
        self._cancel_header_timer()
        self.transport.write(
            _plain(
                b"431 Request Header Fields Too Large",
                f"the request line and headers are over {self.max_header_bytes} bytes",
            )
        )
        self._linger_close()

    def _linger_close(self) -> None:
        """Send FIN after the answer and drop what the client still sends for a moment, so that closing with
        unread bytes (a TCP reset) does not destroy the answer before the client reads it."""
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(2.0, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._in_headers:
            self._raw += len(data)
            if self._hdr_timer is None:
                self._hdr_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadersTooLarge) or self._hdr > self.max_header_bytes:
                self._refuse_headers()
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_headers and self._raw > self.max_header_bytes:
            self._refuse_headers()

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def on_message_begin(self) -> None:
        self._hdr = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._hdr += len(url)
        if self._hdr > self.max_header_bytes:
            raise _HeadersTooLarge()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._hdr += len(name) + len(value) + 4
        if self._hdr > self.max_header_bytes:
            raise _HeadersTooLarge()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers, self._raw, self._hdr = True, 0, 0


def protocol_class(max_header_bytes: int, header_timeout_s: float) -> type[GuardedHttpToolsProtocol]:
    """A protocol class with these limits, for ``uvicorn.run(..., http=...)``."""
    return type(
        "BatchmtHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {"max_header_bytes": max_header_bytes, "header_timeout_s": header_timeout_s},
    )
