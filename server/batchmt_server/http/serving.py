"""Running the gateway under uvicorn: header limits (uvicorn_protocol.py), no ``server`` header, JSON-able logs
(the root logger's handlers), and a graceful stop.

On SIGTERM (or SIGINT) the gateway first says so: ``/readyz`` answers 503 at once, and with
``shutdown_delay_s`` > 0 it keeps serving that long so that load balancers stop sending new requests. Then uvicorn
stops accepting connections, lets the requests in flight finish (at most ``drain_timeout_s``; their sentences are
translated, or failed in their slots with ``shutdown`` once the batcher closes) and runs the app's shutdown. A
second signal during the delay stops at once. The exit status is 0, or 70 (EX_SOFTWARE) when the engine died
(``on_engine_death="exit"``), so that a supervisor restarts the process.

The garbage collector is tuned for a server (:func:`tune_gc`): a request allocates a few hundred short-lived
containers (ASGI messages, closures, futures, pydantic models), and CPython's default first-generation threshold of
700 ran a collection every request or two, ~15% of the CPU of a one-sentence request against the fake engine
(``benchmarks/gateway_load.py``). And once the gateway is ready, everything allocated at start-up (modules, the
engine, the tokenizer, the segmenter's model) is moved out of the collector's way (``gc.freeze``), so that a full
collection does not walk it again and again (a pause of tens of milliseconds each time, seen in the p99).
"""

from __future__ import annotations

import gc
import logging
import time
from types import FrameType
from typing import Any

import uvicorn

from .uvicorn_protocol import protocol_class

__all__ = ["run_server", "DrainingServer", "EXIT_ENGINE_DEAD"]

log = logging.getLogger("batchmt.serving")

EXIT_ENGINE_DEAD = 70

#: first-generation threshold of the collector in a serving process (CPython's default: 700)
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collect the youngest generation every ``GC_GEN0_THRESHOLD`` allocations, not every 700 (the older
    generations keep their ratios). Only the serving process calls it: tests and tools keep CPython's defaults."""
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), gen1, gen2)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Any, delay_s: float) -> None:
        super().__init__(config)
        self.gateway_app, self.delay_s = app, delay_s
        self._exit_at: float | None = None
        self._dead_at: float | None = None
        self.exit_on_death = True
        self._gc_frozen = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.gateway_app.state.draining = True  # /readyz: 503 from now on
        if self.delay_s > 0 and self._exit_at is None:
            self._exit_at = time.monotonic() + self.delay_s
            log.info("signal %d: not ready; serving %gs more, then draining", sig, self.delay_s)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        now = time.monotonic()
        if self._exit_at is not None and now >= self._exit_at and not self.should_exit:
            log.info("draining: no new connections; waiting for the requests in flight")
            self.should_exit = True
        gw = getattr(self.gateway_app.state, "gateway", None)
        ready = getattr(gw, "ready", None)
        if not self._gc_frozen and ready is not None and ready.is_set():
            # ready: what start-up allocated lives as long as the process; the collector need not walk it again
            self._gc_frozen = True
            gc.collect()
            gc.freeze()
        if self.exit_on_death and gw is not None and getattr(gw, "engine_dead", None) and not self.should_exit:
            self.gateway_app.state.draining = True
            if self._dead_at is None:
                self._dead_at = now  # a second for the 503s being written, then the graceful stop
            elif now - self._dead_at >= 1.0:
                log.error("the engine died: shutting down (exit status %d)", EXIT_ENGINE_DEAD)
                self.should_exit = True
        return await super().on_tick(counter)


def run_server(app: Any, settings: Any, drain_timeout_s: float = 30.0) -> int:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        server_header=False,
        timeout_keep_alive=settings.keep_alive_s,
        http=protocol_class(settings.max_header_bytes, settings.header_timeout_s),
        timeout_graceful_shutdown=int(drain_timeout_s),
    )
    tune_gc()
    server = DrainingServer(config, app, settings.shutdown_delay_s)
    server.exit_on_death = getattr(settings, "on_engine_death", "exit") == "exit"
    server.run()
    gw = getattr(app.state, "gateway", None)
    if gw is not None and getattr(gw, "engine_dead", None):
        return EXIT_ENGINE_DEAD
    return 0 if server.started else 1
