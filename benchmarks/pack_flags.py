"""Which parser flags fire in packed prompts, and what each re-send bought.

Packing pays only when few slots are re-sent: a flagged slot costs its share of the packed prompt plus a prompt of
its own. This runs dev sentences through the gateway's batcher at fixed pack sizes (``translate_fixed``: the runner,
the slot guard, the parser and the re-sends, as served) and records every first-pass parse. Per flag reason it
reports how many slots it flagged and the sentence chrF of the flagged text against the delivered text (the
re-send's), both against the reference: a reason whose flagged text scores like its re-send is re-sending for
nothing; one far below it catches real damage.

    flock /tmp/batchmt-engine.lock python -m benchmarks.pack_flags --model embedded --template en-de-list \\
        --packs 4,8 --lines 200:456 --out results/selftrain/pack-flags
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from benchmarks.selftrain_eval import _read


def _recording(template: Any, calls: list[tuple[list[str], list[Any]]]) -> Any:
    """The template with ``parse`` recording (sources, slots) per call; everything else is the template's."""
    from batchmt_server.prompting.template import Template

    @dataclass(frozen=True)
    class Recording(Template):
        def parse(self, completion: str, sources: list[str], finish_reason: str | None = None) -> list[Any]:
            slots = super().parse(completion, sources, finish_reason)
            calls.append((list(sources), slots))
            return slots

    return Recording(**{f.name: getattr(template, f.name) for f in fields(template)})


def _chrf(hyp: str, ref: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_chrf(hyp, [ref]).score


async def run_pack(engine: Any, template: Any, srcs: list[str], refs: list[str], pack: int) -> dict[str, Any]:
    from batchmt_server.pipeline.calibration import translate_fixed

    calls: list[tuple[list[str], list[Any]]] = []
    t0 = time.monotonic()
    hyps, stats = await translate_fixed(engine, _recording(template, calls), srcs, pack)
    seconds = time.monotonic() - t0
    index = {s: i for i, s in enumerate(srcs)}
    first: dict[int, Any] = {}  # sentence -> its slot in the first prompt that carried it
    for sources, slots in calls:
        for s, slot in zip(sources, slots):
            first.setdefault(index[s], slot)
    by_reason: dict[str, list[tuple[float, float]]] = defaultdict(list)
    examples: dict[str, list[dict[str, str]]] = defaultdict(list)
    for i, slot in first.items():
        if slot.reason is None:
            continue
        flagged, delivered = _chrf(slot.text or "", refs[i]), _chrf(hyps[i], refs[i])
        by_reason[slot.reason].append((flagged, delivered))
        if len(examples[slot.reason]) < 3:
            examples[slot.reason].append({"flagged": slot.text or "", "delivered": hyps[i]})
    snap = stats.snapshot()
    n = len(srcs)
    reasons = {
        r: {
            "slots": len(v),
            "share": round(len(v) / n, 3),
            "flagged_chrf": round(sum(a for a, _ in v) / len(v), 1),
            "delivered_chrf": round(sum(b for _, b in v) / len(v), 1),
        }
        for r, v in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    }
    return {
        "pack": pack,
        "sentences": n,
        "seconds": round(seconds, 1),
        "resent_share": round(sum(snap.resent_sentences.values()) / n, 3),
        "billed_tokens_per_sentence": round(
            (snap.prompt_tokens - snap.cached_prompt_tokens + snap.completion_tokens) / n, 1
        ),
        "reasons": reasons,
        "examples": examples,
    }


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Parser flags in packed prompts",
        "",
        f"Command: `python -m benchmarks.pack_flags --model {args.model} --template {args.template} "
        f"--packs {args.packs} --lines {args.lines}`",
        "Per reason: first-pass slots flagged, and the mean sentence chrF (sacrebleu defaults) against the reference "
        "of the flagged text and of the text delivered after the re-send.",
        "",
        "| pack | re-sent / sent | reason | slots | share | chrF flagged | chrF delivered |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        for reason, r in row["reasons"].items():
            lines.append(
                f"| {row['pack']} | {row['resent_share']} | {reason} | {r['slots']} | {r['share']} | "
                f"{r['flagged_chrf']} | {r['delivered_chrf']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--template", default="en-de-list")
    ap.add_argument("--packs", default="4,8")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/newstest2021_ende"))
    ap.add_argument("--lines", default="200:456")
    ap.add_argument("--kv-gib", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    srcs, refs = _read(args.data, args.lines)

    async def run() -> list[dict[str, Any]]:
        from batchmt_server.engines.vllm_inprocess import VLLMEngine
        from batchmt_server.models.embedded import resolve_model
        from batchmt_server.prompting.template import Template
        from batchmt_server.settings import Settings

        s = Settings()
        engine = VLLMEngine(
            resolve_model(args.model, s.cache_dir),
            model_name=Path(args.model).name,
            enforce_eager=True,
            cpu_kvcache_gib=args.kv_gib,
        )
        await engine.start()
        try:
            template = Template.load(args.template)
            rows = []
            for pack in (int(p) for p in args.packs.split(",")):
                row = await run_pack(engine, template, srcs, refs, pack)
                print(json.dumps(row, ensure_ascii=False), flush=True)
                rows.append(row)
            return rows
        finally:
            await engine.close()

    rows = asyncio.run(run())
    text = report(rows, args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text, encoding="utf-8")
        (args.out / "report.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
