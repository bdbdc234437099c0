"""A fake batchmt server (the REST contract of docs/api.md) behind ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx


def translate_fake(sentence: str) -> str:
    return f"DE<{sentence}>"


def error_response(status: int, code: str, message: str = "nope", param: str | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, "param": param}}, headers=headers
    )


@dataclass
class FakeServer:
    """Implements the REST contract of docs/api.md well enough for the SDK.

    * ``/v1/translate``: text ``DE<sentence>`` (or ``mapping[sentence]``); a sentence containing
      ``FAIL`` gets ``status: "failed"``; usage counts per request.
    * ``scripted``: responses (or exceptions) returned first, one per request, for a path.
    * ``requests``: every request received, in order.
    """

    max_sentences: int | None = 128
    info_status: int = 200
    ready: bool = True
    mapping: dict[str, str] = field(default_factory=dict)
    signature: str = "tmpl:fake@1|model:fake|batchmt:0.1.0"
    scripted: dict[str, list[Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    delay: float = 0.0  # async only: seconds each /v1/translate takes
    in_flight: int = 0
    max_in_flight: int = 0
    _next_id: int = 0

    def script(self, path: str, *items: Any) -> None:
        self.scripted.setdefault(path, []).extend(items)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def translate_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == "/v1/translate"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        queue = self.scripted.get(path)
        if queue:
            item = queue.pop(0)
            if isinstance(item, BaseException):
                raise item
            if callable(item):
                return item(request)
            return item
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if path == "/readyz":
            if self.ready:
                return httpx.Response(200, json={"status": "ready"})
            return error_response(503, "not_ready", "engine is loading", headers={"Retry-After": "5"})
        if path == "/v1/info":
            if self.info_status != 200:
                return error_response(self.info_status, "not_found", "no such route")
            limits: dict[str, Any] = {"max_sentence_chars": 1000}
            if self.max_sentences is not None:
                limits["max_sentences_per_request"] = self.max_sentences
            return httpx.Response(200, json={
                "version": "0.1.0", "model": "fake", "signature": self.signature,
                "language_pairs": [["en", "de"]], "limits": limits,
            })
        if path == "/v1/translate":
            return self._translate(request)
        return error_response(404, "not_found", f"no route {path}")

    def _translate(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sentences = body["sentences"]
        if self.max_sentences is not None and len(sentences) > self.max_sentences:
            return error_response(413, "too_many_sentences", "too many", "sentences")
        for i, s in enumerate(sentences):
            if not s.strip():
                return error_response(422, "empty_sentence", f"sentences[{i}] is empty", f"sentences[{i}]")
        translations = []
        for s in sentences:
            if "FAIL" in s:
                translations.append({"text": None, "status": "failed",
                                     "error": {"code": "unparseable_output", "message": "bad output"}})
            else:
                translations.append({"text": self.mapping.get(s, translate_fake(s)), "status": "ok", "error": None})
        self._next_id += 1
        return httpx.Response(200, json={
            "id": f"tr-{self._next_id}",
            "model": "fake",
            "translations": translations,
            "usage": {"sentences": len(sentences), "characters": sum(map(len, sentences)),
                      "prompt_tokens": 10 * len(sentences), "cached_prompt_tokens": 5,
                      "completion_tokens": 3 * len(sentences), "engine_prompts": 1, "retries": 0,
                      "future_field": 1},
            "signature": self.signature,
        })

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/translate":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
                return self.handle(request)
            finally:
                self.in_flight -= 1
        return self.handle(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle_async)
