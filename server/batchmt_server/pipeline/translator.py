"""A translate request end to end, from its prepared entries (checked and cut into segments at the edge:
protocol/validation.py): look at each text's language, admit, queue, wait, reassemble in order."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..auth.admission import Admit, Refund, charge_units
from ..glossaries.terms import mask_terms
from ..prompting.steer import Steer
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
from ..protocol.validation import LANGUAGE_PAIRS, check_source_languages, mismatch_message, prepare_request
from ..settings import Settings
from ..telemetry.cost import EngineUsage, Prices
from ..telemetry.stats import Stats
from ..text.documents import PreparedEntry
from ..text.langid import MIN_SCORE, SAMPLE_CHARS, detect_language
from ..text.placeholders import check_masks
from .batcher import Batcher, Outcome, QueueFull
from .ensemble import Ensemble, EnsembleConfig
from .memory import ANONYMOUS_SCOPE, MemoryHit, TranslationMemory
from .spare_capacity import SpareCapacity

if TYPE_CHECKING:  # pragma: no cover
    from ..glossaries.serving import GlossaryServing, LoadedGlossary

__all__ = ["Translator", "LANGUAGE_PAIRS", "signature", "pack_cap"]

log = logging.getLogger("batchmt.translator")


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


def _unmask(text: str, back: dict[str, str]) -> str:
    """A translation with the glossary's masks replaced by their target terms (a lost mask was repaired or failed
    by the batcher's mask check before this)."""
    for mask, target in back.items():
        text = text.replace(mask, target)
    return text


@dataclass
class _Progress:
    """How far one request got, for its stats (:meth:`Translator._record`)."""

    waiting: bool = False  # its sentences are with the batcher or the ensemble (a cancel now counts as cancelled)
    dead: int = 0  # its segments lost with the engine


@dataclass(frozen=True)
class _SteerPlan:
    """A request's glossary and formality, per engine text (steer.py): the steers, the mask -> target term maps of
    glossary method "mask", and what the signature (and the memory key) add."""

    steers: list[Steer] | None = None
    unmask: list[dict[str, str]] | None = None
    signature: str = ""


def _retrieve(fut: asyncio.Future) -> None:
    """Consume a cancelled gather's outcome (a caller that went away has nobody left to read it)."""
    if not fut.cancelled():
        fut.exception()


