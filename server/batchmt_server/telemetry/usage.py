"""What one sentence (or one request) used of the engine: a value that adds up.

Every engine call shares its tokens and busy time among the sentences it carried (by their token
share); a sentence that is re-sent or goes through ensemble rounds collects several shares; a request
adds up its sentences. The ``baseline_*`` fields are the same sentence sent alone without a prefix
cache (what ``cost.py`` compares against).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["EngineUsage"]


@dataclass(frozen=True)
class EngineUsage:
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
