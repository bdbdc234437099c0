"""One engine call, accounted once: the unit both the batcher and the ensemble send prompts through.

:class:`PromptRunner` owns the cap on prompts in flight (a semaphore) and the in-flight count that the
batcher's pack policy reads; it renders a prompt, calls the engine, records the prompt in
:class:`~batchmt_server.telemetry.stats.Stats`, parses the completion into slots and shares the prompt's cost
among its sentences. It also records the baseline (a sentence alone, uncached) for cost.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from ..engines import Completion, Engine, EngineError, GenerationParams
from ..engines.loop_stop import LoopRule, source_repeats
from ..prompting.parsing import Slot
from ..prompting.steer import Steer, merge_hints, steered_template
from ..prompting.template import Template
from ..telemetry.cost import EngineUsage
from ..telemetry.stats import Stats

__all__ = ["PromptRunner", "PromptCall"]

log = logging.getLogger("batchmt.runner")


@dataclass(frozen=True)
class PromptCall:
    """One engine call that answered: its completion, one slot per sentence, each sentence's share."""

    prompt: str
    completion: Completion
    slots: list[Slot]
    shares: list[EngineUsage]
    busy_seconds: float  # this prompt's share of engine busy time
    calib: float  # the engine's prompt tokens over our count of the prompt (HTTP engines only estimate)

    @property
    def seconds_per_computed_token(self) -> float:
        c = self.completion
        return self.busy_seconds / max(1, c.prompt_tokens - c.cached_prompt_tokens + c.completion_tokens)


