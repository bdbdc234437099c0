"""Steering a sentence's translation: formality (du/Sie) and glossary terms (issue 27).

A :class:`Steer` travels with a sentence through the batcher and the ensemble to the prompt runner:

- **formality** picks a prefix *variant* of the template: the instruction names the register and one more example
  batch shows it (sentences addressing the reader, translated with ``Sie`` or with ``du``). Each variant's prefix is
  byte-identical for every prompt, so the engine's prefix cache keeps one copy per variant in use. ``default`` is
  the template itself (its prefix unchanged).
- **hints** (glossary term pairs matched in the sentence) are written in the per-sentence part of the prompt, after
  the cached prefix (``Glossary: invoice = Rechnung; ...`` right before the numbered list), so the prefix stays
  byte-identical. A prompt with hints uses the variant whose prefix demonstrates such a line once.
- **required** target terms and a strict formality are checked after generation (:meth:`Steer.check`): a slot that
  misses a required term, or is in the wrong register under ``more``/``less``, is re-sent once (sampled), then
  delivered ``suspect`` with reason ``glossary`` or ``formality`` (never as ``ok``, never remembered).

Sentences share a prompt only with sentences of the same variant (:attr:`Steer.variant`); the batcher's coalescing
and its in-process memory key on the whole steer, so a ``du`` answer is never handed to a ``Sie`` caller.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

__all__ = [
    "FORMALITIES",
    "Formality",
    "Steer",
    "merge_hints",
    "register",
    "steered_template",
    "term_found",
    "wrong_register",
]

Formality = Literal["default", "more", "less", "prefer_more", "prefer_less"]
FORMALITIES: tuple[str, ...] = ("default", "more", "less", "prefer_more", "prefer_less")

# ---------------------------------------------------------------------------- register detection (by rule)
# formal: "Ihnen", and "Sie"/"Ihr..." capitalised inside a sentence (at its start "Sie" may be "she"/"they")
_FORMAL_ANY = re.compile(r"\b(?:Ihnen)\b")
_FORMAL_MID = re.compile(r"(?<![.!?:„\"«»]\s)(?<!^)(?<![.!?:„\"«»])\b(?:Sie|Ihr|Ihre|Ihren|Ihrem|Ihrer|Ihres)\b")
# informal: du/dich/dir/dein..., and the plural euch/euer (any case)
_INFORMAL = re.compile(
    r"\b(?:du|dich|dir|dein|deine|deinen|deinem|deiner|deines|euch|euer|eure|euren|eurem|eurer)\b", re.I
)


_FORMAL_STRICT = re.compile(r"\b(?:Sie|Ihnen|Ihr|Ihre|Ihren|Ihrem|Ihrer|Ihres)\b")


def register(text: str, *, strict: bool = False) -> Literal["formal", "informal", "mixed", "none"]:
    """The German register of ``text`` by rule: Sie/Ihnen/Ihr (capitalised inside a sentence) vs du/dich/dein.
    ``strict``: a capitalised Sie/Ihr at a sentence's start counts as formal too (it may be "she"/"they"/"her":
    right for text that addresses the reader, and for the ``less`` check, where a doubtful slot is re-sent or
    flagged rather than delivered as ``ok`` in the wrong register)."""
    formal = bool(_FORMAL_ANY.search(text) or (_FORMAL_STRICT if strict else _FORMAL_MID).search(text))
    informal = bool(_INFORMAL.search(text))
    if formal and informal:
        return "mixed"
    return "formal" if formal else "informal" if informal else "none"


def wrong_register(formality: str, text: str) -> bool:
    """Does ``text`` use the register ``more``/``less`` forbids? (``prefer_*`` and ``default`` forbid nothing.)"""
    reg = register(text, strict=formality == "less")
    if formality == "more":
        return reg in ("informal", "mixed")
    if formality == "less":
        return reg in ("formal", "mixed")
    return False


# ---------------------------------------------------------------------------- glossary terms
_WORD = re.compile(r"\w+")


def term_found(term: str, text: str) -> bool:
    """Is the German ``term`` in ``text``? Case-insensitive; a term's last word may be inflected (its stem, the
    word less its last letter when it has more than four, followed by up to three letters: Rechnung ->
    Rechnungen, Kunde -> Kunden)."""
    words = _WORD.findall(term)
    if not words:
        return True
    parts = [re.escape(w) for w in words[:-1]]
    last = words[-1]
    stem = last[:-1] if len(last) > 4 else last
    parts.append(re.escape(stem) + r"\w{0,3}")
    sep = r"[\s\-‐]+"
    return re.search(r"(?<!\w)" + sep.join(parts) + r"(?!\w)", text, re.I) is not None


def merge_hints(hint_lists: list[tuple[tuple[str, str], ...]]) -> tuple[tuple[str, str], ...]:
    """The hints of a pack: every sentence's, each once, in first-seen order."""
    seen: dict[str, str] = {}
    for hints in hint_lists:
        for s, t in hints:
            seen.setdefault(s, t)
    return tuple(seen.items())


@dataclass(frozen=True)
class Steer:
    formality: str = "default"
    #: glossary pairs matched in the sentence, written as a hint line after the cached prefix
    hints: tuple[tuple[str, str], ...] = ()
    #: German terms the translation must hold (the post-generation check)
    required: tuple[str, ...] = ()
    #: a failed check is re-sent once before the slot is delivered suspect
    resend: bool = True

    @property
    def variant(self) -> tuple[str, bool]:
        """The prefix variant: sentences share a prompt only with the same one."""
        return (self.formality, bool(self.hints))

    @property
    def empty(self) -> bool:
        return self.formality == "default" and not self.hints and not self.required

    def check(self, translation: str) -> str | None:
        """``"glossary"`` (a required term missing), ``"formality"`` (the wrong register under more/less), or None."""
        if any(not term_found(t, translation) for t in self.required):
            return "glossary"
        if wrong_register(self.formality, translation):
            return "formality"
        return None


# ---------------------------------------------------------------------------- prefix variants
def _steer_file(prompts_dir: Path | None) -> Path:
    from .template import default_prompts_dir

    return (prompts_dir or default_prompts_dir()) / "steer" / "en-de-steer.toml"


@lru_cache(maxsize=8)
def _load_steer(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def steered_template(template, formality: str, hints: bool, prompts_dir: Path | None = None):
    """The template's prefix variant for a formality and for prompts with glossary hints (``prompts/steer/``).
    ``default`` without hints is the template itself. Works on any template with ``instruction`` and ``examples``
    (a chat template keeps its own rendering)."""
    if formality == "default" and not hints:
        return template
    data = _load_steer(_steer_file(prompts_dir))
    instruction, examples = template.instruction, tuple(template.examples)
    tags = []
    if formality != "default":
        level = data["formality"]["more" if formality in ("more", "prefer_more") else "less"]
        instruction = f"{instruction} {level['instruction'].strip()}"
        examples = examples + (tuple((s, t) for s, t in level["pairs"]),)
        tags.append(f"f={formality}")
    if hints:
        instruction = f"{instruction} {data['glossary']['instruction'].strip()}"
        tags.append("g")
    demos = tuple(getattr(template, "demos", ()))
    if hints:
        g = data["glossary"]
        demos += ((tuple((s, t) for s, t in g["hints"]), tuple((s, t) for s, t in g["pairs"])),)
    return replace(
        template, instruction=instruction, examples=examples, demos=demos, digest=f"{template.digest}+{'.'.join(tags)}"
    )
