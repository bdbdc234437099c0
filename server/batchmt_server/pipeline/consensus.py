"""Consensus among free-text candidates: BatchPrompt's majority vote adapted to translation.

BatchPrompt (Lin et al., 2023) votes over class labels. Translations never match exactly, so the
vote becomes minimum-Bayes-risk selection: among a sentence's candidates pick the one that agrees
most (sentence chrF) with the others, each other candidate's vote weighted by the model's own
confidence in it (the geometric-mean token probability of its span, ``exp(mean logprob)``).
A candidate from a flagged slot (copy of the source, broken parse, ...) is never a candidate.

Early stopping (SEAS) asks the same two things of the last two rounds: do they agree (similarity
above a threshold) and is the model confident in both (mean token logprob above a threshold)?
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Candidate", "similarity", "agreement", "mbr_select", "should_stop", "span_confidence"]


@dataclass(frozen=True)
class Candidate:
    text: str
    #: mean log-probability of the candidate's tokens (None when the engine gave none)
    confidence: float | None = None
    round: int = 0  # 0-based round that produced it

    @property
    def weight(self) -> float:
        """Vote weight: the geometric-mean token probability, in (0, 1]; 1 without a confidence."""
        return 1.0 if self.confidence is None else math.exp(min(0.0, self.confidence))


@lru_cache(maxsize=1)
def _chrf():
    from sacrebleu.metrics import CHRF

    return CHRF()


@lru_cache(maxsize=65536)
def similarity(hyp: str, ref: str) -> float:
    """Sentence chrF of ``hyp`` against ``ref``, 0..100 (100 for identical strings)."""
    if hyp == ref:
        return 100.0
    if not hyp.strip() or not ref.strip():
        return 0.0
    return float(_chrf().sentence_score(hyp, [ref]).score)


def agreement(a: str, b: str) -> float:
    """Symmetric similarity (chrF weighs recall over precision): the mean of both directions."""
    return (similarity(a, b) + similarity(b, a)) / 2


def mbr_select(candidates: Sequence[Candidate], weighted: bool = True) -> int | None:
    """Index of the minimum-Bayes-risk candidate (None when there is none).

    Utility of candidate i = sum over all candidates j (itself included, so duplicates count as
    votes, like a majority vote) of ``w_j * chrF(c_i, c_j)``, with ``w_j`` the candidate's confidence
    weight (1 when ``weighted`` is off). Ties go to the more confident candidate, then the earlier round.
    """
    if not candidates:
        return None
    if len(candidates) == 1:
        return 0
    weights = [c.weight if weighted else 1.0 for c in candidates]

    def key(i: int) -> tuple[float, float, int]:
        u = sum(w * similarity(candidates[i].text, c.text) for c, w in zip(candidates, weights))
        own = candidates[i].confidence
        conf = own if own is not None else -math.inf
        return (round(u, 9), conf, -candidates[i].round)

    return max(range(len(candidates)), key=key)


def should_stop(previous: Candidate | None, current: Candidate | None, *, agree: float, confidence: float) -> bool:
    """SEAS for translations: the last two rounds both gave a candidate, they agree (symmetric chrF
    of at least ``agree``) and the model was confident in both (mean token logprob of at least
    ``confidence``; a candidate without logprobs is never confident)."""
    if previous is None or current is None:
        return False
    if previous.confidence is None or current.confidence is None:
        return False
    if min(previous.confidence, current.confidence) < confidence:
        return False
    return agreement(previous.text, current.text) >= agree


def span_confidence(
    token_logprobs: Sequence[float] | None, token_offsets: Sequence[int] | None, start: int, end: int
) -> float | None:
    """Mean log-probability of the tokens that start inside ``[start, end)`` of the completion text
    (a token straddling ``start`` counts too). None without logprobs or without a token there."""
    if not token_logprobs or not token_offsets or end <= start:
        return None
    picked = []
    for i, (lp, off) in enumerate(zip(token_logprobs, token_offsets)):
        nxt = token_offsets[i + 1] if i + 1 < len(token_offsets) else off + 1
        if start <= off < end or (off < start < nxt):
            picked.append(lp)
    return sum(picked) / len(picked) if picked else None
