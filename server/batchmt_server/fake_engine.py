"""A zero-latency stand-in engine for unit tests and for measuring the gateway alone.

It "translates" by tagging each numbered input (``"1. Hello"`` -> ``"1. [de] Hello"``); tests can
script malformed outputs with ``responder`` and hold completions back with ``gate``. It is never
what a default run uses: the settings must ask for ``engine="fake"`` explicitly.
"""

from __future__ import annotations

import asyncio
import re
from typing import Callable

from .engine import Completion, EngineError, GenerationParams, estimate_tokens

__all__ = ["FakeEngine", "query_sources"]

_LINE = re.compile(r"^(\d+)\. (.*)$")


def query_sources(prompt: str, source_label: str = "English", target_label: str = "German") -> list[str]:
    """The numbered inputs of the last block of a rendered prompt."""
    block = prompt.rsplit(f"{source_label}:\n", 1)[1].rsplit(f"\n{target_label}:", 1)[0]
    return [m.group(2) for m in map(_LINE.match, block.split("\n")) if m]


class FakeEngine:
    def __init__(self, responder: Callable[[list[str]], str] | None = None, delay: float = 0.0,
                 model_name: str = "fake") -> None:
        self.model_name = model_name
        self.responder = responder or (lambda srcs: "\n".join(f"{i}. [de] {s}" for i, s in enumerate(srcs, 1)))
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.prompts: list[list[str]] = []  # the sources of every prompt seen, in order
        self.fail_next = 0
        self._prefixes: set[str] = set()

    async def start(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def generate(self, prompt: str, params: GenerationParams) -> Completion:
        sources = query_sources(prompt)
        self.prompts.append(sources)
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise EngineError("fake engine failure")
        out = self.responder(sources)
        text = out[2:] if out.startswith("1.") else out  # the prompt already ends in "1."
        prefix = prompt.rsplit("English:\n", 1)[0]
        cached = estimate_tokens(prefix) if prefix in self._prefixes else 0
        self._prefixes.add(prefix)
        return Completion(text=text, prompt_tokens=estimate_tokens(prompt), cached_prompt_tokens=cached,
                          completion_tokens=estimate_tokens(text), finish_reason="stop")

    async def close(self) -> None:
        return None
