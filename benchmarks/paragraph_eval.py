"""Paragraphs sent whole against segmented on the server, on the real engine, in one run (issue 11).

    flock /tmp/batchmt-engine.lock .venv/bin/python -m benchmarks.paragraph_eval \\
        --data ../shared/data/generaltest2022_ende --paragraphs 40 --out results/paragraphs

Paragraphs: 3-8 consecutive lines of ``src.en`` joined with a space (seeded; references joined the same
way), taken evenly over the set so every domain of it is in. One paragraph per request, 8 requests in
flight, the gateway in-process on the embedded model (eager engine, one sentence per prompt as the
calibrated default, translation memory off). Modes, on the same engine:

- ``whole``: ``split_sentences: "off"``, the paragraph is one segment (what a caller got before texts);
- ``segmented``: ``split_sentences: "on"`` (the default), cut into sentences on the server;
- ``protected``: the segmented paragraphs as HTML (``<p>``) with an added sentence holding a placeholder, a URL
  and an inline tag (``<b>``); counts texts delivered with a placeholder or a tag damaged (target 0). Not
  scored (the added sentence has no reference).

chrF and BLEU (sacrebleu, signatures in the report) per mode over the paragraphs; sentences/s are gold
sentences (the lines) per second of wall time. Writes ``report.md`` and ``report.json`` (numbers only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import httpx
import sacrebleu

from batchmt_server.http.app import create_app
from batchmt_server.settings import Settings
from batchmt_server.text.markup import tag_sequence

EXTRA = " <b>Questions go to [PERSON_1]</b> or to https://example.com/help?id=7."
PROTECTED = ("[PERSON_1]", "https://example.com/help?id=7")


def paragraphs(data: Path, n: int, seed: int) -> list[tuple[str, str, int]]:
    src = (data / "src.en").read_text(encoding="utf-8").splitlines()
    ref = (data / "ref.de").read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(src):
        k = rng.randint(3, 8)
        pairs = [(s.strip(), r.strip()) for s, r in zip(src[i : i + k], ref[i : i + k]) if s.strip()]
        i += k
        if pairs:
            chunks.append((" ".join(s for s, _ in pairs), " ".join(r for _, r in pairs), len(pairs)))
    step = max(1, len(chunks) // n)
    return chunks[::step][:n]


async def run_mode(client: httpx.AsyncClient, texts: list[str], body: dict, concurrency: int) -> tuple[list, float]:
    sem = asyncio.Semaphore(concurrency)
    out: list[dict | None] = [None] * len(texts)

    async def one(i: int) -> None:
        async with sem:
            r = await client.post("/v1/translate", json={"texts": [texts[i]], "translation_memory": False, **body})
        out[i] = (
            r.json()["translations"][0]
            if r.status_code == 200
            else {"status": f"http {r.status_code}", "text": None, "code": r.text[:200]}
        )

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(texts))))
    return out, time.perf_counter() - t0


def damaged(src_html: str, out: dict) -> bool:
    text = out.get("text")
    if text is None:
        return False  # failed: nothing delivered
    if any(text.count(p) != src_html.count(p) for p in PROTECTED):
        return True
    try:
        return tag_sequence(text, "html") != tag_sequence(src_html, "html")
    except Exception:
        return True


async def evaluate(args: argparse.Namespace) -> dict:
    paras = paragraphs(Path(args.data), args.paragraphs, args.seed)
    sources, refs = [p[0] for p in paras], [p[1] for p in paras]
    gold = sum(p[2] for p in paras)
    with tempfile.TemporaryDirectory(prefix="batchmt-paragraph-eval.") as data_dir:
        settings = Settings(
            enforce_eager=True,
            calibration="off",
            max_sentences_per_prompt=1,
            translation_memory_size=0,
            data_dir=Path(data_dir),
            cpu_kvcache_gib=args.kv_gib,
            max_prompts_in_flight=32,
            max_num_seqs=32,
            model=args.model,
            template=args.template,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            gw = app.state.gateway
            await gw.wait_ready()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://eval", timeout=3600
            ) as client:
                signature = (await client.get("/v1/info")).json()["signature"]
                results = {}
                for mode, body in (("whole", {"split_sentences": "off"}), ("segmented", {"split_sentences": "on"})):
                    if mode not in args.modes:
                        continue
                    outs, seconds = await run_mode(client, sources, body, args.concurrency)
                    results[mode] = (outs, seconds)
                    print(mode, f"{seconds:.0f}s", flush=True)
                html = [f"<p>{s}{EXTRA}</p>" for s in sources]
                prot: list = []
                prot_seconds = 0.0
                if "protected" in args.modes:
                    prot, prot_seconds = await run_mode(client, html, {"tag_handling": "html"}, args.concurrency)
                    print("protected", f"{prot_seconds:.0f}s", flush=True)
    rows = {}
    for mode, (outs, seconds) in results.items():
        hyps = [(o or {}).get("text") or "" for o in outs]
        bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
        rows[mode] = {
            "chrf": round(chrf.corpus_score(hyps, [refs]).score, 1),
            "bleu": round(bleu.corpus_score(hyps, [refs]).score, 1),
            "chrf_signature": str(chrf.get_signature()),
            "bleu_signature": str(bleu.get_signature()),
            "seconds": round(seconds, 1),
            "sentences_per_s": round(gold / seconds, 2),
            "empty": sum(not h.strip() for h in hyps),
            "refused": sum(str((o or {}).get("status", "")).startswith("http") for o in outs),
            "partial": sum((o or {}).get("status") == "partial" for o in outs),
            "suspect": sum((o or {}).get("status") == "suspect" for o in outs),
            "failed": sum((o or {}).get("status") == "failed" for o in outs),
            "copied_english": sum(h.strip() == s.strip() for h, s in zip(hyps, sources)),
            "segments": sum((o or {}).get("segments", 0) for o in outs),
        }
    rows["protected"] = (
        {}
        if not prot
        else {
            "texts": len(html),
            "seconds": round(prot_seconds, 1),
            "ok": sum(o.get("status") == "ok" for o in prot),
            "partial": sum(o.get("status") == "partial" for o in prot),
            "suspect": sum(o.get("status") == "suspect" for o in prot),
            "failed": sum(o.get("status") == "failed" for o in prot),
            "failed_placeholder_segments": sum(
                f["code"] == "placeholder_damaged" for o in prot for f in o.get("failed_segments", [])
            ),
            "damaged_delivered": sum(damaged(h, o) for h, o in zip(html, prot)),
        }
    )
    return {
        "data": str(args.data),
        "model": args.model,
        "template": args.template,
        "paragraphs": len(paras),
        "gold_sentences": gold,
        "characters": sum(len(s) for s in sources),
        "concurrency": args.concurrency,
        "seed": args.seed,
        "gateway_signature": signature,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "modes": rows,
    }


def report(res: dict) -> str:
    m = res["modes"]
    lines = [
        "# Paragraphs: sent whole vs segmented on the server",
        "",
        f"`python -m benchmarks.paragraph_eval --data {res['data']} --paragraphs {res['paragraphs']} "
        f"--model {res['model']} --template {res['template']}` "
        f"({res['date']}, {res['machine']}, eager engine, one sentence per prompt, "
        f"translation memory off). {res['paragraphs']} paragraphs of 3-8 consecutive lines "
        f"({res['gold_sentences']} lines, {res['characters']:,} characters), one per request, "
        f"{res['concurrency']} requests in flight; the modes ran one after the other on the same engine.",
        "",
        "| paragraphs sent | segments | empty | refused | partial / failed | chrF | BLEU | time | lines/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"whole": "whole (`split_sentences: off`)", "segmented": "segmented on the server (default)"}
    for mode, label in labels.items():
        if mode not in m:
            continue
        r = m[mode]
        lines.append(
            f"| {label} | {r['segments']} | {r['empty']} | {r['refused']} | {r['partial']} / "
            f"{r['failed']} | {r['chrf']} | {r['bleu']} | {r['seconds']:.0f} s | {r['sentences_per_s']:.2f} |"
        )
    p = m["protected"]
    scored = m.get("segmented") or m.get("whole") or {}
    lines += [
        "",
        f"chrF: `{scored.get('chrf_signature')}`; BLEU: `{scored.get('bleu_signature')}`.",
        f"Gateway: `{res['gateway_signature']}`.",
        "",
    ]
    if not p:
        return "\n".join(lines)
    lines += [
        f"Protected spans: the same {p['texts']} paragraphs as HTML, each with an added sentence holding an "
        "anonymisation placeholder, a URL and a `<b>` tag (`tag_handling: html`): "
        f"{p['ok']} ok, {p.get('suspect', 0)} suspect (a segment still a copy of the English after a sampled retry), "
        f"{p['partial']} partial, {p['failed']} failed "
        f"({p['failed_placeholder_segments']} segments failed in place after every try damaged a protected span); "
        f"**{p['damaged_delivered']} texts delivered with a placeholder or tag damaged**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/generaltest2022_ende")
    ap.add_argument("--paragraphs", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--kv-gib", type=int, default=2)
    ap.add_argument("--out", default="results/paragraphs")
    ap.add_argument("--model", default="embedded", help="the served model (embedded: the self-trained default)")
    ap.add_argument("--template", default="en-de-packed", help="the prompt template (calibration is off)")
    ap.add_argument("--modes", default="whole,segmented,protected", help="comma-separated: whole, segmented, protected")
    args = ap.parse_args(argv)
    args.modes = set(args.modes.split(","))
    res = asyncio.run(evaluate(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    text = report(res)
    (out / "report.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
