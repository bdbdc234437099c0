"""Cost accounting: what engine work a sentence or a request used (:class:`EngineUsage`), and prices (settings)
applied to it and to a :class:`~batchmt_server.telemetry.stats.StatsSnapshot`.

Every engine call shares its tokens and busy time among the sentences it carried (by their token share); a sentence
that is re-sent or goes through ensemble rounds collects several shares; a request adds up its sentences
(:class:`EngineUsage`, a value that adds up). Its ``baseline_*`` fields are the same sentence sent alone without a
prefix cache (the baseline below).

Stats only count physical quantities (tokens, engine seconds); money is computed from them at read
time with the prices below, by the one function :func:`usage_totals` that ``/v1/usage``, the
built-in dashboard and the Prometheus collector all call, so the three always agree.

Two pricing models, which add up (set the one that fits, leave the other at 0):

- **tokens** (an OpenAI-compatible engine billed per token): ``price_prompt_per_mtok`` for uncached
  prompt tokens, ``price_cached_prompt_per_mtok`` for prompt tokens served from the prefix cache,
  ``price_completion_per_mtok`` for generated tokens, all per 1M tokens.
- **engine-hour** (a self-hosted GPU): ``price_engine_hour`` accrues with *engine busy time*: the
  wall-clock time during which at least one prompt is in flight, each such second shared equally by
  the prompts in flight then (so concurrent prompts split it, and idle time is not charged to
  sentences: an idle engine costs the same with or without batchmt).

The **baseline** is what the same translated sentences would have cost sent one per prompt with no
prefix cache: per sentence, the tokens of ``template.render([sentence])`` (the whole few-shot prefix
plus its own query, none cached) and its share of the completion tokens. Its engine time is an
estimate: engine time proportional to the tokens the engine computes (uncached prompt + completion),
at the rate measured on the prompt the sentence actually travelled in.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings
    from .stats import StatsSnapshot

__all__ = ["EngineUsage", "Prices", "usage_totals"]

_M = 1_000_000.0


@dataclass(frozen=True)
class EngineUsage:
    """What one sentence (or one request) used of the engine."""

    prompt_tokens: float = 0.0
    cached_prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    engine_prompts: float = 0.0  # prompts, a shared prompt counted by this sentence's share
    engine_seconds: float = 0.0  # share of engine busy time (cost accounting)
    resent: int = 0  # re-sends of this sentence after a flagged output slot or a failed engine call
    baseline_prompt_tokens: float = 0.0
    baseline_completion_tokens: float = 0.0
    baseline_engine_seconds: float = 0.0

    def __add__(self, other: EngineUsage) -> EngineUsage:
        if not isinstance(other, EngineUsage):
            return NotImplemented
        # field by field, in order (the names are looked up once, not per addition: several per sentence)
        return EngineUsage(*[getattr(self, name) + getattr(other, name) for name in _FIELDS])

    @classmethod
    def total(cls, items: list[EngineUsage]) -> EngineUsage:
        out = cls()
        for u in items:
            out = out + u
        return out


_FIELDS = tuple(f.name for f in fields(EngineUsage))


@dataclass(frozen=True)
class Prices:
    currency: str = "USD"
    prompt_per_mtok: float = 0.0
    cached_prompt_per_mtok: float = 0.0
    completion_per_mtok: float = 0.0
    engine_hour: float = 0.0

    @classmethod
    def from_settings(cls, s: Settings) -> Prices:
        return cls(
            currency=s.currency,
            prompt_per_mtok=s.price_prompt_per_mtok,
            cached_prompt_per_mtok=s.price_cached_prompt_per_mtok,
            completion_per_mtok=s.price_completion_per_mtok,
            engine_hour=s.price_engine_hour,
        )

    @property
    def model(self) -> str:
        tokens = bool(self.prompt_per_mtok or self.cached_prompt_per_mtok or self.completion_per_mtok)
        hours = bool(self.engine_hour)
        return "tokens+engine_hour" if tokens and hours else "tokens" if tokens else "engine_hour" if hours else "none"

    def cost(
        self, prompt_tokens: float, cached_prompt_tokens: float, completion_tokens: float, engine_seconds: float
    ) -> float:
        """What the engine work cost. ``prompt_tokens`` includes the cached ones."""
        return (
            (prompt_tokens - cached_prompt_tokens) * self.prompt_per_mtok / _M
            + cached_prompt_tokens * self.cached_prompt_per_mtok / _M
            + completion_tokens * self.completion_per_mtok / _M
            + engine_seconds * self.engine_hour / 3600.0
        )

    def baseline_cost(self, prompt_tokens: float, completion_tokens: float, engine_seconds: float) -> float:
        """The same sentences one per prompt, no prefix cache: no prompt token is cached."""
        return self.cost(prompt_tokens, 0.0, completion_tokens, engine_seconds)

    def as_dict(self) -> dict:
        return {
            "currency": self.currency,
            "model": self.model,
            "prompt_per_mtok": self.prompt_per_mtok,
            "cached_prompt_per_mtok": self.cached_prompt_per_mtok,
            "completion_per_mtok": self.completion_per_mtok,
            "engine_hour": self.engine_hour,
        }


def usage_totals(snap: StatsSnapshot, prices: Prices) -> dict:
    """Totals since start, from one snapshot (the body of ``GET /v1/usage``)."""
    p = prices
    pt, ct, gt = snap.prompt_tokens, snap.cached_prompt_tokens, snap.completion_tokens
    busy = snap.engine_busy_seconds
    b_pt, b_gt, b_busy = snap.baseline_prompt_tokens, snap.baseline_completion_tokens, snap.baseline_engine_seconds
    cost = p.cost(pt, ct, gt, busy)
    baseline = p.baseline_cost(b_pt, b_gt, b_busy)
    now = datetime.now(UTC)
    return {
        "since": datetime.fromtimestamp(snap.started_at, UTC).isoformat(timespec="seconds"),
        "uptime_seconds": round(now.timestamp() - snap.started_at, 3),
        "requests": sum(snap.requests.values()),
        "sentences": snap.sentences.get("translated", 0),
        "failed_sentences": snap.sentences.get("failed", 0),
        "characters": snap.characters,
        "prompt_tokens": pt,
        "cached_prompt_tokens": ct,
        "completion_tokens": gt,
        "engine_prompts": sum(snap.prompts.values()),
        "engine_busy_seconds": busy,
        "currency": p.currency,
        "cost": cost,
        "baseline_prompts": snap.baseline_prompts,
        "baseline_prompt_tokens": b_pt,
        "baseline_completion_tokens": b_gt,
        "baseline_engine_seconds": b_busy,
        "baseline_cost": baseline,
        "saving": baseline - cost,
        "prices": p.as_dict(),
    }
