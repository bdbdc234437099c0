"""What the gateway counts, recorded apart from how it is exported (see :mod:`.metrics`)."""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Histogram", "Stats", "LATENCY_BUCKETS", "PACK_BUCKETS"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
PACK_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


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

    def cumulative(self) -> list[tuple[str, int]]:
        out, acc = [], 0
        for bound, c in zip([*map(str, map(float, self.buckets)), "+Inf"], self.counts):
            acc += c
            out.append((bound, acc))
        return out

    def quantile(self, q: float) -> float | None:
        """Upper bucket bound below which a share ``q`` of observations fall (None if empty)."""
        if not self.count:
            return None
        target, acc = q * self.count, 0
        for bound, c in zip(self.buckets, self.counts):
            acc += c
            if acc >= target:
                return bound
        return float("inf")


class Stats:
    """Counters, histograms and gauges of one gateway. Thread-safe enough for one event loop
    plus a scrape thread: every mutation is a single locked update."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started_at = time.time()
        self.requests: Counter[str] = Counter()       # by outcome: ok | partial | failed | rejected | cancelled
        self.sentences: Counter[str] = Counter()      # by outcome: translated | failed | cancelled
        self.characters = 0                           # source characters accepted
        self.request_seconds = Histogram(LATENCY_BUCKETS)
        self.queue_wait_seconds = Histogram(LATENCY_BUCKETS)
        self.engine_seconds = Histogram(LATENCY_BUCKETS)
        self.sentences_per_prompt = Histogram(PACK_BUCKETS)
        self.prompts: Counter[str] = Counter()        # engine prompts by outcome: ok | error
        self.multi_request_prompts = 0                # prompts carrying sentences of more than one request
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        self.completion_tokens = 0
        self.repairs: Counter[str] = Counter()        # slots flagged, by reason
        self.retries: Counter[str] = Counter()        # sentences re-sent, by reason
        self.queue_depth = 0                          # sentences waiting
        self.prompts_in_flight = 0
        self.engine_ready = False

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

    def record_prompt(self, *, sentences: int, requests: int, ok: bool, seconds: float,
                      prompt_tokens: int = 0, cached_prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self.prompts["ok" if ok else "error"] += 1
            self.sentences_per_prompt.observe(sentences)
            self.engine_seconds.observe(seconds)
            if requests > 1:
                self.multi_request_prompts += 1
            self.prompt_tokens += prompt_tokens
            self.cached_prompt_tokens += cached_prompt_tokens
            self.completion_tokens += completion_tokens

    def record_repair(self, reason: str, retried: bool) -> None:
        with self._lock:
            self.repairs[reason] += 1
            if retried:
                self.retries[reason] += 1
