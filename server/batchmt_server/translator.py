"""A translate request end to end: validate, split into lines, queue, wait, reassemble in order."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import replace
from typing import Awaitable, Callable

from . import __version__
from .batcher import Batcher, Outcome, QueueFull
from .cost import Prices
from .ensemble import Ensemble, EnsembleConfig
from .errors import APIError
from .memory import TranslationMemory
from .schemas import TranslateRequest, TranslateResponse, Translation, TranslationError, Usage
from .settings import Settings
from .stats import Stats
from .template import Template
from .usage import EngineUsage

__all__ = ["Translator", "LANGUAGE_PAIRS", "signature", "pack_cap"]

LANGUAGE_PAIRS = (("en", "de"),)

log = logging.getLogger("batchmt.translator")


def pack_cap(settings: Settings, calibrated_pack_limit: int | None) -> int:
    """The pack size cap in force: the setting, never beyond the calibrated limit (when there is one)."""
    return min(settings.max_sentences_per_prompt, calibrated_pack_limit or settings.max_sentences_per_prompt)


def signature(template: Template, model: str, settings: Settings, calibrated_pack_limit: int | None = None) -> str:
    """sacrebleu-style: everything that decides the output, in one line. ``pack`` is the pack size cap
    in force; ``cal`` the calibrated limit behind it (``off`` when calibration is off)."""
    pack = pack_cap(settings, calibrated_pack_limit)
    return (f"tmpl:{template.ref}|form:{template.form}|model:{model}|pack:{pack}|cal:{calibrated_pack_limit or 'off'}"
            f"|policy:{settings.pack_policy}"
            f"|temp:{settings.temperature:g}|batchmt:{__version__}")


def _retrieve(fut: asyncio.Future) -> None:
    """Consume a cancelled gather's outcome (a caller that went away has nobody left to read it)."""
    if not fut.cancelled():
        fut.exception()


