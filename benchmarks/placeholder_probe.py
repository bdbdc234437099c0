"""Does the embedded model keep placeholders better raw or masked? A small probe on the real engine.

    flock /tmp/batchmt-engine.lock .venv/bin/python -m benchmarks.placeholder_probe --out results/placeholders

Sentences written for this probe (below), each with one to three protected spans (anonymisation
tags, ``{name}``, ``{{var}}``, ``%s``, URLs, e-mail addresses, code spans), one sentence per prompt,
greedy, through the gateway's template and parser. Styles: ``raw`` (spans sent as they are) and masks
``[X1]``, ``{1}``, ``[PH_1]`` (restored after). A sentence counts as kept when the parser accepts its
slot and every protected span (or mask) is in the translation exactly once, nothing invented.
Writes ``probe.md`` (per style: kept / parse failures / damaged).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from batchmt_server.engines import GenerationParams
from batchmt_server.prompting.template import Template
from batchmt_server.text.placeholders import protect, restore

SENTENCES = [
    "Please send the report to [PERSON_1] before Friday.",
    "The contract for [PROJECT123] was signed last week.",
    "[PERSON_2] met [PERSON_3] at the station in [CITY_1].",
    "Hello {name}, your order has been shipped.",
    "You have {count} new messages in your inbox.",
    "Dear {{customer_name}}, thank you for your purchase.",
    "Your code {{code}} expires in ten minutes.",
    "The file %s could not be opened.",
    "%d people have already signed up for the course.",
    "Welcome back, %(user)s! Your last visit was yesterday.",
    "More information is available at https://example.com/help.",
    "Download the new version from https://downloads.example.org/app/v2.",
    "Write to support@example.com if the problem persists.",
    "Our manager, anna.berg@example.net, will answer your questions.",
    "Run `pip install batchmt` to install the client.",
    "The function `parse_args` returns a dictionary.",
    "[PERSON_1] called {name} about the invoice at https://example.com/invoice.",
    "The meeting with [COMPANY_7] has been moved to Monday morning.",
    "Click the link in the e-mail from [EMAIL_2] to confirm your account.",
    "Hi {first_name}, we could not charge your card ending in {last4}.",
    "Error: %s is not a valid date.",
    "The weather in [CITY_2] was cold and rainy all week.",
    "Set the variable `MAX_SIZE` to a smaller value and restart the server.",
    "See the documentation at www.example.com/docs for all options.",
]

STYLES = {"raw": None, "[X1]": "[X{}]", "{1}": "{{{}}}", "[PH_1]": "[PH_{}]"}


async def run(args: argparse.Namespace) -> str:
    from batchmt_server.engines.vllm_inprocess import VLLMEngine
    from batchmt_server.models.embedded import resolve_model
    from batchmt_server.settings import Settings

    settings = Settings()
    engine = VLLMEngine(
        resolve_model(settings.model, settings.cache_dir),
        model_name="gemma-3-270m",
        dtype=settings.dtype,
        max_model_len=2048,
        max_num_seqs=32,
        enforce_eager=True,
        cpu_kvcache_gib=2,
    )
    await engine.start()
    template = Template.load("en-de-packed")
    rows = []
    t0 = time.monotonic()
    try:
        for style, mask in STYLES.items():
            prots = [protect(s, "raw") if mask is None else protect(s, "mask", mask) for s in SENTENCES]

            async def one(p):
                prompt = template.render([p.text])
                params = GenerationParams(
                    max_tokens=template.max_tokens([engine.count_tokens(p.text)]), stop=template.stop_for(1)
                )
                c = await engine.generate(prompt, params)
                return template.parse(c.text, [p.text], c.finish_reason)[0]

            slots = await asyncio.gather(*(one(p) for p in prots))
            kept = parse_fail = damaged = 0
            for p, slot in zip(prots, slots):
                if not slot.ok or slot.text is None:
                    parse_fail += 1
                elif restore(p, slot.text) is None:
                    damaged += 1
                else:
                    kept += 1
            rows.append((style, kept, parse_fail, damaged))
            print(style, kept, parse_fail, damaged, flush=True)
    finally:
        await engine.close()
    n = len(SENTENCES)
    lines = [
        "# Placeholders on the embedded model: raw or masked?",
        "",
        f"`python -m benchmarks.placeholder_probe` ({time.strftime('%Y-%m-%d')}, Gemma-3-270M, eager, greedy, "
        f"one sentence per prompt, {n} sentences written for the probe, {time.monotonic() - t0:.0f} s).",
        "A sentence is kept when its slot parses and every protected span (or mask) is in the translation "
        "exactly once, nothing invented.",
        "",
        "| style | kept | parse failed | placeholder damaged |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {s} | {k}/{n} | {pf} | {d} |" for s, k, pf, d in rows]
    best = max(rows, key=lambda r: r[1])
    lines += ["", f"Best: **{best[0]}**.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/placeholders")
    args = ap.parse_args(argv)
    report = asyncio.run(run(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
