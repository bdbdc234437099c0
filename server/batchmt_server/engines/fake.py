"""A zero-latency stand-in engine for unit tests and for measuring the gateway alone.

It reads the numbered inputs of a rendered prompt and answers what a perfect model would, in the
template's own format, with ``"[de] "`` before each source. Tests script other answers with
``responder`` (a list of targets: ``""`` for an empty slot; or a raw completion string) and hold
completions back with ``gate``. It is never what a default run uses: the settings must ask for
``engine="fake"`` by name. A source holding :data:`DIE` kills it for good (``EngineDead`` from then on, and
``ready()`` false): the fault tests of a real gateway process use it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace

from ..prompting.template import Template
from .base import Completion, EngineDead, EngineError, GenerationParams, estimate_tokens

__all__ = ["FakeEngine"]

_LINE = re.compile(r"^(\d+)\. (.*)$")
_LABELS = re.compile(r"\n(\w+) 1: [^\n]*\n(\w+) 1:$")
_NO_ECHO = re.compile(r"\n(\w+) 1:$")
_MASK = re.compile(r"\[(?:PH|TAG)_\d+\]")

#: a source holding this makes the fake engine die for good (fault tests of a real process)
DIE = "<<batchmt:fake-engine-dies>>"

Responder = Callable[[list[str]], "list[str] | str"]


class FakeEngine:
    def __init__(
        self,
        responder: Responder | None = None,
        delay: float = 0.0,
        model_name: str = "fake",
        template: Template | None = None,
        history: int | None = None,
    ) -> None:
        self.model_name = model_name
        self.template = template or Template.load("en-de-packed")
        self.responder: Responder = responder or (lambda srcs: [f"[de] {s}" for s in srcs])
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.prompts: list[list[str]] = []  # the sources of every prompt seen, in order
        #: keep only about the last ``history`` prompts and parameters (a served fake engine under a long load run
        #: must not grow without end, nor make every full garbage collection walk all it ever saw); None: all
        self.history = history
        self.fail_next = 0
        self.dead = False
        self._prefixes: set[str] = set()
        #: the parameters of every call, in order (``last_params`` is the current call's, for responders)
        self.params: list[GenerationParams] = []
        self.last_params: GenerationParams | None = None
        #: with ``logprobs=True``: every token (a word with its leading whitespace) of a translation line gets
        #: ``confidence(translation)``, every other token -0.05
        self.confidence: Callable[[str], float] = lambda target: -0.1
        #: damage protected spans (placeholder masks ``[PH_n]`` / inline-tag masks ``[TAG_n]``): the next
        #: ``mangle_times`` translations that hold one get it dropped ("drop"), doubled ("duplicate") or, with two
        #: or more, the first two swapped ("swap"); ``mangle_only`` limits it to sources containing that string
        self.mangle: str | None = None
        self.mangle_times = 0
        self.mangle_only: str | None = None

    async def start(self) -> None:
        return None

    async def ready(self) -> bool:
        return not self.dead

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def query_sources(self, prompt: str) -> list[str]:
        """The numbered inputs of the query (the last list of the prompt)."""
        block = self._query(prompt).split("\n")
        out = []
        for line in block[1:]:
            m = _LINE.match(line)
            if not m:
                break
            out.append(m.group(2))
        return out

    def completion_for(self, prompt: str, sources: list[str], targets: list[str]) -> str:
        """What follows ``prompt`` when the model answers ``targets`` perfectly."""
        query = self._query(prompt)
        template = self.template
        m = _LABELS.search(query)  # the labels the prompt uses (a reversed template's too: German 1: ... English 1:)
        if m and (m.group(1), m.group(2)) != (template.source_label, template.target_label):
            template = replace(template, source_label=m.group(1), target_label=m.group(2))
        elif not m and (bare := _NO_ECHO.search(query)) and query.endswith(f"{template.answer_header}{bare.group(0)}"):
            template = replace(template, target_label=bare.group(1), echo=False)  # a layout without echoes
        solved = template._block(tuple(zip(sources, targets)))
        if not solved.startswith(query):
            raise AssertionError("the template's rendering of a solved block does not extend its prompt")
        return solved[len(query) :]

    def _query(self, prompt: str) -> str:
        """The query block at the end of ``prompt`` (from its list header on), whatever prefix came before:
        any template with this one's labels (the calibrated short and zero-shot variants too)."""
        start = prompt.rfind(self.template.list_header + "\n")
        if start < 0:
            raise AssertionError(f"no {self.template.list_header!r} block in the prompt")
        return prompt[start:]

    async def generate(self, prompt: str, params: GenerationParams) -> Completion:
        sources = self.query_sources(prompt)
        self.prompts.append(sources)
        self.params.append(params)
        self.last_params = params
        if self.history is not None and len(self.prompts) > 2 * self.history:
            del self.prompts[: -self.history]
            del self.params[: -self.history]
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.dead or any(DIE in s for s in sources):
            self.dead = True
            raise EngineDead("the fake engine died")
        if self.fail_next > 0:
            self.fail_next -= 1
            raise EngineError("fake engine failure")
        answer = self.responder(sources)
        if not isinstance(answer, str) and self.mangle:
            answer = [self._mangle(src, tgt) for src, tgt in zip(sources, answer)]
        text = answer if isinstance(answer, str) else self.completion_for(prompt, sources, answer)
        prefix = self.template.prefix
        cached = estimate_tokens(prefix) if prefix in self._prefixes and params.cache_salt is None else 0
        self._prefixes.add(prefix)
        lps, offsets = self._logprobs(text, sources) if params.logprobs else (None, None)
        return Completion(
            text=text,
            prompt_tokens=estimate_tokens(prompt),
            cached_prompt_tokens=cached,
            completion_tokens=estimate_tokens(text),
            finish_reason="stop",
            token_logprobs=lps,
            token_offsets=offsets,
        )

    def _mangle(self, source: str, target: str) -> str:
        masks = _MASK.findall(target)
        if self.mangle_times <= 0 or not masks or (self.mangle_only and self.mangle_only not in source):
            return target
        if self.mangle == "swap" and len(masks) < 2:
            return target
        self.mangle_times -= 1
        first = masks[0]
        if self.mangle == "drop":
            return target.replace(first, "", 1)
        if self.mangle == "duplicate":
            return target.replace(first, first + " " + first, 1)
        a, b = masks[0], masks[1]
        return target.replace(a, "\0", 1).replace(b, a, 1).replace("\0", b, 1)

    def _logprobs(self, text: str, sources: list[str]) -> tuple[list[float], list[int]]:
        """A token is a word with its leading whitespace; tokens inside a slot's translation (the parser's
        span) get ``confidence(translation)``, the others (labels, echoes) -0.05."""
        spans = [(slot.span, slot.text) for slot in self.template.parse(text, sources) if slot.span]
        lps, offsets = [], []
        for tok in re.finditer(r"\s*\S+", text):
            start = tok.end() - len(tok.group().lstrip())
            inside = next((t for (a, b), t in spans if a <= start < b), None)
            lps.append(self.confidence(inside or "") if inside is not None else -0.05)
            offsets.append(tok.start())
        return lps, offsets

    async def close(self) -> None:
        return None