class Translator:
    def __init__(self, batcher: Batcher, stats: Stats, settings: Settings, model: str, template: Template,
                 calibrated_pack_limit: int | None = None, ensemble: Ensemble | None = None,
                 prices: Prices | None = None, memory: TranslationMemory | None = None) -> None:
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
        return EnsembleConfig(rounds=rounds, pack=pack, early_stopping=s.ensemble_early_stopping,
                              agree=s.ensemble_agreement, confidence=s.ensemble_confidence,
                              temperature=s.ensemble_temperature, weighted=s.ensemble_weighted, seed=s.ensemble_seed)

    def signature_for(self, quality: str) -> str:
        """The signature of what a request of this quality runs: one pass, or the ensemble's knobs too."""
        cfg = self.ensemble_config(quality)
        return self.signature if cfg is None else f"{self.signature}|quality:{quality}|ens:{cfg.describe()}"

    def validate(self, req: TranslateRequest) -> None:
        s = self.settings
        if (req.source_lang.lower(), req.target_lang.lower()) not in LANGUAGE_PAIRS:
            pairs = ", ".join(f"{a}->{b}" for a, b in LANGUAGE_PAIRS)
            raise APIError(422, "unsupported_language_pair",
                           f"{req.source_lang}->{req.target_lang} is not served; supported: {pairs}", param="target_lang")
        if not req.sentences:
            raise APIError(422, "empty_sentences", "sentences is empty: send at least one sentence", param="sentences")
        if len(req.sentences) > s.max_sentences_per_request:
            raise APIError(413, "too_many_sentences",
                           f"{len(req.sentences)} sentences in one request; the limit is {s.max_sentences_per_request}: "
                           "split the list (the Python SDK does this for you)", param="sentences")
        for i, text in enumerate(req.sentences):
            if not text.strip():
                raise APIError(422, "empty_sentence", f"sentences[{i}] is empty or whitespace only", param=f"sentences[{i}]")
            if len(text) > s.max_sentence_chars:
                raise APIError(413, "sentence_too_long",
                               f"sentences[{i}] has {len(text)} characters; the limit is {s.max_sentence_chars}",
                               param=f"sentences[{i}]")

    async def translate(self, req: TranslateRequest, disconnected: Callable[[], Awaitable[None]] | None = None, *,
                        priority: int = 0,
                        admit: Callable[[int, int], Awaitable[None]] | None = None) -> TranslateResponse:
        """``priority`` > 0: batch-job work, sent in the capacity interactive requests leave. ``admit(characters,
        sentences)`` charges the caller's key (quota, character rate) once the request is valid and fits; it
        raises :class:`APIError` to refuse. An ensemble quality is charged its rounds times its characters."""
        t0 = time.monotonic()
        try:
            self.validate(req)
        except APIError:
            self.stats.record_request("rejected")
            raise
        # A sentence with line breaks is translated line by line and put back together, so its
        # lines can never spill into a neighbour's slot. Blank lines stay blank.
        segments: list[list[int | None]] = []
        texts: list[str] = []
        for sentence in req.sentences:
            idx: list[int | None] = []
            for line in sentence.splitlines() or [sentence]:
                if line.strip():
                    idx.append(len(texts))
                    texts.append(line.strip())
                else:
                    idx.append(None)
            segments.append(idx)
        rid = next(self._ids)
        chars = sum(len(t) for t in req.sentences)
        config = self.ensemble_config(req.quality)
        rounds = config.rounds if config is not None else 1
        try:
            self._check_capacity(len(texts), rounds)
            if admit is not None:
                await admit(chars * rounds, len(req.sentences))
        except APIError:
            self.stats.record_request("rejected")
            raise
        # the persistent translation memory, under the signature of what this quality runs
        sig = self.signature_for(req.quality)
        use_memory = self.memory is not None and self.memory.enabled and req.translation_memory
        remembered = await self.memory.lookup(sig, texts) if use_memory and self.memory is not None else {}
        todo = [k for k, t in enumerate(texts) if t not in remembered]
        fresh: list[Outcome] = []
        if todo and config is not None:
            try:
                fresh = await self._ensemble([texts[k] for k in todo], rid, config, disconnected)
            except asyncio.CancelledError:
                self.stats.record_request("cancelled")
                self.stats.record_sentences("cancelled", len(req.sentences))
                raise
        elif todo:
            fresh = await self._one_pass([texts[k] for k in todo], rid, disconnected, len(req.sentences), priority)
        outcomes = [Outcome(remembered[t], memory=True) if t in remembered else None for t in texts]
        for k, o in zip(todo, fresh):
            outcomes[k] = o
        if remembered:
            for _ in range(len(texts) - len(todo)):
                self.stats.record_reuse("memory")
        if use_memory and self.memory is not None:  # delivered, unflagged translations only
            keep = [(texts[k], o.text) for k, o in zip(todo, fresh) if o.text is not None and not o.flagged]
            try:
                await self.memory.remember(sig, keep)
            except Exception:  # the answer is delivered anyway; the memory is an optimisation
                log.exception("could not store %d translations in the translation memory", len(keep))
        translations: list[Translation] = []
        spent: list[EngineUsage] = []
        for idx in segments:
            parts: list[str] = []
            error: TranslationError | None = None
            for k in idx:
                if k is None:
                    parts.append("")
                    continue
                o = outcomes[k]
                spent.append(o.usage)
                if o.text is None:
                    error = error or TranslationError(code=o.error_code or "failed", message=o.error_message or "failed")
                else:
                    parts.append(o.text)
            if error is None:
                translations.append(Translation(text="\n".join(parts), status="ok"))
            else:
                translations.append(Translation(text=None, status="failed", error=error))
        total = EngineUsage.total(spent)
        failed = sum(t.status == "failed" for t in translations)
        self.stats.record_sentences("translated", len(translations) - failed, characters=chars)
        if failed:
            self.stats.record_sentences("failed", failed)
        outcome = "ok" if not failed else ("failed" if failed == len(translations) else "partial")
        self.stats.record_request(outcome, time.monotonic() - t0)
        return TranslateResponse(
            id=f"tr-{secrets.token_hex(6)}", model=self.model, translations=translations,
            signature=self.signature_for(req.quality) if config is not None else self.signature,
            usage=Usage(sentences=len(req.sentences), characters=chars,
                        prompt_tokens=round(total.prompt_tokens), cached_prompt_tokens=round(total.cached_prompt_tokens),
                        completion_tokens=round(total.completion_tokens),
                        engine_prompts=round(total.engine_prompts, 3), retries=total.resent,
                        cost=self.prices.cost(total.prompt_tokens, total.cached_prompt_tokens,
                                              total.completion_tokens, total.engine_seconds),
                        baseline_cost=self.prices.baseline_cost(total.baseline_prompt_tokens,
                                                                total.baseline_completion_tokens,
                                                                total.baseline_engine_seconds),
                        currency=self.prices.currency))

    def _check_capacity(self, lines: int, rounds: int) -> None:
        """A request that can never fit the queue is a 413 (not a 429 forever); ensemble work (``rounds`` > 1)
        counts ``lines * rounds`` against the same queue cap as the one-pass path, and one-pass requests count the
        ensemble work in flight."""
        cap = self.settings.max_queue_sentences
        need = lines * rounds
        if need > cap:
            what = f"{lines} lines to translate" + (f" x {rounds} rounds" if rounds > 1 else "")
            raise APIError(413, "request_too_large", f"this request has {what}; the gateway queues at most {cap}: "
                           "send fewer or shorter sentences per request" + (", or a lower quality" if rounds > 1
                                                                            else ""), param="sentences")
        if rounds == 1 and not self._ensemble_load:
            return  # the batcher's own cap decides
        if self.batcher.interactive_active + self._ensemble_load + need > cap:
            retry = self.batcher.retry_after()
            raise APIError(429, "queue_full", f"the gateway is at capacity ({cap} sentences queued or in ensemble "
                           f"rounds); retry after {retry:.0f}s", headers={"Retry-After": str(int(retry))})

    async def _one_pass(self, texts: list[str], rid: int, disconnected: Callable[[], Awaitable[None]] | None,
                        n_sentences: int, priority: int = 0) -> list[Outcome]:
        """quality 'fast': every line through the batcher once (packed with other callers' sentences)."""
        try:
            futures = self.batcher.submit(texts, rid, priority=priority)
        except QueueFull as exc:
            self.stats.record_request("rejected")
            raise APIError(429, "queue_full", f"the gateway is at capacity ({self.settings.max_queue_sentences} sentences "
                           f"queued); retry after {exc.retry_after:.0f}s",
                           headers={"Retry-After": str(int(exc.retry_after))}) from None
        try:
            return await self._wait(futures, disconnected)
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            self.stats.record_request("cancelled")
            self.stats.record_sentences("cancelled", n_sentences)
            raise

    async def _ensemble(self, texts: list[str], rid: int, config: EnsembleConfig,
                        disconnected: Callable[[], Awaitable[None]] | None) -> list[Outcome]:
        """quality 'balanced'/'best': permutation rounds with early stopping (ensemble.py); a line left
        without any valid candidate goes through the batcher once more, so nothing is lost."""
        assert self.ensemble is not None
        load = len(texts) * config.rounds
        self._ensemble_load += load
        try:
            task = asyncio.ensure_future(self.ensemble.run(texts, config, rid))
            (run,) = await self._wait([task], disconnected)  # cancels the rounds on disconnect or timeout
        finally:
            self._ensemble_load -= load
        if isinstance(run, Outcome):  # timed out
            return [Outcome(None, run.error_code, run.error_message) for _ in texts]
        outcomes = [Outcome(res.text, None if res.text else "no_candidate",
                            None if res.text else "no valid candidate in the ensemble rounds", res.usage)
                    for res in run.results]
        missing = [k for k, o in enumerate(outcomes) if o.text is None]
        if not missing:
            return outcomes
        try:
            futures = self.batcher.submit([texts[k] for k in missing], rid)
        except QueueFull:
            for k in missing:
                outcomes[k] = replace(outcomes[k], error_code="queue_full", error_message="no valid candidate in the "
                                      "ensemble rounds, and the queue was full for the fallback")
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

    async def _wait(self, futures: list[asyncio.Future],
                    disconnected: Callable[[], Awaitable[None]] | None) -> list[Outcome]:
        """Wait for every sentence; on timeout the unfinished ones fail in their own slots; a caller
        that went away cancels its sentences (the batcher drops them before they are sent).

        ``disconnected`` returns when the caller has gone away: it is awaited, not polled (polling
        every waiting request twice a second cost ~50 ms of CPU per sentence at 512 in flight,
        taken from the engine on a small machine)."""
        gathered = asyncio.gather(*futures)
        watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            done, _ = await asyncio.wait({gathered} | ({watcher} if watcher else set()),
                                         timeout=self.settings.request_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
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
