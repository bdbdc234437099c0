"""The one small interface through which the gateway knows an engine.

Two real implementations: :class:`~batchmt_server.engines.vllm_inprocess.VLLMEngine` (in-process ``AsyncLLM``)
and :class:`~batchmt_server.engines.openai_http.HTTPEngine` (any OpenAI-compatible ``/v1/completions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .loop_stop import LoopRule

__all__ = ["Completion", "Engine", "EngineDead", "EngineError", "GenerationParams"]


class EngineError(RuntimeError):
    """The engine failed to produce a completion (raised by every implementation, whatever the cause)."""


class EngineDead(EngineError):
    """The engine is gone for good (the in-process engine's core died): no retry can succeed in this process.
    The gateway stops being ready, fails what is waiting with a retryable 503 and exits (on_engine_death)."""


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    #: a unique salt keeps this prompt out of (and away from) the engine's prefix cache
    cache_salt: str | None = None
    #: vLLM's request priority: lower runs first (0: interactive; batch jobs send 1). Engines without priority
    #: scheduling ignore it.
    priority: int = 0
    #: the prompt's first ``prefix_chars`` characters are the template's shared prefix, the same in every prompt:
    #: an engine that tokenizes may do it once and tokenize only the rest (others ignore it)
    prefix_chars: int = 0
    #: end the completion once its tail is a repetition loop by this rule (engine.loop_stop; finish_reason
    #: "length"); engines that cannot ignore it and decode to ``max_tokens``
    loop_stop: LoopRule | None = None


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    finish_reason: str | None = None  # "stop" | "length" | ...
    #: with ``logprobs=True``: each completion token's log-probability and the offset in ``text`` where it
    #: starts (a stop string's tokens may lie past the end of ``text``); the ensemble's confidence signal
    token_logprobs: list[float] | None = None
    token_offsets: list[int] | None = None


class Engine(Protocol):
    """What the gateway needs from an engine."""

    model_name: str

    async def start(self) -> None:
        """Load or connect; return once the engine can answer."""

    async def generate(self, prompt: str, params: GenerationParams) -> Completion:
        """One prompt in, one completion out. Raises :class:`EngineError`."""

    async def ready(self) -> bool:
        """True when the engine answers."""

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` (exact where the tokenizer is at hand, else an estimate)."""

    async def close(self) -> None:
        """Release the engine."""


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper-ish estimate: ~3.2 characters per token for European languages."""
    return max(1, int(len(text) / 3.2) + 1)
