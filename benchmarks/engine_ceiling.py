"""``python -m benchmarks.engine_ceiling``: what the vLLM engine itself can do on this machine (issue 16, items 2, 4).

vLLM's ``AsyncLLM`` used directly (no gateway) with the embedded model and the gateway's engine settings
(float32 on the CPU, block size 32, prefix caching on, ``VLLM_CPU_KVCACHE_SPACE`` 4 GiB, max_model_len 2048,
priority scheduling, seed 0). Parts (``--parts``):

- ``ceiling``: decode tokens/s at 1, 8, 64, 256 concurrent sequences: short prompts ("Translate to German:
  <sentence>"), ``ignore_eos``, a fixed ``max_tokens``, greedy, prefix cache emptied before each run; tokens/s =
  generated tokens / wall time, median of ``--repeats``. The engine has ``max_num_seqs=256`` for this part. Then
  64 sequences with the template's few-shot prefix (cached first): what the prefix costs per decoded token.
- ``workload``: bench.py's ``baseline`` (one prompt per source sentence with the default template's prefix,
  natural EOS, the template's max_tokens and stop strings, prefix cached first) on the first ``--sentences``
  sentences, on the same engine as the ceiling: all in flight, and ``--workload-in-flight`` at a time;
  sentences/s and completion tokens/s as a fraction of the ceiling at the matching concurrency.
- ``sweep``: the baseline workload on the first ``--sweep-sentences`` sentences for each max_num_seqs x
  max_num_batched_tokens of the grid (a fresh engine per config, in its own process).
- ``ngram``: n-gram speculative decoding (prompt lookup) on the baseline workload at 1 and 8 in flight and at
  saturation, against the same engine without it; greedy outputs compared token by token.

Each engine runs in a child process of this one (``--worker``), so every config starts from a clean process and
its memory is freed when it ends. Run it under the engine lock::

    flock /tmp/batchmt-engine.lock python -m benchmarks.engine_ceiling --data ../shared/data/newstest2021_ende

Writes ``report.md`` and ``report.json`` (numbers only: no sentence of the data set) to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["main"]

PARTS = ("ceiling", "workload", "sweep", "ngram", "logprobs", "token-ids", "frontend-cpu")
#: engine settings shared by every config (the gateway's, see settings.py / engines/vllm_inprocess.py)
BASE_ENGINE = {
    "dtype": "float32",
    "block_size": 32,
    "max_model_len": 2048,
    "enable_prefix_caching": True,
    "seed": 0,
    "scheduling_policy": "priority",
}


# ---------------------------------------------------------------------------------------------- pure helpers


def median(xs: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return float(statistics.median(xs)) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile as bench.py computes it (``sorted[int(q * n)]``), NaN for no values."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return float(s[min(len(s) - 1, int(q * len(s)))])


def ratio(x: float | None, y: float | None) -> float | None:
    """x / y, None when either is missing or y is 0 (or NaN)."""
    if x is None or y is None or not y or y != y:
        return None
    return x / y


def fmt(x: float | int | None, digits: int = 1) -> str:
    """A table cell: ``–`` for missing / NaN."""
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def best_config(rows: Sequence[dict[str, Any]], key: str = "sent_s") -> dict[str, Any] | None:
    """The sweep row with the highest ``key`` (rows with an error or without the key are skipped)."""
    ok = [r for r in rows if not r.get("error") and r.get(key) is not None]
    return max(ok, key=lambda r: r[key]) if ok else None


def mismatches(a: Sequence[Sequence[int] | None], b: Sequence[Sequence[int] | None]) -> tuple[int, int]:
    """How many of the outputs both sides have differ (token ids), and how many were compared."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return sum(list(x) != list(y) for x, y in pairs), len(pairs)


def summarize_runs(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Repeats of one ceiling measurement -> median tokens/s (and the runs)."""
    tps = [r["tokens"] / r["seconds"] for r in runs if r["seconds"] > 0]
    return {"tok_s": median(tps), "tok_s_runs": tps, "seconds": median([r["seconds"] for r in runs]), "runs": runs}


def sweep_noise(rows: Sequence[dict[str, Any]], sentences: int) -> float | None:
    """Run-to-run noise of the sweep: the largest relative spread of sentences/s among rows that are the same
    engine in effect (a max_num_seqs at or above the sentences in flight cannot change anything), or None."""
    groups: dict[tuple[int, Any], list[float]] = {}
    for r in rows:
        if r.get("error") or r.get("sent_s") is None:
            continue
        groups.setdefault((min(r["max_num_seqs"], sentences), r.get("max_num_batched_tokens")), []).append(r["sent_s"])
    spreads = [(max(v) - min(v)) / min(v) for v in groups.values() if len(v) > 1 and min(v) > 0]
    return max(spreads) if spreads else None


def sweep_conclusion(rows: Sequence[dict[str, Any]], best: dict[str, Any], sentences: int) -> list[str]:
    """The sweep's last lines: the best config, and how far apart configs must be to be told apart."""
    out = [
        "",
        f"Best: max_num_seqs={best['max_num_seqs']}, max_num_batched_tokens={best['max_num_batched_tokens']}"
        f" ({best['sent_s']:.2f} sentences/s).",
    ]
    noise = sweep_noise(rows, sentences)
    if noise is not None:
        ok = [r["sent_s"] for r in rows if not r.get("error") and r.get("sent_s") is not None]
        spread = (max(ok) - min(ok)) / min(ok)
        out.append(
            f"With {sentences} sentences in flight, a max_num_seqs above {sentences} cannot change anything: such a "
            f"row repeats the one at {sentences}, and their difference, {100 * noise:.0f}%, is the run-to-run noise. "
            f"The whole sweep spans {100 * spread:.0f}%"
            + (
                ": within about twice the noise, no config is clearly better than another."
                if spread <= 2 * noise
                else "."
            )
        )
    return out


def parse_grid(text: str) -> list[int | None]:
    """``"default,8192"`` -> ``[None, 8192]`` (None: vLLM's default)."""
    out: list[int | None] = []
    for x in text.split(","):
        x = x.strip()
        if x:
            out.append(None if x == "default" else int(x))
    return out


# ---------------------------------------------------------------------------------------------- the worker


def _load_sources(data: str) -> list[str]:
    src = (Path(data) / "src.en").read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in src if s.strip()]


