"""API errors: one exception type, one JSON shape ``{"error": {"code", "message", "param"}}``."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["APIError", "api_error_handler", "validation_error_handler", "http_error_handler", "error_body"]

#: machine-readable codes of the errors the framework raises itself (routing, methods)
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    400: "bad_request",
    413: "request_too_large",
    415: "unsupported_media_type",
}


class APIError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param, self.headers = status, code, message, param, headers


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text`` (an error never echoes unbounded input back)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_body(code: str, message: str, param: str | None = None) -> dict:
    return {"error": {"code": code, "message": clip(message, 300), "param": None if param is None else clip(param, 80)}}


async def api_error_handler(request: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.param), status_code=exc.status, headers=exc.headers)


async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing and method errors (404, 405, ...) in the one error shape, not ``{"detail": ...}``."""
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path[:200]}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path[:200]}"
    else:
        message = str(exc.detail)[:200]
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _param(loc: tuple) -> str | None:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


#: field names other translation APIs use, and ours (DeepL: 'text' is a list of texts)
_OTHER_APIS = {"text": "texts", "q": "texts", "source_language": "source_lang", "target_language": "target_lang"}


def _did_you_mean(path: str, field: str) -> str:
    import difflib

    from .schemas import TranslateRequest

    if not path.endswith("/v1/translate"):
        return ""
    if field in _OTHER_APIS:
        known = _OTHER_APIS[field]
    else:
        close = difflib.get_close_matches(field, list(TranslateRequest.model_fields), n=1, cutoff=0.7)
        if not close:
            return ""
        known = close[0]
    hint = " (a list of strings)" if known == "texts" else ""
    return f"; did you mean '{known}'{hint}?"


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is not None:
        gateway.stats.record_request("rejected")
    ctype = request.headers.get("content-type", "")
    about_body = any(tuple(e.get("loc", ()))[:1] == ("body",) for e in exc.errors())
    if about_body and ctype.split(";")[0].strip().lower() != "application/json":  # (a bad query is a 422)
        return JSONResponse(
            error_body(
                "unsupported_media_type",
                f"send the body as application/json (got {clip(ctype, 60) or 'no content type'})",
            ),
            status_code=415,
        )
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return JSONResponse(
            error_body("invalid_json", f"the body is not valid JSON: {first.get('msg', '')}"), status_code=400
        )
    param = _param(tuple(first.get("loc", ())))
    msg = first.get("msg", "invalid request")
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    if unknown:  # a field we do not know: the closest we do (DeepL's 'text' is our 'texts')
        first = unknown[0]
        param = _param(tuple(first.get("loc", ())))
        msg = f"{param}: unknown field" + _did_you_mean(request.url.path, str(tuple(first.get("loc", ()))[-1]))
    elif first.get("type") == "missing":
        msg = f"{param} is required" if param else "the body is required: send a JSON object"
    elif param:
        msg = f"{param}: {msg}"
    return JSONResponse(error_body("invalid_request", msg, param), status_code=422)
