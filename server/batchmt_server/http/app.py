"""The FastAPI application: app factory + lifespan, no import-time globals."""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from contextlib import asynccontextmanager
from functools import partial

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..auth.admission import admission
from ..auth.keys import KeyRing
from ..engines import Engine
from ..engines.openai_http import ReplicaCollector
from ..glossaries.api_router import install_glossaries
from ..glossaries.serving import GlossaryServing
from ..jobs.api_router import install_jobs
from ..jobs.serving import (
    JobsCollector,
    JobsRuntime,
    JobsServing,
    cancel_batches_of,
    free_disk_bytes,
    jobs_usage,
)
from ..memory.api_router import install_memory
from ..pipeline.gateway import Gateway
from ..pipeline.translator import LANGUAGE_PAIRS, Translator
from ..prompting.template import Template
from ..protocol.errors import APIError, api_error_handler, error_body, http_error_handler, validation_error_handler
from ..protocol.schemas import Info, Limits, TranslateRequest, TranslateResponse, UsageTotals
from ..protocol.validation import prepare_request
from ..settings import Settings
from ..stores import StoreError
from ..telemetry.cost import Prices, usage_totals
from ..telemetry.metrics import StatsCollector, make_registry, render
from .dashboard import install_dashboard
from .docs import install_docs
from .middleware import GuardConfig, GuardMiddleware, principal_of
from .openapi_limits import install_openapi_limits

__all__ = ["create_app"]

log = logging.getLogger("batchmt.app")


