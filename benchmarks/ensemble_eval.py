"""Quality against cost of BatchPrompt ensembles (BPE + SEAS) for translation, on a real engine.

    .venv/bin/python -m benchmarks.ensemble_eval --data ../shared/data/newstest2021_ende --sentences 48

For each pack size it runs the ensemble twice on the same request (all sentences in one request):
K=5 rounds without early stopping, and K=5 with early stopping. K=1 and K=3 are read off the same
runs: a round's batch composition depends only on the rounds before it (never on K), so the first
k rounds of a K=5 run are exactly what a K=k run sends; the consensus is recomputed over them
(and SEAS only stops between rounds that have a next round, as in a K=k run). Every run goes
through :class:`batchmt_server.pipeline.ensemble.Ensemble`, the code the gateway runs for quality=best.

A sentence without any valid candidate falls back, as in the gateway, to one sentence per prompt
(greedy): its answer and cost are the pack-1 run's first round.

Writes ``report.md``, ``report.json`` (numbers only: no sentences) and ``quality_vs_cost.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from batchmt_server.engines.openai_http import HTTPEngine
from batchmt_server.pipeline.consensus import agreement, mbr_select
from batchmt_server.pipeline.ensemble import Ensemble, EnsembleConfig, EnsembleRun
from batchmt_server.pipeline.runner import PromptRunner
from batchmt_server.prompting.template import Template
from batchmt_server.telemetry.stats import Stats

REPO = Path(__file__).resolve().parent.parent


def load(data: Path, n: int, skip: int) -> tuple[list[str], list[str]]:
    src = [s.strip() for s in (data / "src.en").read_text(encoding="utf-8").splitlines()]
    ref = [r.strip() for r in (data / "ref.de").read_text(encoding="utf-8").splitlines()]
    pairs = [(s, r) for s, r in zip(src, ref) if s][skip : skip + n]
    return [s for s, _ in pairs], [r for _, r in pairs]


def truncate(run: EnsembleRun, k: int, fallback: list[tuple[str, tuple[float, float, float]]]) -> dict:
    """What a K=k run of the same configuration gives: selection, cost, stops."""
    cfg = run.config
    n = len(run.results)
    hyps, fallbacks, stopped, sends = [], 0, 0, 0
    prompt = cached = completion = 0.0
    for i, res in enumerate(run.results):
        cands = [c for c in res.candidates if c.round < k]
        j = mbr_select(cands, weighted=cfg.weighted)
        for pt, cpt, ct in res.round_tokens[:k]:
            prompt, cached, completion = prompt + pt, cached + cpt, completion + ct
        sends += min(k, res.rounds)
        if res.stopped_early and res.rounds < k:
            stopped += 1
        if j is None:
            fallbacks += 1
            text, (pt, cpt, ct) = fallback[i]
            prompt, cached, completion = prompt + pt, cached + cpt, completion + ct
            hyps.append(text)
        else:
            hyps.append(cands[j].text)
    prompts = sum(1 for p in run.prompts if p.round < k)
    return dict(
        hyps=hyps,
        fallbacks=fallbacks,
        stopped=stopped,
        sends=sends,
        prompts=prompts,
        tokens=(prompt + completion) / n,
        computed=(prompt - cached + completion) / n,
        prompt=prompt / n,
        cached=cached / n,
        completion=completion / n,
    )


def simulate_es(
    run: EnsembleRun, k: int, agree: float, conf: float, fallback: list[tuple[str, tuple[float, float, float]]]
) -> dict:
    """SEAS replayed on a run without early stopping: a sentence stops after the first round r
    (1 <= r < k-1) whose candidate and the previous round's satisfy ``should_stop``; its selection and
    cost are then those of its first r+1 rounds. Exact for the decisions; the cost is approximate for
    pack > 1 (a real run re-packs the sentences that go on, so prompts and neighbours differ)."""
    from batchmt_server.pipeline.consensus import should_stop

    n = len(run.results)
    hyps, sends, stopped, tokens, computed = [], 0, 0, 0.0, 0.0
    for i, res in enumerate(run.results):
        by_round = {c.round: c for c in res.candidates}
        last = k
        for r in range(1, k - 1):
            if should_stop(by_round.get(r - 1), by_round.get(r), agree=agree, confidence=conf):
                last, stopped = r + 1, stopped + 1
                break
        cands = [c for c in res.candidates if c.round < last]
        j = mbr_select(cands, weighted=run.config.weighted)
        spent = list(res.round_tokens[:last])
        if j is None:
            text, cost = fallback[i]
            spent.append(cost)
            hyps.append(text)
        else:
            hyps.append(cands[j].text)
        sends += min(last, res.rounds)
        tokens += sum(pt + ct for pt, _, ct in spent)
        computed += sum(pt - cpt + ct for pt, cpt, ct in spent)
    return dict(hyps=hyps, sends=sends / n, stopped=stopped, tokens=tokens / n, computed=computed / n)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder with src.en and ref.de")
    ap.add_argument("--sentences", type=int, default=48)
    ap.add_argument("--skip", type=int, default=0, help="start at this sentence")
    ap.add_argument("--packs", default="1,8,16")
    ap.add_argument("--rounds", type=int, default=5, help="K of the runs; every odd k <= K is read off them")
    ap.add_argument("--url", default="http://127.0.0.1:8001")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--agree", type=float, default=None, help="override the early-stopping agreement (chrF)")
    ap.add_argument("--confidence", type=float, default=None, help="override the early-stopping mean token logprob")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per engine call (a pack-16 prompt is slow)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "ensemble")
    args = ap.parse_args()

    from batchmt_server.settings import Settings

    s = Settings(_env_file=None)
    base = EnsembleConfig(
        rounds=args.rounds,
        agree=args.agree if args.agree is not None else s.ensemble_agreement,
        confidence=args.confidence if args.confidence is not None else s.ensemble_confidence,
        temperature=s.ensemble_temperature,
        weighted=s.ensemble_weighted,
        seed=s.ensemble_seed,
    )
    packs = [int(x) for x in args.packs.split(",")]
    sources, refs = load(args.data, args.sentences, args.skip)
    template = Template.load(s.template_names[0])
    engine = HTTPEngine(args.url, model=args.model, timeout=args.timeout)
    await engine.start()

    configs = [(p, es) for p in packs for es in (False, True)]
    if 1 not in packs:
        configs.append((1, False))  # the fallback answers come from pack 1
    t0 = time.monotonic()

    async def one(pack: int, es: bool) -> tuple[tuple[int, bool], EnsembleRun, float]:
        stats = Stats()
        ens = Ensemble(PromptRunner(engine, template, stats), stats, max_prompt_tokens=4096)
        t = time.monotonic()
        run = await ens.run(sources, replace(base, pack=pack, early_stopping=es))
        print(
            f"pack {pack:>2} es {'on ' if es else 'off'}: {run.rounds_run} rounds, {len(run.prompts)} prompts, "
            f"{time.monotonic() - t:.0f}s",
            flush=True,
        )
        return (pack, es), run, time.monotonic() - t

    done = await asyncio.gather(*(one(p, es) for p, es in configs))
    await engine.close()
    runs = {key: run for key, run, _ in done}
    seconds = {key: sec for key, _, sec in done}
    single = runs[(1, False)]
    fallback = []
    for res in single.results:  # pack 1, first round, as the batcher would take it alone (even if flagged)
        text = next((t for r, t, _ in res.slots if r == 0 and t), "")
        fallback.append((text, res.round_tokens[0] if res.round_tokens else (0.0, 0.0, 0.0)))

    chrf, bleu = CHRF(), BLEU()
    rows = []
    for (pack, es), run in sorted(runs.items()):
        if pack not in packs:
            continue
        for k in range(1, args.rounds + 1, 2):
            if es and k == 1:
                continue  # K=1 has no early stopping
            t = truncate(run, k, fallback)
            rows.append(
                dict(
                    pack=pack,
                    k=k,
                    early_stopping=es,
                    chrf=chrf.corpus_score(t["hyps"], [refs]).score,
                    bleu=bleu.corpus_score(t["hyps"], [refs]).score,
                    **{
                        x: t[x]
                        for x in (
                            "tokens",
                            "computed",
                            "prompt",
                            "cached",
                            "completion",
                            "prompts",
                            "sends",
                            "stopped",
                            "fallbacks",
                        )
                    },
                )
            )
    valid = {
        f"{p}{'+es' if es else ''}": [
            sum(1 for res in run.results for c in res.candidates if c.round == r) for r in range(run.rounds_run)
        ]
        for (p, es), run in sorted(runs.items())
    }
    elapsed = time.monotonic() - t0
    # what early stopping sees after round 2, next to how good the round-2 candidate is (tuning data)
    pairs = {}
    for (p, es), run in sorted(runs.items()):
        if es:
            continue
        pts = []
        for res, ref in zip(run.results, refs):
            a = next((c for c in res.candidates if c.round == 0), None)
            b = next((c for c in res.candidates if c.round == 1), None)
            if a and b and a.confidence is not None and b.confidence is not None:
                pts.append(
                    dict(
                        agree=round(agreement(a.text, b.text), 1),
                        conf=round(min(a.confidence, b.confidence), 3),
                        chrf=round(chrf.sentence_score(b.text, [ref]).score, 1),
                    )
                )
        pairs[str(p)] = pts
    # SEAS thresholds swept offline over the runs without early stopping (tuning data, see simulate_es)
    sweep = []
    for (p, es), run in sorted(runs.items()):
        if es or p not in packs or args.rounds < 3:
            continue
        for agree_t in (50.0, 60.0, 70.0, 80.0):
            for conf_t in (-0.2, -0.35, -0.5, -0.8, -1.2):
                sim = simulate_es(run, args.rounds, agree_t, conf_t, fallback)
                sweep.append(
                    dict(
                        pack=p,
                        k=args.rounds,
                        agree=agree_t,
                        confidence=conf_t,
                        chrf=chrf.corpus_score(sim["hyps"], [refs]).score,
                        **{x: sim[x] for x in ("sends", "stopped", "tokens", "computed")},
                    )
                )
    write_report(args, base, rows, valid, seconds, elapsed, len(sources), pairs, sweep)
    return 0


def write_report(
    args,
    base: EnsembleConfig,
    rows: list[dict],
    valid: dict,
    seconds: dict,
    elapsed: float,
    n: int,
    pairs: dict,
    sweep: list[dict],
) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps(
            dict(
                command=" ".join(sys.argv),
                sentences=n,
                config=base.describe(),
                rows=rows,
                valid_candidates_per_round=valid,
                seconds={f"{p}{'+es' if es else ''}": v for (p, es), v in seconds.items()},
                elapsed=elapsed,
                round2_stop_signals=pairs,
                es_sweep_simulated=sweep,
            ),
            indent=2,
        )
    )
    single = next(r for r in rows if r["pack"] == 1 and r["k"] == 1)
    k3 = {r["pack"]: r for r in rows if r["k"] == 3 and not r["early_stopping"]}
    lines = [
        "| pack | K | early stop | chrF | BLEU | tokens/sent | computed tokens/sent | prompts | sentence sends | "
        "stopped early | fallbacks |",
        "|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pack']} | {r['k']} | {'on' if r['early_stopping'] else 'off'} | {r['chrf']:.1f} | "
            f"{r['bleu']:.1f} | {r['tokens']:.0f} | {r['computed']:.1f} | {r['prompts']} | {r['sends']} | "
            f"{r['stopped']} | {r['fallbacks']} |"
        )
    verdict = []
    for r in rows:
        if r["early_stopping"] and r["k"] > 1:
            ref3 = k3[r["pack"]]
            verdict.append(
                f"- pack {r['pack']}, K={r['k']} + early stopping: chrF {r['chrf']:.1f} vs single "
                f"{single['chrf']:.1f} ({'reached' if r['chrf'] >= single['chrf'] else 'missed'}); "
                f"{r['tokens']:.0f} tokens/sentence vs {ref3['tokens']:.0f} for K=3 without early stopping "
                f"at the same pack ({'fewer' if r['tokens'] < ref3['tokens'] else 'more'}), "
                f"computed {r['computed']:.1f} vs {ref3['computed']:.1f}; {r['stopped']} stopped early"
                + (
                    f"; {r['fallbacks']} of {n} sentences had no valid candidate and fell back to pack 1"
                    if r["fallbacks"]
                    else ""
                )
            )
    sim = [
        "| pack | K | agree ≥ | confidence ≥ | chrF | sends/sent | stopped | tokens/sent | computed/sent |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sim += [
        f"| {r['pack']} | {r['k']} | {r['agree']:g} | {r['confidence']:g} | {r['chrf']:.1f} | {r['sends']:.2f} | "
        f"{r['stopped']} | {r['tokens']:.0f} | {r['computed']:.1f} |"
        for r in sweep
    ]
    (out / "table.md").write_text(
        "\n".join(lines) + "\n\n" + "\n".join(verdict) + "\n\n"
        "Early-stopping thresholds replayed on the runs without early stopping (simulated):\n\n" + "\n".join(sim) + "\n"
    )
    plot(rows, out / "quality_vs_cost.png", single)
    print("\n".join(lines + [""] + verdict))
    print(f"\nvalid candidates per round: {valid}\nelapsed {elapsed:.0f}s")


def plot(rows: list[dict], path: Path, single: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = {1: "tab:blue", 8: "tab:orange", 16: "tab:green"}
    for ax, key, label in (
        (axes[0], "tokens", "engine tokens per sentence (prompt incl. cached + completion)"),
        (axes[1], "computed", "computed tokens per sentence (uncached prompt + completion)"),
    ):
        for pack in sorted({r["pack"] for r in rows}):
            for es, style in ((False, "o--"), (True, "s-")):
                pts = sorted(
                    [r for r in rows if r["pack"] == pack and (r["early_stopping"] == es or r["k"] == 1)],
                    key=lambda r: r["k"],
                )
                if not pts:
                    continue
                ax.plot(
                    [r[key] for r in pts],
                    [r["chrf"] for r in pts],
                    style,
                    color=colors.get(pack),
                    label=f"pack {pack}{' + early stop' if es else ''}",
                )
                for r in pts:
                    ax.annotate(
                        f"K={r['k']}", (r[key], r["chrf"]), textcoords="offset points", xytext=(4, 4), fontsize=7
                    )
        ax.axhline(single["chrf"], color="grey", lw=0.8, ls=":", label="pack 1, K=1 (single)")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("chrF")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("BatchPrompt ensembles for translation: quality vs cost (newstest2021 en-de, Gemma-3-270M)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
