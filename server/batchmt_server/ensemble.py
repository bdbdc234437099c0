"""BatchPrompt's Batch Permutation and Ensembling (BPE) with Self-reflection-guided EArly Stopping
(SEAS), adapted to translation.

One request's sentences are sent ``rounds`` times (odd K). Round 1 packs them in their original
order; every later round packs a fresh random permutation of the sentences still in play, so each
one sits at another position with other neighbours. Every slot is mapped back to its sentence by
index; a slot the parser flags is no candidate. A sentence's candidates are decided by
minimum-Bayes-risk selection with chrF, votes weighted by the model's own token probabilities
(see :mod:`.consensus`). A sentence leaves the rounds (SEAS) once two consecutive rounds agree and
the model was confident in both (mean token logprob of the slot's span); the others continue in
smaller batches.

One sentence per prompt (``pack=1``, or a round whose prompt would repeat one already sent):
greedy decoding would repeat itself, so later rounds sample (``temperature``, a distinct seed each),
which makes the ensemble MBR over sampled candidates.

The ensemble shares the batcher's engine-concurrency cap (its semaphore) and counts every engine
call into :class:`~batchmt_server.stats.Stats`, so cost accounting stays true. A sentence left
without a candidate after all rounds comes back with ``text=None``: the translator sends it through
the normal batcher path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
import zlib
from collections import deque
from dataclasses import dataclass, field

from .batcher import Outcome
from .consensus import Candidate, mbr_select, should_stop, span_confidence
from .engines import Engine, EngineError, GenerationParams
from .parsing import Slot
from .stats import Stats
from .template import Template

__all__ = ["Ensemble", "EnsembleConfig", "EnsembleRun", "SentenceResult", "PromptRecord", "slot_spans", "chunk"]

log = logging.getLogger("batchmt.ensemble")


@dataclass(frozen=True)
class EnsembleConfig:
    rounds: int = 5                 # K, odd
    pack: int = 8                   # sentences per prompt
    early_stopping: bool = True     # SEAS
    agree: float = 75.0             # symmetric chrF two consecutive rounds must reach to stop
    confidence: float = -0.35       # mean token logprob both of them must reach to stop
    temperature: float = 0.7        # sampling for one-sentence prompts after round 1
    weighted: bool = True           # votes weighted by exp(mean token logprob)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.rounds % 2 == 0:
            raise ValueError(f"rounds must be odd and >= 1, not {self.rounds}")
        if self.pack < 1:
            raise ValueError("pack must be >= 1")

    def describe(self) -> str:
        """What a signature records."""
        return (f"k{self.rounds},p{self.pack},es:{'on' if self.early_stopping else 'off'},agree:{self.agree:g},"
                f"conf:{self.confidence:g},samp:{self.temperature:g},vote:{'conf' if self.weighted else 'plain'}")


@dataclass
class PromptRecord:
    """One engine call of a run (what went in, what it cost)."""

    round: int
    sentences: list[int]  # indices into the request, in prompt order
    temperature: float
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    ok: bool = True
    busy_seconds: float = 0.0  # share of engine busy time (stats)
    calib: float = 1.0  # the engine's prompt tokens over our count of the prompt (HTTP engines only estimate)


@dataclass
class SentenceResult:
    text: str | None
    candidates: list[Candidate] = field(default_factory=list)
    #: every slot this sentence got, valid or not: (round, text, parser reason or None)
    slots: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    rounds: int = 0                    # rounds it took part in
    stopped_early: bool = False        # left before the last round (SEAS)
    usage: Outcome = field(default_factory=lambda: Outcome(None))
    #: this sentence's share of each round's tokens: (prompt, cached prompt, completion)
    round_tokens: list[tuple[float, float, float]] = field(default_factory=list)


@dataclass
class EnsembleRun:
    config: EnsembleConfig
    results: list[SentenceResult]
    prompts: list[PromptRecord]

    def sent_in_round(self, r: int) -> list[int]:
        """Sentence indices sent in round ``r`` (0-based), in the order they were sent."""
        return [i for p in self.prompts if p.round == r for i in p.sentences]

    @property
    def rounds_run(self) -> int:
        return 1 + max((p.round for p in self.prompts), default=-1)


def chunk(order: list[int], pack: int, tokens: list[int] | None = None, budget: int | None = None) -> list[list[int]]:
    """``order`` cut into prompts of at most ``pack`` sentences, as even as possible (9 at pack 8 is
    5 + 4, not 8 + 1), and within the token ``budget`` when one is given."""
    if not order:
        return []
    size = math.ceil(len(order) / math.ceil(len(order) / pack))
    out: list[list[int]] = []
    cur: list[int] = []
    used = 0
    for i in order:
        t = tokens[i] if tokens else 0
        if cur and (len(cur) >= size or (budget is not None and used + t > budget)):
            out.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += t
    out.append(cur)
    return out


def _label_re(label: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*{re.escape(label)}[ \t]*(\d{{1,3}})[ \t]*:[ \t]?")


def slot_spans(completion: str, n: int, template: Template) -> list[tuple[int, int] | None]:
    """Where each slot's translation lies in ``completion`` (character offsets), or None.

    The completion continues ``"<target_label> 1:"``; slot k's translation runs from after its first
    ``"<target_label> k:"`` label to the next labelled line (continuation lines included).
    """
    head = f"{template.target_label} 1:"
    full = head + completion
    tgt, src = _label_re(template.target_label), _label_re(template.source_label)
    lines: list[tuple[int, str]] = []
    pos = 0
    for line in full.split("\n"):
        lines.append((pos, line))
        pos += len(line) + 1
    labelled = [(p, line, tgt.match(line), src.match(line)) for p, line in lines]
    spans: list[tuple[int, int] | None] = [None] * n
    for j, (p, line, mt, ms) in enumerate(labelled):
        if not mt:
            continue
        k = int(mt.group(1))
        if not 1 <= k <= n or spans[k - 1] is not None:
            continue
        start = p + mt.end()
        end = p + len(line)
        for p2, line2, mt2, ms2 in labelled[j + 1:]:
            if mt2 or ms2:
                break
            end = p2 + len(line2)
        spans[k - 1] = (max(0, start - len(head)), max(0, end - len(head)))
    return spans


class Ensemble:
    def __init__(self, engine: Engine, template: Template, stats: Stats, *, slots: asyncio.Semaphore | None = None,
                 max_prompts_in_flight: int = 64, max_prompt_tokens: int = 1024, history: int = 32) -> None:
        self.engine, self.template, self.stats = engine, template, stats
        #: the engine-concurrency cap, shared with the batcher when it hands in its semaphore
        self._slots = slots or asyncio.Semaphore(max_prompts_in_flight)
        self.max_prompt_tokens = max_prompt_tokens
        #: the last runs (observability and tests: which sentences went into which round)
        self.history: deque[EnsembleRun] = deque(maxlen=history)


    async def run(self, texts: list[str], config: EnsembleConfig, request_id: int = 0) -> EnsembleRun:
        """Translate ``texts`` with ``config.rounds`` rounds; results in input order."""
        n = len(texts)
        tokens = [self.engine.count_tokens(t) for t in texts]
        results = [SentenceResult(None) for _ in range(n)]
        prompts: list[PromptRecord] = []
        run = EnsembleRun(config, results, prompts)
        self.history.append(run)
        # reproducible: the same sentences with the same settings get the same permutations and seeds
        rng = random.Random(zlib.crc32("\x1f".join(texts).encode()) ^ config.seed)
        sent: set[tuple[int, ...]] = set()
        active = list(range(n))
        for r in range(config.rounds):
            if not active:
                break
            order = list(active) if r == 0 else rng.sample(active, len(active))
            batches = chunk(order, config.pack, tokens, self.max_prompt_tokens)
            jobs = []
            for b in batches:
                # a prompt that was sent before (one sentence per prompt, or the same order again)
                # would come back identical under greedy decoding: sample it instead
                repeat = tuple(b) in sent
                sent.add(tuple(b))
                temp, seed = (config.temperature, rng.randrange(1 << 30)) if repeat else (0.0, None)
                rec = PromptRecord(r, list(b), temp)
                prompts.append(rec)
                jobs.append(self._send(texts, tokens, rec, seed, results))
            await asyncio.gather(*jobs)
            for i in active:
                results[i].rounds += 1
            stopped = 0
            if config.early_stopping and r >= 1 and r < config.rounds - 1:
                still = []
                for i in active:
                    if should_stop(self._candidate(results[i], r - 1), self._candidate(results[i], r),
                                   agree=config.agree, confidence=config.confidence):
                        results[i].stopped_early = True
                        stopped += 1
                    else:
                        still.append(i)
                active = still
            self.stats.record_ensemble_round(sentences=len(order), prompts=len(batches), early_stopped=stopped)
        for res in results:
            k = mbr_select(res.candidates, weighted=config.weighted)
            res.text = res.candidates[k].text if k is not None else None
            res.usage.text = res.text
        self._record_baseline(texts, run)
        return run

    def _record_baseline(self, texts: list[str], run: EnsembleRun) -> None:
        """Count each translated sentence as if sent alone once, without a prefix cache (cost.py)."""
        ok = [p for p in run.prompts if p.ok]
        if not ok:
            return
        computed = sum(p.prompt_tokens - p.cached_prompt_tokens + p.completion_tokens for p in ok)
        rate = sum(p.busy_seconds for p in ok) / max(1, computed)
        calib = sum(p.calib for p in ok) / len(ok)
        for text, res in zip(texts, run.results):
            if res.text is None:
                continue
            pt = calib * self.template.prompt_tokens(self.template.render([text]), self.engine.count_tokens)
            ct = sum(c for _, _, c in res.round_tokens) / max(1, len(res.round_tokens))
            u = res.usage
            u.baseline_prompt_tokens, u.baseline_completion_tokens, u.baseline_engine_seconds = pt, ct, rate * (pt + ct)
            self.stats.record_baseline(prompt_tokens=pt, completion_tokens=ct, engine_seconds=rate * (pt + ct))

    @staticmethod
    def _candidate(res: SentenceResult, r: int) -> Candidate | None:
        return next((c for c in res.candidates if c.round == r), None)

    async def _send(self, texts: list[str], tokens: list[int], rec: PromptRecord, seed: int | None,
                    results: list[SentenceResult]) -> None:
        batch = rec.sentences
        sources = [texts[i] for i in batch]
        params = GenerationParams(max_tokens=self.template.max_tokens([tokens[i] for i in batch]), temperature=rec.temperature,
                                  seed=seed, stop=self.template.stop_for(len(batch)), logprobs=True)
        prompt = self.template.render(sources)
        async with self._slots:
            self.stats.prompts_in_flight += 1
            t0 = time.monotonic()
            try:
                completion = await self.engine.generate(prompt, params)
            except EngineError as exc:
                rec.ok = False
                self.stats.record_prompt(sentences=len(batch), requests=1, ok=False, seconds=time.monotonic() - t0)
                log.warning("ensemble round %d: engine call failed for %d sentences: %s", rec.round + 1, len(batch), exc)
                for i in batch:
                    results[i].slots.append((rec.round, None, "engine_error"))
                    results[i].round_tokens.append((0.0, 0.0, 0.0))
                return
            finally:
                self.stats.prompts_in_flight -= 1
            busy = self.stats.record_prompt(
                sentences=len(batch), requests=1, ok=True, seconds=time.monotonic() - t0,
                prompt_tokens=completion.prompt_tokens, cached_prompt_tokens=completion.cached_prompt_tokens,
                completion_tokens=completion.completion_tokens)
        rec.prompt_tokens, rec.cached_prompt_tokens = completion.prompt_tokens, completion.cached_prompt_tokens
        rec.completion_tokens = completion.completion_tokens
        rec.busy_seconds = busy
        rec.calib = completion.prompt_tokens / max(1, self.template.prompt_tokens(prompt, self.engine.count_tokens))
        total = sum(tokens[i] for i in batch) or 1
        for i in batch:  # each sentence carries its share of the prompt's cost
            share = tokens[i] / total
            u = results[i].usage
            pt, cpt, ct = (share * completion.prompt_tokens, share * completion.cached_prompt_tokens,
                           share * completion.completion_tokens)
            u.prompt_tokens += pt
            u.cached_prompt_tokens += cpt
            u.completion_tokens += ct
            u.engine_prompts += 1 / len(batch)
            u.engine_seconds += share * busy
            results[i].round_tokens.append((pt, cpt, ct))
        slots: list[Slot] = self.template.parse(completion.text, sources, completion.finish_reason)
        spans = slot_spans(completion.text, len(batch), self.template)
        for i, slot, span in zip(batch, slots, spans):
            results[i].slots.append((rec.round, slot.text, slot.reason))
            if not slot.ok or not slot.text:
                self.stats.record_repair(slot.reason or "missing", retried=False)
                continue
            conf = span_confidence(completion.token_logprobs, completion.token_offsets, *span) if span else None
            results[i].candidates.append(Candidate(slot.text, conf, rec.round))
