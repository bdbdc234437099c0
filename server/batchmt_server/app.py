"""The FastAPI application: app factory + lifespan, no import-time globals."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from functools import partial
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from . import __version__
from .batcher import Batcher
from .calibration import Calibration
from .cost import Prices, usage_totals
from .dashboard import install_dashboard
from .engines import Engine, build_engine
from .ensemble import Ensemble
from .errors import APIError, api_error_handler, error_body, validation_error_handler
from .metrics import StatsCollector, make_registry, render
from .schemas import Info, Limits, TranslateRequest, TranslateResponse, UsageTotals
from .settings import Settings
from .stats import Stats
from .template import Template
from .translator import LANGUAGE_PAIRS, Translator, pack_cap

__all__ = ["create_app", "Gateway"]

log = logging.getLogger("batchmt.app")


@dataclass
class Gateway:
    """Everything one running app owns (kept on ``app.state.gateway``)."""

    settings: Settings
    template: Template
    stats: Stats = field(default_factory=Stats)
    engine: Engine | None = None
    batcher: Batcher | None = None
    translator: Translator | None = None
    ensemble: Ensemble | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    boot_error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    ready_after_s: float | None = None
    owns_engine: bool = True  # an engine handed in by the caller is the caller's to close

    calibration: "Calibration | None" = None
    pack_limit: int | None = None  # calibrated; None when calibration is off

    @property
    def max_pack(self) -> int:
        """The pack size cap in force: the setting, never beyond the calibrated limit."""
        return pack_cap(self.settings, self.pack_limit)

    async def _calibration(self) -> "Calibration":
        from .calibration import calibrate, load_cached, load_pairs
        s = self.settings
        pairs = load_pairs(s.calibration_data)
        cached = load_cached(s.cache_dir, self.engine.model_name, self.template, pairs)
        if cached is not None:
            log.info("calibrated pack limit %d (cached)", cached.pack_limit)
            return cached
        log.info("calibrating %s with %s (once; cached under %s)", self.engine.model_name, self.template.ref, s.cache_dir)
        cal = await calibrate(self.engine, self.template, pairs,
                              max_chrf_drop=s.max_chrf_drop, max_parse_failure=s.max_parse_failure, cache_dir=s.cache_dir)
        log.info("calibration:\n%s", cal.summary())
        return cal

    @property
    def model_name(self) -> str:
        return self.engine.model_name if self.engine is not None else self.settings.model_name

    async def boot(self, engine: Engine | None) -> None:
        """Build and start the engine, then open for traffic. Runs in the background so that
        ``/healthz`` answers (and ``/readyz`` says 503) while a model loads."""
        try:
            self.engine = engine if engine is not None else await asyncio.to_thread(build_engine, self.settings)
            await self.engine.start()
            s = self.settings
            if s.calibration == "auto":
                self.calibration = await self._calibration()
                self.pack_limit = self.calibration.pack_limit
            self.stats.pack_limit = self.max_pack
            self.batcher = Batcher(self.engine, self.template, self.stats, max_wait_ms=s.max_wait_ms,
                                   max_sentences_per_prompt=self.max_pack, max_prompt_tokens=s.max_prompt_tokens,
                                   max_prompts_in_flight=s.max_prompts_in_flight, max_queue_sentences=s.max_queue_sentences,
                                   max_attempts=s.max_attempts, temperature=s.temperature, policy=s.pack_policy,
                                   memory_size=s.translation_memory_size)
            self.batcher.start()
            # quality balanced/best: permutation rounds, under the batcher's own cap on prompts in flight
            self.ensemble = Ensemble(self.engine, self.template, self.stats, slots=self.batcher._slots,
                                     max_prompt_tokens=s.max_prompt_tokens)
            self.translator = Translator(self.batcher, self.stats, s, self.model_name, self.template, self.pack_limit,
                                         ensemble=self.ensemble)
            if s.warmup:
                await self.batcher.warmup()
            self.ready_after_s = time.monotonic() - self.started_at
            self.stats.engine_ready = True
            self.ready.set()
            log.info("ready in %.1fs: model %s, signature %s", self.ready_after_s, self.model_name, self.translator.signature)
        except Exception as exc:  # the process stays up and says why in /readyz
            self.boot_error = f"{type(exc).__name__}: {exc}"
            log.exception("engine failed to start")

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self.engine is not None and self.owns_engine:
            await self.engine.close()


async def client_gone(request: Request) -> None:
    """Return once the client has disconnected (the ASGI ``http.disconnect`` message; the body is
    already read, so the next message is that one)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the gateway app. ``engine`` overrides the one the settings would build (tests)."""
    settings = settings or Settings()
    template = Template.load(settings.template, settings.prompts_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        gw = Gateway(settings, template, owns_engine=engine is None)
        gw.stats.prices = Prices.from_settings(settings)
        app.state.gateway = gw
        collector = StatsCollector(gw.stats, lambda: {"version": __version__, "model": gw.model_name,
                                                      "template": template.ref})
        app.state.registry = make_registry(collector)
        boot = asyncio.create_task(gw.boot(engine))
        try:
            yield
        finally:
            boot.cancel()
            await asyncio.gather(boot, return_exceptions=True)
            await gw.close()

    app = FastAPI(title="batchmt", version=__version__, lifespan=lifespan,
                  description="BatchPrompt translation gateway in front of vLLM: English→German.")
    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    def gateway(request: Request) -> Gateway:
        return request.app.state.gateway

    def check_key(request: Request) -> None:
        if settings.api_key and request.headers.get("authorization", "") != f"Bearer {settings.api_key}":
            raise APIError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'")

    def require_ready(gw: Gateway) -> Translator:
        if gw.translator is None or not gw.ready.is_set():
            why = gw.boot_error or "the engine is still starting"
            raise APIError(503, "not_ready", f"not ready: {why}", headers={"Retry-After": "5"})
        return gw.translator

    @app.post("/v1/translate", response_model=TranslateResponse, tags=["translate"],
              responses={400: {}, 401: {}, 413: {}, 415: {}, 422: {}, 429: {}, 503: {}})
    async def translate(body: TranslateRequest, request: Request) -> TranslateResponse:
        """Translate sentences English→German. One entry per input, in order; a sentence that
        failed after retries says so in its own slot."""
        check_key(request)
        gw = gateway(request)
        try:
            translator = require_ready(gw)
        except APIError:
            gw.stats.record_request("rejected")
            raise
        return await translator.translate(body, partial(client_gone, request))

    @app.get("/v1/info", response_model=Info, tags=["translate"])
    async def info(request: Request) -> Info:
        check_key(request)
        gw = gateway(request)
        from .translator import signature
        return Info(version=__version__, model=gw.model_name,
                    signature=signature(template, gw.model_name, settings, gw.pack_limit),
                    language_pairs=list(LANGUAGE_PAIRS),
                    limits=Limits(max_sentences_per_request=settings.max_sentences_per_request,
                                  max_sentence_chars=settings.max_sentence_chars),
                    max_sentences_per_prompt=gw.max_pack, calibrated_pack_limit=gw.pack_limit,
                    pack_policy=settings.pack_policy)

    @app.get("/v1/usage", response_model=UsageTotals, tags=["translate"])
    async def usage(request: Request) -> dict:
        """Totals since start: sentences, characters, tokens by kind, estimated cost and the saving
        against one sentence per prompt without a prefix cache (the numbers ``/metrics`` exports)."""
        check_key(request)
        return usage_totals(gateway(request).stats)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        gw = gateway(request)
        if gw.ready.is_set() and gw.engine is not None and await gw.engine.ready():
            return JSONResponse({"status": "ready", "model": gw.model_name, "ready_after_s": gw.ready_after_s})
        why = gw.boot_error or ("the engine does not answer" if gw.ready.is_set() else "the engine is still starting")
        return JSONResponse(error_body("not_ready", why), status_code=503, headers={"Retry-After": "5"})

    @app.get("/metrics", tags=["ops"])
    async def metrics(request: Request) -> Response:
        in_process = settings.engine == "vllm"
        return Response(render(request.app.state.registry, in_process),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    install_dashboard(app)
    return app
