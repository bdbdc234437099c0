"""Glossary enforcement and formality, measured on the real engine (issue 27).

    flock /tmp/batchmt-engine.lock .venv/bin/python -m benchmarks.glossary_eval --out results/glossary

One engine process (in-process vLLM, eager, the ``--model``: ``embedded`` by default), the gateway's own pipeline
(runner, batcher, translator: the same code ``/v1/translate`` runs, with its checks and re-sends), and two test sets
written for this benchmark (``benchmarks/data/``):

- **glossary**: ``glossary_en_de.tsv``, 112 English sentences with at least one term of ``glossary_terms.tsv``
  (29 terms, chosen where the model's natural choice differs: password -> Kennwort, update -> Aktualisierung, ...),
  and German references. Methods: ``none`` (no glossary), ``hints`` (a: term pairs in the per-sentence part of the
  prompt), ``mask`` (b: source terms masked, target terms put back), ``check`` (c alone: re-send once, then suspect),
  ``hints+check`` and ``mask+check``. Term accuracy: the share of term occurrences whose German term is in the
  output (``steer.term_found``: case-insensitive, the last word may be inflected); chrF against the references;
  cost: prompt and completion tokens per sentence, sentences per second, re-sends; suspect: delivered suspect.
- **formality**: ``formality_en.txt``, 102 English sentences addressing the reader. Per setting (default, more,
  less, prefer_more, prefer_less): the share of outputs in the requested register by rule (``steer.register``:
  Sie/Ihnen/Ihr inside a sentence vs du/dich/dein), and how many were delivered ``suspect`` (more/less only).

Writes ``<out>/report.md`` and ``<out>/report.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sacrebleu.metrics import CHRF

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "benchmarks" / "data"
GLOSSARY_METHODS = ("none", "hints", "mask", "check", "hints+check", "mask+check")
FORMALITIES = ("default", "more", "less", "prefer_more", "prefer_less")
WANTED = {"more": "formal", "prefer_more": "formal", "less": "informal", "prefer_less": "informal"}


def load_glossary_set() -> tuple[list[tuple[str, str]], list[str], list[str]]:
    lines = (DATA / "glossary_terms.tsv").read_text("utf-8").splitlines()
    terms = [(a, b) for a, b in (line.split("\t") for line in lines if line)]
    rows = [line.split("\t") for line in (DATA / "glossary_en_de.tsv").read_text("utf-8").splitlines() if line]
    return terms, [r[0] for r in rows], [r[1] for r in rows]


class StaticGlossaries:
    """The translator's glossary resolver, for one glossary held in memory (no store in a benchmark)."""

    def __init__(self, entries: list[tuple[str, str]]) -> None:
        from batchmt_server.glossaries.serving import LoadedGlossary
        from batchmt_server.glossaries.terms import TermIndex, digest
        from batchmt_server.stores.base import GlossaryRecord

        rec = GlossaryRecord("gl-bench", None, "bench", "en", "de", len(entries), digest(entries), 0)
        self.loaded = LoadedGlossary(rec, TermIndex(entries))

    async def resolve(self, glossary_id: str, tenant: str | None, source_lang: str, target_lang: str) -> Any:
        return self.loaded


async def translate_all(translator: Any, texts: list[str], chunk: int, **body: Any) -> tuple[list[dict], dict, float]:
    """Every text through ``translator.translate`` in requests of ``chunk`` (all in flight): the translations,
    the summed usage, the wall time."""
    from batchmt_server.protocol.schemas import TranslateRequest

    async def one(part: list[str]) -> Any:
        req = TranslateRequest(texts=part, split_sentences="off", translation_memory=False, **body)
        return await translator.translate(req)

    t0 = time.monotonic()
    responses = await asyncio.gather(*(one(texts[i : i + chunk]) for i in range(0, len(texts), chunk)))
    secs = time.monotonic() - t0
    out = [t.model_dump() for r in responses for t in r.translations]
    usage: Counter = Counter()
    for r in responses:
        u = r.usage
        usage.update(prompt=u.prompt_tokens, cached=u.cached_prompt_tokens, completion=u.completion_tokens)
        usage.update(retries=u.retries, prompts=u.engine_prompts)
    return out, dict(usage), secs


