"""Batch jobs on the real embedded engine, in one run: what a job costs interactive callers, and what
spare-capacity scheduling costs the job.

1. interactive p50, idle: single-sentence ``/v1/translate`` requests one after the other;
2. the job alone: N sentences as a batch job (no other traffic), sentences/s from submission to completion;
3. the same N sentences through ``/v1/translate`` at saturation (all requests at once), sentences/s;
4. for each cap on batch-job prompts in flight: a large job runs while the same kind of interactive requests
   go one after the other; their p50 and the job's sentences/s meanwhile (the trade-off curve).

The translation memory is off (every sentence goes to the engine); the prefix cache is emptied and the
few-shot prefix warmed before phases 1-3. Each phase uses its own sentences (read at run time from the test
set; nothing is copied into the repo). Writes ``<out>/report.md`` and ``<out>/report.json``.

    flock /tmp/batchmt-engine.lock .venv/bin/python -m benchmarks.jobs_bench --eager --out results/jobs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from batchmt_server.http.app import create_app
from batchmt_server.settings import Settings


def _jsonl(sentences: list[str], per_line: int, prefix: str) -> bytes:
    rows = []
    for k in range(0, len(sentences), per_line):
        rows.append(
            {
                "custom_id": f"{prefix}-{k}",
                "method": "POST",
                "url": "/v1/translate",
                "body": {"sentences": sentences[k : k + per_line]},
            }
        )
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


async def _submit(c: httpx.AsyncClient, sentences: list[str], per_line: int, prefix: str) -> str:
    f = (
        await c.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": (f"{prefix}.jsonl", _jsonl(sentences, per_line, prefix))},
        )
    ).json()
    b = (
        await c.post(
            "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
        )
    ).json()
    return b["id"]


async def _batch(c: httpx.AsyncClient, batch_id: str) -> dict:
    return (await c.get(f"/v1/batches/{batch_id}")).json()


async def _interactive(c: httpx.AsyncClient, sentences: list[str]) -> list[float]:
    lat = []
    for s in sentences:
        t = time.perf_counter()
        r = await c.post("/v1/translate", json={"sentences": [s]})
        r.raise_for_status()
        lat.append(time.perf_counter() - t)
    return lat


async def run(args: argparse.Namespace) -> dict:
    from batchmt_server.engines.vllm_inprocess import VLLMEngine
    from batchmt_server.models.embedded import resolve_model

    src = [x.strip() for x in (Path(args.data) / "src.en").read_text(encoding="utf-8").splitlines() if x.strip()]
    src = [x for x in src if 20 <= len(x) <= 160]  # ordinary sentences: latencies comparable across phases
    caps = [int(x) for x in args.caps.split(",")]
    need = args.interactive * (1 + len(caps)) + args.job_sentences + args.big_job_sentences * len(caps)
    if len(src) < need:
        raise SystemExit(f"{args.data}: {len(src)} usable sentences, {need} needed")
    pos = 0

    def take(n: int) -> list[str]:
        nonlocal pos
        pos += n
        return src[pos - n : pos]

    settings = Settings(
        model=args.model,
        enforce_eager=args.eager,
        calibration="off",
        max_sentences_per_prompt=1,
        max_prompts_in_flight=args.in_flight,
        max_num_seqs=args.in_flight,
        max_wait_ms=5,
        translation_memory_size=0,
        data_dir=tempfile.mkdtemp(prefix="jobs-bench-"),
        job_max_lines_in_flight=args.job_lines,
        job_lease_s=600,
        max_queue_sentences=8192,
        scheduling_policy=args.policy,
        cpu_kvcache_gib=args.kv_gib,
    )
    if args.fake:  # a smoke test of this script (no engine numbers)
        from batchmt_server.engines.fake import FakeEngine

        engine: Any = FakeEngine(delay=0.05)
    else:
        engine = VLLMEngine(
            resolve_model(settings.model, settings.cache_dir),
            model_name=settings.model_name,
            enforce_eager=args.eager,
            max_num_seqs=args.in_flight,
            cpu_kvcache_gib=args.kv_gib,
            scheduling_policy="fcfs" if args.policy == "fcfs" else "priority",
        )
    app = create_app(settings, engine=engine)
    report: dict = {"settings": {k: getattr(args, k) for k in vars(args)}, "phases": {}}
    async with app.router.lifespan_context(app):
        gw = app.state.gateway
        await gw.wait_ready()
        template = gw.template

        async def cold() -> None:
            if hasattr(engine, "reset_prefix_cache"):
                await engine.reset_prefix_cache()
            await gw.runner.warmup()

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=3600
        ) as c:
            # 1. interactive, idle
            await cold()
            lat = await _interactive(c, take(args.interactive))
            idle_p50 = statistics.median(lat)
            report["phases"]["idle"] = {"p50_s": idle_p50, "latencies_s": lat}
            print(f"idle interactive p50 {idle_p50:.2f}s", flush=True)

            # 2. the job alone
            job_sents = take(args.job_sentences)
            await cold()
            t0 = time.perf_counter()
            bid = await _submit(c, job_sents, args.per_line, "alone")
            while (b := await _batch(c, bid))["status"] not in ("completed", "failed", "expired", "cancelled"):
                await asyncio.sleep(0.2)
            job_s = time.perf_counter() - t0
            job_rate = len(job_sents) / job_s
            report["phases"]["job_alone"] = {
                "sentences": len(job_sents),
                "seconds": job_s,
                "sentences_per_s": job_rate,
                "status": b["status"],
                "request_counts": b["request_counts"],
            }
            print(f"job alone: {job_rate:.2f} sentences/s ({b['status']})", flush=True)

            # 3. the same sentences through /v1/translate at saturation
            await cold()
            t0 = time.perf_counter()
            rs = await asyncio.gather(
                *(
                    c.post("/v1/translate", json={"sentences": job_sents[k : k + args.per_line]})
                    for k in range(0, len(job_sents), args.per_line)
                )
            )
            direct_s = time.perf_counter() - t0
            assert all(r.status_code == 200 for r in rs)
            direct_rate = len(job_sents) / direct_s
            report["phases"]["translate_saturated"] = {
                "sentences": len(job_sents),
                "seconds": direct_s,
                "sentences_per_s": direct_rate,
            }
            print(f"/v1/translate at saturation: {direct_rate:.2f} sentences/s", flush=True)

            # 4. interactive while a large job runs, per cap on job prompts in flight
            curve = []
            for cap in caps:
                gw.batcher.job_capacity.set_maximum(cap)
                bid = await _submit(c, take(args.big_job_sentences), args.per_line, f"cap{cap}")
                await asyncio.sleep(args.ramp_s)  # the job fills the engine first
                before = (await _batch(c, bid))["usage"]["sentences"]
                t0 = time.perf_counter()
                lat = await _interactive(c, take(args.interactive))
                window = time.perf_counter() - t0
                after = await _batch(c, bid)
                job_during = (after["usage"]["sentences"] - before) / window
                await c.post(f"/v1/batches/{bid}/cancel")
                while (await _batch(c, bid))["status"] != "cancelled":
                    await asyncio.sleep(0.2)
                p50 = statistics.median(lat)
                curve.append(
                    {
                        "cap": cap,
                        "interactive_p50_s": p50,
                        "p50_x_idle": p50 / idle_p50,
                        "job_sentences_per_s": job_during,
                        "window_s": window,
                        "latencies_s": lat,
                        "job_not_finished": after["status"] == "in_progress",
                    }
                )
                print(
                    f"cap {cap}: interactive p50 {p50:.2f}s ({p50 / idle_p50:.2f}x idle), job {job_during:.2f} "
                    f"sentences/s meanwhile",
                    flush=True,
                )
            report["phases"]["curve"] = curve
        report["template"] = template.ref
    report["job_vs_translate"] = job_rate / direct_rate
    return report


def write(report: dict, out: Path, argv: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    ph = report["phases"]
    rows = "\n".join(
        f"| {r['cap']} | {r['interactive_p50_s']:.2f} | {r['p50_x_idle']:.2f} | {r['job_sentences_per_s']:.2f} |"
        f"{' (job ran out)' if not r['job_not_finished'] else ''}"
        for r in ph["curve"]
    )
    s = report["settings"]
    text = f"""# Batch jobs on the real engine: spare-capacity scheduling

