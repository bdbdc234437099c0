"""The built-in dashboard at ``/dashboard``: for people who run the gateway without Prometheus/Grafana.

A static page (``static/``: HTML, CSS and a small hand-written SVG chart script; no external
library, works offline) polls ``/dashboard/data`` every ~2 s and draws time series client-side:
throughput, latency percentiles (from histogram deltas, like ``histogram_quantile`` over a rate),
cost and saving, prefix-cache hit rate, queue depth. ``/dashboard/data`` reads the same
:class:`~batchmt_server.telemetry.stats.Stats` as ``/metrics`` and ``/v1/usage`` (its ``usage`` part *is*
the ``/v1/usage`` body). Like ``/metrics``, it carries aggregate numbers only and needs no API key.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from ..telemetry.cost import Prices, usage_totals
from ..telemetry.stats import HistogramSnapshot, StatsSnapshot

__all__ = ["install_dashboard", "dashboard_data"]

STATIC = Path(__file__).resolve().parent / "static"


def _hist(h: HistogramSnapshot) -> dict:
    return {
        "bounds": [float(b) for b in h.buckets],
        "cumulative": [c for _, c in h.cumulative()],
        "sum": h.sum,
        "count": h.count,
    }


def dashboard_data(snap: StatsSnapshot, prices: Prices) -> dict:
    return {
        "time": time.time(),
        "usage": usage_totals(snap, prices),
        "histograms": {
            "request_seconds": _hist(snap.request_seconds),
            "queue_wait_seconds": _hist(snap.queue_wait_seconds),
            "engine_seconds": _hist(snap.engine_seconds),
            "sentences_per_prompt": _hist(snap.sentences_per_prompt),
        },
        "requests": dict(snap.requests),
        "sentences_by_outcome": dict(snap.sentences),
        "flagged_slots": dict(snap.flagged_slots),
        "resent_sentences": dict(snap.resent_sentences),
        "queue_depth": snap.queue_depth,
        "prompts_in_flight": snap.prompts_in_flight,
        "engine_ready": snap.engine_ready,
    }


def install_dashboard(app: FastAPI) -> None:
    """Add ``/dashboard`` (the page), ``/dashboard/static/*`` and ``/dashboard/data`` (JSON) to ``app``."""

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page() -> FileResponse:
        return FileResponse(
            STATIC / "dashboard.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
        )

    @app.get("/dashboard/", include_in_schema=False)
    async def dashboard_slash() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/dashboard/data", tags=["ops"])
    async def dashboard_json(request: Request) -> dict:
        """Everything the built-in dashboard draws: ``usage`` (= ``GET /v1/usage``), histograms, gauges."""
        from ..jobs.serving import jobs_usage  # jobs/ builds on the app; imported here to keep this module below it

        gw = request.app.state.gateway
        data = dashboard_data(gw.stats.snapshot(), gw.prices)
        data["usage"]["jobs"] = await jobs_usage(request) or None  # the whole /v1/usage body, batch jobs included
        data["model"] = gw.model_name
        data["ready"] = gw.ready.is_set()
        return data

    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
