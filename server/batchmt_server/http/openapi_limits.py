"""The OpenAPI document states the limits the gateway enforces, so that a conforming request is accepted and
generated clients (and schemathesis) know them:

- ``texts``/``sentences``: 1 to ``max_sentences_per_request`` strings of 1 to ``max_text_chars`` characters with
  at least one non-blank character; exactly one of the two fields;
- every operation documents the answers of the HTTP front (``401``, ``403``, ``408``, ``413``, ``429``, ``431``,
  ``456``, ``503``; ``400``, ``415``, ``422`` where a body or parameters are read) in the one error shape;
- the ``bearer`` security scheme (and Basic, for browsers) when keys are on; ``/metrics`` is ``text/plain``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["install_openapi_limits", "ERROR_SCHEMA"]

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "title": "ErrorBody",
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "param"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
    },
}

_FRONT = {
    "401": "missing or invalid API key",
    "403": "this key may not use this endpoint",
    "408": "the body did not arrive in time",
    "413": "body or request too large",
    "429": "rate limited or the queue is full (Retry-After)",
    "431": "request headers too large",
    "456": "the key's character quota is used up (Retry-After)",
    "503": "not ready (Retry-After)",
}
_WITH_INPUT = {
    "400": "the body is not valid JSON (or nests too deep)",
    "415": "the body is not application/json",
    "422": "invalid request",
}


def _entries_schema(max_items: int, max_chars: int) -> dict:
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": max_items,
        "items": {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": r"\S"},
    }


def limit_schema(doc: dict, settings: Any, keys_on: bool) -> dict:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ERROR_SCHEMA
    req = schemas.get("TranslateRequest")
    if req is not None:
        props = req.get("properties", {})
        max_chars = getattr(settings, "max_text_chars", None) or settings.max_sentence_chars
        present = [name for name in ("texts", "sentences") if name in props]
        entries = _entries_schema(settings.max_sentences_per_request, max_chars)
        for name in present:  # null is the field left out
            props[name] = {"anyOf": [entries, {"type": "null"}], "description": props[name].get("description", "")}
        # exactly one of them is a list
        req["oneOf"] = [{"required": [name], "properties": {name: entries}} for name in present]
        for name, lang in (("source_lang", "en"), ("target_lang", "de")):
            if name in props:
                props[name] = {**props[name], "enum": [lang, lang.upper()]}
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, ops in doc.get("paths", {}).items():
        for op in ops.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            extra = dict(_FRONT) if path not in ("/healthz", "/readyz") else {"503": _FRONT["503"]}
            if not keys_on and path != "/metrics":
                extra.pop("401", None)
                extra.pop("403", None)
            if "requestBody" in op or op.get("parameters"):
                extra.update(_WITH_INPUT)
            for status, why in extra.items():
                current = op["responses"].get(status, {})
                if "content" not in current:
                    op["responses"][status] = {"description": current.get("description") or why, "content": ref}
            if path == "/metrics":
                op["responses"]["200"] = {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
    if keys_on:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic"},
        }
        for path, ops in doc.get("paths", {}).items():
            if path in ("/healthz", "/readyz"):
                continue
            for op in ops.values():
                if isinstance(op, dict):
                    op["security"] = [{"bearer": []}, {"basic": []}]
    return doc


def install_openapi_limits(app: FastAPI, settings: Any, keys_on: Any) -> None:
    """Wrap ``app.openapi`` (computed once, cached by FastAPI) with :func:`limit_schema`. ``keys_on`` is a
    callable: keys may be created after start."""
    base = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = limit_schema(base(), settings, bool(keys_on()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
