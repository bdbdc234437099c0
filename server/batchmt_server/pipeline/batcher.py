"""The micro-batcher: one queue for the sentences of all callers, packed into BatchPrompt prompts.

Modelled on Ray Serve's ``@serve.batch``: the batch window opens at the first queued sentence and
closes after ``max_wait_ms`` or as soon as a full prompt is waiting (the ``adaptive`` policy skips it while
every queued sentence has a free prompt place: there is nothing to pack then); a token budget and a sentence
cap size each prompt; a semaphore caps prompts in flight; cancelled callers' sentences are dropped
before they are sent; a bad slot is repaired on its own (re-sent in smaller prompts, down to one
sentence per prompt) and never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..engines import EngineError
from ..engines.base import EngineDead
from ..prompting.parsing import Slot
from ..prompting.steer import Steer
from ..telemetry.cost import EngineUsage
from ..telemetry.stats import Stats
from ..text.placeholders import check_masks
from .consensus import span_confidence
from .runner import PromptCall, PromptRunner
from .spare_capacity import SpareCapacity

__all__ = ["Batcher", "Item", "Outcome", "QueueFull"]

log = logging.getLogger("batchmt.batcher")


#: flagged reasons of a one-sentence slot that still holds the model's own answer -> the suspect reason it is
#: delivered with when a sampled second try does not do better
SUSPECT_REASONS = {"copy": "copy", "truncated": "loop", "merged": "run_on"}


def _confidence(it: Item, call: PromptCall, slot: Slot) -> float | None:
    """The geometric mean token probability (0..1) of the slot's translation: exp of its mean token
    log-probability (None when no caller of ``it`` asked for it, or when the engine gave none)."""
    if not it.logprobs:  # the prompt may have asked for a packed neighbour's sake
        return None
    c = call.completion
    mean = span_confidence(c.token_logprobs, c.token_offsets, *slot.span) if slot.span else None
    return math.exp(mean) if mean is not None else None


class QueueFull(Exception):
    """The queue cannot take these sentences now; ``retry_after`` is a hint in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"queue full, retry after {retry_after:.0f}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Outcome:
    """What a queued sentence resolves to. Failures are values, not exceptions."""

    text: str | None
    error_code: str | None = None
    error_message: str | None = None
    usage: EngineUsage = EngineUsage()  # the engine work this caller carries
    #: served from the translation memory (pipeline/memory.py; set by the Translator, never by the batcher): the
    #: origin of the entry, ``model`` or ``human``
    from_memory: Literal["model", "human"] | None = None
    coalesced: bool = False  # shared the engine work of an identical sentence in flight
    flagged: bool = False  # a flagged slot kept as the model's own answer (never remembered)
    #: still a copy of the English (or a loop) after a different, sampled second try: delivered, but not as "ok"
    suspect: str | None = None
    #: 0..1: the geometric mean token probability of a one-pass translation, the candidates' agreement of an
    #: ensemble one; None when unknown
    confidence: float | None = None


@dataclass(eq=False)
class Item:
    """One distinct sentence in the queue. Identical sentences queued at the same time share one
    item (coalescing): each caller has its own future in ``waiters``."""

    text: str
    tokens: int
    request_id: int
    waiters: list[asyncio.Future]
    enqueued_at: float = field(default_factory=time.monotonic)
    max_pack: int = 1 << 30
    attempts: int = 0  # engine calls at one sentence per prompt
    usage: EngineUsage = EngineUsage()  # engine work spent on it so far (every call it travelled in)
    translated: bool = False  # resolved with a translation (its baseline is recorded once)
    priority: int = 0  # 0: interactive; > 0: batch-job work, sent in the capacity interactive callers leave
    sampled: bool = False  # re-sent sampled: greedy would repeat its damaged masks or flagged one-sentence output
    logprobs: bool = False  # a caller asked for its confidence: its prompt asks the engine for log-probabilities
    tenant: str | None = None  # the caller's key: its sentences share work (coalescing) with its own only
    #: formality and glossary terms (steer.py): packed only with the same prefix variant, checked after generation
    steer: Steer | None = None
    rechecked: bool = False  # re-sent once after failing the steer's check (glossary term, register)

    @property
    def key(self) -> tuple[str | None, str, Steer | None]:
        return (self.tenant, self.text, self.steer)

    @property
    def variant(self) -> tuple[str, bool]:
        return self.steer.variant if self.steer is not None else ("default", False)

    @property
    def abandoned(self) -> bool:
        """Every caller of this sentence went away (or it is resolved)."""
        return all(w.done() for w in self.waiters)