Command: `{argv}`

Embedded model ({s["model"]}), in-process vLLM{" eager" if s["eager"] else ""}, scheduling policy `{s["policy"]}`,
one sentence per prompt, {s["in_flight"]} prompts in flight at most, translation memory off. Interactive requests:
one sentence each, one after the other ({s["interactive"]} per phase, each phase its own sentences). Job lines:
{s["per_line"]} sentences each.

| measurement | value |
|---|---:|
| interactive p50, idle | {ph["idle"]["p50_s"]:.2f} s |
| job alone ({ph["job_alone"]["sentences"]} sentences) | {ph["job_alone"]["sentences_per_s"]:.2f} sentences/s |
| same sentences via /v1/translate at saturation | {ph["translate_saturated"]["sentences_per_s"]:.2f} sentences/s |
| job / translate | **{report["job_vs_translate"]:.2f}x** (target >= 0.9x) |

Interactive p50 while a large job runs, per cap on job prompts in flight (the cap halves while interactive
sentences are queued or in flight, down to 1, and grows back by one every 0.25 s):

| job prompt cap | interactive p50 (s) | x idle (target <= 1.5) | job sentences/s meanwhile |
|---:|---:|---:|---:|
{rows}
"""
    (out / "report.md").write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    import sys

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/generaltest2022_ende")
    p.add_argument("--model", default="embedded")
    p.add_argument("--eager", action="store_true")
    p.add_argument("--policy", choices=("priority", "fcfs"), default="priority")
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--kv-gib", type=int, default=4)
    p.add_argument("--interactive", type=int, default=8, help="interactive requests per phase")
    p.add_argument("--job-sentences", type=int, default=96)
    p.add_argument("--big-job-sentences", type=int, default=240)
    p.add_argument("--per-line", type=int, default=4)
    p.add_argument("--job-lines", type=int, default=64, help="--job-max-lines-in-flight")
    p.add_argument("--caps", default="1,4,64", help="caps on job prompts in flight for phase 4")
    p.add_argument("--ramp-s", type=float, default=5.0)
    p.add_argument("--out", default="results/jobs")
    p.add_argument("--fake", action="store_true", help="smoke-test the script on the fake engine")
    args = p.parse_args(argv)
    report = asyncio.run(run(args))
    write(
        report,
        Path(args.out),
        "python -m benchmarks.jobs_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
