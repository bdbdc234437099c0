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

The ensemble sends its prompts through the same :class:`~batchmt_server.pipeline.runner.PromptRunner` as the
batcher (one cap on prompts in flight, one place that records and accounts engine calls). A sentence left
without a candidate after all rounds comes back with ``text=None``: the translator sends it through
the normal batcher path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import zlib
from collections import deque
from dataclasses import dataclass, field

from ..engines import EngineError
from ..prompting.steer import Steer
from ..telemetry.cost import EngineUsage
from ..telemetry.stats import Stats
from .consensus import Candidate, agreement, mbr_select, should_stop, span_confidence
from .runner import PromptRunner

__all__ = ["Ensemble", "EnsembleConfig", "EnsembleRun", "EnsembleSentence", "PromptRecord", "chunk"]

log = logging.getLogger("batchmt.ensemble")


@dataclass(frozen=True)
class EnsembleConfig:
    rounds: int = 5  # K, odd
    pack: int = 8  # sentences per prompt
    early_stopping: bool = True  # SEAS
    agree: float = 75.0  # symmetric chrF two consecutive rounds must reach to stop
    confidence: float = -0.35  # mean token logprob both of them must reach to stop
    temperature: float = 0.7  # sampling for one-sentence prompts after round 1
    weighted: bool = True  # votes weighted by exp(mean token logprob)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.rounds % 2 == 0:
            raise ValueError(f"rounds must be odd and >= 1, not {self.rounds}")
        if self.pack < 1:
            raise ValueError("pack must be >= 1")

    def describe(self) -> str:
        """What a signature records."""
        return (
            f"k{self.rounds},p{self.pack},es:{'on' if self.early_stopping else 'off'},agree:{self.agree:g},"
            f"conf:{self.confidence:g},samp:{self.temperature:g},vote:{'conf' if self.weighted else 'plain'}"
        )


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
class EnsembleSentence:
    """One sentence of an ensemble run: its candidates, every slot it got, and what it cost."""

    text: str | None
    candidates: list[Candidate] = field(default_factory=list)
    #: every slot this sentence got, valid or not: (round, text, parser reason or None)
    slots: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    rounds: int = 0  # rounds it took part in
    stopped_early: bool = False  # left before the last round (SEAS)
    usage: EngineUsage = EngineUsage()
    #: 0..1: how much the other candidates agree with the chosen one (mean symmetric chrF / 100); with a single
    #: candidate, its geometric mean token probability
    agreement: float | None = None
    #: this sentence's share of each round's tokens: (prompt, cached prompt, completion)
    round_tokens: list[tuple[float, float, float]] = field(default_factory=list)


@dataclass
class EnsembleRun:
    config: EnsembleConfig
    results: list[EnsembleSentence]
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


def _agreement(candidates: list[Candidate], k: int) -> float | None:
    others = [c for i, c in enumerate(candidates) if i != k]
    if others:
        return sum(agreement(candidates[k].text, c.text) for c in others) / len(others) / 100
    conf = candidates[k].confidence
    return math.exp(conf) if conf is not None else None


class Ensemble:
    def __init__(self, runner: PromptRunner, stats: Stats, *, max_prompt_tokens: int = 1024, history: int = 32) -> None:
        self.runner, self.stats = runner, stats
        self.max_prompt_tokens = max_prompt_tokens
        #: the last runs (observability and tests: which sentences went into which round)
        self.history: deque[EnsembleRun] = deque(maxlen=history)

    async def run(
        self,
        texts: list[str],
        config: EnsembleConfig,
        request_id: int = 0,
        priority: int = 0,
        steers: list[Steer] | None = None,
    ) -> EnsembleRun:
        """Translate ``texts`` with ``config.rounds`` rounds; results in input order. ``priority`` > 0: batch-job
        work (the engine's priority scheduling runs it after interactive prompts)."""
        n = len(texts)
        tokens = [self.runner.engine.count_tokens(t) for t in texts]
        results = [EnsembleSentence(None) for _ in range(n)]
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
                jobs.append(self._send(texts, tokens, rec, seed, results, priority, steers))
            await asyncio.gather(*jobs)
            for i in active:
                results[i].rounds += 1
            stopped = 0
            if config.early_stopping and r >= 1 and r < config.rounds - 1:
                still = []
                for i in active:
                    if should_stop(
                        self._candidate(results[i], r - 1),
                        self._candidate(results[i], r),
                        agree=config.agree,
                        confidence=config.confidence,
                    ):
                        results[i].stopped_early = True
                        stopped += 1
                    else:
                        still.append(i)
                active = still
            self.stats.record_ensemble_round(sentences=len(order), prompts=len(batches), early_stopped=stopped)
        for res in results:
            k = mbr_select(res.candidates, weighted=config.weighted)
            res.text = res.candidates[k].text if k is not None else None
            if k is not None:
                res.agreement = _agreement(res.candidates, k)
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
            ct = sum(c for _, _, c in res.round_tokens) / max(1, len(res.round_tokens))
            res.usage = res.usage + self.runner.baseline(text, ct, seconds_per_token=rate, calib=calib)

    @staticmethod
    def _candidate(res: EnsembleSentence, r: int) -> Candidate | None:
        return next((c for c in res.candidates if c.round == r), None)

    async def _send(
        self,
        texts: list[str],
        tokens: list[int],
        rec: PromptRecord,
        seed: int | None,
        results: list[EnsembleSentence],
        priority: int = 0,
        steers: list[Steer] | None = None,
    ) -> None:
        batch = rec.sentences
        try:
            async with self.runner.place():
                call = await self.runner.call(
                    [texts[i] for i in batch],
                    [tokens[i] for i in batch],
                    temperature=rec.temperature,
                    seed=seed,
                    logprobs=True,
                    priority=priority,
                    steers=[steers[i] for i in batch] if steers is not None else None,
                )
        except EngineError as exc:
            rec.ok = False
            log.warning("ensemble round %d: engine call failed for %d sentences: %s", rec.round + 1, len(batch), exc)
            for i in batch:
                results[i].slots.append((rec.round, None, "engine_error"))
                results[i].round_tokens.append((0.0, 0.0, 0.0))
            return
        completion = call.completion
        rec.prompt_tokens, rec.cached_prompt_tokens = completion.prompt_tokens, completion.cached_prompt_tokens
        rec.completion_tokens = completion.completion_tokens
        rec.busy_seconds, rec.calib = call.busy_seconds, call.calib
        for i, share, slot in zip(batch, call.shares, call.slots):  # each sentence carries its share of the cost
            res = results[i]
            res.usage = res.usage + share
            res.round_tokens.append((share.prompt_tokens, share.cached_prompt_tokens, share.completion_tokens))
            res.slots.append((rec.round, slot.text, slot.reason))
            if not slot.ok or not slot.text:
                self.stats.record_flagged_slot(slot.reason or "missing", resent=False)
                continue
            conf = (
                span_confidence(completion.token_logprobs, completion.token_offsets, *slot.span) if slot.span else None
            )
            res.candidates.append(Candidate(slot.text, conf, rec.round))
