"""Which reward should Improve use? Each reward's Spearman correlation with sentence chrF against references, on
dev sentences that training never sees, and what selecting by it gives.

Input: a Grow file of the dev sentences with the round trip done (``grow.rt.jsonl``, written by
``batchmt-server selftrain --stages grow`` or ``selftrain.pipeline.grow_with_engine``) and the references.

    python -m benchmarks.selftrain_reward --grow <work>/dev/grow.rt.jsonl --data ../shared/data/newstest2021_ende \\
        --out results/selftrain/reward

Per reward: ρ over every accepted candidate (pooled), ρ within sources (mean over sources with 3+ candidates),
and the corpus chrF of the candidate it selects per source, beside greedy decoding and the oracle (the candidate
with the best sentence chrF: the ceiling of any reward).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from batchmt_server.pipeline.consensus import similarity
from batchmt_server.selftrain.grow import read_records
from batchmt_server.selftrain.reward import REWARDS, score_records, spearman


def _row(name: str, pool: list, truth: list[float], covered: list[int], corpus) -> dict:
    """One reward's line: pooled rho, mean rho within sources, and the corpus chrF of its pick per source."""
    values = [s.scores[name] for s in pool]
    per_source = []
    for i in covered:
        idx = [n for n, s in enumerate(pool) if s.record == i]
        if len(idx) >= 3 and len({values[n] for n in idx}) > 1 and len({truth[n] for n in idx}) > 1:
            per_source.append(spearman([values[n] for n in idx], [truth[n] for n in idx]))
    best: dict[int, tuple[float, str]] = {}
    for s, v in zip(pool, values):
        if s.record not in best or v > best[s.record][0]:
            best[s.record] = (v, s.text)
    return {
        "reward": name,
        "rho_pooled": round(spearman(values, truth), 3),
        "rho_within_source": round(sum(per_source) / len(per_source), 3) if per_source else None,
        "sources_within": len(per_source),
        "selected_chrf": corpus({i: t for i, (_, t) in best.items()}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grow", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/newstest2021_ende"))
    ap.add_argument("--out", type=Path, default=Path("results/selftrain/reward"))
    ap.add_argument("--k", type=int, default=None, help="use only the greedy and the first K sampled candidates")
    ap.add_argument(
        "--combos",
        default="mbr+roundtrip,mbr+length,mbr+roundtrip+length,roundtrip+length,mbr+logprob+length,logprob+length",
        help="rank-averaged combinations to measure beside the single rewards",
    )
    args = ap.parse_args(argv)
    import sacrebleu

    refs = (args.data / "ref.de").read_text(encoding="utf-8").splitlines()
    records = read_records(args.grow)
    if args.k is not None:
        for r in records:
            r.candidates = [c for c in r.candidates if not c.sampled] + [c for c in r.candidates if c.sampled][: args.k]
    combos = [c for c in args.combos.split(",") if c]
    pool = score_records(records, combos)
    truth = [similarity(s.text, refs[records[s.record].index].strip()) for s in pool]
    chrf = sacrebleu.metrics.CHRF()

    def corpus(pick: dict[int, str]) -> float:
        idx = sorted(pick)
        return round(
            chrf.corpus_score([pick[i] for i in idx], [[refs[records[i].index].strip() for i in idx]]).score, 2
        )

    covered = sorted({s.record for s in pool})
    greedy = {
        i: next((c.text for c in records[i].candidates if not c.sampled and c.ok and c.text), None) for i in covered
    }
    oracle: dict[int, tuple[float, str]] = {}
    for s, t in zip(pool, truth):
        if s.record not in oracle or t > oracle[s.record][0]:
            oracle[s.record] = (t, s.text)
    # greedy may be rejected where a sample was accepted: then the first accepted candidate stands in for it
    first_ok = {i: next(c.text for c in records[i].candidates if c.ok and c.text) for i in covered}
    greedy_pick = {i: greedy[i] or first_ok[i] for i in covered}
    rows = [_row(name, pool, truth, covered, corpus) for name in [*REWARDS, *combos]]
    summary = {
        "sources": len(records),
        "sources_with_accepted": len(covered),
        "candidates": sum(len(r.candidates) for r in records),
        "accepted": len(pool),
        "greedy_chrf": corpus(greedy_pick),
        "oracle_chrf": corpus({i: t for i, (_, t) in oracle.items()}),
        "chrf_signature": str(chrf.get_signature()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps({"summary": summary, "rewards": rows}, indent=2) + "\n")
    lines = [
        "# Rewards against sentence chrF (dev sentences, references used only here)",
        "",
        f"Command: `python -m benchmarks.selftrain_reward {' '.join(argv or __import__('sys').argv[1:])}`",
        "",
        f"{summary['sources']} sources, {summary['candidates']} candidates (greedy + sampled), {summary['accepted']}"
        f" accepted by the parser. Corpus chrF of the greedy candidate: {summary['greedy_chrf']}; of the oracle "
        f"(best candidate by sentence chrF against the reference): {summary['oracle_chrf']}.",
        "",
        "| reward | Spearman ρ (all candidates) | mean ρ within a source | chrF of its pick |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['reward']} | {row['rho_pooled']} | {row['rho_within_source']} | {row['selected_chrf']} |")
    lines += ["", f"chrF `{summary['chrf_signature']}`", ""]
    (args.out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
