"""Versioned BatchPrompt templates from ``prompts/``: render a packed prompt, carry a signature.

Rendered layout (labels and headers come from the toml; shown for en-de)::

    <instruction>

    <list_header>                 <- example batch 1: the numbered inputs ...
    1. <example source>
    2. <example source>
    <answer_header>               <- ... then, per input, an echo of the source and its translation
    English 1: <example source>
    German 1: <example translation>
    English 2: <example source>
    German 2: <example translation>

    ... more example batches ...  <- everything up to here is ``prefix``: byte-identical every time

    <list_header>                 <- the query
    1. <source 1>
    ...
    N. <source N>
    <answer_header>
    English 1: <source 1>
    German 1:                     <- the prompt ends here; the completion continues with
                                     " <translation 1>\\nEnglish 2: <source 2>\\nGerman 2: ..."

Each translation is written right after its own source (the echo), so a small base model
translates the sentence in front of it instead of copying an example batch, and the parser can
check every echo against the input it belongs to (alignment is verified, not assumed).

A template with ``echo = false`` (``prompts/en-de-list.toml``) drops the echo: after the answer header
come only ``German 1: <translation 1>``, ``German 2: ...``. Each slot then decodes its translation alone
(the echo about doubles a packed completion), and alignment rests on the numbering and the parser's
content checks (copies, a neighbour's numbers or words). It is for a model trained on that layout
(``batchmt-server selftrain``); a base model needs the echo to stay aligned.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .parsing import Slot, clean, parse_completion

__all__ = ["Template", "default_prompts_dir"]


def default_prompts_dir() -> Path:
    """The repo's ``prompts/`` in a checkout, else the copy packaged inside ``batchmt_server``."""
    package = Path(__file__).resolve().parent.parent  # batchmt_server/
    for candidate in (package.parent.parent / "prompts", package / "prompts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no prompts/ folder found next to the package or in the checkout")