def _counter_total(prefix: str) -> float:
    """Sum of a prometheus counter's ``_total`` samples in this process (vLLM's stat loggers live here)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:  # pragma: no cover
        return 0.0
    total = 0.0
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name == prefix + "_total":
                total += s.value
    return total


async def burn(ms: float, stop: asyncio.Event, period_s: float = 0.06) -> None:
    """Busy ``ms`` milliseconds on the event loop every ``period_s`` until ``stop``: extra frontend work of a known
    size (a gateway's per-request work is of this kind), to see what the engine loses to it on a small machine."""
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < ms / 1000:
            pass
        try:
            await asyncio.wait_for(stop.wait(), period_s)
        except TimeoutError:
            pass


class Worker:
    """One engine in this process, running the tasks of a spec (see :func:`run_worker`)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.llm: Any = None
        self.tok: Any = None
        self.template: Any = None
        self.sources = _load_sources(spec["data"])

    async def start(self) -> dict[str, Any]:
        from batchmt_server.engines.vllm_inprocess import cpu_environment
        from batchmt_server.models.embedded import resolve_model
        from batchmt_server.prompting.chat import apply_form
        from batchmt_server.prompting.template import Template
        from batchmt_server.settings import Settings

        settings = Settings(model=self.spec["model"])
        cpu_environment(self.spec["kv_gib"], preload=settings.cpu_preload)  # BATCHMT_CPU_PRELOAD=false: off
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        opts = {**BASE_ENGINE, **{k: v for k, v in self.spec["engine"].items() if v is not None}}
        t0 = time.perf_counter()
        args = AsyncEngineArgs(
            model=resolve_model(self.spec["model"], settings.cache_dir), served_model_name=[settings.model_name], **opts
        )
        self.llm = AsyncLLM.from_engine_args(args)
        startup = time.perf_counter() - t0
        self.tok = self.llm.get_tokenizer()
        # the long few-shot prompt (the first of --template-variants as configured), whatever the model learned
        self.template = apply_form(Template.load(settings.variant_names[0]), "auto", self.tok, settings.model_name)
        sc = self.llm.vllm_config.scheduler_config
        return {
            "startup_s": startup,
            "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "engine_args": opts,
            "resolved": {
                "max_num_seqs": sc.max_num_seqs,
                "max_num_batched_tokens": sc.max_num_batched_tokens,
                "enable_chunked_prefill": getattr(sc, "enable_chunked_prefill", None),
                "async_scheduling": getattr(sc, "async_scheduling", None),
            },
            "template": self.template.ref,
            "model_name": settings.model_name,
        }

    async def gen(self, prompt: str | dict[str, Any], sp: Any) -> Any:
        final = None
        async for out in self.llm.generate(prompt, sp, request_id=uuid.uuid4().hex):
            final = out
        return final

    def _sp(self, **kw: Any) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(temperature=0.0, output_kind=RequestOutputKind.FINAL_ONLY, **kw)

    async def warm_prefix(self) -> None:
        """Empty the prefix cache, then cache the template's prefix once (as bench.py's ``warm``)."""
        await self.llm.reset_prefix_cache()
        await self.gen(self.template.render([self.template.examples[0][0][0]]), self._sp(max_tokens=12))

    def _take(self, n: int) -> list[str]:
        return [self.sources[i % len(self.sources)] for i in range(n)]

    async def _batch(self, prompts: list[str], sp: Any) -> dict[str, float]:
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(self.gen(p, sp) for p in prompts))
        seconds = time.perf_counter() - t0
        return {
            "seconds": seconds,
            "tokens": sum(len(o.outputs[0].token_ids) for o in outs),
            "prompt_tokens": sum(len(o.prompt_token_ids or ()) for o in outs) / len(outs),
            "cached_tokens": sum(int(o.num_cached_tokens or 0) for o in outs) / len(outs),
        }

    async def ceiling(self, task: dict[str, Any]) -> dict[str, Any]:
        sp = self._sp(max_tokens=task["max_tokens"], ignore_eos=True)
        await self._batch(["Translate to German: " + s for s in self._take(8)], self._sp(max_tokens=8))  # warm-up
        rows = []
        for c in task["concurrency"]:
            prompts = ["Translate to German: " + s for s in self._take(c)]
            runs = []
            for _ in range(task["repeats"]):
                await self.llm.reset_prefix_cache()
                runs.append(await self._batch(prompts, sp))
            row = {"concurrency": c, "max_tokens": task["max_tokens"], "prefix": False, **summarize_runs(runs)}
            row["prompt_tokens"] = median([r["prompt_tokens"] for r in runs])
            print(f"  ceiling c={c}: {row['tok_s']:.1f} tok/s (runs {row['tok_s_runs']})", flush=True)
            rows.append(row)
        return {"rows": rows}

    async def ceiling_prefix(self, task: dict[str, Any]) -> dict[str, Any]:
        c = task["concurrency"]
        prompts = [self.template.render([s]) for s in self._take(c)]
        sp = self._sp(max_tokens=task["max_tokens"], ignore_eos=True)
        runs, prefill = [], []
        for _ in range(task["repeats"]):
            await self.warm_prefix()
            prefill.append(await self._batch(prompts, self._sp(max_tokens=1)))  # prefill of the uncached query
            await self.warm_prefix()
            runs.append(await self._batch(prompts, sp))
        row = {"concurrency": c, "max_tokens": task["max_tokens"], "prefix": True, **summarize_runs(runs)}
        row["prompt_tokens"] = median([r["prompt_tokens"] for r in runs])
        row["cached_tokens"] = median([r["cached_tokens"] for r in runs])
        row["prefill_only_s"] = median([r["seconds"] for r in prefill])
        print(f"  ceiling c={c} + prefix: {row['tok_s']:.1f} tok/s; prefill alone {row['prefill_only_s']:.2f}s")
        return {"rows": [row]}

    async def workload(self, task: dict[str, Any]) -> dict[str, Any]:
        """bench.py's baseline: one prompt per sentence, the template's prefix, natural EOS, max_tokens, stop."""
        sources = self.sources[: task["sentences"]]
        n = len(sources)
        in_flight = task.get("in_flight") or n
        sem = asyncio.Semaphore(in_flight)
        lat: list[float] = [0.0] * n
        tokens: list[list[int]] = [[] for _ in range(n)]
        prompt_tok = [0] * n
        cached = [0] * n
        finish: Counter[str] = Counter()

        async def one(i: int, s: str) -> None:
            sp = self._sp(
                max_tokens=self.template.max_tokens([len(self.tok.encode(s, add_special_tokens=False))]),
                stop=list(self.template.stop_for(1)),
                logprobs=task.get("logprobs"),  # 0: the chosen token's log-probability (the gateway's confidence)
            )
            prompt = self.template.render([s])
            # token-ids part: the gateway's way (vllm_inprocess.PromptTokens: the prefix tokenized once)
            inputs = prompt_tokens.input(prompt, len(self.template.prefix)) if prompt_tokens else prompt
            async with sem:
                t = time.perf_counter()
                o = await self.gen(inputs, sp)
                lat[i] = time.perf_counter() - t
            tokens[i] = list(o.outputs[0].token_ids)
            prompt_tok[i] = len(o.prompt_token_ids or ())
            cached[i] = int(o.num_cached_tokens or 0)
            finish[str(o.outputs[0].finish_reason)] += 1

        from batchmt_server.engines.vllm_inprocess import PromptTokens

        prompt_tokens = PromptTokens(self.tok) if task.get("ids_input") else None
        await self.warm_prefix()
        stop_burning = asyncio.Event()
        burner = asyncio.create_task(burn(task["burn_ms"], stop_burning)) if task.get("burn_ms") else None
        cpu0 = time.process_time()
        drafts0 = _counter_total("vllm:spec_decode_num_draft_tokens")
        acc0 = _counter_total("vllm:spec_decode_num_accepted_tokens")
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, s) for i, s in enumerate(sources)))
        seconds = time.perf_counter() - t0
        frontend_cpu = time.process_time() - cpu0
        stop_burning.set()
        if burner is not None:
            await burner
        await asyncio.sleep(0.5)  # the stat loggers' last update
        drafts = _counter_total("vllm:spec_decode_num_draft_tokens") - drafts0
        accepted = _counter_total("vllm:spec_decode_num_accepted_tokens") - acc0
        compl = sum(len(t) for t in tokens)
        res = {
            "name": task["name"],
            "sentences": n,
            "in_flight": in_flight,
            "logprobs": task.get("logprobs"),
            "token_ids_input": bool(task.get("ids_input")),
            "burn_ms": task.get("burn_ms"),
            "arm": task.get("arm"),  # an A/B part's: "on" or "off"
            "seconds": seconds,
            "frontend_cpu_s": frontend_cpu,  # this process: vLLM's frontend (tokenizing, detokenizing) and the callers
            "sent_s": n / seconds,
            "completion_tokens": compl,
            "compl_tok_s": compl / seconds,
            "compl_per_sentence": compl / n,
            "prompt_per_sentence": sum(prompt_tok) / n,
            "cached_per_sentence": sum(cached) / n,
            "p50": percentile(lat, 0.5),
            "p95": percentile(lat, 0.95),
            "mean_in_flight": sum(lat) / seconds,  # Little's law: the concurrency the engine actually had
            "finish_reasons": dict(finish),
            "spec_draft_tokens": drafts,
            "spec_accepted_tokens": accepted,
            "acceptance": ratio(accepted, drafts),
            "token_ids": tokens,  # for the n-gram comparison; never written to the report
        }
        print(
            f"  workload {task['name']}: {n} sent, {res['sent_s']:.2f} sent/s, {res['compl_tok_s']:.1f} tok/s, "
            f"p50 {res['p50']:.2f}s" + (f", acceptance {res['acceptance']:.2f}" if drafts else ""),
            flush=True,
        )
        return res

    async def run(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tasks": []}
        try:
            out.update(await self.start())
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["traceback"] = traceback.format_exc()[-4000:]
            return out
        print(f"  engine ready in {out['startup_s']:.0f}s: {out['resolved']}", flush=True)
        try:
            for task in self.spec["tasks"]:
                t0 = time.perf_counter()
                res = await getattr(self, task["kind"])(task)
                res.update(kind=task["kind"], task_s=time.perf_counter() - t0)
                out["tasks"].append(res)
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["traceback"] = traceback.format_exc()[-4000:]
        finally:
            self.llm.shutdown()
            self.llm = None  # AsyncLLM.__del__ now, not at interpreter exit
            import gc

            gc.collect()
        return out


def run_worker(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    res = asyncio.run(Worker(spec).run())
    Path(out_path).write_text(json.dumps(res))
    return 0


# ---------------------------------------------------------------------------------------------- the parent


#: vLLM warnings worth keeping in the report (matched in the child's log lines)
WARNING_KEYS = ("peculative", "LD_PRELOAD", "max_num_scheduled_tokens", "Async scheduling")


def warning_text(line: str) -> str | None:
    """The message of a vLLM ``WARNING`` log line about one of ``WARNING_KEYS`` (else None)."""
    if "WARNING" not in line or not any(k in line for k in WARNING_KEYS):
        return None
    msg = line.split("] ", 1)[1] if "] " in line else line
    return msg.strip()


def spawn(spec: dict[str, Any], label: str) -> dict[str, Any]:
    """Run one engine config in a child process (its log passed through); its result (or why it failed)."""
    print(f"[{label}] {spec['engine']}", flush=True)
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="engine-ceiling-") as tmp:
        sp, op = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        sp.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.engine_ceiling", "--worker", str(sp), str(op)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            w = warning_text(line)
            if w and w not in warnings:
                warnings.append(w)
        proc.wait()
        sys.stdout.flush()
        wall = time.perf_counter() - t0
        if op.exists():
            res = json.loads(op.read_text())
        else:
            res = {"error": f"worker exited with code {proc.returncode} and no result", "tasks": []}
    res["wall_s"] = wall
    res["label"] = label
    res["warnings"] = warnings
    if res.get("error"):
        print(f"[{label}] ERROR {res['error']}", flush=True)
    return res


def _task(res: dict[str, Any], kind: str, name: str | None = None) -> dict[str, Any] | None:
    for t in res.get("tasks", []):
        if t["kind"] == kind and (name is None or t.get("name") == name):
            return t
    return None


def _strip(res: dict[str, Any]) -> dict[str, Any]:
    """A worker's result without the token ids (the report holds numbers only)."""
    out = dict(res)
    out["tasks"] = [{k: v for k, v in t.items() if k != "token_ids"} for t in res.get("tasks", [])]
    out.pop("traceback", None)
    return out