async def run(args: argparse.Namespace) -> dict:
    from batchmt_server.engines.vllm_inprocess import VLLMEngine
    from batchmt_server.models.embedded import resolve_model
    from batchmt_server.pipeline.batcher import Batcher
    from batchmt_server.pipeline.runner import PromptRunner
    from batchmt_server.pipeline.translator import Translator
    from batchmt_server.prompting.template import Template
    from batchmt_server.settings import Settings
    from batchmt_server.telemetry.stats import Stats

    settings = Settings(max_sentences_per_prompt=args.pack, max_sentences_per_request=64)
    t_start = time.monotonic()
    engine: Any
    if args.model == "fake":  # a dry run of this script's own logic (no engine, no lock needed)
        from batchmt_server.engines.fake import FakeEngine

        engine = FakeEngine(template=Template.load(args.template))
    else:
        engine = VLLMEngine(
            resolve_model(args.model, settings.cache_dir),
            model_name=args.model,
            enforce_eager=True,
            max_num_seqs=args.max_num_seqs,
            cpu_kvcache_gib=args.kv_gib,
        )
    await engine.start()
    engine_start = time.monotonic() - t_start
    template = Template.load(args.template)
    stats = Stats()
    runner = PromptRunner(engine, template, stats, max_in_flight=2 * args.max_num_seqs)
    batcher = Batcher(runner, stats, max_wait_ms=5, max_sentences_per_prompt=args.pack, max_prompt_tokens=1024)
    batcher.start()
    rows: list[dict] = []
    try:
        warm = load_glossary_set()[1][:4]  # the prefix cached, as in serving
        await translate_all(Translator(batcher, stats, settings, args.model, template), warm, args.chunk)
        if "glossary" in args.parts:
            rows += await glossary_part(args, batcher, stats, settings, template)
        if "formality" in args.parts:
            rows += await formality_part(args, batcher, stats, settings, template)
    finally:
        await batcher.close()
        await engine.close()
    return {
        "model": args.model,
        "template": template.ref,
        "pack": args.pack,
        "engine_start_s": round(engine_start, 1),
        "total_s": round(time.monotonic() - t_start, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }


async def glossary_part(args: argparse.Namespace, batcher: Any, stats: Any, settings: Any, template: Any) -> list[dict]:
    from batchmt_server.glossaries.terms import TermIndex
    from batchmt_server.pipeline.translator import Translator
    from batchmt_server.prompting.steer import term_found

    terms, sources, refs = load_glossary_set()
    glossaries = StaticGlossaries(terms)
    index = TermIndex(terms)
    chrf = CHRF()
    rows = []

    for method in GLOSSARY_METHODS:
        gm = method.split("+")[0] if method != "none" else "hints"
        tr = Translator(
            batcher,
            stats,
            settings.model_copy(update={"glossary_method": gm}),
            args.model,
            template,
            glossaries=glossaries,  # type: ignore[arg-type]
        )
        tr.glossary_check = method in ("check", "hints+check", "mask+check")
        if method in ("hints", "mask"):
            tr.glossary_check = False
        body = {} if method == "none" else {"glossary_id": "gl-bench"}
        out, usage, secs = await translate_all(tr, sources, args.chunk, **body)
        hyps = [t["text"] or "" for t in out]
        occ = [(m.target, h) for s, h in zip(sources, hyps) for m in index.find(s)]
        hit = sum(term_found(t, h) for t, h in occ)
        suspect = sum(
            t["status"] == "suspect" and any(x["reason"] == "glossary" for x in t["suspect_segments"]) for t in out
        )
        row = {
            "part": "glossary",
            "method": method,
            "sentences": len(sources),
            "term_occurrences": len(occ),
            "term_accuracy": round(100 * hit / len(occ), 1),
            "chrf": round(chrf.corpus_score(hyps, [refs]).score, 1),
            "failed": sum(t["status"] == "failed" for t in out),
            "suspect_glossary": suspect,
            **cost(usage, len(sources), secs),
        }
        print(json.dumps(row), flush=True)
        row["_outputs"] = [{"source": s, "output": t["text"], "status": t["status"]} for s, t in zip(sources, out)]
        rows.append(row)
        if args.samples:
            for s, h in list(zip(sources, hyps))[:3]:
                print(f"   {s} -> {h}", flush=True)
    return rows


def cost(usage: dict, n: int, secs: float) -> dict:
    """A part's engine cost per sentence (tokens, re-sends) and its speed."""
    return {
        "prompt_tokens_per_sentence": round(usage.get("prompt", 0) / n, 1),
        "cached_tokens_per_sentence": round(usage.get("cached", 0) / n, 1),
        "completion_tokens_per_sentence": round(usage.get("completion", 0) / n, 1),
        "resent_per_100": round(100 * usage.get("retries", 0) / n, 1),
        "seconds": round(secs, 1),
        "sentences_per_s": round(n / secs, 2),
    }


async def formality_part(
    args: argparse.Namespace, batcher: Any, stats: Any, settings: Any, template: Any
) -> list[dict]:
    from batchmt_server.pipeline.translator import Translator
    from batchmt_server.prompting.steer import register

    rows = []

    texts = [x for x in (DATA / "formality_en.txt").read_text("utf-8").splitlines() if x.strip()]
    tr = Translator(batcher, stats, settings, args.model, template)
    for formality in FORMALITIES:
        out, usage, secs = await translate_all(tr, texts, args.chunk, formality=formality)
        # the sentences address the reader: a sentence-initial Sie/Ihr is "you" here (strict)
        regs: Counter[str] = Counter(register(t["text"] or "", strict=True) for t in out)
        want = WANTED.get(formality)
        # what was delivered "ok" in the forbidden register (more/less must never do this)
        wrong_ok = (
            sum(
                t["status"] == "ok"
                and register(t["text"] or "", strict=True)
                in ({"informal", "mixed"} if formality == "more" else {"formal", "mixed"})
                for t in out
            )
            if formality in ("more", "less")
            else None
        )
        row = {
            "part": "formality",
            "model": args.model,
            "formality": formality,
            "sentences": len(texts),
            "formal": regs["formal"],
            "informal": regs["informal"],
            "mixed": regs["mixed"],
            "none": regs["none"],
            "in_requested_register_pct": round(100 * regs[want] / len(texts), 1) if want else None,
            "suspect_formality": sum(any(x["reason"] == "formality" for x in t["suspect_segments"]) for t in out),
            "wrong_register_as_ok": wrong_ok,
            **cost(usage, len(texts), secs),
        }
        print(json.dumps(row), flush=True)
        row["_outputs"] = [{"source": s, "output": t["text"], "status": t["status"]} for s, t in zip(texts, out)]
        rows.append(row)
        if args.samples:
            for s, t in list(zip(texts, out))[:3]:
                print(f"   {s} -> {t['text']}", flush=True)
    return rows


def report(res: dict, args: argparse.Namespace) -> str:
    lines = [
        f"# Glossary enforcement and formality on {res['model']}",
        "",
        f"`python -m benchmarks.glossary_eval --model {res['model']} --template {args.template} --pack {res['pack']} "
        f"--parts {' '.join(args.parts)}` ({res['date']}; in-process vLLM, eager, greedy; template {res['template']}, "
        f"up to {res['pack']} sentences per prompt; engine start {res['engine_start_s']} s, run {res['total_s']} s; "
        "the machine's 2 cores shared with a training run, so sentences/s compare methods within this run only).",
        "",
    ]
    g = [r for r in res["rows"] if r["part"] == "glossary"]
    if g:
        lines += [
            f"## Glossary ({g[0]['sentences']} sentences, {g[0]['term_occurrences']} term occurrences, 29 terms; "
            "benchmarks/data/glossary_*.tsv)",
            "",
            "| method | term accuracy % | chrF | suspect (glossary) | failed | re-sent /100 | prompt tok/sent | "
            "cached tok/sent | compl. tok/sent | sent./s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in g:
            lines.append(
                f"| {r['method']} | {r['term_accuracy']} | {r['chrf']} | {r['suspect_glossary']} | {r['failed']} | "
                f"{r['resent_per_100']} | {r['prompt_tokens_per_sentence']} | {r['cached_tokens_per_sentence']} | "
                f"{r['completion_tokens_per_sentence']} | {r['sentences_per_s']} |"
            )
        lines.append("")
    f = [r for r in res["rows"] if r["part"] == "formality"]
    if f:
        lines += [
            f"## Formality ({f[0]['sentences']} sentences addressing the reader; benchmarks/data/formality_en.txt)",
            "",
            "Register by rule: formal = Sie/Ihnen/Ihr inside a sentence, informal = du/dich/dir/dein/euch; none = "
            "neither (e.g. an imperative without a pronoun). `wrong as ok`: delivered with status ok in the "
            "forbidden register (must be 0 for more/less).",
            "",
            "| formality | in requested register % | formal | informal | mixed | none | suspect (formality) | "
            "wrong as ok | re-sent /100 | prompt tok/sent | cached tok/sent | sent./s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in f:
            pct = "–" if r["in_requested_register_pct"] is None else r["in_requested_register_pct"]
            wrong = "–" if r["wrong_register_as_ok"] is None else r["wrong_register_as_ok"]
            lines.append(
                f"| {r['formality']} | {pct} | {r['formal']} | {r['informal']} | {r['mixed']} | {r['none']} | "
                f"{r['suspect_formality']} | {wrong} | {r['resent_per_100']} | {r['prompt_tokens_per_sentence']} | "
                f"{r['cached_tokens_per_sentence']} | {r['sentences_per_s']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default="embedded", help="an embedded model name (default: embedded, the default); fake: dry run"
    )
    ap.add_argument("--template", default="en-de-short", help="what calibration chose for the default model")
    ap.add_argument("--pack", type=int, default=1, help="sentences per prompt at most (calibration chose 1)")
    ap.add_argument("--chunk", type=int, default=16, help="texts per translate request (all in flight)")
    ap.add_argument("--max-num-seqs", type=int, default=32)
    ap.add_argument("--kv-gib", type=int, default=2)
    ap.add_argument("--parts", nargs="+", choices=("glossary", "formality"), default=["glossary", "formality"])
    ap.add_argument("--samples", action="store_true", help="print a few outputs per method")
    ap.add_argument("--out", default="results/glossary")
    args = ap.parse_args(argv)
    res = asyncio.run(run(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "report" if args.model == "embedded" else f"report-{args.model}"
    if args.parts != ["glossary", "formality"]:
        stem += "-" + "-".join(args.parts)
    with open(out / f"{stem}-outputs.jsonl", "w", encoding="utf-8") as f:
        for row in res["rows"]:
            for o in row.pop("_outputs", []):
                key = row.get("method") or row.get("formality")
                f.write(json.dumps({"part": row["part"], "setting": key, **o}, ensure_ascii=False) + "\n")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = report(res, args)
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
