"""A translate request end to end: validate, cut each text into segments, queue, wait, reassemble in order."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from .. import __version__
from ..auth.admission import charge_units
from ..prompting.template import Template
from ..protocol.errors import APIError
from ..protocol.schemas import (
    FailedSegment,
    SuspectSegment,
    TranslateRequest,
    TranslateResponse,
    Translation,
    TranslationError,
    Usage,
)
from ..protocol.validation import LANGUAGE_PAIRS, markup_error, validate_request
from ..settings import Settings
from ..telemetry.cost import Prices
from ..telemetry.stats import Stats
from ..telemetry.usage import EngineUsage
from ..text.documents import PreparedEntry
from ..text.documents import prepare as prepare_entry
from ..text.markup import MarkupError
from ..text.placeholders import check_masks
from .batcher import Batcher, Outcome, QueueFull
from .ensemble import Ensemble, EnsembleConfig
from .memory import ANONYMOUS_SCOPE, TranslationMemory

__all__ = ["Translator", "LANGUAGE_PAIRS", "signature", "pack_cap"]

log = logging.getLogger("batchmt.translator")


#: gives back what an admission charged (work refused or failed before the engine ran it)
Refund = Callable[[], Awaitable[None]]
#: ``admit(characters, sentences)``: charges the caller's key, raises :class:`APIError` to refuse
Admit = Callable[[int, int], Awaitable[Refund | None]]


def pack_cap(settings: Settings, calibrated_pack_limit: int | None) -> int:
    """The pack size cap in force: the setting, never beyond the calibrated limit (when there is one)."""
    return min(settings.max_sentences_per_prompt, calibrated_pack_limit or settings.max_sentences_per_prompt)


def signature(template: Template, model: str, settings: Settings, calibrated_pack_limit: int | None = None) -> str:
    """sacrebleu-style: everything that decides the output, in one line. ``pack`` is the pack size cap
    in force; ``cal`` the calibrated limit behind it (``off`` when calibration is off)."""
    pack = pack_cap(settings, calibrated_pack_limit)
    return (
        f"tmpl:{template.ref}|form:{template.form}|model:{model}|pack:{pack}|cal:{calibrated_pack_limit or 'off'}"
        f"|policy:{settings.pack_policy}"
        f"|temp:{settings.temperature:g}|loop:{'on' if settings.loop_stop else 'off'}|batchmt:{__version__}"
    )


def _retrieve(fut: asyncio.Future) -> None:
    """Consume a cancelled gather's outcome (a caller that went away has nobody left to read it)."""
    if not fut.cancelled():
        fut.exception()