def _spec(args: argparse.Namespace, engine: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": args.data, "model": args.model, "kv_gib": args.kv_gib, "engine": engine, "tasks": tasks}


def workload_rows(rows_c: list[dict[str, Any]], workloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each workload with its fractions of the ceiling (``rows_c``: the ceiling rows, with and without the
    prefix): without the prefix at the concurrency nearest its in-flight cap, and with the prefix when that was
    measured at the same cap."""
    plain = {r["concurrency"]: r for r in rows_c if not r["prefix"]}
    pref = {r["concurrency"]: r for r in rows_c if r["prefix"]}
    out = []
    for w in workloads:
        cap = w["in_flight"]
        c = min(plain, key=lambda k: abs(k - cap)) if plain else None
        row = dict(w)
        row["ceiling_concurrency"] = c
        row["fraction"] = ratio(w["compl_tok_s"], plain[c]["tok_s"]) if c is not None else None
        row["fraction_prefix"] = ratio(w["compl_tok_s"], pref[cap]["tok_s"]) if cap in pref else None
        out.append(row)
    return out


def report(args: argparse.Namespace, results: dict[str, Any], wall: float) -> tuple[str, dict[str, Any]]:
    import vllm

    from benchmarks.bench import machine

    m = machine()
    m["loadavg_end"] = os.getloadavg()
    a = results.get("A")
    engine_a = a["engine_args"] if a and "engine_args" in a else None
    sig = {
        "model": (a or {}).get("model_name", args.model),
        "template": (a or {}).get("template"),
        "vllm": vllm.__version__,
        "base_engine_args": {**BASE_ENGINE, "VLLM_CPU_KVCACHE_SPACE_GiB": args.kv_gib},
        "machine": m,
        "command": " ".join(shlex.quote(x) for x in ["python", "-m", "benchmarks.engine_ceiling", *sys.argv[1:]]),
        "wall_s": wall,
    }
    md = [
        f"# vLLM engine ceiling on this machine — {m['date']}",
        "",
        f"Model {sig['model']} (embedded, float32), vLLM {sig['vllm']}, {m['cpu']}, {m['cores']} cores, "
        f"commit {m['commit']}; load average at the end {', '.join(f'{x:.1f}' for x in m['loadavg_end'])}.  ",
        f"Engine (every config): {json.dumps(BASE_ENGINE)}, VLLM_CPU_KVCACHE_SPACE={args.kv_gib} GiB, "
        f"vLLM's AsyncLLM used directly (no gateway).  ",
        f"Command: `flock /tmp/batchmt-engine.lock {sig['command']}` — whole run {wall / 60:.1f} min.",
        "",
    ]
    ceil = _task(a, "ceiling") if a else None
    cpre = _task(a, "ceiling_prefix") if a else None
    if a and (ceil or cpre):
        mode = "eager" if engine_a and engine_a.get("enforce_eager") else "compiled (the gateway's default)"
        md += [
            "## 1. Decode ceiling",
            "",
            f"One engine with **max_num_seqs={a['resolved']['max_num_seqs']}** (the gateway's default is 128; 256 "
            f"so that 256 sequences run at once), {mode}, max_num_batched_tokens "
            f"{a['resolved']['max_num_batched_tokens']} (vLLM's default), started in {a['startup_s']:.0f}s. "
            f"Greedy, `ignore_eos`, max_tokens {args.max_tokens}, every sequence submitted at once, prefix cache "
            f"emptied before each run; tokens/s = generated tokens / wall time (prefill included), median of "
            f"{args.repeats}.",
            "",
        ]
        rows = (ceil["rows"] if ceil else []) + (cpre["rows"] if cpre else [])
        md += md_table(
            [
                "sequences",
                "prompt",
                "prompt tok/seq",
                "cached tok/seq",
                "tokens/s (median)",
                "runs",
                "ms/step",
                "tok/s per seq",
            ],
            [
                [
                    str(r["concurrency"]),
                    "few-shot prefix + sentence" if r["prefix"] else "Translate to German: + sentence",
                    fmt(r["prompt_tokens"], 0),
                    fmt(r.get("cached_tokens", 0.0), 0),
                    f"**{r['tok_s']:.1f}**",
                    ", ".join(f"{x:.0f}" for x in r["tok_s_runs"]),
                    fmt(1000 * r["seconds"] / r["max_tokens"], 0),
                    fmt(r["tok_s"] / r["concurrency"], 2),
                ]
                for r in rows
            ],
        )
        md.append("")
        md.append("`ms/step`: wall time / max_tokens (one decode step gives every sequence one token).")
        plain = {r["concurrency"]: r for r in (ceil["rows"] if ceil else [])}
        if cpre and cpre["rows"][0]["concurrency"] in plain:
            p, c = cpre["rows"][0], plain[cpre["rows"][0]["concurrency"]]
            n_tok = p["concurrency"] * p["max_tokens"]
            per_plain, per_pref = 1000 * c["seconds"] / n_tok, 1000 * p["seconds"] / n_tok
            per_prefill = 1000 * p["prefill_only_s"] / n_tok
            md += [
                "",
                f"**Prefix cost at {p['concurrency']} sequences:** {per_pref:.2f} ms per decoded token with the "
                f"few-shot prefix ({p['prompt_tokens']:.0f} prompt tokens, {p['cached_tokens']:.0f} from the cache) "
                f"against {per_plain:.2f} ms without ({p['tok_s'] / c['tok_s']:.2f}x the tokens/s, "
                f"+{per_pref - per_plain:.2f} ms/token): of that, prefilling the uncached query tails alone "
                f"(max_tokens=1, {p['prefill_only_s']:.2f}s) is {per_prefill:.2f} ms per decoded token, the rest "
                f"({per_pref - per_prefill - per_plain:+.2f} ms/token) is decoding over the longer context.",
            ]
        md.append("")
    works = [t for t in (a or {}).get("tasks", []) if t["kind"] == "workload"]
    wrows = workload_rows((ceil["rows"] if ceil else []) + (cpre["rows"] if cpre else []), works)
    if wrows:
        md += [
            "## 2. The real workload against the ceiling",
            "",
            f"bench.py's `baseline` on the same engine: one prompt per source sentence with the default template "
            f"({sig['template']}, prefix cached first), greedy, natural EOS, the template's max_tokens and stop "
            f"strings, first {wrows[0]['sentences']} sentences. `mean in flight` = sum of latencies / wall time "
            f"(the concurrency the engine really had; it falls as sequences finish). Fractions: completion tokens/s "
            f"over the ceiling's tokens/s at the matching concurrency (without prefix; and with the prefix where "
            f"measured).",
            "",
        ]
        md += md_table(
            [
                "in flight (cap)",
                "mean in flight",
                "sentences/s",
                "compl. tok/s",
                "compl. tok/sent",
                "prompt tok/sent",
                "cached tok/sent",
                "p50 s",
                "p95 s",
                "ceiling used",
                "× ceiling",
                "× prefix ceiling",
            ],
            [
                [
                    str(r["in_flight"]),
                    fmt(r["mean_in_flight"], 0),
                    f"**{r['sent_s']:.2f}**",
                    fmt(r["compl_tok_s"]),
                    fmt(r["compl_per_sentence"]),
                    fmt(r["prompt_per_sentence"], 0),
                    fmt(r["cached_per_sentence"], 0),
                    fmt(r["p50"], 2),
                    fmt(r["p95"], 2),
                    "–" if r["ceiling_concurrency"] is None else f"{r['ceiling_concurrency']} seqs",
                    fmt(r["fraction"], 2),
                    fmt(r["fraction_prefix"], 2),
                ]
                for r in wrows
            ],
        )
        md += [
            "",
            "Chain: ceiling (short prompts) → ceiling with the few-shot prefix → baseline workload (natural EOS, "
            "stop strings, ragged lengths) → the gateway's default (from bench.py's report; not measured here).",
            "",
        ]
    sweep = results.get("sweep") or []
    if sweep:
        srows = []
        for r in sweep:
            w = _task(r, "workload")
            srows.append(
                {
                    "max_num_seqs": r["spec_engine"]["max_num_seqs"],
                    "max_num_batched_tokens": (r.get("resolved") or {}).get("max_num_batched_tokens")
                    or r["spec_engine"].get("max_num_batched_tokens"),
                    "default_batched": r["spec_engine"].get("max_num_batched_tokens") is None,
                    "startup_s": r.get("startup_s"),
                    "error": r.get("error"),
                    **(
                        {k: w[k] for k in ("sent_s", "compl_tok_s", "p50", "p95", "mean_in_flight", "sentences")}
                        if w
                        else {}
                    ),
                }
            )
        best = best_config(srows)
        results["sweep_rows"] = srows
        results["sweep_best"] = best
        eager = sweep[0]["spec_engine"].get("enforce_eager")
        mode_note = "**eager mode** (enforce_eager: a faster start; compiled decodes faster)" if eager else "compiled"
        md += [
            "## 3. Knob sweep: max_num_seqs × max_num_batched_tokens",
            "",
            f"The baseline workload, first {args.sweep_sentences} sentences, all in flight, a fresh engine per "
            f"config (own process), {mode_note}. "
            f"One run per config.",
            "",
        ]
        md += md_table(
            ["max_num_seqs", "max_num_batched_tokens", "start s", "sentences/s", "compl. tok/s", "p50 s", "p95 s"],
            [
                [
                    str(r["max_num_seqs"]),
                    fmt(r["max_num_batched_tokens"]) + (" (default)" if r["default_batched"] else ""),
                    fmt(r["startup_s"], 0),
                    ("**" if r is best else "") + fmt(r.get("sent_s"), 2) + ("**" if r is best else ""),
                    fmt(r.get("compl_tok_s")),
                    fmt(r.get("p50"), 2),
                    fmt(r.get("p95"), 2),
                ]
                if not r["error"]
                else [
                    str(r["max_num_seqs"]),
                    fmt(r["max_num_batched_tokens"]),
                    "–",
                    f"error: `{r['error']}`",
                    "",
                    "",
                    "",
                ]
                for r in srows
            ],
        )
        if best:
            md += sweep_conclusion(srows, best, args.sweep_sentences)
            results["sweep_noise"] = sweep_noise(srows, args.sweep_sentences)
        md.append("")
    ng = results.get("ngram")
    if ng:
        md += ngram_section(args, ng, results)
    for key in AB_PARTS:
        if results.get(key):
            md += ab_part_section(key, args, results[key], results)
    md += [
        "Numbers only: this report holds no sentence of the data set (it reads them at run time).",
        "",
    ]
    js = {
        "signature": sig,
        "parts": args.parts,
        "engines": {k: v for k, v in results.items() if k in ("A",) and v},
        "workload": [{k: v for k, v in r.items() if k != "token_ids"} for r in wrows],
        "sweep": [_strip(r) for r in sweep],
        "sweep_rows": results.get("sweep_rows"),
        "sweep_best": results.get("sweep_best"),
        "sweep_noise": results.get("sweep_noise"),
        "ngram": results.get("ngram_summary"),
        "ngram_engines": [_strip(r) for r in (ng or [])],
    }
    for key in AB_PARTS:
        js[key] = results.get(f"{key}_summary")
        js[f"{key}_engine"] = _strip(results[key]) if results.get(key) else None
    if a:
        js["engines"] = {"A": _strip(a)}
    return "\n".join(md) + "\n", js


def ab_section(
    title: str, intro: str, res: dict[str, Any], labels: tuple[str, str]
) -> tuple[list[str], dict[str, float] | None]:
    """One engine's workload runs in two arms, alternating: a table (sentences/s, tokens, the process's CPU) and
    the median ratio of the "on" arm against the "off" one; the summary, or None without both arms."""

    def on(t: dict[str, Any]) -> bool:
        return t.get("arm") == "on"

    runs = [t for t in res.get("tasks", []) if t["kind"] == "workload"]
    md = [title, "", intro, ""]
    if res.get("error"):
        md += [f"Error: `{res['error']}`", ""]
    if not runs:
        return md, None
    md += md_table(
        ["run", "arm", "sentences/s", "completion tok/s", "completion tokens", "frontend CPU s"],
        [
            [
                t["name"],
                labels[1] if on(t) else labels[0],
                fmt(t["sent_s"], 3),
                fmt(t["compl_tok_s"]),
                str(t["completion_tokens"]),
                fmt(t.get("frontend_cpu_s"), 2),
            ]
            for t in runs
        ],
    )
    off_runs, on_runs = [t for t in runs if not on(t)], [t for t in runs if on(t)]
    if not (off_runs and on_runs):
        return md, None
    off, onv = [t["sent_s"] for t in off_runs], [t["sent_s"] for t in on_runs]
    summary = {"off_median": median(off), "on_median": median(onv), "ratio": median(onv) / median(off)}
    cpu_off = [t["frontend_cpu_s"] for t in off_runs if t.get("frontend_cpu_s") is not None]
    cpu_on = [t["frontend_cpu_s"] for t in on_runs if t.get("frontend_cpu_s") is not None]
    if cpu_off and cpu_on:
        summary["frontend_cpu_off_median"], summary["frontend_cpu_on_median"] = median(cpu_off), median(cpu_on)
    tokens = sorted({t["completion_tokens"] for t in runs})
    same = "the same" if len(tokens) == 1 else f"{tokens[0]}–{tokens[-1]}"
    if max(onv) < min(off) or min(onv) > max(off):
        order = f"every run {labels[1]} {'slower' if max(onv) < min(off) else 'faster'} than every run {labels[0]}"
    else:
        order = "the runs overlap"
    if "frontend_cpu_on_median" in summary:
        order += (
            f"; frontend CPU {summary['frontend_cpu_on_median']:.2f} s {labels[1]} vs "
            f"{summary['frontend_cpu_off_median']:.2f} s {labels[0]}"
        )
    md += [
        "",
        f"Median {labels[1]} **{summary['on_median']:.2f}** vs {labels[0]} {summary['off_median']:.2f} sentences/s: "
        f"**{summary['ratio']:.2f}×** ({order}; {same} completion tokens per run).",
        "",
    ]
    return md, summary


class ABPart(NamedTuple):
    """A part that runs one engine's baseline workload in two arms, alternating (``--parts`` name: the key with
    dashes)."""

    title: str
    arms: str  #: the two arms as the intro says them
    why: str
    labels: tuple[str, str]  #: the "off" and the "on" arm
    task_key: str  #: what the "on" arm's workload tasks set ...
    task_value: Callable[[argparse.Namespace], Any]  #: ... to this


AB_PARTS: dict[str, ABPart] = {
    "logprobs": ABPart(
        "## 5. The cost of log-probabilities (`logprobs=0`: the chosen token's, as the gateway's confidence asks)",
        "with and without `logprobs=0`",
        "vLLM computes a log-softmax over the whole vocabulary (and the chosen token's rank) for every sequence of a "
        "step once any sequence in it asks.",
        ("without logprobs", "with logprobs"),
        "logprobs",
        lambda a: 0,
    ),
    "token_ids": ABPart(
        "## 6. Prompts as token ids (the template prefix tokenized once, as the gateway sends them)",
        "sent as text (vLLM tokenizes each whole prompt, prefix included) and as token ids "
        "(`vllm_inprocess.PromptTokens`: the prefix's ids once, the rest tokenized per prompt)",
        "Frontend CPU: this process's CPU seconds during the run (vLLM's frontend and the callers), on the 2 cores "
        "the engine's OpenMP threads use.",
        ("as text", "as token ids"),
        "ids_input",
        lambda a: True,
    ),
    "frontend_cpu": ABPart(
        "## 7. What the frontend's CPU costs the engine",
        "plain and with {burn_ms:g} ms of busy work on the frontend's event loop every 60 ms (as a gateway's "
        "per-request work would add)",
        "On 2 cores the engine's OpenMP threads want both; whatever else runs takes one of them, and the other "
        "waits for it at the next barrier.",
        ("plain", "with extra frontend work"),
        "burn_ms",
        lambda a: a.burn_ms,
    ),
}


def ab_tasks(key: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """An A/B part's workload tasks: ``--logprobs-repeats`` pairs, alternating which arm runs first."""
    part = AB_PARTS[key]
    tasks = []
    for rep in range(args.logprobs_repeats):
        for arm in ("off", "on") if rep % 2 == 0 else ("on", "off"):
            tasks.append(
                {
                    "kind": "workload",
                    "name": f"{key.replace('_', '-')}-{arm}-{rep + 1}",
                    "sentences": args.sentences,
                    "arm": arm,
                    part.task_key: part.task_value(args) if arm == "on" else None,
                }
            )
    return tasks


