"""Corpus BLEU and chrF with sacrebleu, reported with sacrebleu's signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["EVAL_EXTRA_HINT", "MetricScore", "Scores", "require_sacrebleu", "score_corpus"]

EVAL_EXTRA_HINT = "batchmt eval needs sacrebleu, which the base install leaves out: pip install 'batchmt[eval]'"


def require_sacrebleu() -> None:
    """Raise ImportError naming the extra to install when sacrebleu is missing (checked before any work)."""
    import importlib.util

    if importlib.util.find_spec("sacrebleu") is None:
        raise ImportError(EVAL_EXTRA_HINT)


@dataclass(frozen=True)
class MetricScore:
    name: str
    """sacrebleu's metric name, e.g. ``"BLEU"`` or ``"chrF2"``."""
    score: float
    signature: str
    """sacrebleu's signature, e.g. ``"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"``."""
    text: str
    """sacrebleu's one-line report, ``NAME|SIGNATURE = SCORE ...``."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "signature": self.signature, "text": self.text}


@dataclass(frozen=True)
class Scores:
    bleu: MetricScore
    chrf: MetricScore


def score_corpus(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """Corpus-level BLEU and chrF of ``hypotheses`` against one reference per sentence.

    sacrebleu is imported here, not at module import, to keep ``import batchmt`` light.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    require_sacrebleu()
    from sacrebleu.metrics import BLEU, CHRF

    results = []
    for metric in (BLEU(), CHRF()):
        result = metric.corpus_score(list(hypotheses), [list(references)])
        signature = str(metric.get_signature())
        results.append(
            MetricScore(
                name=result.name,
                score=float(result.score),
                signature=signature,
                text=result.format(signature=signature),
            )
        )
    return Scores(bleu=results[0], chrf=results[1])