class Translator:
    def __init__(
        self,
        batcher: Batcher,
        stats: Stats,
        settings: Settings,
        model: str,
        template: Template,
        calibrated_pack_limit: int | None = None,
        ensemble: Ensemble | None = None,
        prices: Prices | None = None,
        memory: TranslationMemory | None = None,
    ) -> None:
        self.batcher, self.stats, self.settings = batcher, stats, settings
        self.model = model
        self.signature = signature(template, model, settings, calibrated_pack_limit)
        self.calibrated_pack_limit = calibrated_pack_limit
        self.ensemble = ensemble
        self.prices = prices or Prices.from_settings(settings)
        self.memory = memory  # the persistent translation memory (the store); None: off
        self._ids = itertools.count(1)
        self._ensemble_load = 0  # sentence-rounds of quality balanced/best requests in flight (admission)

    def ensemble_config(self, quality: str) -> EnsembleConfig | None:
        """The ensemble a quality level runs (None: the one-pass batcher path)."""
        s = self.settings
        rounds = {"balanced": s.ensemble_rounds_balanced, "best": s.ensemble_rounds_best}.get(quality)
        if self.ensemble is None or rounds is None:
            return None
        pack = s.ensemble_pack or pack_cap(s, self.calibrated_pack_limit)
        return EnsembleConfig(
            rounds=rounds,
            pack=pack,
            early_stopping=s.ensemble_early_stopping,
            agree=s.ensemble_agreement,
            confidence=s.ensemble_confidence,
            temperature=s.ensemble_temperature,
            weighted=s.ensemble_weighted,
            seed=s.ensemble_seed,
        )

    def signature_for(self, quality: str) -> str:
        """The signature of what a request of this quality runs: one pass, or the ensemble's knobs too."""
        cfg = self.ensemble_config(quality)
        return self.signature if cfg is None else f"{self.signature}|quality:{quality}|ens:{cfg.describe()}"

    def validate(self, req: TranslateRequest) -> None:
        validate_request(req, self.settings)

    def prepare(self, req: TranslateRequest) -> list[PreparedEntry]:
        """Every entry cut into protected segments (after ``validate``)."""
        s, name = self.settings, req.entries_field
        out = []
        for i, text in enumerate(req.entries):
            try:
                out.append(
                    prepare_entry(
                        text, req.split_sentences, s.max_sentence_chars, req.preserve_placeholders, req.tag_handling
                    )
                )
            except MarkupError as exc:
                raise markup_error(name, i, exc) from None
        return out

    async def translate(
        self,
        req: TranslateRequest,
        disconnected: Callable[[], Awaitable[None]] | None = None,
        *,
        priority: int = 0,
        admit: Admit | None = None,
        tenant: str | None = None,
    ) -> TranslateResponse:
        """``priority`` > 0: batch-job work, sent in the capacity interactive requests leave. ``admit(characters,
        sentences)`` charges the caller's key (quota, character rate) once the request is valid and fits; it
        raises :class:`APIError` to refuse, and returns a refund, awaited when the request is then refused
        (``queue_full``) or fails for the engine (``engine_unavailable``). An ensemble quality is charged its rounds
        times its characters (:func:`charge_units`). ``tenant``: the caller's key id; the translation memory is
        that key's alone (a hit on another tenant's entry would tell that it translated the sentence)."""
        t0 = time.monotonic()
        try:
            self.validate(req)
            # Each entry is cut into segments (sentences; segmenter.py) whose placeholders and inline tags are
            # masked (placeholders.py, markup.py); every segment travels through the batcher like any sentence
            # and the entry is put back together with its layout (documents.py).
            big = sum(map(len, req.entries)) > 50_000  # ~15 ms per 50k characters: off the event loop
            prepared = await asyncio.to_thread(self.prepare, req) if big else self.prepare(req)
        except APIError:
            self.stats.record_request("rejected")
            raise
        texts: list[str] = [t for entry in prepared for t in entry.engine_texts]
        rid = next(self._ids)
        chars = sum(len(t) for t in req.entries)
        config = self.ensemble_config(req.quality)
        rounds = config.rounds if config is not None else 1
        refund: Refund | None = None
        try:
            # one-pass requests feed the batcher in windows (a long document never needs the whole queue)
            self._check_capacity(len(texts) if config is not None else len(self._windows(texts)[0]), rounds)
            if admit is not None:
                refund = await admit(*charge_units(req.entries, rounds))
        except APIError:
            self.stats.record_request("rejected")
            raise
        try:
            return await self._run(req, prepared, texts, rid, chars, config, disconnected, priority, t0, tenant)
        except APIError as exc:
            if refund is not None and exc.code in ("queue_full", "engine_unavailable"):
                await refund()  # refused, or lost with the engine: nothing was delivered, nothing is charged
            raise

    async def _run(
        self,
        req: TranslateRequest,
        prepared: list[PreparedEntry],
        texts: list[str],
        rid: int,
        chars: int,
        config: EnsembleConfig | None,
        disconnected: Callable[[], Awaitable[None]] | None,
        priority: int,
        t0: float,
        tenant: str | None = None,
    ) -> TranslateResponse:
        n_entries = len(req.entries)
        # the persistent translation memory, under the signature of what this quality runs
        sig = self.signature_for(req.quality)
        # each key its own memory (its scope): memory_hits never reveals another tenant's sentences
        scope = tenant if tenant is not None else ANONYMOUS_SCOPE
        use_memory = self.memory is not None and self.memory.enabled and req.translation_memory
        remembered = await self.memory.lookup(scope, sig, texts) if use_memory and self.memory is not None else {}
        remembered = {t: v for t, v in remembered.items() if check_masks(t, v.target) is None}
        todo = [k for k, t in enumerate(texts) if t not in remembered]
        fresh: list[Outcome] = []
        if todo and config is not None:
            try:
                fresh = await self._ensemble(
                    [texts[k] for k in todo], rid, config, disconnected, priority, tenant=tenant
                )
            except asyncio.CancelledError:
                self.stats.record_request("cancelled")
                self.stats.record_sentences("cancelled", n_entries)
                raise
        elif todo:
            fresh = await self._one_pass(
                [texts[k] for k in todo],
                rid,
                disconnected,
                n_entries,
                priority,
                confidence=req.confidence,
                tenant=tenant,
            )
        outcomes = [
            Outcome(remembered[t].target, from_memory=remembered[t].origin) if t in remembered else None for t in texts
        ]
        for k, o in zip(todo, fresh):
            outcomes[k] = o
        dead = sum(o.error_code == "engine_dead" for o in fresh)
        if dead:  # the engine died under this request: a retryable 503 (a restarted gateway or a replica can do it)
            self.stats.record_request("failed", time.monotonic() - t0)
            self.stats.record_sentences("failed", dead)
            raise APIError(
                503,
                "engine_unavailable",
                "the engine died while this request was in flight; retry it (this gateway restarts)",
                headers={"Retry-After": "5"},
            )
        if remembered:
            for _ in range(len(texts) - len(todo)):
                self.stats.record_reuse("memory")
        if use_memory and self.memory is not None:  # delivered, unflagged translations only
            keep = [(texts[k], o.text) for k, o in zip(todo, fresh) if o.text is not None and not o.flagged]
            try:
                await self.memory.remember(scope, sig, keep)
            except Exception:  # the answer is delivered anyway; the memory is an optimisation
                log.exception("could not store %d translations in the translation memory", len(keep))
        translations: list[Translation] = []
        spent: list[EngineUsage] = [o.usage for o in outcomes if o is not None]
        k = 0
        for entry in prepared:
            mine = outcomes[k : k + entry.segments]
            k += entry.segments
            translations.append(self._assemble(entry, mine))
        total = EngineUsage.total(spent)
        failed = sum(t.status == "failed" for t in translations)
        self.stats.record_sentences("translated", len(translations) - failed, characters=chars)
        if failed:
            self.stats.record_sentences("failed", failed)
        outcome = "ok" if not failed else ("failed" if failed == len(translations) else "partial")
        self.stats.record_request(outcome, time.monotonic() - t0)
        human = sum(o.from_memory == "human" for o in outcomes if o is not None)
        return TranslateResponse(
            id=f"tr-{secrets.token_hex(6)}",
            model=self.model,
            translations=translations,
            # a human entry of the translation memory decided some of the output: the signature says so
            signature=(self.signature_for(req.quality) if config is not None else self.signature)
            + ("|tm:human" if human else ""),
            usage=Usage(
                texts=n_entries,
                sentences=n_entries,
                segments=len(texts),
                characters=chars,
                prompt_tokens=round(total.prompt_tokens),
                cached_prompt_tokens=round(total.cached_prompt_tokens),
                completion_tokens=round(total.completion_tokens),
                engine_prompts=round(total.engine_prompts, 3),
                retries=total.resent,
                cost=self.prices.cost(
                    total.prompt_tokens, total.cached_prompt_tokens, total.completion_tokens, total.engine_seconds
                ),
                baseline_cost=self.prices.baseline_cost(
                    total.baseline_prompt_tokens, total.baseline_completion_tokens, total.baseline_engine_seconds
                ),
                currency=self.prices.currency,
                memory_hits=len(texts) - len(todo),
                human_memory_hits=human,
            ),
        )

    @staticmethod
    def _assemble(entry: PreparedEntry, outcomes: list[Outcome | None]) -> Translation:
        """One entry's Translation from its segments' outcomes: failed (or damaged) segments stay in the source
        language in their place ('partial'); none translated is 'failed'."""
        text, kept = entry.assemble([o.text if o is not None else None for o in outcomes])
        failures = []
        for i in kept:
            o = outcomes[i]
            if o is not None and o.text is None:
                failures.append(
                    FailedSegment(index=i, code=o.error_code or "failed", message=o.error_message or "failed")
                )
            else:  # refused by the last check (a batcher-verified slot never gets here)
                failures.append(
                    FailedSegment(
                        index=i,
                        code="placeholder_damaged",
                        message="the translation lost, doubled or reordered a protected span",
                    )
                )
        n = entry.segments
        suspects = [
            SuspectSegment(index=i, reason=o.suspect)
            for i, o in enumerate(outcomes)
            if o is not None and o.suspect is not None and i not in kept
        ]
        origins = {o.from_memory for o in outcomes if o is not None}
        memory = "human" if "human" in origins else ("model" if "model" in origins else None)
        known = [o.confidence for i, o in enumerate(outcomes) if o is not None and i not in kept]
        confidence = min(known) if known and all(c is not None for c in known) else None  # type: ignore[type-var]
        if not failures:
            return Translation(
                text=text,
                status="suspect" if suspects else "ok",
                segments=n,
                suspect_segments=suspects,
                confidence=confidence,
                memory=memory,
            )
        error = TranslationError(code=failures[0].code, message=failures[0].message)
        if len(failures) == n:
            return Translation(text=None, status="failed", error=error, segments=n, failed_segments=failures)
        return Translation(
            text=text,
            status="partial",
            error=error,
            segments=n,
            failed_segments=failures,
            suspect_segments=suspects,
            memory=memory,
        )

    def _check_capacity(self, lines: int, rounds: int) -> None:
        """A request that can never fit the queue is a 413 (not a 429 forever); ensemble work (``rounds`` > 1)
        counts ``lines * rounds`` against the same queue cap as the one-pass path, and one-pass requests count the
        ensemble work in flight."""
        cap = self.settings.max_queue_sentences
        need = lines * rounds
        if need > cap:
            what = f"{lines} lines to translate" + (f" x {rounds} rounds" if rounds > 1 else "")
            raise APIError(
                413,
                "request_too_large",
                f"this request has {what}; the gateway queues at most {cap}: "
                "send fewer or shorter sentences per request" + (", or a lower quality" if rounds > 1 else ""),
                param="sentences",
            )
        if rounds == 1 and not self._ensemble_load:
            return  # the batcher's own cap decides
        if self.batcher.interactive_active + self._ensemble_load + need > cap:
            retry = self.batcher.retry_after()
            raise APIError(
                429,
                "queue_full",
                f"the gateway is at capacity ({cap} sentences queued or in ensemble rounds); retry after {retry:.0f}s",
                headers={"Retry-After": str(int(retry))},
            )

    def _windows(self, texts: list[str]) -> list[list[str]]:
        """A request that fits the queue goes in at once; a longer one (a long document: thousands of
        segments) in windows of half the queue, each sent once the one before it is translated."""
        cap = self.settings.max_queue_sentences
        if len(texts) <= cap:
            return [texts]
        size = max(1, cap // 2)
        return [texts[i : i + size] for i in range(0, len(texts), size)]

    async def _one_pass(
        self,
        texts: list[str],
        rid: int,
        disconnected: Callable[[], Awaitable[None]] | None,
        n_sentences: int,
        priority: int = 0,
        *,
        confidence: bool = False,
        tenant: str | None = None,
    ) -> list[Outcome]:
        """quality 'fast': every segment through the batcher once (packed with other callers' sentences);
        ``confidence``: ask the engine for the tokens' log-probabilities (each outcome's confidence)."""
        out: list[Outcome] = []
        deadline = time.monotonic() + self.settings.request_timeout_s
        for n, window in enumerate(self._windows(texts)):
            while True:
                try:
                    futures = self.batcher.submit(window, rid, priority=priority, logprobs=confidence, tenant=tenant)
                    break
                except QueueFull as exc:
                    if n == 0:  # nothing accepted yet: the caller retries
                        self.stats.record_request("rejected")
                        raise APIError(
                            429,
                            "queue_full",
                            f"the gateway is at capacity "
                            f"({self.settings.max_queue_sentences} sentences queued); retry after "
                            f"{exc.retry_after:.0f}s",
                            headers={"Retry-After": str(int(exc.retry_after))},
                        ) from None
                    if time.monotonic() > deadline:  # accepted work is never dropped silently: it fails in its slots
                        futures = []
                        out += [
                            Outcome(
                                None,
                                "timeout",
                                f"not translated within {self.settings.request_timeout_s:g}s (queue full)",
                            )
                            for _ in window
                        ]
                        break
                    await asyncio.sleep(min(1.0, exc.retry_after))
            if not futures:
                continue
            try:
                out += await self._wait(futures, disconnected)
            except asyncio.CancelledError:
                for f in futures:
                    f.cancel()
                self.stats.record_request("cancelled")
                self.stats.record_sentences("cancelled", n_sentences)
                raise
        return out

    async def _ensemble(
        self,
        texts: list[str],
        rid: int,
        config: EnsembleConfig,
        disconnected: Callable[[], Awaitable[None]] | None,
        priority: int = 0,
        *,
        tenant: str | None = None,
    ) -> list[Outcome]:
        """quality 'balanced'/'best': permutation rounds with early stopping (ensemble.py); a line left
        without any valid candidate goes through the batcher once more, so nothing is lost."""
        assert self.ensemble is not None
        load = len(texts) * config.rounds
        self._ensemble_load += load
        try:
            task = asyncio.ensure_future(self.ensemble.run(texts, config, rid, priority))
            (run,) = await self._wait([task], disconnected)  # cancels the rounds on disconnect or timeout
        finally:
            self._ensemble_load -= load
        if isinstance(run, Outcome):  # timed out
            return [Outcome(None, run.error_code, run.error_message) for _ in texts]
        outcomes = [
            Outcome(
                res.text,
                None if res.text else "no_candidate",
                None if res.text else "no valid candidate in the ensemble rounds",
                res.usage,
                confidence=res.agreement,
            )
            for res in run.results
        ]
        # no candidate, or its placeholders damaged: the batcher (which checks and repairs them) once more
        missing = [k for k, o in enumerate(outcomes) if o.text is None or check_masks(texts[k], o.text) is not None]
        if not missing:
            return outcomes
        try:
            futures = self.batcher.submit([texts[k] for k in missing], rid, priority=priority, tenant=tenant)
        except QueueFull:
            for k in missing:
                outcomes[k] = replace(
                    outcomes[k],
                    error_code="queue_full",
                    error_message="no valid candidate in the ensemble rounds, and the queue was full for the fallback",
                )
            return outcomes
        try:
            fallback = await self._wait(futures, disconnected)
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            raise
        for k, o in zip(missing, fallback):  # the rounds' cost stays on the sentence
            outcomes[k] = replace(o, usage=o.usage + outcomes[k].usage + EngineUsage(resent=1))
        return outcomes

    async def _wait(
        self, futures: list[asyncio.Future], disconnected: Callable[[], Awaitable[None]] | None
    ) -> list[Outcome]:
        """Wait for every sentence; on timeout the unfinished ones fail in their own slots; a caller
        that went away cancels its sentences (the batcher drops them before they are sent).

        ``disconnected`` returns when the caller has gone away: it is awaited, not polled (polling
        every waiting request twice a second cost ~50 ms of CPU per sentence at 512 in flight,
        taken from the engine on a small machine)."""
        gathered = asyncio.gather(*futures)
        watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            done, _ = await asyncio.wait(
                {gathered} | ({watcher} if watcher else set()),
                timeout=self.settings.request_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if gathered in done:
                return gathered.result()
            if watcher is not None and watcher in done:
                raise asyncio.CancelledError()
        except asyncio.CancelledError:
            gathered.cancel()
            gathered.add_done_callback(_retrieve)  # no "exception was never retrieved" after a disconnect
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        out = []
        for f in futures:
            if f.done() and not f.cancelled():
                out.append(f.result())
            else:
                f.cancel()
                out.append(Outcome(None, "timeout", f"not translated within {self.settings.request_timeout_s:g}s"))
        return out