def _language_fields(entry: PreparedEntry, source_lang: str) -> dict[str, Any]:
    """A Translation's ``detected_source_lang`` (when the check was sure) and, for a text in another language than
    ``source_lang``, its ``source_lang_mismatch`` warning."""
    found = entry.language if entry.language is not None and entry.language.score >= MIN_SCORE else None
    if found is None:
        return {}
    if not found.differs_from(source_lang):
        return {"detected_source_lang": found.lang}
    message = f"{mismatch_message(found, source_lang)}: it was translated as {source_lang}"
    return {
        "detected_source_lang": found.lang,
        "warnings": [TranslationError(code="source_lang_mismatch", message=message)],
    }


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
        glossaries: GlossaryServing | None = None,
    ) -> None:
        self.batcher, self.stats, self.settings = batcher, stats, settings
        self.glossaries = glossaries  # resolves a request's glossary_id (None: no store, glossaries unavailable)
        #: a segment missing a glossary term is re-sent once, then suspect (off: benchmarks measure hints alone)
        self.glossary_check = True
        self.model = model
        self.signature = signature(template, model, settings, calibrated_pack_limit)
        self.calibrated_pack_limit = calibrated_pack_limit
        self.ensemble = ensemble
        self.prices = prices or Prices.from_settings(settings)
        self.memory = memory  # the persistent translation memory (the store); None: off
        self._ids = itertools.count(1)
        self._ensemble_load = 0  # sentence-rounds of interactive balanced/best requests in flight (admission)
        self._job_ensemble_load = 0  # the same for batch-job lines: they never count against interactive callers
        #: batch-job ensemble rounds (they go to the engine beside the batcher) run in the capacity interactive work
        #: leaves: the one spare-capacity controller, in sentence-rounds, on the interactive load
        self.job_capacity = SpareCapacity(
            settings.max_queue_sentences, pressure=self._interactive_load, halve_every_s=0.1, grow_every_s=0.25
        )

    def _interactive_load(self) -> int:
        """Interactive sentences queued or in flight, and interactive ensemble sentence-rounds (job back-pressure)."""
        return self.batcher.interactive_active + self._ensemble_load

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

    @staticmethod
    def languages(req: TranslateRequest, prepared: list[PreparedEntry]) -> list[PreparedEntry]:
        """Each entry with its source language when ``source_lang_check`` asks (one look per entry, not per
        segment); ``source_lang_mismatch`` (422) under ``source_lang_check: "strict"``."""
        if req.source_lang_check != "off":
            prepared = [
                replace(entry, language=detect_language(entry.words(text, SAMPLE_CHARS)))
                for entry, text in zip(prepared, req.entries)
            ]
        check_source_languages(req, [entry.language for entry in prepared])
        return prepared

    async def translate(
        self,
        req: TranslateRequest,
        disconnected: Callable[[], Awaitable[None]] | None = None,
        *,
        priority: int = 0,
        admit: Admit | None = None,
        tenant: str | None = None,
        prepared: list[PreparedEntry] | None = None,
    ) -> TranslateResponse:
        """``prepared``: the request's entries as its door checked and prepared them
        (:func:`~..protocol.validation.prepare_request`); None: this call is the door (a batch line not prepared in
        this process, an in-process caller), and the same function checks and prepares it here.
        ``priority`` > 0: batch-job work, sent in the capacity interactive requests leave. ``admit(characters,
        sentences)`` charges the caller's key (quota, character rate) once the request is valid and fits; it
        raises :class:`APIError` to refuse, and returns a refund, awaited when the request is then refused
        (``queue_full``) or fails for the engine (``engine_unavailable``). An ensemble quality is charged its rounds
        times its characters (:func:`charge_units`). ``tenant``: the caller's key id; the translation memory is
        that key's alone (a hit on another tenant's entry would tell that it translated the sentence).

        The request's stats are recorded here, once, from how it ended (:meth:`_record`)."""
        t0 = time.monotonic()
        progress = _Progress()
        try:
            response = await self._translate(req, disconnected, priority, admit, tenant, progress, prepared)
        except (APIError, asyncio.CancelledError) as exc:
            self._record(exc, req, progress, t0)
            raise
        self._record(response, req, progress, t0)
        return response

    def _record(
        self, result: TranslateResponse | BaseException, req: TranslateRequest, progress: _Progress, t0: float
    ) -> None:
        """One request's stats from its outcome: answered (``ok`` / ``partial`` / ``failed`` by its texts, with its
        texts, characters and memory hits), refused before any engine work (``rejected``), lost with the engine
        (``failed``, with its lost segments) or given up by its caller while with the engine (``cancelled``)."""
        st = self.stats
        if isinstance(result, TranslateResponse):
            failed = sum(t.status == "failed" for t in result.translations)
            st.record_sentences("translated", len(result.translations) - failed, characters=result.usage.characters)
            if failed:
                st.record_sentences("failed", failed)
            for _ in range(result.usage.memory_hits):
                st.record_reuse("memory")
            outcome = "ok" if not failed else ("failed" if failed == len(result.translations) else "partial")
            st.record_request(outcome, time.monotonic() - t0)
        elif isinstance(result, APIError) and result.code == "engine_unavailable":
            st.record_request("failed", time.monotonic() - t0)
            st.record_sentences("failed", progress.dead)
        elif isinstance(result, APIError):
            st.record_request("rejected")
        elif progress.waiting:  # cancelled while its sentences were with the engine
            st.record_request("cancelled")
            st.record_sentences("cancelled", len(req.entries))

    async def _translate(
        self,
        req: TranslateRequest,
        disconnected: Callable[[], Awaitable[None]] | None,
        priority: int,
        admit: Admit | None,
        tenant: str | None,
        progress: _Progress,
        prepared: list[PreparedEntry] | None,
    ) -> TranslateResponse:
        """Prepared, admitted (charged), run; a charge is refunded when the work is then refused or lost."""
        # Each entry was cut into segments (sentences; segmenter.py) whose placeholders and inline tags are
        # masked (placeholders.py, markup.py); every segment travels through the batcher like any sentence
        # and the entry is put back together with its layout (documents.py).
        if prepared is None:
            prepared = await prepare_request(req, self.settings)
        prepared = self.languages(req, prepared)
        texts: list[str] = [t for entry in prepared for t in entry.engine_texts]
        glossary = await self._glossary(req, tenant)  # 404 for an unknown or another key's, before any work
        texts, steers, unmask = self._steer(req, texts, glossary)
        steer = _SteerPlan(steers, unmask, self._steer_signature(req, glossary))
        rid = next(self._ids)
        chars = sum(len(t) for t in req.entries)
        config = self.ensemble_config(req.quality)
        rounds = config.rounds if config is not None else 1
        # one-pass requests feed the batcher in windows (a long document never needs the whole queue)
        self._check_capacity(len(texts) if config is not None else len(self._windows(texts)[0]), rounds, priority)
        refund: Refund | None = await admit(*charge_units(req.entries, rounds)) if admit is not None else None
        try:
            return await self._run(
                req, prepared, texts, rid, chars, config, disconnected, priority, progress, tenant, steer
            )
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
        progress: _Progress,
        tenant: str | None = None,
        steer: _SteerPlan | None = None,
    ) -> TranslateResponse:
        """The segments the translation memory does not answer go to the engine (one pass or the ensemble); the
        delivered ones are remembered; the answer is put together from both."""
        steer = steer or _SteerPlan()
        steers = steer.steers
        # the persistent translation memory, under the signature of what this quality runs (with the glossary's
        # id@version and the formality: a "du" answer is never served for "Sie")
        sig = self.signature_for(req.quality) + steer.signature
        # each key its own memory (its scope): memory_hits never reveals another tenant's sentences
        scope = tenant if tenant is not None else ANONYMOUS_SCOPE
        memory = self.memory if self.memory is not None and self.memory.enabled and req.translation_memory else None
        remembered = await self._recall(memory, scope, sig, texts, steers) if memory is not None else {}
        todo = [k for k, t in enumerate(texts) if t not in remembered]
        fresh: list[Outcome] = []
        progress.waiting = True
        if todo:
            some = [texts[k] for k in todo]
            their = [steers[k] for k in todo] if steers is not None else None
            if config is not None:
                fresh = await self._ensemble(some, rid, config, disconnected, priority, tenant=tenant, steers=their)
            else:
                fresh = await self._one_pass(
                    some, rid, disconnected, priority, confidence=req.confidence, tenant=tenant, steers=their
                )
        progress.waiting = False
        outcomes = [
            Outcome(remembered[t].target, from_memory=remembered[t].origin) if t in remembered else None for t in texts
        ]
        for k, o in zip(todo, fresh):
            outcomes[k] = o
        progress.dead = sum(o.error_code == "engine_dead" for o in fresh)
        if progress.dead:  # the engine died under this request: a retryable 503 (a restarted gateway or a replica can)
            raise APIError(
                503,
                "engine_unavailable",
                "the engine died while this request was in flight; retry it (this gateway restarts)",
                headers={"Retry-After": "5"},
            )
        if memory is not None:  # delivered, unflagged translations only
            keep = [(texts[k], o.text) for k, o in zip(todo, fresh) if o.text is not None and not o.flagged]
            try:
                await memory.remember(scope, sig, keep)
            except Exception:  # the answer is delivered anyway; the memory is an optimisation
                log.exception("could not store %d translations in the translation memory", len(keep))
        if steer.unmask is not None:  # glossary method "mask": the target terms in place of their masks
            back = steer.unmask
            outcomes = [
                o if o is None or o.text is None or not back[k] else replace(o, text=_unmask(o.text, back[k]))
                for k, o in enumerate(outcomes)
            ]
        return self._response(req, prepared, outcomes, chars, config, steer, memory_hits=len(texts) - len(todo))

    @staticmethod
    async def _recall(
        memory: TranslationMemory, scope: str, sig: str, texts: list[str], steers: list[Steer] | None
    ) -> dict[str, MemoryHit]:
        """The memory's answers for these texts whose protected spans are intact and, when the request steers, that
        pass its check (a human entry answers under every signature)."""
        remembered = await memory.lookup(scope, sig, texts)
        remembered = {t: v for t, v in remembered.items() if check_masks(t, v.target) is None}
        if steers is not None:
            steer_of = {t: steers[k] for k, t in enumerate(texts)}
            remembered = {t: v for t, v in remembered.items() if steer_of[t].check(v.target) is None}
        return remembered

    def _response(
        self,
        req: TranslateRequest,
        prepared: list[PreparedEntry],
        outcomes: list[Outcome | None],
        chars: int,
        config: EnsembleConfig | None,
        steer: _SteerPlan,
        memory_hits: int,
    ) -> TranslateResponse:
        """The answer: each entry put together from its segments' outcomes, and the usage and cost they add up to."""
        translations: list[Translation] = []
        k = 0
        for entry in prepared:
            translations.append(self._assemble(entry, outcomes[k : k + entry.segments], req.source_lang))
            k += entry.segments
        total = EngineUsage.total([o.usage for o in outcomes if o is not None])
        human = sum(o.from_memory == "human" for o in outcomes if o is not None)
        n_entries = len(req.entries)
        return TranslateResponse(
            id=f"tr-{secrets.token_hex(6)}",
            model=self.model,
            translations=translations,
            # a human entry of the translation memory decided some of the output: the signature says so
            signature=(self.signature_for(req.quality) if config is not None else self.signature)
            + steer.signature
            + ("|tm:human" if human else ""),
            usage=Usage(
                texts=n_entries,
                sentences=n_entries,
                segments=len(outcomes),
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
                memory_hits=memory_hits,
                human_memory_hits=human,
            ),
        )

    @staticmethod
    def _assemble(entry: PreparedEntry, outcomes: list[Outcome | None], source_lang: str = "en") -> Translation:
        """One entry's Translation from its segments' outcomes: failed (or damaged) segments stay in the source
        language in their place ('partial'); none translated is 'failed'. A text found in another language than
        ``source_lang`` is 'suspect' (when otherwise 'ok') with a ``source_lang_mismatch`` warning."""
        checked = _language_fields(entry, source_lang)
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
                status="suspect" if suspects or checked.get("warnings") else "ok",
                segments=n,
                suspect_segments=suspects,
                confidence=confidence,
                memory=memory,
                **checked,
            )
        error = TranslationError(code=failures[0].code, message=failures[0].message)
        if len(failures) == n:
            return Translation(text=None, status="failed", error=error, segments=n, failed_segments=failures, **checked)
        return Translation(
            text=text,
            status="partial",
            error=error,
            segments=n,
            failed_segments=failures,
            suspect_segments=suspects,
            memory=memory,
            **checked,
        )

    async def _glossary(self, req: TranslateRequest, tenant: str | None) -> LoadedGlossary | None:
        """The request's glossary for its caller (404 unknown or another key's) before any work."""
        if req.glossary_id is None:
            return None
        if self.glossaries is None:
            raise APIError(404, "glossary_not_found", "this gateway keeps no glossaries", param="glossary_id")
        return await self.glossaries.resolve(req.glossary_id, tenant, req.source_lang, req.target_lang)

    def _steer(
        self, req: TranslateRequest, texts: list[str], glossary: LoadedGlossary | None
    ) -> tuple[list[str], list[Steer] | None, list[dict[str, str]] | None]:
        """Each engine text's steer (formality, glossary hints and required terms); with the glossary method
        'mask', the texts with their terms masked and, per text, mask -> target term."""
        if glossary is None and req.formality == "default":
            return texts, None, None
        method = self.settings.glossary_method
        steers: list[Steer] = []
        unmask: list[dict[str, str]] | None = [] if glossary is not None and method == "mask" else None
        out = []
        for text in texts:
            matches = glossary.index.find(text) if glossary is not None else []
            pairs = tuple(dict.fromkeys((m.source, m.target) for m in matches))
            if unmask is not None:
                text, back = mask_terms(text, matches)
                unmask.append(back)
                pairs = ()
            out.append(text)
            steers.append(
                Steer(
                    formality=req.formality,
                    hints=pairs if method == "hints" else (),
                    required=tuple(dict.fromkeys(t for _, t in pairs)) if self.glossary_check else (),
                )
            )
        return out, steers, unmask

    def _steer_signature(self, req: TranslateRequest, glossary: LoadedGlossary | None) -> str:
        """What the glossary and the formality add to the signature (and so to the memory key)."""
        out = ""
        if glossary is not None:
            out += f"|glossary:{glossary.ref}|gmethod:{self.settings.glossary_method}"
        if req.formality != "default":
            out += f"|formality:{req.formality}"
        return out

    def _check_capacity(self, lines: int, rounds: int, priority: int = 0) -> None:
        """A request that can never fit the queue is a 413 (not a 429 forever); ensemble work (``rounds`` > 1)
        counts ``lines * rounds`` against the same queue cap as the one-pass path, and one-pass requests count the
        interactive ensemble work in flight. Batch-job work (``priority`` > 0) never counts against interactive
        callers: its ensemble rounds are admitted within :attr:`job_capacity` (its one-pass sentences within the
        batcher's)."""
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
        if priority > 0:
            self._check_spare(need, rounds)
            return
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

    def _check_spare(self, need: int, rounds: int) -> None:
        """A batch-job line's ensemble rounds fit the spare capacity (the first always runs: jobs never starve);
        else ``429 queue_full``, and the job worker gives the line back and backs off."""
        if rounds == 1 or not self._job_ensemble_load:
            return
        cap = self.job_capacity.current()
        if self._job_ensemble_load + need > cap:
            retry = self.batcher.retry_after()
            raise APIError(
                429,
                "queue_full",
                f"the spare capacity for batch-job ensemble rounds ({cap} sentence-rounds) is in use; "
                f"retry after {retry:.0f}s",
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
        priority: int = 0,
        *,
        confidence: bool = False,
        tenant: str | None = None,
        steers: list[Steer] | None = None,
    ) -> list[Outcome]:
        """quality 'fast': every segment through the batcher once (packed with other callers' sentences);
        ``confidence``: ask the engine for the tokens' log-probabilities (each outcome's confidence)."""
        out: list[Outcome] = []
        deadline = time.monotonic() + self.settings.request_timeout_s
        start = 0
        for n, window in enumerate(self._windows(texts)):
            window_steers: list[Steer | None] | None = (
                list(steers[start : start + len(window)]) if steers is not None else None
            )
            start += len(window)
            while True:
                try:
                    futures = self.batcher.submit(
                        window, rid, priority=priority, logprobs=confidence, tenant=tenant, steers=window_steers
                    )
                    break
                except QueueFull as exc:
                    if n == 0:  # nothing accepted yet: the caller retries
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
        steers: list[Steer] | None = None,
    ) -> list[Outcome]:
        """quality 'balanced'/'best': permutation rounds with early stopping (ensemble.py); a line left
        without any valid candidate, or whose choice fails its steer's check (a glossary term, the register),
        goes through the batcher once more (which re-sends or flags it), so nothing is lost."""
        assert self.ensemble is not None
        with self._ensemble_work(len(texts) * config.rounds, job=priority > 0):
            task = asyncio.ensure_future(self.ensemble.run(texts, config, rid, priority, steers))
            (run,) = await self._wait([task], disconnected)  # cancels the rounds on disconnect or timeout
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
        missing = [
            k
            for k, o in enumerate(outcomes)
            if o.text is None
            or check_masks(texts[k], o.text) is not None
            or (steers is not None and steers[k].check(o.text) is not None)
        ]
        if missing:
            await self._fall_back(texts, outcomes, missing, rid, disconnected, priority, tenant, steers)
        return outcomes

    async def _fall_back(
        self,
        texts: list[str],
        outcomes: list[Outcome],
        missing: list[int],
        rid: int,
        disconnected: Callable[[], Awaitable[None]] | None,
        priority: int,
        tenant: str | None,
        steers: list[Steer] | None,
    ) -> None:
        """The ensemble's ``missing`` lines through the batcher once more, their outcomes replaced in place (the
        rounds' cost stays on the sentence); ``queue_full`` in their slots when the queue cannot take them."""
        try:
            futures = self.batcher.submit(
                [texts[k] for k in missing],
                rid,
                priority=priority,
                tenant=tenant,
                steers=[steers[k] for k in missing] if steers is not None else None,
            )
        except QueueFull:
            for k in missing:
                outcomes[k] = replace(
                    outcomes[k],
                    error_code="queue_full",
                    error_message="no valid candidate in the ensemble rounds, and the queue was full for the fallback",
                )
            return
        try:
            fallback = await self._wait(futures, disconnected)
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            raise
        for k, o in zip(missing, fallback):
            outcomes[k] = replace(o, usage=o.usage + outcomes[k].usage + EngineUsage(resent=1))

    @contextmanager
    def _ensemble_work(self, load: int, *, job: bool) -> Iterator[None]:
        """``load`` sentence-rounds in flight, counted where admission looks: interactive, or batch-job work."""
        if job:
            self._job_ensemble_load += load
        else:
            self._ensemble_load += load
        try:
            yield
        finally:
            if job:
                self._job_ensemble_load -= load
            else:
                self._ensemble_load -= load

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
