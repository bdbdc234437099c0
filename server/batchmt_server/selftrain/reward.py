"""ReST's **Improve** step: score every candidate Grow kept, choose the best per source, keep it above a threshold.

The rewards (each higher = better), all computed without a reference:

- ``mbr``: minimum-Bayes-risk consensus, the candidate's mean agreement (sentence chrF, both directions) with the
  source's other accepted candidates (consensus.py's vote, unweighted);
- ``roundtrip``: sentence chrF of the model's own back-translation of the candidate against the English source;
- ``logprob``: the candidate's mean token log-probability;
- ``length``: minus the distance of the log character-length ratio from German's usual ratio to English;
- a combination ``a+b+...``: the mean of the named rewards' ranks within the whole pool (rank averaging: the
  rewards' scales differ).

A candidate the parser rejected (copy of the source, cut loop, echo, damaged placeholder...) has no score and is
never kept. Which reward decides is chosen by measurement: :func:`spearman_table` correlates each with sentence
chrF against references on a dev set that training never sees (``benchmarks/selftrain_reward.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..pipeline.consensus import agreement, similarity
from .grow import Candidate, GrowRecord

__all__ = [
    "BEST",
    "BEST_WITHOUT_ROUNDTRIP",
    "REWARDS",
    "parts",
    "Scored",
    "rank",
    "score_records",
    "select",
    "spearman",
]

REWARDS = ("mbr", "roundtrip", "logprob", "length")
#: the best combination measured on the dev set (benchmarks/selftrain_reward.py: Spearman 0.735 with greedy + 3
#: samples), and the best one without the round trip, which doubles Grow's engine work (0.614 with greedy + 1)
BEST = "mbr+roundtrip+length"
BEST_WITHOUT_ROUNDTRIP = "mbr+logprob+length"
#: German text is this many times the English characters, typically (a length-ratio prior, not tuned)
DE_EN_LENGTH_RATIO = 1.15


@dataclass
class Scored:
    record: int  #: index into the records
    candidate: int  #: index into the record's candidates
    source: str
    text: str
    scores: dict[str, float]


def _length(source: str, text: str) -> float:
    return -abs(math.log(max(1, len(text)) / max(1, len(source)) / DE_EN_LENGTH_RATIO))


def _mbr(c: Candidate, others: Sequence[Candidate]) -> float:
    peers = [o.text for o in others if o is not c and o.text]
    if not peers:
        return 0.0
    return sum(agreement(c.text or "", p) for p in peers) / len(peers)


def rank(values: Sequence[float]) -> list[float]:
    """Average ranks (1-based; ties share their mean rank), as Spearman's rho uses them."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            ranks[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (scipy.stats.spearmanr where scipy is installed; the same formula without)."""
    if len(xs) != len(ys) or len(xs) < 3:
        raise ValueError("spearman needs two sequences of the same length, at least 3")
    try:
        from scipy.stats import spearmanr

        return float(spearmanr(xs, ys).statistic)
    except ImportError:  # pragma: no cover - scipy comes with the selftrain extra
        rx, ry = rank(xs), rank(ys)
        mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
        cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
        var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
        return cov / var if var else 0.0


def parts(reward: str) -> tuple[str, ...]:
    """The single rewards a reward name combines (``"mbr+length"`` -> mbr, length); an unknown one is an error."""
    names = tuple(reward.split("+"))
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward {'+'.join(unknown)!r}: use {', '.join(REWARDS)} or a+b combinations")
    return names


def score_records(records: Sequence[GrowRecord], combos: Sequence[str] = ()) -> list[Scored]:
    """Every accepted candidate with its rewards, and each combination in ``combos`` (rank-averaged).
    ``roundtrip`` needs Grow's round-trip stage (else 0)."""
    pool: list[Scored] = []
    for ri, rec in enumerate(records):
        ok = [c for c in rec.candidates if c.ok]
        for ci, c in enumerate(rec.candidates):
            if not c.ok or c.text is None:
                continue
            pool.append(
                Scored(
                    ri,
                    ci,
                    rec.source,
                    c.text,
                    {
                        "mbr": _mbr(c, ok),
                        "roundtrip": similarity(c.back, rec.source) if c.back else 0.0,
                        "logprob": c.logprob if c.logprob is not None else -99.0,
                        "length": _length(rec.source, c.text),
                    },
                )
            )
    for combo in combos:
        names = parts(combo)
        if len(names) < 2 or not pool:
            continue
        ranks = {name: rank([s.scores[name] for s in pool]) for name in names}
        for i, s in enumerate(pool):
            s.scores[combo] = sum(ranks[name][i] for name in names) / len(names) / len(pool)
    return pool


def select(pool: Sequence[Scored], reward: str, keep: float) -> tuple[list[Scored], float]:
    """ReST's Improve filter: each source's best candidate by ``reward``; of those, the best ``keep`` share
    (0..1] survives, ties cut in source order. Returns the kept ones (in source order) and the threshold they passed."""
    if not 0 < keep <= 1:
        raise ValueError("keep must be in (0, 1]")
    best: dict[int, Scored] = {}
    for s in pool:
        b = best.get(s.record)
        if b is None or s.scores[reward] > b.scores[reward]:
            best[s.record] = s
    if not best:
        return [], float("nan")
    ranked = sorted(best.values(), key=lambda s: s.scores[reward], reverse=True)  # stable: ties keep source order
    kept = ranked[: max(1, math.ceil(keep * len(ranked)))]
    return sorted(kept, key=lambda s: s.record), kept[-1].scores[reward]