def ab_part_section(key: str, args: argparse.Namespace, res: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """The report section of an A/B part (:data:`AB_PARTS`); its summary goes to ``results[key + "_summary"]``."""
    part = AB_PARTS[key]
    intro = (
        f"One engine (max_num_seqs {args.logprobs_max_num_seqs}, {'eager' if args.eager else 'compiled'}), the "
        f"baseline workload ({args.sentences} sentences, all submitted at once) "
        f"{part.arms.format(burn_ms=getattr(args, 'burn_ms', 0))}, alternating which runs first. {part.why}"
    )
    md, summary = ab_section(part.title, intro, res, part.labels)
    if summary:
        results[f"{key}_summary"] = summary
    return md


def ngram_section(args: argparse.Namespace, ng: list[dict[str, Any]], results: dict[str, Any]) -> list[str]:
    ref = next((r for r in ng if r["label"] == "ngram-ref"), None)
    specs = [r for r in ng if r["label"] != "ngram-ref"]
    loads = [t["name"] for t in (ref or {}).get("tasks", []) if t["kind"] == "workload"]
    md = [
        "## 4. n-gram speculative decoding (prompt lookup)",
        "",
        f"`speculative_config={{'method': 'ngram', 'num_speculative_tokens': k, 'prompt_lookup_max': "
        f"{args.ngram_max}, 'prompt_lookup_min': {args.ngram_min}}}` on the baseline workload, against the same "
        f"engine without it (max_num_seqs {args.ngram_max_num_seqs}, "
        f"{'eager' if args.sweep_eager else 'compiled'}). Loads: {', '.join(loads) or '–'}. `mismatched`: outputs "
        "(token ids) that differ from the non-speculative greedy run of the same sentences.",
        "",
    ]
    summary: list[dict[str, Any]] = []
    if ref and ref.get("error"):
        md += [f"The reference engine failed: `{ref['error']}`", ""]
    rows = []
    for s in specs:
        k = s["spec_engine"]["speculative_config"]["num_speculative_tokens"]
        if s.get("error") and not s.get("tasks"):
            rows.append([str(k), "–", "–", "–", "–", "–", "–", "–", f"refused: `{s['error']}`"])
            summary.append({"k": k, "error": s["error"]})
            continue
        for name in loads:
            r0, r1 = _task(ref or {}, "workload", name), _task(s, "workload", name)
            if not r0 or not r1:
                continue
            bad, n = mismatches(r0["token_ids"], r1["token_ids"])
            row = {
                "k": k,
                "load": name,
                "sentences": r0["sentences"],
                "ref_sent_s": r0["sent_s"],
                "spec_sent_s": r1["sent_s"],
                "speedup": ratio(r1["sent_s"], r0["sent_s"]),
                "ref_p50": r0["p50"],
                "spec_p50": r1["p50"],
                "acceptance": r1["acceptance"],
                "mismatched": bad,
                "compared": n,
            }
            summary.append(row)
            rows.append(
                [
                    str(k),
                    name,
                    str(r0["sentences"]),
                    fmt(r0["sent_s"], 2),
                    fmt(r1["sent_s"], 2),
                    f"**{fmt(row['speedup'], 2)}**",
                    f"{fmt(r0['p50'], 2)} → {fmt(r1['p50'], 2)}",
                    fmt(r1["acceptance"], 2),
                    f"{bad}/{n}",
                ]
            )
        if s.get("error"):
            rows.append([str(k), "–", "–", "–", "–", "–", "–", "–", f"error: `{s['error']}`"])
    md += md_table(
        [
            "k",
            "load",
            "sentences",
            "sent/s without",
            "sent/s with",
            "speed-up",
            "p50 s without → with",
            "draft acceptance",
            "mismatched",
        ],
        rows,
    )
    # the noise floor: the reference itself, batched differently, on the sentences each load shares with the last
    ws = [t for t in (ref or {}).get("tasks", []) if t["kind"] == "workload"]
    if len(ws) >= 2:
        pairs = [mismatches(lo["token_ids"], ws[-1]["token_ids"]) for lo in ws[:-1]]
        bad, n = sum(b for b, _ in pairs), sum(k for _, k in pairs)
        names = [lo["name"] for lo in ws[:-1]]
        results["ngram_noise_floor"] = {"between": [names, ws[-1]["name"]], "mismatched": bad, "compared": n}
        md += [
            "",
            f"Noise floor: without speculation, the outputs at {' and '.join(names)} differ from those at "
            f"{ws[-1]['name']} on {bad} of the {n} sentences they share"
            + (
                " (float32 batched differently is not bit-identical)."
                if bad
                else ": batching alone changes no output here, so a mismatch above is the speculation's."
            ),
        ]
    warns = [w for r in specs for w in r.get("warnings", [])]
    warns = [w for i, w in enumerate(warns) if w not in warns[:i]]
    if warns:
        md += ["", "vLLM's warnings when starting the speculative engine(s):", ""]
        md += [f"- `{w}`" for w in warns]
    asyncs = {r["label"]: (r.get("resolved") or {}).get("async_scheduling") for r in ng}
    if any(v is not None for v in asyncs.values()):
        md += [
            "",
            "async_scheduling as resolved: "
            + ", ".join(f"{k}: {v}" for k, v in asyncs.items())
            + " (vLLM-CPU turns it off for every engine, so it is no difference between the two).",
        ]
    results["ngram_summary"] = {"rows": summary, "noise_floor": results.get("ngram_noise_floor"), "warnings": warns}
    md.append("")
    return md


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts
    results: dict[str, Any] = {}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if "ceiling" in parts or "workload" in parts:
        tasks: list[dict[str, Any]] = []
        if "ceiling" in parts:
            conc = [int(x) for x in args.concurrency.split(",") if x]
            tasks.append(
                {"kind": "ceiling", "concurrency": conc, "repeats": args.repeats, "max_tokens": args.max_tokens}
            )
            tasks.append(
                {
                    "kind": "ceiling_prefix",
                    "concurrency": args.prefix_concurrency,
                    "repeats": args.repeats,
                    "max_tokens": args.max_tokens,
                }
            )
        if "workload" in parts:
            tasks.append({"kind": "workload", "name": "all", "sentences": args.sentences, "in_flight": 0})
            for k in [int(x) for x in args.workload_in_flight.split(",") if x]:
                tasks.append(
                    {"kind": "workload", "name": f"{k}-in-flight", "sentences": args.sentences, "in_flight": k}
                )
        engine = {"max_num_seqs": args.ceiling_max_num_seqs, "enforce_eager": args.eager}
        results["A"] = spawn(_spec(args, engine, tasks), "ceiling+workload")
        results["A"]["spec_engine"] = engine
    if "sweep" in parts:
        results["sweep"] = []
        for seqs in [int(x) for x in args.sweep_seqs.split(",") if x]:
            for mbt in parse_grid(args.sweep_batched_tokens):
                if args.sweep_cross and mbt is not None and seqs != args.sweep_cross_seqs:
                    continue
                engine = {"max_num_seqs": seqs, "enforce_eager": args.sweep_eager, "max_num_batched_tokens": mbt}
                task = {"kind": "workload", "name": "all", "sentences": args.sweep_sentences, "in_flight": 0}
                r = spawn(_spec(args, engine, [task]), f"sweep seqs={seqs} mbt={mbt or 'default'}")
                r["spec_engine"] = engine
                results["sweep"].append(r)
    if "ngram" in parts:
        loads = [
            {"kind": "workload", "name": "1-in-flight", "sentences": args.ngram_low_sentences, "in_flight": 1},
            {"kind": "workload", "name": "8-in-flight", "sentences": args.ngram_mid_sentences, "in_flight": 8},
            {"kind": "workload", "name": "saturation", "sentences": args.ngram_sentences, "in_flight": 0},
        ]
        base = {"max_num_seqs": args.ngram_max_num_seqs, "enforce_eager": args.sweep_eager}
        ng = [spawn(_spec(args, base, loads), "ngram-ref")]
        ng[0]["spec_engine"] = base
        for k in [int(x) for x in args.ngram_k.split(",") if x]:
            engine = {
                **base,
                "speculative_config": {
                    "method": "ngram",
                    "num_speculative_tokens": k,
                    "prompt_lookup_max": args.ngram_max,
                    "prompt_lookup_min": args.ngram_min,
                },
            }
            r = spawn(_spec(args, engine, loads), f"ngram k={k}")
            r["spec_engine"] = engine
            ng.append(r)
        results["ngram"] = ng
    for key in AB_PARTS:  # one engine each, the baseline workload in two arms, alternating
        if key.replace("_", "-") in parts:
            engine = {"max_num_seqs": args.logprobs_max_num_seqs, "enforce_eager": args.eager}
            results[key] = spawn(_spec(args, engine, ab_tasks(key, args)), key.replace("_", "-"))
            results[key]["spec_engine"] = engine
    wall = time.perf_counter() - t_start
    md, js = report(args, results, wall)
    (out / "report.md").write_text(md)
    (out / "report.json").write_text(json.dumps(js, indent=2, default=str) + "\n")
    print(md)
    print(f"wall time {wall / 60:.1f} min; wrote {out}/report.md and report.json", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return run_worker(argv[1], argv[2])
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.engine_ceiling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="folder with src.en (e.g. ../shared/data/newstest2021_ende)")
    p.add_argument("--out", default="results/engine-ceiling")
    p.add_argument("--model", default="embedded")
    p.add_argument("--kv-gib", type=int, default=4)
    p.add_argument(
        "--parts",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)}",
    )
    p.add_argument("--eager", action=argparse.BooleanOptionalAction, default=False, help="ceiling/workload engine")
    p.add_argument("--ceiling-max-num-seqs", type=int, default=256)
    p.add_argument("--concurrency", default="1,8,64,256")
    p.add_argument("--prefix-concurrency", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sentences", type=int, default=256, help="workload sentences (all in flight)")
    p.add_argument("--workload-in-flight", default="64", help="also the workload at these caps (comma-separated)")
    p.add_argument("--sweep-sentences", type=int, default=128)
    p.add_argument("--sweep-seqs", default="32,64,128,256")
    p.add_argument(
        "--sweep-batched-tokens", default="default,8192", help="max_num_batched_tokens values ('default': vLLM's)"
    )
    p.add_argument(
        "--sweep-cross",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="non-default max_num_batched_tokens only at --sweep-cross-seqs (else the full grid)",
    )
    p.add_argument("--sweep-cross-seqs", type=int, default=128)
    p.add_argument(
        "--sweep-eager",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sweep and n-gram engines in eager mode (default: yes, to save start-up time)",
    )
    p.add_argument("--ngram-k", default="3", help="num_speculative_tokens values (comma-separated)")
    p.add_argument("--ngram-max", type=int, default=4)
    p.add_argument("--ngram-min", type=int, default=2)
    p.add_argument("--ngram-max-num-seqs", type=int, default=128)
    p.add_argument(
        "--logprobs-repeats", type=int, default=4, help="logprobs and token-ids parts: pairs (on/off, alternating)"
    )
    p.add_argument(
        "--logprobs-max-num-seqs", type=int, default=64, help="logprobs and token-ids parts: the engine (the bench's)"
    )
    p.add_argument("--burn-ms", type=float, default=1.0, help="frontend-cpu part: busy ms every 60 ms")
    p.add_argument("--ngram-low-sentences", type=int, default=8, help="sentences at 1 in flight")
    p.add_argument("--ngram-mid-sentences", type=int, default=32, help="sentences at 8 in flight")
    p.add_argument("--ngram-sentences", type=int, default=64, help="sentences at saturation (all in flight)")
    args = p.parse_args(argv)
    bad = set(args.parts) - set(PARTS)
    if bad:
        p.error(f"unknown parts {sorted(bad)}; choose from {','.join(PARTS)}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