@dataclass(frozen=True)
class Template:
    id: str
    version: int
    source_label: str
    target_label: str
    instruction: str
    examples: tuple[tuple[tuple[str, str], ...], ...]
    digest: str
    list_header: str = "Sentences:"
    answer_header: str = "Translations:"
    #: example batches with a glossary hint line before them, after ``examples`` (steer.py's glossary variant)
    demos: tuple[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]], ...] = ()
    hint_header: str = "Glossary:"

    #: each translation follows an echo of its source (see the module docstring); False: translations only
    echo: bool = True

    #: a plain-text completion prompt (base models); chat.ChatTemplate renders the chat form of a template
    form = "completion"

    @classmethod
    def load(cls, name: str, prompts_dir: Path | None = None) -> Template:
        path = (prompts_dir or default_prompts_dir()) / f"{name}.toml"
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
        examples = tuple(tuple((src, tgt) for src, tgt in ex["pairs"]) for ex in data.get("examples", []))
        return cls(
            id=data["id"],
            version=int(data["version"]),
            source_label=data["source_label"],
            target_label=data["target_label"],
            instruction=data["instruction"].strip(),
            examples=examples,
            digest=hashlib.sha256(raw).hexdigest()[:8],
            list_header=data.get("list_header", cls.list_header),
            answer_header=data.get("answer_header", cls.answer_header),
            echo=bool(data.get("echo", True)),
        )

    @property
    def ref(self) -> str:
        """``id@version+hash``: what a signature names."""
        return f"{self.id}@{self.version}+{self.digest}"

    @cached_property
    def example_pairs(self) -> tuple[tuple[str, str], ...]:
        """Every few-shot (source, translation), as rendered: an output equal or close to one of the translations
        copies the prompt, unless its own source is that example's source (or close to it)."""
        return tuple((clean(s), clean(t)) for ex in self.examples for s, t in ex)

    def _list(self, sources: list[str]) -> list[str]:
        return [self.list_header] + [f"{i}. {clean(s)}" for i, s in enumerate(sources, 1)] + [self.answer_header]

    def _pair(self, i: int, source: str, target: str | None) -> str:
        head = f"{self.target_label} {i}:"
        if self.echo:
            head = f"{self.source_label} {i}: {clean(source)}\n{head}"
        return head if target is None else f"{head} {clean(target)}"

    def _block(self, pairs: tuple[tuple[str, str], ...]) -> str:
        lines = self._list([s for s, _ in pairs])
        lines += [self._pair(i, s, t) for i, (s, t) in enumerate(pairs, 1)]
        return "\n".join(lines)

    def hint_line(self, hints: tuple[tuple[str, str], ...]) -> str:
        """Glossary pairs as one line (``Glossary: invoice = Rechnung; ...``), written before a numbered list."""
        return f"{self.hint_header} " + "; ".join(f"{clean(s)} = {clean(t)}" for s, t in hints)

    @cached_property
    def prefix(self) -> str:
        """Instruction and examples: byte-identical for every prompt."""
        parts = [self.instruction] + [self._block(ex) for ex in self.examples]
        parts += [self.hint_line(h) + "\n" + self._block(ex) for h, ex in self.demos]
        return "\n\n".join(parts) + "\n\n"

    def render(self, sources: list[str], hints: tuple[tuple[str, str], ...] = ()) -> str:
        """The full prompt for ``sources``; it ends in ``"\\n<target_label> 1:"`` and the completion
        continues with the first translation (see the module docstring and ``parse_completion``). ``hints``:
        glossary pairs, one line after the cached prefix (steer.py)."""
        if not sources:
            raise ValueError("render() needs at least one source")
        head = [self.hint_line(hints)] if hints else []
        return self.prefix + "\n".join(head + self._list(sources) + [self._pair(1, sources[0], None)])

    @property
    def stop(self) -> tuple[str, ...]:
        """Where a completion is over: the blank line that ends every batch, a new batch, or the
        numbering starting again at 1 (never valid: the completion starts inside pair 1).
        Three strings, so that ``stop_for`` stays within the OpenAI API's limit of four."""
        return ("\n\n", f"\n{self.list_header}", f"\n{self._numbered_label} 1:")

    @property
    def _numbered_label(self) -> str:
        """The label that opens each slot of an answer: the echo's, or the translation's without an echo."""
        return self.source_label if self.echo else self.target_label

    def stop_for(self, n: int) -> tuple[str, ...]:
        """``stop`` plus the echo of a source N+1 that does not exist (saves the run-on tokens): the four an
        engine must honour (the OpenAI completions API rejects more). A fifth, for engines without that limit:
        the translations' numbering starting again at 1 (never valid either; a small model falls into repeating
        its whole first line, ``"...\nGerman 1: ...\nGerman 1: ..."``, a loop too long for
        :mod:`~batchmt_server.engines.loop_stop`, and decodes it to the token budget)."""
        if not self.echo:  # "\nGerman 1:" is in ``stop`` already
            return self.stop + (f"\n{self.target_label} {n + 1}:",)
        return self.stop + (f"\n{self.source_label} {n + 1}:", f"\n{self.target_label} 1:")

    def lines_for(self, n: int) -> int:
        """Line breaks in a whole completion for ``n`` inputs, before it ends: per input after the first, its
        translation's line, and its echo's without ``echo = false`` (the slot guard of engines/loop_stop.py)."""
        return (n - 1) * (2 if self.echo else 1)

    def max_tokens(self, source_tokens: list[int]) -> int:
        """Completion budget of a prompt: per slot the echo of its source, its translation (~1.5x the
        source) and two labels; without the echo, the translation and one label."""
        if not self.echo:
            return int(sum(2 * t + 8 for t in source_tokens) + 16)
        return int(sum(3 * t + 12 for t in source_tokens) + 16)

    def parse(self, completion: str, sources: list[str], finish_reason: str | None = None) -> list[Slot]:
        """``parse_completion`` with this template's labels and few-shot translations."""
        return parse_completion(
            completion,
            sources,
            finish_reason,
            self.example_pairs,
            source_label=self.source_label,
            target_label=self.target_label,
            echo=self.echo,
        )

    def prompt_tokens(self, prompt: str, count_tokens: Callable[[str], int]) -> int:
        """Tokens of a prompt rendered by this template: the prefix counted once per tokenizer, plus the query."""
        cache = self._prefix_token_counts
        if count_tokens not in cache:
            cache[count_tokens] = count_tokens(self.prefix)
        return cache[count_tokens] + count_tokens(prompt[len(self.prefix) :])

    @cached_property
    def _prefix_token_counts(self) -> dict:
        return {}
