"""A fake batchmt server (the REST contract of docs/api.md, texts included) behind ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx


def translate_fake(sentence: str) -> str:
    return f"DE<{sentence}>"


def error_response(
    status: int, code: str, message: str = "nope", param: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "param": param}}, headers=headers)


_SEGMENT_BREAK = re.compile(r"(?<=[.!?])[ \t]+|\n+")
_TAG = re.compile(r"(<[^>]*>)")
OPTIONS = {
    "quality": ("fast", "balanced", "best"),
    "split_sentences": ("on", "newlines", "off"),
    "tag_handling": (None, "html", "xml"),
    "preserve_placeholders": (True, False),
    "confidence": (True, False),
}


def usage_for(texts: list[str], segments: int) -> dict[str, Any]:
    """What the real server sends: token counts are ints, engine prompts and costs floats."""
    n = len(texts)
    return {
        "texts": n,
        "sentences": n,  # entries, as the real server counts them
        "characters": sum(map(len, texts)),
        "prompt_tokens": 10 * n,
        "cached_prompt_tokens": 5,
        "completion_tokens": 3 * n,
        "engine_prompts": 0.25 * n,
        "retries": 0,
        "cost": 0.000089 * n,
        "baseline_cost": 0.0004 * n,
        "currency": "USD",
        "segments": segments,
        "future_field": 1,
        "future_label": "x",
    }


@dataclass
class FakeServer:
    """Implements the REST contract of docs/api.md (texts, segments, partial results) well enough
    for the SDK.

    * ``/v1/translate`` takes ``texts`` (or the legacy ``sentences``) and the options; each text is
      split into segments (sentence punctuation and newlines, unless ``split_sentences`` says
      otherwise; with ``tag_handling`` the text between tags), each segment becomes
      ``DE<segment>`` (or ``mapping[text]`` for a whole text), and the separators are kept. A
      segment containing ``FAIL`` fails: the text is ``partial`` (that segment kept in English) or
      ``failed`` when every segment failed. A segment containing ``COPY`` comes back unchanged, listed
      in ``suspect_segments`` (the text is ``suspect`` when nothing failed). Every delivered text has
      a ``confidence``, as the real server sends.
    * ``legacy=True``: a server older than texts (only ``sentences``, no text limits).
    * ``scripted``: responses (or exceptions) returned first, one per request, for a path.
    * ``requests``: every request received, in order.
    """

    max_sentences: int | None = 128
    max_text_chars: int = 100_000
    max_request_chars: int = 1_000_000
    legacy: bool = False
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

    def sent(self) -> list[list[str]]:
        """The texts of every /v1/translate request, whichever field carried them."""
        return [b.get("texts", b.get("sentences")) for b in self.translate_bodies()]

    def sent_flat(self) -> list[str]:
        return [t for texts in self.sent() for t in texts]

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
            if not self.legacy:
                limits.update(max_text_chars=self.max_text_chars, max_request_chars=self.max_request_chars)
            if self.max_sentences is not None:
                limits["max_sentences_per_request"] = self.max_sentences
            return httpx.Response(
                200,
                json={
                    "version": "0.1.0",
                    "model": "fake",
                    "signature": self.signature,
                    "language_pairs": [["en", "de"]],
                    "limits": limits,
                },
            )
        if path == "/v1/translate":
            return self._translate(request)
        return error_response(404, "not_found", f"no route {path}")

    # -- /v1/translate -------------------------------------------------------------------------
    def _validate(self, body: dict[str, Any]) -> httpx.Response | tuple[str, list[str]]:
        allowed = {"sentences", "source_lang", "target_lang", "quality"}
        if not self.legacy:
            allowed |= {"texts", *OPTIONS}
        for key in body:
            if key not in allowed:
                if self.legacy and "sentences" not in body:
                    return error_response(422, "invalid_request", "sentences is required", "sentences")
                return error_response(422, "invalid_request", f"{key}: Extra inputs are not permitted", key)
        if ("texts" in body) == ("sentences" in body):
            return error_response(422, "invalid_request", "send exactly one of texts and sentences", "texts")
        name = "texts" if "texts" in body else "sentences"
        for key, values in OPTIONS.items():
            if key in body and body[key] not in values:
                return error_response(422, "invalid_request", f"{key}: bad value {body[key]!r}", key)
        texts = body[name]
        if not texts:
            return error_response(422, "empty_sentences", f"{name} is empty", name)
        if self.max_sentences is not None and len(texts) > self.max_sentences:
            code = "too_many_texts" if name == "texts" else "too_many_sentences"
            return error_response(413, code, "too many", name)
        per_text = 1000 if self.legacy else self.max_text_chars
        for i, s in enumerate(texts):
            if not s.strip():
                code = "empty_text" if name == "texts" else "empty_sentence"
                return error_response(422, code, f"{name}[{i}] is empty", f"{name}[{i}]")
            if len(s) > per_text:
                code = "text_too_long" if name == "texts" else "sentence_too_long"
                return error_response(413, code, f"{name}[{i}] has {len(s)} characters", f"{name}[{i}]")
        if not self.legacy and sum(map(len, texts)) > self.max_request_chars:
            return error_response(413, "request_too_large", "too many characters", name)
        return name, texts

    def _segments(self, text: str, split: str, tags: str | None) -> list[tuple[str, bool]]:
        """``(piece, is_segment)`` pairs that concatenate to ``text``."""
        if tags:  # text nodes, each split into sentences
            pieces = []
            for p in _TAG.split(text):
                if p.startswith("<"):
                    pieces.append((p, False))
                elif p:
                    pieces += self._segments(p, split, None)
            return pieces
        if split == "off":
            return [(text, True)]
        pattern = re.compile(r"\n+") if split == "newlines" else _SEGMENT_BREAK
        pieces: list[tuple[str, bool]] = []
        pos = 0
        for m in pattern.finditer(text):
            if m.start() > pos:
                pieces.append((text[pos : m.start()], True))
            pieces.append((m.group(0), False))
            pos = m.end()
        if pos < len(text):
            pieces.append((text[pos:], True))
        return [(p, seg and bool(p.strip())) for p, seg in pieces]

    def translate_text(self, text: str, split: str = "on", tags: str | None = None) -> dict[str, Any]:
        if text in self.mapping:
            return {"text": self.mapping[text], "status": "ok", "error": None, "segments": 1, "failed_segments": []}
        out: list[str] = []
        failed: list[dict[str, Any]] = []
        suspect: list[dict[str, Any]] = []
        n = 0
        for piece, is_segment in self._segments(text, split, tags):
            if not is_segment:
                out.append(piece)
                continue
            core = piece.strip()
            lead, trail = piece[: len(piece) - len(piece.lstrip())], piece[len(piece.rstrip()) :]
            if "FAIL" in core:
                failed.append({"index": n, "code": "unparseable_output", "message": "bad output"})
                out.append(piece)
            elif "COPY" in core:  # the model only copied it, even on the sampled second try
                suspect.append({"index": n, "reason": "copy"})
                out.append(piece)
            else:
                out.append(lead + (f"DE({core})" if tags else translate_fake(core)) + trail)
            n += 1
        if failed and len(failed) == n:
            return {
                "text": None,
                "status": "failed",
                "error": {"code": failed[0]["code"], "message": "bad output"},
                "segments": n,
                "failed_segments": failed,
            }
        if failed:
            return {
                "text": "".join(out),
                "status": "partial",
                "error": {"code": failed[0]["code"], "message": "bad output"},
                "segments": n,
                "failed_segments": failed,
            }
        return {
            "text": "".join(out),
            "status": "suspect" if suspect else "ok",
            "error": None,
            "segments": n,
            "failed_segments": [],
            "suspect_segments": suspect,
            "confidence": 0.2 if suspect else 0.8,
        }

    def _translate(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        checked = self._validate(body)
        if isinstance(checked, httpx.Response):
            return checked
        name, texts = checked
        split = body.get("split_sentences", "on" if name == "texts" else "off")
        translations = [self.translate_text(t, split, body.get("tag_handling")) for t in texts]
        if self.legacy:
            for t in translations:
                del t["segments"], t["failed_segments"]
        self._next_id += 1
        segments = sum(t.get("segments", 1) for t in translations)
        return httpx.Response(
            200,
            json={
                "id": f"tr-{self._next_id}",
                "model": "fake",
                "translations": translations,
                "usage": usage_for(texts, segments),
                "signature": self.signature + (f"|quality:{body['quality']}" if body.get("quality") else ""),
            },
        )

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
