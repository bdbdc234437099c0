"""What the gateway counts, recorded apart from how it is exported.

:class:`Stats` only records. Readers (``/metrics``, ``/v1/usage``, ``/dashboard/data``, cost.py) take a
:meth:`Stats.snapshot`: a frozen, consistent copy taken under the lock once.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Histogram", "HistogramSnapshot", "Stats", "StatsSnapshot", "LATENCY_BUCKETS", "PACK_BUCKETS"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
PACK_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


@dataclass(frozen=True)
class HistogramSnapshot:
    buckets: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, the last one +Inf
    sum: float
    count: int

    def cumulative(self) -> list[tuple[str, int]]:
        out, acc = [], 0
        for bound, c in zip([*map(str, map(float, self.buckets)), "+Inf"], self.counts):
            acc += c
            out.append((bound, acc))
        return out


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)  # last one is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.buckets, tuple(self.counts), self.sum, self.count)


def _frozen(counter: Counter[str]) -> Mapping[str, int]:
    return MappingProxyType(dict(counter))


@dataclass(frozen=True)
class StatsSnapshot:
    """Everything :class:`Stats` counts, at one instant (field meanings: see ``Stats.__init__``)."""

    started_at: float
    requests: Mapping[str, int]
    sentences: Mapping[str, int]
    characters: int
    request_seconds: HistogramSnapshot
    queue_wait_seconds: HistogramSnapshot
    engine_seconds: HistogramSnapshot
    sentences_per_prompt: HistogramSnapshot
    prompts: Mapping[str, int]
    multi_request_prompts: int
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    flagged_slots: Mapping[str, int]
    resent_sentences: Mapping[str, int]
    reused: Mapping[str, int]
    suspect: Mapping[str, int]
    queue_depth: int
    prompts_in_flight: int
    engine_ready: bool
    pack_cap: int
    ensemble_rounds: int
    ensemble_sentence_sends: int
    early_stopped_sentences: int
    engine_busy_seconds: float
    baseline_prompts: int
    baseline_prompt_tokens: float
    baseline_completion_tokens: float
    baseline_engine_seconds: float


class Stats:
    """Counters, histograms and gauges of one gateway. Thread-safe enough for one event loop
    plus a scrape thread: every mutation is a single locked update."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # monotonic seconds (tests inject a fake one)
        self._lock = threading.Lock()
        self.started_at = time.time()
        # --- cost accounting: physical quantities only; money is applied at read time (cost.usage_totals)
        self.engine_busy_seconds = 0.0  # sum of each engine call's share of wall-clock engine time
        self.baseline_prompts = 0  # prompts the translated sentences would take one per prompt
        self.baseline_prompt_tokens = 0.0  # their prompt tokens (prefix + query each, none cached)
        self.baseline_completion_tokens = 0.0
        self.baseline_engine_seconds = 0.0  # their estimated engine time (see cost.py)
        # processor-sharing clock: (t, V, n) checkpoints; V grows by dt/n while n > 0 prompts are in flight
        self._ps: list[tuple[float, float, int]] = [(clock(), 0.0, 0)]
        self.requests: Counter[str] = Counter()  # by outcome: ok | partial | failed | rejected | cancelled
        self.sentences: Counter[str] = Counter()  # by outcome: translated | failed | cancelled
        self.characters = 0  # source characters accepted
        self.request_seconds = Histogram(LATENCY_BUCKETS)
        self.queue_wait_seconds = Histogram(LATENCY_BUCKETS)
        self.engine_seconds = Histogram(LATENCY_BUCKETS)
        self.sentences_per_prompt = Histogram(PACK_BUCKETS)
        self.prompts: Counter[str] = Counter()  # engine prompts by outcome: ok | error
        self.multi_request_prompts = 0  # prompts carrying sentences of more than one request
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        self.completion_tokens = 0
        self.flagged_slots: Counter[str] = Counter()  # output slots the parser flagged, by reason
        self.resent_sentences: Counter[str] = Counter()  # sentences re-sent after a flagged slot, by reason
        self.reused: Counter[str] = Counter()  # sentences served without engine work: memory | coalesced
        self.suspect: Counter[str] = Counter()  # delivered but flagged after a second try: copy | loop | run_on
        self.queue_depth = 0  # sentences waiting
        self.prompts_in_flight = 0  # gauge (the runner owns the count; see set_prompts_in_flight)
        self.engine_ready = False
        self.pack_cap = 0  # pack size cap in force (the setting, within calibration)
        # --- ensembles (quality balanced/best, ensemble.py)
        self.ensemble_rounds = 0  # permutation rounds run
        self.ensemble_sentence_sends = 0  # sentences sent, summed over rounds
        self.early_stopped_sentences = 0  # sentences that left the rounds early (SEAS)

    # ---- gauges
    def set_prompts_in_flight(self, n: int) -> None:
        """The runner's in-flight count changed; it also drives the engine busy-time clock."""
        with self._lock:
            now = self._clock()
            self._ps.append((now, self._ps_value(now), n))
            self.prompts_in_flight = n
            # keep an hour (engine calls are shorter); pruned once half the list is older, so that each change is
            # O(1) amortised (pruning at every change past the first hour moved the whole list each time)
            if len(self._ps) > 4096 and self._ps[len(self._ps) // 2][0] < now - 3600:
                cut = bisect.bisect_left(self._ps, (now - 3600,))
                del self._ps[: max(1, min(cut, len(self._ps) - 1))]

    def set_queue_depth(self, n: int) -> None:
        self.queue_depth = n

    def set_engine_ready(self, ready: bool) -> None:
        self.engine_ready = ready

    def set_pack_cap(self, n: int) -> None:
        self.pack_cap = n

    def mean_engine_seconds(self) -> float | None:
        with self._lock:
            h = self.engine_seconds
            return h.sum / h.count if h.count else None

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                started_at=self.started_at,
                requests=_frozen(self.requests),
                sentences=_frozen(self.sentences),
                characters=self.characters,
                request_seconds=self.request_seconds.snapshot(),
                queue_wait_seconds=self.queue_wait_seconds.snapshot(),
                engine_seconds=self.engine_seconds.snapshot(),
                sentences_per_prompt=self.sentences_per_prompt.snapshot(),
                prompts=_frozen(self.prompts),
                multi_request_prompts=self.multi_request_prompts,
                prompt_tokens=self.prompt_tokens,
                cached_prompt_tokens=self.cached_prompt_tokens,
                completion_tokens=self.completion_tokens,
                flagged_slots=_frozen(self.flagged_slots),
                resent_sentences=_frozen(self.resent_sentences),
                reused=_frozen(self.reused),
                suspect=_frozen(self.suspect),
                queue_depth=self.queue_depth,
                prompts_in_flight=self.prompts_in_flight,
                engine_ready=self.engine_ready,
                pack_cap=self.pack_cap,
                ensemble_rounds=self.ensemble_rounds,
                ensemble_sentence_sends=self.ensemble_sentence_sends,
                early_stopped_sentences=self.early_stopped_sentences,
                engine_busy_seconds=self.engine_busy_seconds,
                baseline_prompts=self.baseline_prompts,
                baseline_prompt_tokens=self.baseline_prompt_tokens,
                baseline_completion_tokens=self.baseline_completion_tokens,
                baseline_engine_seconds=self.baseline_engine_seconds,
            )

    def _ps_value(self, t: float) -> float:
        """The processor-sharing clock at monotonic time ``t`` (caller holds the lock)."""
        i = max(0, bisect.bisect_right(self._ps, (t, float("inf"), 0)) - 1)
        t0, v, n = self._ps[i]
        return v + (max(0.0, t - t0) / n if n > 0 else 0.0)

    def record_request(self, outcome: str, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[outcome] += 1
            if seconds is not None:
                self.request_seconds.observe(seconds)

    def record_sentences(self, outcome: str, count: int = 1, characters: int = 0) -> None:
        with self._lock:
            self.sentences[outcome] += count
            self.characters += characters

    def record_queue_wait(self, seconds: float) -> None:
        with self._lock:
            self.queue_wait_seconds.observe(seconds)

    def record_prompt(
        self,
        *,
        sentences: int,
        requests: int,
        ok: bool,
        seconds: float,
        prompt_tokens: int = 0,
        cached_prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> float:
        """Returns this prompt's share of engine busy time: the ``seconds`` just past, each second
        divided by the number of prompts in flight then."""
        with self._lock:
            now = self._clock()
            busy = max(0.0, self._ps_value(now) - self._ps_value(now - seconds))
            self.engine_busy_seconds += busy
            self.prompts["ok" if ok else "error"] += 1
            self.sentences_per_prompt.observe(sentences)
            self.engine_seconds.observe(seconds)
            if requests > 1:
                self.multi_request_prompts += 1
            self.prompt_tokens += prompt_tokens
            self.cached_prompt_tokens += cached_prompt_tokens
            self.completion_tokens += completion_tokens
        return busy

    def record_baseline(self, *, prompt_tokens: float, completion_tokens: float, engine_seconds: float) -> None:
        """One translated sentence as it would have been sent alone, without a prefix cache."""
        with self._lock:
            self.baseline_prompts += 1
            self.baseline_prompt_tokens += prompt_tokens
            self.baseline_completion_tokens += completion_tokens
            self.baseline_engine_seconds += engine_seconds

    def record_ensemble_round(self, *, sentences: int, prompts: int, early_stopped: int = 0) -> None:
        """One ensemble round: ``sentences`` sent in ``prompts`` prompts; ``early_stopped`` left after it."""
        with self._lock:
            self.ensemble_rounds += 1
            self.ensemble_sentence_sends += sentences
            self.early_stopped_sentences += early_stopped

    def record_reuse(self, kind: str) -> None:
        with self._lock:
            self.reused[kind] += 1

    def record_suspect(self, reason: str) -> None:
        """A sentence delivered with status "suspect" (still a copy or a loop after a sampled second try)."""
        with self._lock:
            self.suspect[reason] += 1

    def record_flagged_slot(self, reason: str, resent: bool) -> None:
        """An output slot the parser flagged; ``resent``: its sentence goes to the engine again."""
        with self._lock:
            self.flagged_slots[reason] += 1
            if resent:
                self.resent_sentences[reason] += 1
