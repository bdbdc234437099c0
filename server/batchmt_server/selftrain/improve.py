"""Improve (the reward's selection) and the training data built from what it kept.

The data come in the forms the gateway sends (``prompts/en-de-zero.toml``, no few-shot examples, so the long
prefix can go):

- **zero-shot**: the instruction and one numbered sentence; the completion is `` <translation>`` and the blank
  line that ends every batch (the template's stop string);
- **packed**: 2..``max_pack`` numbered sentences in BatchPrompt's layout (the echo of each source before its
  translation), the kept pairs shuffled into packs as BPE permutes them, so the model learns to pack.

The loss is on the completion only (``train.py``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..prompting.parsing import clean
from ..prompting.template import Template
from .grow import GrowRecord
from .reward import score_records, select

__all__ = ["build_data", "completion_for", "improve", "packs"]


def improve(records: Sequence[GrowRecord], reward: str, keep: float, out: Path) -> dict[str, Any]:
    """Score, select, and write ``out`` (one kept ``{index, source, target, score}`` a line)."""
    pool = score_records(records, [reward])
    kept, threshold = select(pool, reward, keep)
    with out.open("w", encoding="utf-8") as f:
        for s in kept:
            rec = records[s.record]
            row = {"index": rec.index, "source": s.source, "target": s.text, "score": s.scores[reward]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    greedy_kept = sum(not records[s.record].candidates[s.candidate].sampled for s in kept)
    return {
        "reward": reward,
        "keep": keep,
        "threshold": threshold,
        "sources": len(records),
        "sources_with_candidates": len({s.record for s in pool}),
        "kept": len(kept),
        "kept_greedy": greedy_kept,
        "kept_sampled": len(kept) - greedy_kept,
    }


def completion_for(template: Template, pairs: Sequence[tuple[str, str]]) -> str:
    """What the model should write after ``template.render([sources])``: the first translation, then per further
    pair its echo and translation, then the blank line that ends the batch."""
    first = f" {clean(pairs[0][1])}"
    rest = [template._pair(i, s, t) for i, (s, t) in enumerate(pairs[1:], 2)]
    return "\n".join([first, *rest]) + "\n\n"


def packs(pairs: Sequence[tuple[str, str]], max_pack: int, rng: random.Random) -> list[list[tuple[str, str]]]:
    """The pairs shuffled and cut into packs of 2..max_pack (sizes drawn uniformly; a last single joins a pack)."""
    order = list(pairs)
    rng.shuffle(order)
    out: list[list[tuple[str, str]]] = []
    i = 0
    while i < len(order):
        n = rng.randint(2, max(2, max_pack))
        out.append(order[i : i + n])
        i += n
    if len(out) > 1 and len(out[-1]) == 1:
        last = out.pop()
        out[-1] = out[-1] + last
    return out


def build_data(selected: Path, out: Path, settings: Any, cfg: Any) -> dict[str, Any]:
    """``train.jsonl``: one ``{prompt, completion, n}`` a line, zero-shot and packed, in a shuffled order."""
    template = Template.load(cfg.zero_template, settings.prompts_dir)
    rows = [json.loads(line) for line in selected.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = [(r["source"], r["target"]) for r in rows]
    rng = random.Random(cfg.seed)
    examples: list[dict[str, Any]] = [
        {"prompt": template.render([s]), "completion": completion_for(template, [(s, t)]), "n": 1} for s, t in pairs
    ]
    share = cfg.packed_share
    while share > 0 and len(pairs) >= 2:
        part = pairs if share >= 1 else rng.sample(pairs, max(2, int(share * len(pairs))))
        for p in packs(part, cfg.max_pack, rng):
            examples.append(
                {"prompt": template.render([s for s, _ in p]), "completion": completion_for(template, p), "n": len(p)}
            )
        share -= 1
    rng.shuffle(examples)
    with out.open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    return {
        "template": template.ref,
        "pairs": len(pairs),
        "examples": len(examples),
        "zero_shot": sum(e["n"] == 1 for e in examples),
        "packed": sum(e["n"] > 1 for e in examples),
        "packed_sentences": sum(e["n"] for e in examples if e["n"] > 1),
    }