async def client_gone(request: Request) -> None:
    """Return once the client has disconnected (the ASGI ``http.disconnect`` message; the body is
    already read, so the next message is that one)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _store_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [sqlite3.Error, StoreError, OSError]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # the PostgreSQL backend is optional
        pass
    return tuple(errors)


STORE_ERRORS = _store_errors()
#: errno values of a disk that cannot take writes
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def _disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (
        getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        or getattr(exc, "sqlstate", None) == "53100"  # PostgreSQL disk_full
        or "disk is full" in text
        or "no space left" in text
    )


async def store_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The store could not take a read or write: ``507 storage_full`` (a full disk) or ``503 store_unavailable``,
    in the API's error shape (not a plain-text 500), and ``/readyz`` says not ready until a write works again.
    Nothing was acknowledged: the request that hit the error did not happen."""
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error) and exc.errno not in _DISK_ERRNOS:
        raise exc  # not the store's: a plain 500 as before
    request.app.state.store_failed = True
    log.error("the store failed on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    if _disk_full(exc):
        body = error_body("storage_full", "the gateway's storage is full; retry later")
        return JSONResponse(body, status_code=507, headers={"Retry-After": "60"})
    body = error_body("store_unavailable", "the gateway's store cannot be used now; retry later")
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


async def store_health(app: FastAPI, settings: Settings) -> str | None:
    """None when the store takes writes and its disk has room; else why not (``/readyz``). After a store error, a
    probe write decides when it is healthy again."""
    jobs: JobsRuntime | None = getattr(app.state, "jobs", None)
    if jobs is None:
        return None
    free = free_disk_bytes(jobs)
    if free is not None and free < settings.min_free_disk_bytes:
        return f"the store's disk has {free} bytes free, under --min-free-disk-bytes ({settings.min_free_disk_bytes})"
    if getattr(app.state, "store_failed", False):
        try:
            await jobs.store.probe()
        except Exception as exc:
            return f"the store cannot take writes: {type(exc).__name__}: {str(exc)[:120]}"
        app.state.store_failed = False
    return None


async def _watch_revocations(keys: KeyRing, jobs: JobsRuntime) -> None:
    """Every ``keys.refresh_s`` (at least 0.2 s): a key revoked in the store has its running batches cancelled,
    whether or not anyone calls the gateway meanwhile (a revoked tenant's work must not go on using capacity)."""
    done: set[str] = set()
    while True:
        try:
            await keys.refresh()
            new = keys.revoked_ids - done
            if new:
                cancelled = await cancel_batches_of(jobs, new)
                if cancelled:
                    log.info("revoked keys %s: %d running batches cancelled", sorted(new), len(cancelled))
                done |= new
        except Exception as exc:  # the store away for a moment: the next round tries again
            log.warning("could not check for revoked keys: %s", exc)
        await asyncio.sleep(max(0.2, keys.refresh_s))


# ---------------------------------------------------------------------------- the gateway's own routes
#: ``/v1/translate``, ``/v1/info``, ``/v1/usage``, health and metrics (module level, as vLLM's entrypoints have them;
#: the app's settings and key ring are on ``app.state``); the Batch API's, glossaries' and memory's are in their folders
router = APIRouter()


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _require_ready(gw: Gateway) -> Translator:
    if gw.translator is None or not gw.ready.is_set():
        why = gw.boot_error or "the engine is still starting"
        raise APIError(503, "not_ready", f"not ready: {why}", headers={"Retry-After": "5"})
    return gw.translator


@router.post(
    "/v1/translate",
    response_model=TranslateResponse,
    tags=["translate"],
    responses={400: {}, 401: {}, 404: {}, 413: {}, 415: {}, 422: {}, 429: {}, 503: {}},
)
async def translate(body: TranslateRequest, request: Request) -> TranslateResponse:
    """Translate sentences English→German. One entry per input, in order; a sentence that
    failed after retries says so in its own slot."""
    settings: Settings = request.app.state.settings
    keys: KeyRing = request.app.state.keys
    gw = _gateway(request)
    try:
        translator = _require_ready(gw)
        prepared = await prepare_request(body, settings)  # checked, markup parsed once: 4xx before any work
    except APIError:
        gw.stats.record_request("rejected")
        raise
    rec = principal_of(request)
    return await translator.translate(
        body,
        partial(client_gone, request),
        admit=admission(keys, rec),
        tenant=rec.id if rec is not None else None,
        prepared=prepared,
    )


@router.get("/v1/info", response_model=Info, tags=["translate"])
async def info(request: Request) -> Info:
    settings: Settings = request.app.state.settings
    gw = _gateway(request)
    return Info(
        version=__version__,
        model=gw.model_name,
        signature=gw.signature,
        language_pairs=list(LANGUAGE_PAIRS),
        limits=Limits(
            max_sentences_per_request=settings.max_sentences_per_request,
            max_sentence_chars=settings.max_sentence_chars,
            max_text_chars=settings.max_text_chars,
            max_request_chars=settings.max_request_chars,
        ),
        max_sentences_per_prompt=gw.max_pack,
        calibrated_pack_limit=gw.calibrated_pack_limit,
        pack_policy=settings.pack_policy,
        template=gw.template.ref,
        template_variants=settings.template_names if settings.template == "auto" else [],
    )


@router.get("/v1/usage", response_model=UsageTotals, tags=["translate"])
async def usage(request: Request) -> dict:
    """Totals since start: sentences, characters, tokens by kind, estimated cost and the saving
    against one sentence per prompt without a prefix cache (the numbers ``/metrics`` exports). With keys on,
    a user key gets its own usage instead (``{"key", "today", "this_month"}``); an admin key the totals."""
    keys: KeyRing = request.app.state.keys
    rec = principal_of(request)
    if rec is not None and rec.role != "admin":  # a tenant sees its own usage only
        return JSONResponse(await keys.usage_of(rec))  # type: ignore[return-value]
    gw = _gateway(request)
    return {**usage_totals(gw.stats.snapshot(), gw.prices), "jobs": await jobs_usage(request) or None}


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
async def readyz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    gw = _gateway(request)
    if getattr(request.app.state, "draining", False):  # SIGTERM: out of the load balancer first (cli.serve)
        return JSONResponse(error_body("not_ready", "shutting down"), status_code=503, headers={"Retry-After": "5"})
    store_trouble = await store_health(request.app, settings)
    if store_trouble is not None:
        return JSONResponse(error_body("not_ready", store_trouble), status_code=503, headers={"Retry-After": "5"})
    if gw.ready.is_set() and gw.engine is not None and await gw.engine.ready():
        return JSONResponse({"status": "ready", "model": gw.model_name, "ready_after_s": gw.ready_after_s})
    why = gw.boot_error or ("the engine does not answer" if gw.ready.is_set() else "the engine is still starting")
    return JSONResponse(error_body("not_ready", why), status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", tags=["ops"])
async def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    in_process = settings.engine == "vllm"
    return Response(
        render(request.app.state.registry, in_process), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


@router.get("/v1/usage/keys", tags=["translate"])
async def usage_by_key(request: Request) -> JSONResponse:
    """Every key's usage today and this month (an admin key; with keys off, the static keys only)."""
    keys: KeyRing = request.app.state.keys
    rec = principal_of(request)
    if rec is not None and rec.role != "admin":
        raise APIError(403, "forbidden", "only an admin key sees every key's usage")
    return JSONResponse({"keys": await keys.usage_all()})


def create_app(settings: Settings | None = None, engine: Engine | None = None, keys: KeyRing | None = None) -> FastAPI:
    """Build the gateway app. ``engine`` overrides the one the settings would build (tests); ``keys`` the key
    ring (default: the settings' static keys and the store's keys table)."""
    settings = settings or Settings()
    if keys is None:
        from ..stores.keys import open_key_store

        keys = KeyRing.from_settings(settings, open_key_store(settings))
    # the first candidate until calibration (template "auto") picks one at boot
    template = Template.load(settings.template_names[0], settings.prompts_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs = JobsRuntime.from_settings(settings)  # the durable store: batch jobs, files, translation memory
        await jobs.open()
        app.state.jobs = jobs
        memory = jobs.translation_memory(settings.translation_memory_size)
        app.state.glossaries = GlossaryServing.from_settings(jobs.store, settings)
        gw = Gateway(
            settings,
            template,
            prices=Prices.from_settings(settings),
            owns_engine=engine is None,
            memory=memory,
            glossaries=app.state.glossaries,
        )
        app.state.gateway = gw
        app.state.jobs_serving = JobsServing(jobs, settings, keys, gateway=gw)
        collector = StatsCollector(
            gw.stats, gw.prices, lambda: {"version": __version__, "model": gw.model_name, "template": gw.template.ref}
        )
        app.state.registry = make_registry(collector)
        app.state.registry.register(ReplicaCollector(lambda: gw.engine))  # an engine pool's per-replica numbers
        app.state.registry.register(JobsCollector(app))  # the job worker's lines and caps
        boot = asyncio.create_task(gw.boot(engine))
        jobs.start_when_ready(gw)
        watch = asyncio.create_task(_watch_revocations(keys, jobs))
        try:
            yield
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await jobs.stop_worker()  # job lines finish or go back to the store before the batcher closes
            boot.cancel()
            await asyncio.gather(boot, return_exceptions=True)
            await gw.close()
            await keys.close()
            await jobs.close()

    app = FastAPI(
        title="batchmt",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="BatchPrompt translation gateway in front of vLLM: English→German.",
    )
    # (the decorator form: add_exception_handler's type wants handlers of plain Exception)
    app.exception_handler(APIError)(api_error_handler)
    for store_exc in STORE_ERRORS:  # a full disk or a failing store: 507/503 in the API's shape, and not ready
        app.exception_handler(store_exc)(store_error_handler)
    app.exception_handler(RequestValidationError)(validation_error_handler)
    app.exception_handler(StarletteHTTPException)(http_error_handler)  # 404, 405, ... in the same shape
    # auth, body limits, request ids, security headers: before FastAPI reads anything (middleware.py)
    app.add_middleware(GuardMiddleware, config=GuardConfig.from_settings(settings, keys))

    app.state.settings, app.state.keys = settings, keys
    app.include_router(router)
    install_dashboard(app)
    install_docs(app)
    install_openapi_limits(app, settings, lambda: keys.enabled)
    install_jobs(app)
    install_glossaries(app)
    install_memory(app)
    return app
