"""Logs and traces for operators: the request id on every log line, JSON logs, OpenTelemetry (all optional).

- :func:`setup_logging` installs one stderr handler on the root logger (uvicorn's loggers propagate to it):
  text (``... [request-id] ...``) or, with ``log_format="json"``, one JSON object per line via
  python-json-logger, with ``request_id`` as a field.
- :func:`setup_tracing` (off unless ``otel_endpoint`` is set) exports spans over OTLP/HTTP: one per request
  (FastAPI instrumentation) and one per engine call of the HTTP engine (httpx instrumentation). The
  OpenTelemetry packages are imported only then (extra ``otel``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..http.middleware import RequestIdFilter

__all__ = ["setup_logging", "setup_tracing", "TEXT_FORMAT"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def setup_logging(level: str = "info", fmt: str = "text", stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # no handlers of their own: they propagate here
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    return handler


def setup_tracing(app: Any, endpoint: str | None, service_name: str = "batchmt") -> bool:
    """Instrument ``app`` (FastAPI) and httpx, exporting to ``endpoint`` (OTLP/HTTP). False when off."""
    if not endpoint:
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    trace.set_tracer_provider(provider)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics")
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    logging.getLogger("batchmt.tracing").info("OpenTelemetry traces to %s", endpoint)
    return True
