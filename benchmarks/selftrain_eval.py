"""The self-trained model against its base, measured in one run on dev sentences training never saw.

Arms (each a full pass over the same sentences; one engine per model, started in turn):

- ``plain-base-long``: plain vLLM (every prompt sent to the engine at once, no gateway), the base model, the long
  few-shot prompt (``en-de-packed``), one sentence per prompt: the baseline of the speed ratio;
- ``base-zero``: the base model zero-shot (what the long prefix buys it);
- ``previous-pN`` (with ``--previous``): an earlier round's model with its template at ``--previous-packs``;
- ``trained-pN``: the self-trained model with ``--template`` (zero-shot) through the gateway's batcher at fixed
  pack size N.

Per arm: chrF and BLEU (sacrebleu, signatures printed), the share of outputs that copy the English source, tokens
per sentence (prompt, cached, completion) and sentences/s. Writes ``report.md`` and ``report.json``.

    flock /tmp/batchmt-engine.lock python -m benchmarks.selftrain_eval --model <trained folder> \\
        --data ../shared/data/newstest2021_ende --lines 200:1002 --out results/selftrain/eval
    # round 2 (no echoes) against round 1 (the shipped adapter) and the base:
    ... --model <round-2 folder> --template en-de-list --previous embedded --previous-template en-de-zero
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any


def _read(data: Path, lines: str) -> tuple[list[str], list[str]]:
    a, b = (int(x) for x in lines.split(":"))
    src = (data / "src.en").read_text(encoding="utf-8").splitlines()[a:b]
    ref = (data / "ref.de").read_text(encoding="utf-8").splitlines()[a:b]
    keep = [(s.strip(), r.strip()) for s, r in zip(src, ref) if s.strip()]
    return [s for s, _ in keep], [r for _, r in keep]


def _scores(hyps: list[str], srcs: list[str], refs: list[str]) -> dict[str, Any]:
    import sacrebleu

    from batchmt_server.prompting.parsing import is_copy

    chrf = sacrebleu.metrics.CHRF()
    bleu = sacrebleu.metrics.BLEU()
    c = chrf.corpus_score(hyps, [refs])
    b = bleu.corpus_score(hyps, [refs])
    return {
        "chrf": round(c.score, 2),
        "bleu": round(b.score, 2),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_signature": str(bleu.get_signature()),
        "copies": sum(is_copy(s, h) for s, h in zip(srcs, hyps)),
        "empty": sum(not h.strip() for h in hyps),
    }


async def _plain(engine: Any, template: Any, srcs: list[str]) -> tuple[list[str], dict[str, float]]:
    """Plain vLLM: every one-sentence prompt to the engine at once; the hypothesis is the first line."""
    from batchmt_server.engines import GenerationParams

    async def one(s: str):
        params = GenerationParams(
            max_tokens=template.max_tokens([engine.count_tokens(s)]), stop=template.stop_for(1), temperature=0.0
        )
        return await engine.generate(template.render([s]), params)

    outs = await asyncio.gather(*(one(s) for s in srcs))
    hyps = [o.text.strip().split("\n")[0].strip() for o in outs]
    tokens = {
        "prompt_tokens": sum(o.prompt_tokens for o in outs),
        "cached_prompt_tokens": sum(o.cached_prompt_tokens for o in outs),
        "completion_tokens": sum(o.completion_tokens for o in outs),
    }
    return hyps, tokens


async def _gateway(engine: Any, template: Any, srcs: list[str], pack: int) -> tuple[list[str], dict[str, float]]:
    from batchmt_server.pipeline.calibration import translate_fixed

    hyps, stats = await translate_fixed(engine, template, srcs, pack, in_flight=2 * engine.max_num_seqs)
    snap = stats.snapshot()
    tokens: dict[str, float] = {
        "prompt_tokens": snap.prompt_tokens,
        "cached_prompt_tokens": snap.cached_prompt_tokens,
        "completion_tokens": snap.completion_tokens,
        "resent_sentences": sum(snap.resent_sentences.values()),
    }
    tokens.update({f"resent:{reason}": n for reason, n in snap.resent_sentences.items()})
    return hyps, tokens


async def run_model(
    model: str, arms: list[tuple[str, str, int | None]], srcs: list[str], refs: list[str], kv: int
) -> list[dict]:
    """``arms``: (name, template, pack; None = plain vLLM) on one engine serving ``model``."""
    from batchmt_server.engines.vllm_inprocess import VLLMEngine
    from batchmt_server.models.embedded import resolve_model
    from batchmt_server.prompting.template import Template
    from batchmt_server.settings import Settings

    s = Settings()
    engine = VLLMEngine(
        resolve_model(model, s.cache_dir), model_name=Path(model).name, enforce_eager=True, cpu_kvcache_gib=kv
    )
    await engine.start()
    out = []
    try:
        for name, tname, pack in arms:
            t = Template.load(tname)
            warm = srcs[:8]  # the prefix cached and the engine warm, as in serving
            await (_plain(engine, t, warm) if pack is None else _gateway(engine, t, warm, pack or 1))
            await engine.reset_prefix_cache()
            await (_plain(engine, t, warm[:1]) if pack is None else _gateway(engine, t, warm[:1], pack or 1))
            t0 = time.monotonic()
            hyps, tokens = await (_plain(engine, t, srcs) if pack is None else _gateway(engine, t, srcs, pack))
            secs = time.monotonic() - t0
            row = {"arm": name, "model": model, "template": t.ref, "pack": pack or 1, "plain": pack is None}
            row.update(_scores(hyps, srcs, refs))
            row.update({k: round(v / len(srcs), 3 if k.startswith("resent") else 1) for k, v in tokens.items()})
            row.update({"seconds": round(secs, 1), "sentences_per_s": round(len(srcs) / secs, 3)})
            print(json.dumps(row), flush=True)
            out.append(row)
    finally:
        await engine.close()
    return out


def report(rows: list[dict], args: argparse.Namespace) -> str:
    base = next((r for r in rows if r["arm"] == "plain-base-long"), None)
    lines = [
        "# Self-trained model against its base",
        "",
        f"Command: `python -m benchmarks.selftrain_eval {' '.join(args.argv)}`",
        f"Data: `{args.data}` lines {args.lines} ({rows[0]['n']} sentences), one engine per model, eager.",
        "",
        "| arm | template | pack | chrF | BLEU | copies | prompt tok/sent | billed tok/sent | completion tok/sent"
        " | re-sent / sent | sentences/s | × plain base |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    resent = []
    for r in rows:
        billed = r["prompt_tokens"] - r["cached_prompt_tokens"] + r["completion_tokens"]
        ratio = f"{r['sentences_per_s'] / base['sentences_per_s']:.2f}" if base else "–"
        lines.append(
            f"| {r['arm']} | `{r['template']}` | {r['pack']} | {r['chrf']} | {r['bleu']} | "
            f"{r['copies']} ({100 * r['copies'] / r['n']:.1f}%) | {r['prompt_tokens']} | {billed:.1f} | "
            f"{r['completion_tokens']} | {r.get('resent_sentences', 0)} | {r['sentences_per_s']} | {ratio} |"
        )
        reasons = {k.split(":", 1)[1]: v for k, v in r.items() if k.startswith("resent:")}
        if reasons:
            resent.append(
                f"{r['arm']}: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda x: -x[1]))
            )
    if resent:
        lines += ["", "Re-sent sentences per sentence, by the parser's reason: " + "; ".join(resent) + "."]
    lines += ["", f"chrF `{rows[0]['chrf_signature']}`, BLEU `{rows[0]['bleu_signature']}`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the self-trained model's folder")
    ap.add_argument("--base", default="embedded-base", help="the base model")
    ap.add_argument("--template", default="en-de-zero", help="the self-trained model's template")
    ap.add_argument("--previous", default=None, help="an earlier round's model, measured at one per prompt")
    ap.add_argument("--previous-template", default="en-de-zero", help="the earlier round's template")
    ap.add_argument("--no-base-zero", action="store_true", help="skip the base model's zero-shot arm")
    ap.add_argument("--no-base", action="store_true", help="skip the base model (a quick round-over-round check)")
    ap.add_argument("--previous-packs", default="1", help="the earlier round's pack sizes")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/newstest2021_ende"))
    ap.add_argument("--lines", default="200:1002", help="a:b, the dev lines (0-based, b exclusive)")
    ap.add_argument("--packs", default="1,4,8", help="the trained model's pack sizes")
    ap.add_argument("--kv-gib", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("results/selftrain/eval"))
    args = ap.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    srcs, refs = _read(args.data, args.lines)
    base_arms: list[tuple[str, str, int | None]] = [("plain-base-long", "en-de-packed", None)]
    if not args.no_base_zero:
        base_arms.append(("base-zero", "en-de-zero", 1))
    trained_arms: list[tuple[str, str, int | None]] = [
        (f"trained-p{p}", args.template, int(p)) for p in args.packs.split(",")
    ]
    rows = [] if args.no_base else asyncio.run(run_model(args.base, base_arms, srcs, refs, args.kv_gib))
    if args.previous:
        previous_arms: list[tuple[str, str, int | None]] = [
            (f"previous-p{p}", args.previous_template, int(p)) for p in args.previous_packs.split(",")
        ]
        rows += asyncio.run(run_model(args.previous, previous_arms, srcs, refs, args.kv_gib))
    rows += asyncio.run(run_model(args.model, trained_arms, srcs, refs, args.kv_gib))
    for r in rows:
        r["n"] = len(srcs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = report(rows, args)
    (args.out / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
