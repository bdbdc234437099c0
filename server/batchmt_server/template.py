"""Versioned BatchPrompt templates from ``prompts/``: render a packed prompt, carry a signature."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Template", "default_prompts_dir"]


def default_prompts_dir() -> Path:
    """The repo's ``prompts/`` in a checkout, else the copy packaged inside ``batchmt_server``."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "prompts", here / "prompts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no prompts/ folder found next to the package or in the checkout")


def clean(text: str) -> str:
    """One line of input as it goes into a prompt: whitespace runs (tabs, CR, ...) become one space."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Template:
    id: str
    version: int
    source_label: str
    target_label: str
    instruction: str
    examples: tuple[tuple[tuple[str, str], ...], ...]
    digest: str

    @classmethod
    def load(cls, name: str, prompts_dir: Path | None = None) -> "Template":
        path = (prompts_dir or default_prompts_dir()) / f"{name}.toml"
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
        examples = tuple(tuple((src, tgt) for src, tgt in ex["pairs"]) for ex in data.get("examples", []))
        return cls(
            id=data["id"], version=int(data["version"]),
            source_label=data["source_label"], target_label=data["target_label"],
            instruction=data["instruction"].strip(), examples=examples,
            digest=hashlib.sha256(raw).hexdigest()[:8],
        )

    @property
    def ref(self) -> str:
        """``id@version+hash``: what a signature names."""
        return f"{self.id}@{self.version}+{self.digest}"

    def _block(self, sources: list[str], targets: list[str] | None) -> str:
        lines = [f"{self.source_label}:"]
        lines += [f"{i}. {clean(s)}" for i, s in enumerate(sources, 1)]
        lines.append(f"{self.target_label}:")
        if targets is not None:
            lines += [f"{i}. {clean(t)}" for i, t in enumerate(targets, 1)]
        return "\n".join(lines)

    @property
    def prefix(self) -> str:
        """Instruction and examples: byte-identical for every prompt."""
        parts = [self.instruction]
        parts += [self._block([s for s, _ in ex], [t for _, t in ex]) for ex in self.examples]
        return "\n\n".join(parts) + "\n\n"

    def render(self, sources: list[str]) -> str:
        """The full prompt for ``sources``; the completion continues after the final ``1.``."""
        return self.prefix + self._block(sources, None) + "\n1."

    @property
    def stop(self) -> tuple[str, ...]:
        return ("\n\n", f"\n{self.source_label}:")