class PromptRunner:
    def __init__(
        self,
        engine: Engine,
        template: Template,
        stats: Stats,
        *,
        max_in_flight: int = 64,
        timeout_s: float | None = None,
        loop_rule: LoopRule | None = LoopRule(),
    ) -> None:
        self.engine, self.template, self.stats = engine, template, stats
        #: completions that fall into a repetition loop end there (engines/loop_stop.py); None: decode to the budget
        self.loop_rule = loop_rule
        self.max_in_flight = max_in_flight
        #: an engine call that takes longer fails (EngineError) and gives its place back: a hung engine cannot
        #: hold the places in flight forever
        self.timeout_s = timeout_s
        self._capacity = asyncio.Semaphore(max_in_flight)
        self._in_flight = 0
        self._variants: dict[tuple[str, bool], Template] = {}

    def template_for(self, variant: tuple[str, bool]) -> Template:
        """The prefix variant of the template for a steer's (formality, hints?) (steer.py); a chat template has
        none (it keeps its own rendering: hints and formality then rely on the post-generation check alone)."""
        if variant == ("default", False) or not isinstance(self.template, Template):
            return self.template
        if variant not in self._variants:
            self._variants[variant] = steered_template(self.template, *variant)
        return self._variants[variant]

    # ------------------------------------------------------------------ capacity
    @property
    def in_flight(self) -> int:
        """Prompts holding a place now (the batcher's pack policy reads it)."""
        return self._in_flight

    @property
    def free(self) -> int:
        return self.max_in_flight - self._in_flight

    async def acquire(self) -> None:
        """Hold one of the ``max_in_flight`` places; pair with :meth:`release`."""
        await self._capacity.acquire()
        self._in_flight += 1
        self.stats.set_prompts_in_flight(self._in_flight)

    def release(self) -> None:
        self._in_flight -= 1
        self.stats.set_prompts_in_flight(self._in_flight)
        self._capacity.release()

    @asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    # ------------------------------------------------------------------ one call
    async def call(
        self,
        sources: list[str],
        tokens: list[int],
        *,
        temperature: float = 0.0,
        seed: int | None = None,
        logprobs: bool = False,
        requests: int = 1,
        priority: int = 0,
        steers: list[Steer] | None = None,
    ) -> PromptCall:
        """Send ``sources`` in one prompt (the caller holds a place). Raises :class:`EngineError` after
        recording the failed prompt. ``steers``: each source's (one variant for all; their hints merged)."""
        loop_rule = self.loop_rule
        if loop_rule is not None and any(source_repeats(s, loop_rule) for s in sources):
            loop_rule = None  # a source that repeats itself: its faithful translation repeats too
        if loop_rule is not None and len(sources) > 1:  # a looping slot ends its line, not its neighbours'
            loop_rule = replace(loop_rule, lines=self.template.lines_for(len(sources)))
        template = self.template
        hints: tuple[tuple[str, str], ...] = ()
        if steers:  # one formality per prompt (the batcher packs by variant); every sentence's hints
            merged = merge_hints([st.hints for st in steers])
            template = self.template_for((steers[0].formality, bool(merged)))
            if isinstance(template, Template):
                hints = merged
        params = GenerationParams(
            max_tokens=template.max_tokens(tokens),
            temperature=temperature,
            seed=seed,
            stop=template.stop_for(len(sources)),
            logprobs=logprobs,
            priority=priority,
            prefix_chars=len(template.prefix),
            loop_stop=loop_rule,
        )
        prompt = template.render(sources, hints) if hints else template.render(sources)
        t0 = time.monotonic()
        try:
            try:
                async with asyncio.timeout(self.timeout_s):  # (not wait_for: no extra task per engine call)
                    completion = await self.engine.generate(prompt, params)
            except TimeoutError:
                raise EngineError(f"the engine did not answer within {self.timeout_s:g}s") from None
            except EngineError:
                raise
            except Exception as exc:  # an engine bug is this prompt's failure, re-sent or failed in its slots
                log.exception("the engine raised %s on a prompt of %d sentences", type(exc).__name__, len(sources))
                raise EngineError(f"the engine failed: {type(exc).__name__}") from exc
        except EngineError:
            self.stats.record_prompt(sentences=len(sources), requests=requests, ok=False, seconds=time.monotonic() - t0)
            raise
        busy = self.stats.record_prompt(
            sentences=len(sources),
            requests=requests,
            ok=True,
            seconds=time.monotonic() - t0,
            prompt_tokens=completion.prompt_tokens,
            cached_prompt_tokens=completion.cached_prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
        total = sum(tokens) or 1
        shares = [
            EngineUsage(
                prompt_tokens=t / total * completion.prompt_tokens,
                cached_prompt_tokens=t / total * completion.cached_prompt_tokens,
                completion_tokens=t / total * completion.completion_tokens,
                engine_prompts=1 / len(sources),
                engine_seconds=t / total * busy,
            )
            for t in tokens
        ]
        slots = template.parse(completion.text, sources, completion.finish_reason)
        calib = completion.prompt_tokens / max(1, template.prompt_tokens(prompt, self.engine.count_tokens))
        return PromptCall(prompt, completion, slots, shares, busy, calib)

    # ------------------------------------------------------------------ baseline (cost.py)
    def baseline(self, source: str, completion_tokens: float, *, seconds_per_token: float, calib: float) -> EngineUsage:
        """Record one translated sentence as if it had been sent alone, without a prefix cache: the tokens of
        its one-sentence prompt (calibrated by the engine's own count), ``completion_tokens``, and engine time
        at the measured ``seconds_per_token``."""
        pt = calib * self.template.prompt_tokens(self.template.render([source]), self.engine.count_tokens)
        seconds = seconds_per_token * (pt + completion_tokens)
        self.stats.record_baseline(prompt_tokens=pt, completion_tokens=completion_tokens, engine_seconds=seconds)
        return EngineUsage(
            baseline_prompt_tokens=pt, baseline_completion_tokens=completion_tokens, baseline_engine_seconds=seconds
        )

    async def warmup(self) -> None:
        """Send the template's own first example once, so the prefix is cached before the first caller."""
        source = self.template.examples[0][0][0] if self.template.examples else "Hello."
        try:
            await self.engine.generate(
                self.template.render([source]), GenerationParams(max_tokens=8, temperature=0.0, stop=self.template.stop)
            )
        except EngineError as exc:
            raise EngineError(f"warm-up prompt failed: {exc}") from exc