class Batcher:
    def __init__(
        self,
        runner: PromptRunner,
        stats: Stats,
        *,
        max_wait_ms: float = 5.0,
        max_sentences_per_prompt: int = 8,
        max_prompt_tokens: int = 1024,
        max_queue_sentences: int = 4096,
        max_attempts: int = 2,
        temperature: float = 0.0,
        policy: Literal["adaptive", "fixed"] = "adaptive",
        cross_tenant_packing: bool = True,
        max_job_prompts: int | None = None,
        suspect_second_try: bool = False,
    ) -> None:
        self.runner, self.stats = runner, stats
        #: a one-sentence slot that copies the source, loops or runs on gets a sampled second try before it is
        #: delivered as suspect (more engine work: ~0.3 more prompts per sentence on the embedded model)
        self.suspect_second_try = suspect_second_try
        self.max_wait = max_wait_ms / 1000.0
        self.max_pack = max_sentences_per_prompt
        self.max_prompt_tokens = max_prompt_tokens
        self.max_queue = max_queue_sentences
        self.max_attempts = max_attempts
        self.temperature = temperature
        self.policy = policy
        #: every slot's translation is checked against its source's masks (placeholders.check_masks): a damaged
        #: one is repaired like any flagged slot, then re-sent sampled at this temperature, up to
        #: ``placeholder_retries`` more times at one sentence per prompt, then failed in its slot
        self.check = check_masks
        self.resample_temperature = 0.7
        self.placeholder_retries = 2
        self._queue: deque[Item] = deque()
        # Batch-job sentences (priority > 0) wait apart: they never count against the interactive queue limit
        # (a job never causes an interactive 429) and are sent only when no interactive sentence waits, in at
        # most ``job_capacity.value`` prompts at once (a SpareCapacity, the job worker's controller): the cap halves
        # (at most every 0.1 s) while interactive sentences are queued or in flight (on a CPU every extra sequence
        # slows the others) and grows back by one every 0.25 s when they are not.
        self._job_queue: deque[Item] = deque()
        # a quarter of the places stay free for interactive prompts: they never wait for a job's prompt to end
        self.job_capacity = SpareCapacity(
            max_job_prompts or max(1, runner.max_in_flight * 3 // 4),
            pressure=lambda: self.interactive_active,
            halve_every_s=0.1,
            grow_every_s=0.25,
        )
        self._job_prompts_in_flight = 0  # prompts of batch-job sentences only
        self._interactive_in_flight = 0  # prompts carrying at least one interactive sentence
        #: (tenant, text, steer) -> its queued or in-flight item (coalescing; one tenant's with its own only: a shared
        #: one would tell a caller, by its zero usage, that another tenant sent the same sentence)
        self._pending: dict[tuple[str | None, str, Steer | None], Item] = {}
        #: sentences of different tenants (keys) may share a prompt (see settings.cross_tenant_packing)
        self.cross_tenant_packing = cross_tenant_packing
        self._wakeup = asyncio.Event()
        #: called once with the reason when the engine dies for good (the gateway stops being ready)
        self.on_engine_dead: Callable[[str], None] | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None

    @property
    def _queued(self) -> int:
        """Sentences waiting in both queues (interactive and batch-job)."""
        return len(self._queue) + len(self._job_queue)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="batchmt-batcher")

    async def close(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in (self._queue, self._job_queue):
            while queue:
                item = queue.popleft()
                self._resolve(item, None, "shutdown", "the gateway shut down before this sentence was sent")
        self.stats.set_queue_depth(0)

    def fail_queued(self, code: str, message: str) -> int:
        """Resolve every queued sentence as failed (the engine died: nothing queued can be sent)."""
        n = 0
        for queue in (self._queue, self._job_queue):
            while queue:
                self._resolve(queue.popleft(), None, code, message)
                n += 1
        self.stats.set_queue_depth(0)
        return n

    # ------------------------------------------------------------------ intake
    def submit(
        self,
        texts: list[str],
        request_id: int,
        priority: int = 0,
        *,
        logprobs: bool = False,
        tenant: str | None = None,
        steers: list[Steer | None] | None = None,
    ) -> list[asyncio.Future]:
        """Queue ``texts`` (all or none). Raises :class:`QueueFull`. ``priority`` > 0: batch-job work (its own
        queue and limit, sent after interactive sentences). ``logprobs``: the caller wants each translation's
        confidence, so their prompts ask the engine for the tokens' log-probabilities (which costs it work)."""
        queue = self._queue if priority <= 0 else self._job_queue
        if len(queue) + len(texts) > self.max_queue:
            raise QueueFull(self.retry_after())
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = []
        for k, text in enumerate(texts):
            fut = loop.create_future()
            futures.append(fut)
            steer = steers[k] if steers is not None else None
            if steer is not None and steer.empty:
                steer = None
            key = (tenant, text, steer)
            item = self._pending.get(key)
            if item is not None and not item.abandoned:  # the same sentence is on its way already
                item.waiters.append(fut)
                item.logprobs |= logprobs  # (a sentence already in flight without them has no confidence)
                self.stats.record_reuse("coalesced")
                if priority < item.priority:  # an interactive caller joined a job's sentence: it goes first now
                    item.priority = priority
                    if item in self._job_queue:
                        self._job_queue.remove(item)
                        self._queue.append(item)
                continue
            item = Item(
                text,
                self.runner.engine.count_tokens(text),
                request_id,
                [fut],
                now,
                priority=priority,
                logprobs=logprobs,
                tenant=tenant,
                steer=steer,
            )
            self._pending[key] = item
            queue.append(item)
        self.stats.set_queue_depth(self._queued)
        self._wakeup.set()
        return futures

    def retry_after(self) -> float:
        """Seconds until the queue has likely drained enough, from recent engine latency."""
        mean = self.stats.mean_engine_seconds() or 1.0
        waves = len(self._queue) / max(1, self.runner.max_in_flight * self.max_pack)
        return float(min(60, max(1, math.ceil(mean * max(1.0, waves)))))

    # ------------------------------------------------------------------ packing policy
    def pack_target(self) -> int:
        """Sentences to put in the next prompt.

        ``fixed`` always packs up to ``max_sentences_per_prompt``. ``adaptive`` sends one sentence per
        prompt while prompt slots are free and packs only as far as needed to spread the queue over
        the free slots: packing pays only once the engine's sequence slots are full.
        """
        if self.policy == "fixed":
            return self.max_pack
        free = self.runner.free + 1  # includes the place this dispatch holds
        return max(1, min(self.max_pack, math.ceil(len(self._queue) / free)))

    def _slots_to_spare(self) -> bool:
        """``adaptive``: every queued sentence can have a prompt place of its own now, so waiting out the batch
        window would only add latency (it would still be sent alone; packing starts once the places run short,
        and then the window fills the packs). Jobs' sentences count too: they are sent in the same places."""
        return self.policy == "adaptive" and self.runner.free >= self._queued

    # ------------------------------------------------------------------ batch-job capacity
    @property
    def interactive_active(self) -> int:
        """Interactive sentences queued plus interactive prompts in flight (the jobs' back-pressure signal)."""
        return len(self._queue) + self._interactive_in_flight

    def _job_prompt_allowed(self) -> bool:
        """May a batch-job prompt be sent now? Steps the cap (AIMD) on the way, when a job's sentence waits (the
        interactive path never runs the job controller)."""
        if not self._job_queue or self._queue:
            return False
        return self._job_prompts_in_flight < self.job_capacity.current()

    def _take(self, target: int) -> list[Item]:
        batch = self._take_from(self._queue, target, [])
        if len(batch) < target and self._job_queue and (batch or self._job_prompt_allowed()):
            batch = self._take_from(self._job_queue, target, batch)
        self.stats.set_queue_depth(self._queued)
        return batch

    def _take_from(self, queue: deque[Item], target: int, batch: list[Item]) -> list[Item]:
        tokens = sum(it.tokens for it in batch)
        limit = min([target, *(it.max_pack for it in batch)])
        skipped: list[Item] = []
        scanned = 0
        while queue and len(batch) < limit and scanned < 4 * target + 8:
            item = queue.popleft()
            scanned += 1
            if item.abandoned:  # every caller of it went away
                self.stats.record_sentences("cancelled")
                self._forget(item)
                continue
            if batch and (
                tokens + item.tokens > self.max_prompt_tokens
                or item.max_pack < len(batch) + 1
                or (not self.cross_tenant_packing and item.tenant != batch[0].tenant)
                or item.variant != batch[0].variant
            ):
                skipped.append(item)
                continue
            batch.append(item)
            tokens += item.tokens
            limit = min(limit, item.max_pack)
        queue.extendleft(reversed(skipped))
        return batch

    # ------------------------------------------------------------------ loop
    async def _run(self) -> None:
        while True:
            while not self._queue and not self._job_prompt_allowed():
                self._wakeup.clear()
                if self._job_queue:  # batch-job work held back by its cap: look again soon (the cap grows back)
                    try:
                        async with asyncio.timeout(0.05):  # (not wait_for: no task per wait)
                            await self._wakeup.wait()
                    except TimeoutError:
                        pass
                else:
                    await self._wakeup.wait()
            # the window opens at the first queued sentence
            deadline = (self._queue[0] if self._queue else self._job_queue[0]).enqueued_at + self.max_wait
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._queued >= self.max_pack or self._slots_to_spare():
                    break
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._wakeup.wait()
                except TimeoutError:
                    break
            await self.runner.acquire()
            batch = self._take(self.pack_target())
            if not batch:
                self.runner.release()
                continue
            priority = min(it.priority for it in batch)
            if priority > 0:  # counted now: the loop may dispatch again before _send runs
                self._job_prompts_in_flight += 1
            else:
                self._interactive_in_flight += 1
            task = asyncio.create_task(self._send(batch, priority))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Item], priority: int = 0) -> None:
        """One prompt for ``batch`` (the loop acquired its place in the runner and counted the prompt in
        ``_job_prompts_in_flight`` or ``_interactive_in_flight`` by ``priority``; both are released here)."""
        try:
            now = time.monotonic()
            for it in batch:
                self.stats.record_queue_wait(now - it.enqueued_at)
            sources = [it.text for it in batch]
            temperature, seed = self.temperature, None
            if any(it.sampled for it in batch):
                temperature, seed = max(self.temperature, self.resample_temperature), sum(it.attempts for it in batch)
            try:
                call = await self.runner.call(
                    sources,
                    [it.tokens for it in batch],
                    temperature=temperature,
                    seed=seed,
                    requests=len({it.request_id for it in batch}),
                    # an interactive repair goes before the engine's waiting prompts: its caller has waited once
                    priority=priority - 1 if priority <= 0 and any(it.usage.resent for it in batch) else priority,
                    logprobs=any(it.logprobs for it in batch),
                    steers=[it.steer or Steer() for it in batch] if any(it.steer for it in batch) else None,
                )
            except EngineDead as exc:  # no retry can succeed: fail at once, and tell the gateway
                log.error("the engine died: %s", exc)
                for it in batch:
                    self._resolve(it, None, "engine_dead", str(exc))
                if self.on_engine_dead is not None:
                    self.on_engine_dead(str(exc))
                return
            except EngineError as exc:
                log.warning("engine call failed for %d sentences: %s", len(batch), exc)
                for it in batch:
                    self._repair(it, "engine_error", len(batch), str(exc))
                return
            for it, share in zip(batch, call.shares):  # each sentence carries its share of the prompt's cost
                it.usage = it.usage + share
            for it, slot in zip(batch, call.slots):
                damage = self.check(it.text, slot.text) if slot.text is not None else None
                if damage is not None:  # placeholders or inline tags lost, doubled, invented or reordered
                    it.sampled = True
                    self._repair(it, "placeholder", len(batch), f"protected spans damaged: {damage}")
                elif slot.ok and it.steer is not None and (why := it.steer.check(slot.text or "")) is not None:
                    # a required glossary term missing, or the wrong register under formality more/less: re-sent
                    # once alone (sampled), then delivered suspect (never "ok", never remembered)
                    if it.steer.resend and not it.rechecked and it.attempts + 1 < self.max_attempts:
                        it.rechecked = it.sampled = True
                        self._repair(it, why, 1, f"translation failed the {why} check")
                        continue
                    self.stats.record_flagged_slot(why, resent=False)
                    self.stats.record_suspect(why)
                    self._record_baseline(it, call, batch)
                    self._resolve(it, slot.text, flagged=True, suspect=why, confidence=_confidence(it, call, slot))
                elif slot.ok:
                    self._record_baseline(it, call, batch)
                    self._resolve(it, slot.text, confidence=_confidence(it, call, slot))
                elif len(batch) == 1 and slot.reason in SUSPECT_REASONS and slot.text:
                    # Alone in its prompt, this is the model's own answer for this very sentence, but a copy of the
                    # English or a run-on: delivered as suspect, or first (suspect_second_try) given a second try,
                    # sampled, since greedy decoding would give it again.
                    if self.suspect_second_try and not it.sampled and it.attempts + 1 < self.max_attempts:
                        it.sampled = True
                        self._repair(it, slot.reason, 1, f"output slot flagged: {slot.reason}")
                        continue
                    self.stats.record_flagged_slot(slot.reason, resent=False)
                    self.stats.record_suspect(SUSPECT_REASONS[slot.reason])
                    self._record_baseline(it, call, batch)
                    self._resolve(
                        it,
                        slot.text,
                        flagged=True,
                        suspect=SUSPECT_REASONS[slot.reason],
                        confidence=_confidence(it, call, slot),
                    )
                else:
                    self._repair(it, slot.reason or "missing", len(batch), f"output slot flagged: {slot.reason}")
        except Exception as exc:  # a bug must not leave callers waiting: fail what is unresolved, in its slot
            log.exception("prompt of %d sentences failed", len(batch))
            queued = set(map(id, self._queue)) | set(map(id, self._job_queue))
            for it in batch:
                if id(it) not in queued:
                    self._resolve(it, None, "internal_error", f"internal error: {type(exc).__name__}")
        finally:
            if priority > 0:
                self._job_prompts_in_flight -= 1
            else:
                self._interactive_in_flight -= 1
            self.runner.release()
            self._wakeup.set()

    def _record_baseline(self, it: Item, call: PromptCall, batch: list[Item]) -> None:
        """Count ``it`` as if it had been sent alone, uncached (cost.py), at this prompt's measured rate."""
        total = sum(b.tokens for b in batch) or 1
        it.usage = it.usage + self.runner.baseline(
            it.text,
            it.tokens / total * call.completion.completion_tokens,
            seconds_per_token=call.seconds_per_computed_token,
            calib=call.calib,
        )

    def _forget(self, it: Item) -> None:
        if self._pending.get(it.key) is it:
            del self._pending[it.key]

    def _resolve(
        self,
        it: Item,
        text: str | None,
        code: str | None = None,
        message: str | None = None,
        flagged: bool = False,
        suspect: str | None = None,
        confidence: float | None = None,
    ) -> None:
        self._forget(it)
        first = True
        for w in it.waiters:
            if not w.done():  # the first live caller carries the cost; the others shared the work
                w.set_result(
                    Outcome(
                        text,
                        code,
                        message,
                        it.usage if first else EngineUsage(),
                        coalesced=not first,
                        flagged=flagged,
                        suspect=suspect,
                        confidence=confidence,
                    )
                )
                first = False

    def _repair(self, it: Item, reason: str, pack: int, message: str) -> None:
        """Re-send ``it`` in a smaller prompt; at one per prompt, retry up to ``max_attempts``."""
        if it.abandoned:
            self._resolve(it, None, "cancelled", "the caller went away")
            return
        if pack == 1:
            it.attempts += 1
            # damaged placeholders get sampled retries on top (each one a fresh chance)
            if it.attempts >= self.max_attempts + (self.placeholder_retries if reason == "placeholder" else 0):
                self.stats.record_flagged_slot(reason, resent=False)
                code = {"engine_error": "engine_error", "placeholder": "placeholder_damaged"}.get(
                    reason, "unparseable_output"
                )
                self._resolve(it, None, code, f"no usable translation after {it.attempts} attempts ({message})")
                return
        if pack == 1 and reason != "engine_error":
            # alone in its prompt already: the same greedy prompt would give the same output again
            it.sampled = True
        self.stats.record_flagged_slot(reason, resent=True)
        it.usage = it.usage + EngineUsage(resent=1)
        it.max_pack = max(1, min(it.max_pack, pack) // 2)
        queue = self._queue if it.priority <= 0 else self._job_queue
        queue.appendleft(it)  # repairs go first; they keep their window
        self.stats.set_queue_depth(self._queued)
        self._wakeup.set()
