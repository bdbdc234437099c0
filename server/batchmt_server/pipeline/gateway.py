"""What one running gateway owns, and how it boots: engine, calibration, runner, batcher, ensemble,
translator. The app factory (:mod:`..http.app`) only creates one and routes requests to it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..engines import Engine, build_engine
from ..engines.loop_stop import LoopRule
from ..prompting.chat import apply_form, engine_tokenizer
from ..prompting.template import Template
from ..settings import Settings
from ..telemetry.cost import Prices
from ..telemetry.stats import Stats
from .batcher import Batcher
from .calibration import (
    Calibration,
    TemplateChoice,
    calibrate,
    choose_template,
    load_cached,
    load_cached_choice,
    load_pairs,
)
from .ensemble import Ensemble
from .memory import TranslationMemory
from .runner import PromptRunner
from .translator import Translator, pack_cap, signature

__all__ = ["Gateway"]

log = logging.getLogger("batchmt.gateway")


def default_prompts_in_flight(engine: Engine) -> int:
    """Twice the engine's sequence slots when it says how many it has (the in-process vLLM engine): the gateway
    then keeps a full batch waiting in vLLM's own queue, so a finished sequence's place is refilled in the same
    step instead of after its answer has travelled back through the gateway. 64 otherwise."""
    seqs = getattr(engine, "max_num_seqs", None)
    return 2 * seqs if isinstance(seqs, int) and seqs > 0 else 64


@dataclass
class Gateway:
    """Everything one running app owns (kept on ``app.state.gateway``)."""

    settings: Settings
    template: Template
    stats: Stats = field(default_factory=Stats)
    prices: Prices = field(default_factory=Prices)
    engine: Engine | None = None
    runner: PromptRunner | None = None
    batcher: Batcher | None = None
    translator: Translator | None = None
    ensemble: Ensemble | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    boot_error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    ready_after_s: float | None = None
    owns_engine: bool = True  # an engine handed in by the caller is the caller's to close
    memory: TranslationMemory | None = None  # the translation memory (in the store, a hot tier in process); None: off
    glossaries: Any = None  # the store's glossaries (glossaries.serving.GlossaryServing); None: none kept

    calibration: Calibration | None = None
    template_choice: TemplateChoice | None = None  # template "auto": the variants measured and the one chosen
    _tokenizer: Any = None  # the engine's tokenizer (chat form), once the engine started
    calibrated_pack_limit: int | None = None  # None when calibration is off
    engine_dead: str | None = None  # why, once the engine died for good (engine_died)

    @property
    def max_pack(self) -> int:
        """The pack size cap in force: the setting, never beyond the calibrated limit."""
        return pack_cap(self.settings, self.calibrated_pack_limit)

    async def _calibration(self, engine: Engine) -> Calibration:
        s = self.settings
        pairs = load_pairs(s.calibration_data)
        single = None
        if len(s.template_names) > 1:  # template "auto": the fastest variant that keeps quality
            variants = {name: self._load_template(name) for name in s.template_names}
            choice = load_cached_choice(s.cache_dir, engine.model_name, list(variants.values()), pairs)
            if choice is None:
                log.info(
                    "choosing among templates %s for %s (once; cached under %s)",
                    list(variants),
                    engine.model_name,
                    s.cache_dir,
                )
                choice = await choose_template(
                    engine,
                    variants,
                    pairs,
                    max_chrf_drop=s.max_chrf_drop,
                    max_copy_increase=s.max_copy_increase,
                    cache_dir=s.cache_dir,
                )
            log.info("template calibration:\n%s", choice.summary())
            self.template_choice = choice
            self.template = variants[choice.chosen]
            single = choice.result(choice.chosen).single
        cached = load_cached(s.cache_dir, engine.model_name, self.template, pairs)
        if cached is not None:
            log.info("calibrated pack limit %d (cached)", cached.pack_limit)
            return cached
        log.info("calibrating %s with %s (once; cached under %s)", engine.model_name, self.template.ref, s.cache_dir)
        cal = await calibrate(
            engine,
            self.template,
            pairs,
            max_chrf_drop=s.max_chrf_drop,
            max_parse_failure=s.max_parse_failure,
            cache_dir=s.cache_dir,
            single=single,
        )
        log.info("calibration:\n%s", cal.summary())
        return cal

    def _load_template(self, name: str) -> Template:
        """A template variant by name, in the prompt form in force (the one loaded at start when it is that one)."""
        if name == self.settings.template_names[0]:
            return self.template
        s = self.settings
        return apply_form(Template.load(name, s.prompts_dir), s.template_form, self._tokenizer, self.model_name)

    async def wait_ready(self, poll: float = 0.05) -> None:
        """Until the gateway serves (benchmarks and tools that drive the app in-process); raises
        ``RuntimeError`` with the reason when booting failed."""
        while not self.ready.is_set():
            if self.boot_error:
                raise RuntimeError(self.boot_error)
            await asyncio.sleep(poll)

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
            # instruct models: the chat form of the template, through the model's chat template (chat.py)
            self._tokenizer = tokenizer = await asyncio.to_thread(engine_tokenizer, self.engine, s)
            self.template = apply_form(self.template, s.template_form, tokenizer, self.model_name)
            log.info("prompt form: %s (%s)", self.template.form, self.template.ref)
            if s.calibration == "auto":
                self.calibration = await self._calibration(self.engine)
                self.calibrated_pack_limit = self.calibration.pack_limit
            self.stats.set_pack_cap(self.max_pack)
            # one cap on prompts in flight for the batcher and the ensemble rounds
            self.runner = PromptRunner(
                self.engine,
                self.template,
                self.stats,
                max_in_flight=s.max_prompts_in_flight or default_prompts_in_flight(self.engine),
                timeout_s=s.engine_timeout_s,
                loop_rule=LoopRule() if s.loop_stop else None,
            )
            self.batcher = Batcher(
                self.runner,
                self.stats,
                max_wait_ms=s.max_wait_ms,
                max_sentences_per_prompt=self.max_pack,
                max_prompt_tokens=s.max_prompt_tokens,
                max_queue_sentences=s.max_queue_sentences,
                max_attempts=s.max_attempts,
                temperature=s.temperature,
                policy=s.pack_policy,
                cross_tenant_packing=s.cross_tenant_packing,
                suspect_second_try=s.suspect_second_try,
            )
            self.batcher.start()
            self.batcher.on_engine_dead = self.engine_died
            self.ensemble = Ensemble(self.runner, self.stats, max_prompt_tokens=s.max_prompt_tokens)
            self.translator = Translator(
                self.batcher,
                self.stats,
                s,
                self.model_name,
                self.template,
                self.calibrated_pack_limit,
                ensemble=self.ensemble,
                prices=self.prices,
                memory=self.memory,
                glossaries=self.glossaries,
            )
            if s.warmup:
                await self.runner.warmup()
            self.ready_after_s = time.monotonic() - self.started_at
            self.stats.set_engine_ready(True)
            self.ready.set()
            log.info(
                "ready in %.1fs: model %s, signature %s", self.ready_after_s, self.model_name, self.translator.signature
            )
        except Exception as exc:  # the process stays up and says why in /readyz
            self.boot_error = f"{type(exc).__name__}: {exc}"
            log.exception("engine failed to start")

    def engine_died(self, reason: str) -> None:
        """The engine is gone for good: not ready from now on, what is queued fails (its requests answer a
        retryable 503), and with ``on_engine_death="exit"`` ``batchmt-server`` shuts down gracefully and exits 70
        (serving.py watches ``engine_dead``) so that its supervisor (systemd, Kubernetes, Compose) starts a fresh
        one. Restarting vLLM inside this process is not attempted: a dead engine core does not reliably give its
        memory back."""
        if self.engine_dead is not None:
            return
        self.engine_dead = reason
        self.boot_error = f"the engine died: {reason}"
        self.ready.clear()
        self.stats.set_engine_ready(False)
        if self.batcher is not None:
            self.batcher.fail_queued("engine_dead", self.boot_error)
        exiting = getattr(self.settings, "on_engine_death", "exit") == "exit"
        log.error("%s; not ready%s", self.boot_error, ", shutting down in 1 s" if exiting else "")

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self.engine is not None and self.owns_engine:
            await self.engine.close()

    @property
    def signature(self) -> str:
        return signature(self.template, self.model_name, self.settings, self.calibrated_pack_limit)
