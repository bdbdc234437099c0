"""Translation quality of one model through the whole gateway (in-process, real vLLM engine): the first N
sentences of a WMT set, scored with sacrebleu (BLEU and chrF, with their signatures).

    python -m benchmarks.model_eval --model smollm2 --data ../shared/data/newstest2021_ende --limit 200 --eager

One sentence per prompt by default (``--pack 1``, calibration off, translation memory off): the model's own
quality, not packing's. The prompt form is the gateway's (chat for a model with a chat template). Writes
``<out>/<model>-<quality>-pack<N>.json`` and prints a markdown row. Run it under the engine lock on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

import httpx
import sacrebleu

from batchmt_server.http.app import create_app
from batchmt_server.settings import Settings


async def evaluate(args: argparse.Namespace) -> dict:
    src = (Path(args.data) / "src.en").read_text(encoding="utf-8").splitlines()
    ref = (Path(args.data) / "ref.de").read_text(encoding="utf-8").splitlines()
    pairs = [(s.strip(), r.strip()) for s, r in zip(src, ref) if s.strip()][: args.limit]
    sources, refs = [s for s, _ in pairs], [r for _, r in pairs]
    with tempfile.TemporaryDirectory(prefix="batchmt-model-eval.") as data_dir:
        settings = Settings(
            model=args.model,
            enforce_eager=args.eager,
            calibration="off",
            pack_policy="fixed",
            max_sentences_per_prompt=args.pack,
            translation_memory_size=0,
            data_dir=Path(data_dir),
            cpu_kvcache_gib=args.kv_gib,
            max_prompts_in_flight=args.in_flight,
            max_num_seqs=args.in_flight,
            template_form=args.template_form,
            engine_args=dict(json.loads(args.engine_args)) if args.engine_args else {},
        )
        app = create_app(settings)
        t0 = time.perf_counter()
        async with app.router.lifespan_context(app):
            gw = app.state.gateway
            await gw.wait_ready()
            startup = time.perf_counter() - t0
            before = gw.stats.snapshot()
            hyps: list[str | None] = [None] * len(sources)
            t1 = time.perf_counter()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://eval", timeout=3600
            ) as client:
                sem = asyncio.Semaphore(args.concurrency)

                async def one(i: int) -> None:
                    async with sem:
                        r = await client.post(
                            "/v1/translate",
                            json={"sentences": sources[i : i + args.per_request], "quality": args.quality},
                        )
                    r.raise_for_status()
                    for k, t in enumerate(r.json()["translations"]):
                        hyps[i + k] = t["text"]

                await asyncio.gather(*(one(i) for i in range(0, len(sources), args.per_request)))
                signature = (await client.get("/v1/info")).json()["signature"]
            seconds = time.perf_counter() - t1
            snap = gw.stats.snapshot()
            form = gw.template.form
    failed = sum(h is None for h in hyps)
    texts = [h or "" for h in hyps]
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    bleu_score, chrf_score = bleu.corpus_score(texts, [refs]), chrf.corpus_score(texts, [refs])
    prompt = snap.prompt_tokens - before.prompt_tokens
    cached = snap.cached_prompt_tokens - before.cached_prompt_tokens
    return {
        "model": settings.model_name,
        "form": form,
        "quality": args.quality,
        "pack": args.pack,
        "data": str(args.data),
        "sentences": len(sources),
        "failed": failed,
        "bleu": round(bleu_score.score, 2),
        "chrf": round(chrf_score.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "gateway_signature": signature,
        "prompt_tokens": prompt,
        "cached_prompt_tokens": cached,
        "prefix_cache_hit_rate": round(cached / prompt, 4) if prompt else None,
        "completion_tokens": snap.completion_tokens - before.completion_tokens,
        "flagged_slots": sum(snap.flagged_slots.values()) - sum(before.flagged_slots.values()),
        "resent_sentences": sum(snap.resent_sentences.values()) - sum(before.resent_sentences.values()),
        "seconds": round(seconds, 1),
        "startup_seconds": round(startup, 1),
        "eager": args.eager,
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"cpus={len(__import__('os').sched_getaffinity(0))}",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--data", required=True, help="folder with src.en and ref.de")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--pack", type=int, default=1, help="sentences per prompt (fixed)")
    p.add_argument("--quality", choices=("fast", "balanced", "best"), default="fast")
    p.add_argument("--template-form", choices=("auto", "completion", "chat"), default="auto")
    p.add_argument("--per-request", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    p.add_argument("--in-flight", type=int, default=32, help="engine sequences / gateway prompts in flight")
    p.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--kv-gib", type=int, default=2)
    p.add_argument("--engine-args", default=None, help="more vLLM engine arguments as a JSON object")
    p.add_argument("--out", default="results/models")
    args = p.parse_args(argv)
    result = asyncio.run(evaluate(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result['model']}-{args.quality}-pack{args.pack}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    r = result
    print(
        f"| {r['model']} | {r['form']} | {r['quality']} | {r['sentences']} | {r['bleu']} | {r['chrf']} | "
        f"{r['failed']} | {r['flagged_slots']} | {r['prefix_cache_hit_rate']} | {r['seconds']} |"
    )
    print(f"wrote {path}; {r['bleu_signature']}; {r['chrf_signature']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
