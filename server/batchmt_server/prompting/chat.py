"""Chat form of a BatchPrompt template, for instruct models: the prompt goes through the model's own chat
template (system / user / assistant turns), and the completion still continues the numbered answer block.

Rendered turns (labels from the toml; shown for en-de)::

    system:     <instruction>
    user:       Sentences:\\n1. <example source>\\n2. ...\\nTranslations:        <- one user/assistant pair
    assistant:  English 1: <example source>\\nGerman 1: <example translation>\\n...  per example batch
    ...
    user:       Sentences:\\n1. <source 1>\\n...\\nN. <source N>\\nTranslations:  <- the query
    assistant:  English 1: <source 1>\\nGerman 1:                   <- prefilled; the model continues with
                                                                       " <translation 1>\\nEnglish 2: ..."

The chat template is rendered once, with a sentinel in place of the query's user text, and split there:
``head`` (everything up to the query's text: system turn, few-shot turns, the opening of the user turn) and
``tail`` (the end of the user turn and the opening of the assistant turn). Every prompt is
``head + query + tail + prefill``, so ``head`` is byte-identical across prompts and the engine's prefix cache
reuses it; a real rendering of a sample query is checked against this concatenation once, at build time.

The engine gets the rendered text as a plain completion prompt (``/v1/completions`` over HTTP), never a list of
messages: one code path for both forms, the byte-identical prefix is ours to guarantee, and the parser reads
the continuation of the prefilled assistant turn exactly as it reads a base model's completion.
A beginning-of-sequence token that the chat template writes as text is dropped from the rendering when the
tokenizer adds it anyway (else the engine would see it twice).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Protocol

from .parsing import clean
from .template import Template

__all__ = [
    "ChatFormError",
    "ChatTemplate",
    "TemplateForm",
    "apply_form",
    "engine_tokenizer",
    "has_chat_template",
    "resolve_form",
]

log = logging.getLogger("batchmt.chat")

TemplateForm = Literal["auto", "completion", "chat"]
Messages = list[dict[str, str]]
Renderer = Callable[[Messages], str]

_SENTINEL = "BATCHMT_QUERY_SENTINEL_7f3a"
_SAMPLE = ("The sample query checks the chat template.", "It has two lines.")


class ChatFormError(ValueError):
    """The chat form cannot be built for this tokenizer (no chat template, or one we cannot split safely)."""


class ChatTokenizer(Protocol):
    """What the chat form needs from a tokenizer (a Hugging Face tokenizer has it)."""

    chat_template: Any
    bos_token: str | None
    bos_token_id: int | None

    def apply_chat_template(self, conversation: Messages, **kwargs: Any) -> Any: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_form(requested: TemplateForm, tokenizer: Any, model: str = "the model") -> Literal["completion", "chat"]:
    """``auto``: chat when the tokenizer has a chat template (instruct models), else completion (base models)."""
    if requested == "completion":
        return "completion"
    if has_chat_template(tokenizer):
        return "chat"
    if requested == "chat":
        raise ChatFormError(
            f"template form 'chat' needs a tokenizer with a chat template; {model} has none "
            "(use --template-form completion or auto)"
        )
    return "completion"


def apply_form(base: Template, requested: TemplateForm, tokenizer: Any, model: str = "the model"):
    """The template in the form the model wants: ``base`` itself, or its :class:`ChatTemplate`."""
    if resolve_form(requested, tokenizer, model) == "completion":
        return base
    return ChatTemplate.from_tokenizer(base, tokenizer)


def engine_tokenizer(engine: Any, settings: Any) -> Any:
    """The tokenizer whose chat template decides the form: the in-process engine's own; for an HTTP engine the
    one named by ``--tokenizer``, or by ``--model`` when it was set (an embedded model or a folder). None when
    there is none (the completion form, unless ``--template-form chat`` asks for the chat form: an error)."""
    tok = getattr(engine, "tokenizer", None)
    if tok is not None or settings.template_form == "completion" or settings.engine != "http":
        return tok
    name = settings.tokenizer or (settings.model if "model" in settings.model_fields_set else None)
    if name is None:
        if settings.template_form == "chat":
            raise ChatFormError(
                "template form 'chat' with an HTTP engine needs --tokenizer (or --model) naming the "
                "served model's tokenizer"
            )
        return None
    try:
        from transformers import AutoTokenizer

        from ..models.embedded import resolve_model

        return AutoTokenizer.from_pretrained(resolve_model(name, settings.cache_dir))
    except Exception as exc:  # no transformers in a light install, no such folder, no network ...
        if settings.template_form == "chat":
            raise ChatFormError(f"cannot load the tokenizer {name!r} for the chat form: {exc}") from exc
        log.warning("no tokenizer %r (%s): completion form", name, exc)
        return None


def _query_text(template: Template, sources: Sequence[str]) -> str:
    numbered = [f"{i}. {clean(s)}" for i, s in enumerate(sources, 1)]
    return "\n".join([template.list_header, *numbered, template.answer_header])


def _answer_text(template: Template, pairs: Sequence[tuple[str, str]]) -> str:
    return "\n".join(template._pair(i, s, t) for i, (s, t) in enumerate(pairs, 1))


def _prefill(template: Template, first_source: str) -> str:
    return template._pair(1, first_source, None)


def _messages(template: Template, query: str, system: bool) -> Messages:
    shots: Messages = []
    for ex in template.examples:
        shots.append({"role": "user", "content": _query_text(template, [s for s, _ in ex])})
        shots.append({"role": "assistant", "content": _answer_text(template, ex)})
    turns = shots + [{"role": "user", "content": query}]
    if system:
        return [{"role": "system", "content": template.instruction}] + turns
    # no system role in this chat template (e.g. Gemma's raise on one): the instruction opens the first user turn
    turns[0] = {"role": "user", "content": f"{template.instruction}\n\n{turns[0]['content']}"}
    return turns


@dataclass(frozen=True)
class ChatTemplate:
    """A :class:`~batchmt_server.prompting.template.Template` in chat form: same examples, labels, stop strings, budget
    and parser; a different rendering. Everything it does not define is the base template's."""

    base: Template
    head: str
    tail: str
    chat_digest: str
    system_turn: bool = True

    form = "chat"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_renderer(
        cls, base: Template, render: Renderer, *, drop_prefix: str = "", source: str | None = None
    ) -> ChatTemplate:
        """Build from ``render(messages) -> text`` (the chat template with the assistant turn opened).
        ``drop_prefix``: text to drop from the start of every rendering (a BOS the tokenizer adds itself);
        ``source``: the chat template's own text, for the digest."""
        system = True
        try:
            full = render(_messages(base, _SENTINEL, system=True))
        except Exception as exc:  # jinja's raise_exception: "System role not supported" and the like
            log.info("chat template refuses a system turn (%s): the instruction opens the first user turn", exc)
            system = False
            full = render(_messages(base, _SENTINEL, system=False))
        if full.count(_SENTINEL) != 1:
            raise ChatFormError("the chat template does not render the user's text verbatim once")
        head, tail = full.split(_SENTINEL)
        if drop_prefix and head.startswith(drop_prefix):
            head = head[len(drop_prefix) :]
        sample = _query_text(base, _SAMPLE)
        real = render(_messages(base, sample, system=system))
        if drop_prefix and real.startswith(drop_prefix):
            real = real[len(drop_prefix) :]
        if real != head + sample + tail:
            raise ChatFormError(
                "the chat template renders a query differently from its sentinel: the shared prefix "
                "would not be byte-identical (use --template-form completion)"
            )
        digest = hashlib.sha256((source if source is not None else head + "\x00" + tail).encode()).hexdigest()[:8]
        return cls(base=base, head=head, tail=tail, chat_digest=digest, system_turn=system)

    @classmethod
    def from_tokenizer(cls, base: Template, tokenizer: ChatTokenizer) -> ChatTemplate:
        """Build from a Hugging Face tokenizer's chat template."""
        if not has_chat_template(tokenizer):
            raise ChatFormError("the tokenizer has no chat template")

        def render(messages: Messages) -> str:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if not isinstance(text, str):  # pragma: no cover - tokenize=False always gives text
                raise ChatFormError(f"apply_chat_template returned {type(text).__name__}, not text")
            return text

        bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
        adds_bos = bool(bos) and bos_id is not None and tokenizer.encode("a")[:1] == [bos_id]
        source = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
        return cls.from_renderer(base, render, drop_prefix=str(bos) if adds_bos else "", source=source)

    # ------------------------------------------------------------------ the Template interface
    def __getattr__(self, name: str) -> Any:
        # examples, example_pairs, labels, stop, stop_for, max_tokens, parse ...: the base template's
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    @property
    def ref(self) -> str:
        """The base template's ref and the chat template's digest: ``id@version+hash/chat+digest``."""
        return f"{self.base.ref}/chat+{self.chat_digest}"

    @property
    def prefix(self) -> str:
        """System turn, few-shot turns and the opening of the query's user turn: byte-identical every time."""
        return self.head

    def render(self, sources: list[str]) -> str:
        """The full prompt for ``sources``: it ends inside the assistant turn, after ``"<target_label> 1:"``."""
        if not sources:
            raise ValueError("render() needs at least one source")
        return self.head + _query_text(self.base, sources) + self.tail + _prefill(self.base, sources[0])

    def _block(self, pairs: tuple[tuple[str, str], ...]) -> str:
        """What follows ``prefix`` in a prompt whose answer is complete (the fake engine's perfect answer)."""
        return _query_text(self.base, [s for s, _ in pairs]) + self.tail + _answer_text(self.base, pairs)

    def prompt_tokens(self, prompt: str, count_tokens: Callable[[str], int]) -> int:
        """Tokens of a prompt rendered here: the head counted once per tokenizer, plus the rest."""
        cache = self._head_token_counts
        if count_tokens not in cache:
            cache[count_tokens] = count_tokens(self.head)
        return cache[count_tokens] + count_tokens(prompt[len(self.head) :])

    @cached_property
    def _head_token_counts(self) -> dict:
        return {}
