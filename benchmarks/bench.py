"""``python -m benchmarks.bench`` (``make bench``): batchmt against plain vLLM, in one run, on one engine.

Modes (every ratio is against ``baseline``):

- ``naive``: one request per sentence straight to the engine, prefix cache defeated (a unique
  ``cache_salt`` per prompt);
- ``baseline``: plain vLLM best practice: one request per sentence, prefix cache on, all at once;
- ``pack-K``: the gateway with a fixed pack size K (translation memory off), on the first
  ``--pack-sentences`` sentences (forced packing on a small model is slow: failed slots are
  repaired in smaller prompts);
- ``default``: the gateway as a user runs it (adaptive policy, calibrated limit, memory on); when the
  set has repeated sentences, also on its de-duplicated version (``default-unique``);
- ``default-whole-lines``: the default with ``split_sentences: "off"``, one slot per line as plain vLLM
  sends it: the same engine work as the baseline, so the gap is the gateway's own;
- ``default+confidence``: the default with every request asking for ``confidence`` (the engine computes the
  tokens' log-probabilities; the ``confidence ρ`` column is measured here);
- ``default+2nd-try``: the default with ``--suspect-second-try``.

A mode run on fewer sentences than the baseline is compared, for quality, with the baseline's
translations of the same sentences (the baseline translates each sentence independently).

Loads: ``saturation`` (every sentence in flight at once, one sentence per request) and ``low`` (one
caller, one sentence at a time). Plus the gateway alone over a zero-latency fake engine.
Writes ``report.md``, ``report.json`` and PNG plots to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from batchmt_server.engines import Engine, GenerationParams
from batchmt_server.http.app import create_app
from batchmt_server.prompting.parsing import is_copy
from batchmt_server.prompting.template import Template
from batchmt_server.settings import Settings

__all__ = ["main"]


@dataclass
class Result:
    mode: str
    load: str
    sentences: int
    seconds: float
    latencies: list[float] = field(repr=False, default_factory=list)
    #: gateway modes: (latency, sentences re-sent) of every request, to see what the last answers were
    resent_by_request: list[tuple[float, int]] = field(repr=False, default_factory=list)
    prompt_tokens: float = 0
    cached_prompt_tokens: float = 0
    completion_tokens: float = 0
    engine_prompts: int = 0
    resent: int = 0  # sentences re-sent in a smaller prompt (gateway only)
    flagged: int = 0  # output slots the parser flagged (copies included)
    hyps: list[str] = field(repr=False, default_factory=list)
    statuses: list[str] = field(repr=False, default_factory=list)  # per sentence (gateway modes)
    confidences: list[float | None] = field(repr=False, default_factory=list)  # per sentence (gateway modes)
    copies_ok_rate: float | None = None  # copies of the source delivered with status "ok"
    suspect_rate: float | None = None  # sentences delivered as "suspect"
    confidence_spearman: float | None = None  # rank correlation of confidence with sentence chrF
    chrf: float | None = None
    bleu: float | None = None
    copy_rate: float | None = None
    frontend_cpu: float = 0.0  # CPU seconds of this process (vLLM's frontend, the gateway, the callers) in the run
    #: vLLM's running sequences, sampled every 0.25 s from the first sample with any to the last (the engine's
    #: occupancy: does the gateway keep it as full as plain vLLM does?)
    running: list[float] = field(repr=False, default_factory=list)
    waiting: list[float] = field(repr=False, default_factory=list)  # vLLM's waiting requests, the same samples
    #: gateway modes: (seconds into the run, sentences queued at the gateway, prompts it has in flight), 0.25 s apart
    gateway_state: list[tuple[float, int, int]] = field(repr=False, default_factory=list)
    base_chrf: float | None = None  # the baseline's chrF on the same sentences, when this mode ran on fewer
    note: str = ""

    @property
    def throughput(self) -> float:
        return self.sentences / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def resent_among_last(self, k: int) -> str:
        """How many of the ``k`` slowest requests had a sentence re-sent ("–" without per-request data)."""
        if not self.resent_by_request:
            return "–"
        last = sorted(self.resent_by_request)[-k:]
        return f"{sum(1 for _, n in last if n)} of {len(last)}"

    @property
    def mean_running(self) -> float | None:
        return sum(self.running) / len(self.running) if self.running else None

    def per_sentence(self, x: float) -> float:
        return x / self.sentences if self.sentences else 0.0

    @property
    def billed_tokens(self) -> float:
        """Uncached prompt tokens + completion tokens: what a token-billed API with free cache hits charges."""
        return self.prompt_tokens - self.cached_prompt_tokens + self.completion_tokens


def _params(template: Template, sentence_tokens: int, salt: str | None = None) -> GenerationParams:
    return GenerationParams(
        max_tokens=template.max_tokens([sentence_tokens]), temperature=0.0, stop=template.stop_for(1), cache_salt=salt
    )


async def run_direct(
    engine: Engine, template: Template, sentences: list[str], *, salted: bool, mode: str, load: str
) -> Result:
    """One prompt per sentence straight to the engine (what a vLLM user does without batchmt)."""
    res = Result(mode, load, len(sentences), 0.0)
    hyps: list[str] = [""] * len(sentences)

    async def one(i: int, s: str) -> None:
        t = time.perf_counter()
        c = await engine.generate(
            template.render([s]), _params(template, engine.count_tokens(s), uuid.uuid4().hex if salted else None)
        )
        res.latencies.append(time.perf_counter() - t)
        slot = template.parse(c.text, [s], c.finish_reason)[0]
        hyps[i] = slot.text or ""
        res.flagged += slot.reason is not None
        res.prompt_tokens += c.prompt_tokens
        res.cached_prompt_tokens += c.cached_prompt_tokens
        res.completion_tokens += c.completion_tokens
        res.engine_prompts += 1

    t0 = time.perf_counter()
    if load == "low":
        for i, s in enumerate(sentences):
            await one(i, s)
    else:
        await asyncio.gather(*(one(i, s) for i, s in enumerate(sentences)))
    res.seconds = time.perf_counter() - t0
    res.hyps = hyps
    return res


async def run_gateway(
    engine: Engine,
    settings: Settings,
    sentences: list[str],
    *,
    mode: str,
    load: str,
    concurrency: int | None = None,
    per_request: int = 1,
    split: str | None = None,
    confidence: bool = False,
) -> Result:
    """Sentences as requests of ``per_request`` (default: one each) through the whole app (validation,
    batcher, parser, JSON); ``split``: the requests' ``split_sentences`` (default: the server's). Latency is per
    request. Each run has its own empty store (translation memory), as
    each had its own in-process memory before the memory became persistent."""
    import tempfile

    settings = settings.model_copy(update={"data_dir": Path(tempfile.mkdtemp(prefix="batchmt-bench-store-"))})
    app = create_app(settings, engine=engine)
    res = Result(mode, load, len(sentences), 0.0)
    hyps: list[str] = [""] * len(sentences)
    statuses: list[str] = [""] * len(sentences)
    confidences: list[float | None] = [None] * len(sentences)
    async with app.router.lifespan_context(app):
        gw = app.state.gateway
        await gw.wait_ready()
        limits = httpx.Limits(max_connections=None)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=3600, limits=limits
        ) as client:
            sem = asyncio.Semaphore(concurrency or len(sentences))

            async def one(i: int) -> None:
                chunk = sentences[i : i + per_request]
                async with sem:
                    t = time.perf_counter()
                    body: dict[str, object] = {"sentences": chunk}
                    if split is not None:
                        body["split_sentences"] = split
                    if confidence:
                        body["confidence"] = True
                    r = await client.post("/v1/translate", json=body)
                    res.latencies.append(time.perf_counter() - t)
                r.raise_for_status()
                res.resent_by_request.append((res.latencies[-1], int(r.json()["usage"].get("retries") or 0)))
                for k, t in enumerate(r.json()["translations"]):
                    hyps[i + k] = t["text"] or ""
                    statuses[i + k], confidences[i + k] = t["status"], t.get("confidence")

            starts = range(0, len(sentences), per_request)
            t0 = time.perf_counter()
            done = asyncio.Event()

            def watch() -> None:  # where the gateway holds the work: its queue, its prompts in flight
                st = gw.stats
                res.gateway_state.append((time.perf_counter() - t0, st.queue_depth, st.prompts_in_flight))

            watcher = asyncio.create_task(every(0.25, done, watch))
            try:
                if load == "low":
                    for i in starts:
                        await one(i)
                else:
                    await asyncio.gather(*(one(i) for i in starts))
            finally:
                done.set()
                await watcher
            res.seconds = time.perf_counter() - t0
        st = gw.stats.snapshot()
        res.prompt_tokens, res.cached_prompt_tokens = st.prompt_tokens, st.cached_prompt_tokens
        res.completion_tokens = st.completion_tokens
        res.engine_prompts = sum(st.prompts.values())
        res.flagged = sum(st.flagged_slots.values())  # slots the parser flagged (batchmt_repairs_total)
        res.resent = sum(st.resent_sentences.values())  # sentences re-sent (batchmt_retries_total)
        if gw.calibrated_pack_limit:
            res.note = f"calibrated limit {gw.calibrated_pack_limit}"
    res.hyps, res.statuses, res.confidences = hyps, statuses, confidences
    return res


class PySpy:
    """py-spy sampling this process into ``path`` (collapsed stacks, ``--nonblocking``: the process is not paused)
    until :meth:`stop`."""

    def __init__(self, path: Path, rate: int = 100) -> None:
        from benchmarks.gateway_load import py_spy_record

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.proc = subprocess.Popen(
            py_spy_record(os.getpid(), path, rate), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self) -> Path:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
        _, err = self.proc.communicate(timeout=60)
        if not self.path.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
        return self.path


#: frames every sample of the bench process passes through: left out of the inclusive list
BENCH_PLUMBING = re.compile(r"<frozen runpy>|^<module> |bench\.py\)|asyncio/(runners|base_events|events)\.py")


def profiles_md(paths: list[Path], n: int = 25) -> str:
    """The top frames of every mode's runs together (``<mode>-<k>.txt``), self and inclusive, as shares of the
    mode's samples (py-spy samples only running threads: a share of the frontend's CPU, not of wall time)."""
    from benchmarks.gateway_load import top_frames

    by_mode: dict[str, list[str]] = {}
    for p in paths:
        by_mode.setdefault(p.stem.rsplit("-", 1)[0], []).append(p.read_text())
    md = ["# Frontend process profiles (py-spy, 100 Hz, --nonblocking)", ""]
    for mode, texts in by_mode.items():
        top = top_frames("\n".join(texts), n, BENCH_PLUMBING)
        md += [f"## {mode} ({len(texts)} runs, {top['samples'][0][1]:.0f} samples)", ""]
        md += ["| self | inclusive |", "|---|---|"]
        for (fs, s), (fi, i) in zip(top["self"], top["inclusive"]):
            md.append(f"| {100 * s:.1f}% {fs} | {100 * i:.1f}% {fi} |")
        md.append("")
    return "\n".join(md)


def _fmt1(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


async def every(period_s: float, stop: asyncio.Event, fn: Callable[[], None]) -> None:
    """``fn()`` now and every ``period_s`` until ``stop`` is set."""
    while not stop.is_set():
        fn()
        try:
            await asyncio.wait_for(stop.wait(), period_s)
        except TimeoutError:
            pass


def engine_gauge(name: str, registry: Any = None) -> float | None:
    """The sum of a vLLM gauge's samples in this process's registry (its stat loggers live here), or None.
    Only that metric's collector is asked (collecting vLLM's whole registry costs milliseconds of the frontend's
    CPU, which the engine feels on 2 cores)."""
    from prometheus_client import REGISTRY

    reg = registry or REGISTRY
    collector = getattr(reg, "_names_to_collectors", {}).get(name)
    metrics = collector.collect() if collector is not None else reg.collect()
    values = [s.value for m in metrics for s in m.samples if s.name == name]
    return sum(values) if values else None


async def sample_running(
    into: list[float],
    stop: asyncio.Event,
    period_s: float = 0.25,
    registry: Any = None,
    waiting: list[float] | None = None,
) -> None:
    """``vllm:num_requests_running`` (and into ``waiting``, ``vllm:num_requests_waiting``) every ``period_s`` until
    ``stop``; the samples before the first and after the last with a running sequence are dropped."""
    samples: list[tuple[float, float]] = []

    def sample() -> None:
        v = engine_gauge("vllm:num_requests_running", registry)
        if v is not None:
            samples.append((v, engine_gauge("vllm:num_requests_waiting", registry) or 0.0))

    await every(period_s, stop, sample)
    busy = [i for i, (v, _) in enumerate(samples) if v > 0]
    kept = samples[busy[0] : busy[-1] + 1] if busy else []
    into.extend(v for v, _ in kept)
    if waiting is not None:
        waiting.extend(w for _, w in kept)


def score(res: Result, sources: list[str], refs: list[str]) -> None:
    import sacrebleu

    if res.mode.startswith("fake"):
        return
    res.chrf = sacrebleu.corpus_chrf(res.hyps, [refs]).score
    res.bleu = sacrebleu.corpus_bleu(res.hyps, [refs]).score
    copies = [is_copy(s, h) for s, h in zip(sources, res.hyps)]
    res.copy_rate = sum(copies) / len(sources)
    if res.statuses:  # gateway modes: what the caller was told
        res.copies_ok_rate = sum(c and st == "ok" for c, st in zip(copies, res.statuses)) / len(sources)
        res.suspect_rate = sum(st == "suspect" for st in res.statuses) / len(sources)
        scored = [
            (c, sacrebleu.sentence_chrf(h, [ref]).score)
            for c, h, ref in zip(res.confidences, res.hyps, refs)
            if c is not None
        ]
        res.confidence_spearman = spearman([c for c, _ in scored], [q for _, q in scored])


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (None for fewer than 3 pairs or a constant side)."""
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx and vy else None


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _delta(r: Result, b: Result | None) -> str:
    if r.chrf is None or b is None or b.chrf is None:
        return "–"
    if r.base_chrf is not None:
        return f"{r.chrf - r.base_chrf:+.1f}"
    return f"{r.chrf - b.chrf:+.1f}"


def table(results: list[Result], base: dict[str, Result | None]) -> str:
    head = (
        "| mode | load | sent. | sent./s | × base | p50 s | × base | p95 s | prompt tok/sent | cached tok/sent "
        "| compl. tok/sent | billed tok/sent | × base | chrF | Δ base | BLEU | copies % | engine prompts /100 "
        "| flagged slots /100 | re-sent /100 | copies as ok % | suspect % | confidence ρ | note |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        b = base.get(r.load)

        def ratio(x: float, y: float, b: Result | None = b) -> str:
            return f"{x / y:.2f}" if b and y else "–"

        rows.append(
            "| "
            + " | ".join(
                [
                    r.mode,
                    r.load,
                    str(r.sentences),
                    f"{r.throughput:.2f}",
                    ratio(r.throughput, b.throughput if b else 0),
                    f"{r.pct(0.5):.3f}",
                    ratio(r.pct(0.5), b.pct(0.5) if b else 0),
                    f"{r.pct(0.95):.3f}",
                    f"{r.per_sentence(r.prompt_tokens):.0f}",
                    f"{r.per_sentence(r.cached_prompt_tokens):.0f}",
                    f"{r.per_sentence(r.completion_tokens):.1f}",
                    f"{r.per_sentence(r.billed_tokens):.0f}",
                    ratio(r.per_sentence(r.billed_tokens), b.per_sentence(b.billed_tokens) if b else 0),
                    "–" if r.chrf is None else f"{r.chrf:.1f}",
                    _delta(r, b),
                    "–" if r.bleu is None else f"{r.bleu:.1f}",
                    "–" if r.copy_rate is None else f"{100 * r.copy_rate:.0f}",
                    f"{100 * r.engine_prompts / r.sentences:.0f}",
                    f"{100 * r.flagged / r.sentences:.1f}",
                    f"{100 * r.resent / r.sentences:.1f}",
                    "–" if r.copies_ok_rate is None else f"{100 * r.copies_ok_rate:.1f}",
                    "–" if r.suspect_rate is None else f"{100 * r.suspect_rate:.1f}",
                    "–" if r.confidence_spearman is None else f"{r.confidence_spearman:.2f}",
                    r.note,
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def plots(results: list[Result], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    sat = [r for r in results if r.load == "saturation" and r.chrf is not None]
    packs = sorted((int(r.mode.split("-")[1]), r) for r in sat if r.mode.startswith("pack-"))
    files = []
    if packs:  # (none with --only-headline)
        fig, ax1 = plt.subplots(figsize=(7, 4))
        ax1.plot([k for k, _ in packs], [r.throughput for _, r in packs], "o-", label="gateway, fixed pack size")
        for r, style in (
            (next((x for x in sat if x.mode == "baseline"), None), "--"),
            (next((x for x in sat if x.mode == "default"), None), ":"),
            (next((x for x in sat if x.mode == "naive"), None), "-."),
        ):
            if r is not None:
                ax1.axhline(
                    r.throughput, linestyle=style, color="gray" if r.mode != "default" else "green", label=r.mode
                )
        ax1.set_xscale("log", base=2)
        ax1.set_xlabel("sentences per prompt")
        ax1.set_ylabel("sentences/s at saturation")
        ax2 = ax1.twinx()
        chrf = [r.chrf or 0.0 for _, r in packs]
        ax2.plot([k for k, _ in packs], chrf, "s-", color="tab:red", label="chrF (right)")
        ax2.set_ylabel("chrF (failed slots repaired)", color="tab:red")
        ax2.set_ylim(0, max(chrf + [1.0]) * 1.25)  # from 0: a zoomed axis would exaggerate
        fig.legend(loc="upper right", fontsize=8)
        ax1.set_title("throughput and quality vs pack size")
        fig.tight_layout()
        fig.savefig(out / "pack_size.png", dpi=110)
        files.append("pack_size.png")
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    modes = [r.mode for r in results if r.load == "low"]
    if modes:
        ax.bar(modes, [r.pct(0.5) for r in results if r.load == "low"], label="p50")
        ax.bar(
            modes,
            [r.pct(0.95) - r.pct(0.5) for r in results if r.load == "low"],
            bottom=[r.pct(0.5) for r in results if r.load == "low"],
            alpha=0.4,
            label="p95",
        )
        ax.set_ylabel("latency at low load (s)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "low_load_latency.png", dpi=110)
        files.append("low_load_latency.png")
    plt.close(fig)
    return files


async def bench_fake(n: int, concurrency: int) -> list[Result]:
    """The gateway alone: a zero-latency fake engine, so only the gateway's own work is timed."""
    from batchmt_server.engines.fake import FakeEngine

    settings = Settings(
        engine="fake",
        calibration="off",
        warmup=False,
        max_queue_sentences=max(4096, 2 * n),
        translation_memory_size=0,
        max_wait_ms=1.0,
    )
    sents = [f"Gateway benchmark sentence number {i} is here." for i in range(n)]
    sat = await run_gateway(
        FakeEngine(), settings, sents, mode="fake-gateway", load="saturation", concurrency=concurrency
    )
    sat.note = "1 sentence per request"
    batched = await run_gateway(
        FakeEngine(), settings, sents * 4, mode="fake-gateway", load="saturation", concurrency=64, per_request=64
    )
    batched.note = "64 sentences per request"
    low = await run_gateway(
        FakeEngine(), settings.model_copy(update={"max_wait_ms": 0.0}), sents[:200], mode="fake-gateway", load="low"
    )
    low.note = "1 sentence per request, one at a time: the latency the gateway adds"
    return [sat, batched, low]


async def run(args: argparse.Namespace) -> int:
    from batchmt_server.engines.vllm_inprocess import VLLMEngine
    from batchmt_server.models.embedded import resolve_model
    from batchmt_server.pipeline.gateway import default_prompts_in_flight
    from batchmt_server.prompting.chat import apply_form

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = (Path(args.data) / "src.en").read_text(encoding="utf-8").splitlines()
    ref = (Path(args.data) / "ref.de").read_text(encoding="utf-8").splitlines()
    data = [(s.strip(), r.strip()) for s, r in zip(src, ref) if s.strip()][: args.sentences]
    sources, refs = [s for s, _ in data], [r for _, r in data]
    low_n = min(args.low_sentences, len(sources))
    sizes = [int(x) for x in args.pack_sizes.split(",") if x]
    base_settings = Settings(
        model=args.model,
        enforce_eager=args.eager,
        warmup=False,
        calibration="off",
        max_queue_sentences=max(4096, 2 * len(sources)),
        max_prompts_in_flight=args.gateway_in_flight,  # None: the server's default (2x the engine's slots)
    )
    print(f"machine: {machine()}", flush=True)
    t0 = time.perf_counter()
    engine = VLLMEngine(
        resolve_model(args.model, base_settings.cache_dir),
        model_name=base_settings.model_name,
        enforce_eager=args.eager,
        max_num_seqs=args.in_flight,
        cpu_kvcache_gib=args.kv_gib,
        cpu_preload=base_settings.cpu_preload,  # BATCHMT_CPU_PRELOAD=false: off
    )
    await engine.start()
    engine_preload = ":".join(engine.preloaded)
    gateway_in_flight = args.gateway_in_flight or default_prompts_in_flight(engine)
    # the form the gateway uses too: chat for a model with a chat template (the baseline sends the same prompts)
    # plain vLLM's prompt: the long few-shot prefix (the first template variant), in the form the gateway uses too
    # (chat for a model with a chat template)
    # (the first of --template-variants as configured: a self-trained model's own template, which template_names
    # puts first, is one the gateway may choose, not the baseline)
    baseline_name = base_settings.variant_names[0]
    template = apply_form(Template.load(baseline_name), "auto", engine.tokenizer, engine.model_name)
    template_note = ""
    warm_source = template.examples[0][0][0] if template.examples else "Hello."
    await engine.generate(template.render([warm_source]), _params(template, 12))  # warm the prefix cache
    startup = time.perf_counter() - t0
    print(f"engine ready in {startup:.0f}s", flush=True)
    results: list[Result] = []

    async def warm() -> None:
        """Every mode starts from the same cache state: emptied (so no mode reuses the full prompts an
        earlier mode left behind), then the shared prefix cached once, which is what a plain vLLM user
        has after the first request, so the baseline is at its best."""
        await engine.reset_prefix_cache()
        await engine.generate(template.render([warm_source]), _params(template, 12))

    baseline: Result | None = None
    profiled: list[Path] = []  # --py-spy: one collapsed-stack file per run, in order
    profile_dir = out / "profiles" if args.py_spy else None

    async def record(coro_fn, *args, index: list[int] | None = None, keep: bool = True, **kwargs) -> Result:
        """Run one mode from the common cache state and score it; ``index``: which of ``sources`` it
        translated (default: the first ``n``); ``keep``: a row of the report's table."""
        await warm()
        cpu = time.process_time()
        stop, running, waiting = asyncio.Event(), list[float](), list[float]()
        sampler = asyncio.create_task(sample_running(running, stop, waiting=waiting))
        spy = PySpy(profile_dir / f"{kwargs['mode']}-{len(profiled)}.txt") if profile_dir else None
        try:
            r = await coro_fn(*args, **kwargs)
        finally:
            stop.set()
            await sampler
            if spy is not None:
                profiled.append(spy.stop())
        r.frontend_cpu = time.process_time() - cpu
        r.running, r.waiting = running, waiting
        idx = index if index is not None else list(range(r.sentences))
        score(r, [sources[i] for i in idx], [refs[i] for i in idx])
        if baseline is not None and r.load == "saturation" and idx != list(range(baseline.sentences)):
            import sacrebleu

            r.base_chrf = sacrebleu.corpus_chrf([baseline.hyps[i] for i in idx], [[refs[i] for i in idx]]).score
        print(
            f"  {r.mode:>10} {r.load:>10}: {r.throughput:6.2f} sent/s  p50 {r.pct(0.5):6.3f}s  chrF {r.chrf}  "
            f"frontend CPU {r.frontend_cpu:.1f}s",
            flush=True,
        )
        if keep:
            results.append(r)
        return r

    baseline = await record(run_direct, engine, template, sources, salted=False, mode="baseline", load="saturation")
    naive_n = 0 if args.only_headline else min(args.naive_sentences or len(sources), len(sources))
    if naive_n:
        r = await record(run_direct, engine, template, sources[:naive_n], salted=True, mode="naive", load="saturation")
        if naive_n < len(sources):
            r.note = f"first {naive_n} sentences only (uncached prefill is slow); Δ vs baseline on them"
    pack_n = min(args.pack_sentences or len(sources), len(sources))
    for k in [] if args.only_headline else sizes:
        s = base_settings.model_copy(
            update={"max_sentences_per_prompt": k, "pack_policy": "fixed", "translation_memory_size": 0}
        )
        r = await record(run_gateway, engine, s, sources[:pack_n], mode=f"pack-{k}", load="saturation")
        r.note = f"≤{min(args.in_flight, -(-pack_n // k))} prompts at once" + (
            f"; first {pack_n} sentences, Δ vs baseline on them" if pack_n < len(sources) else ""
        )
    default = base_settings.model_copy(update={"calibration": args.calibration})
    calibration_note = "calibration off"
    if (
        args.calibration == "auto"
    ):  # calibrate on this engine now (cached per model+template; quick runs use fewer pairs)
        from batchmt_server.pipeline.calibration import (
            calibrate,
            choose_template,
            load_cached,
            load_cached_choice,
            load_pairs,
        )

        cal_pairs = load_pairs(None, args.calibration_limit)
        # template "auto" (the default): the fastest variant that keeps quality, as the gateway chooses at start-up
        variants = {
            n: apply_form(Template.load(n), "auto", engine.tokenizer, engine.model_name)
            for n in base_settings.template_names
        }
        chosen, single = base_settings.template_names[0], None
        if len(variants) > 1:
            choice = (
                None
                if args.recalibrate
                else load_cached_choice(default.cache_dir, engine.model_name, list(variants.values()), cal_pairs)
            )
            if choice is None:
                choice = await choose_template(engine, variants, cal_pairs, cache_dir=default.cache_dir)
            print(choice.summary(), flush=True)
            chosen, single = choice.chosen, choice.result(choice.chosen).single
            template_note = "; ".join(
                f"{r.name}: chrF {r.single.chrf:.1f}, copies {100 * r.single.copy_rate:.0f}%, {r.single.seconds:.0f}s"
                for r in choice.results
            )
        cal = (
            None if args.recalibrate else load_cached(default.cache_dir, engine.model_name, variants[chosen], cal_pairs)
        )
        if cal is None:
            cal = await calibrate(engine, variants[chosen], cal_pairs, cache_dir=default.cache_dir, single=single)
        print(cal.summary(), flush=True)
        # the gateway's default settings, with the template and limit this run calibrated (same as at start-up)
        default = default.model_copy(
            update={
                "calibration": "off",
                "template": chosen,
                "max_sentences_per_prompt": min(default.max_sentences_per_prompt, cal.pack_limit),
            }
        )
        if chosen != baseline_name:
            # plain vLLM with the cheaper prompt too: the saving is the gateway choosing it, said honestly
            r = await record(
                run_direct, engine, variants[chosen], sources, salted=False, mode="baseline-chosen", load="saturation"
            )
            r.note = f"plain vLLM with the calibrated template {chosen}"
        calibration_note = f"template {chosen}, calibrated limit {cal.pack_limit} ({cal.sentences} pairs)"
    r = await record(run_gateway, engine, default, sources, mode="default", load="saturation")
    r.note = calibration_note + (
        f"; raw set: {len(sources) - len(set(sources))} repeats" if len(set(sources)) < len(sources) else ""
    )
    if not args.only_headline:  # the same engine work as plain vLLM: one prompt per line, no segmentation
        r = await record(
            run_gateway, engine, default, sources, mode="default-whole-lines", load="saturation", split="off"
        )
        r.note = "split_sentences off: a line is one slot, as plain vLLM sends it (the gateway's own overhead)"
    if not args.only_headline:  # what a confidence with every translation costs (the engine's log-probabilities)
        r = await record(
            run_gateway, engine, default, sources, mode="default+confidence", load="saturation", confidence=True
        )
        r.note = "every request asks for confidence: the engine computes the tokens' log-probabilities"
    if not args.only_headline:  # what a sampled second try for copies and loops buys, and what it costs
        r = await record(
            run_gateway,
            engine,
            default.model_copy(update={"suspect_second_try": True}),
            sources,
            mode="default+2nd-try",
            load="saturation",
        )
        r.note = "--suspect-second-try: copies and loops re-sent once, sampled"
    if args.dedup and not args.only_headline:
        first: dict[str, int] = {}
        for i, x in enumerate(sources):
            first.setdefault(x, i)
        uniq = sorted(first.values())
        if len(uniq) < len(sources):
            r = await record(
                run_gateway,
                engine,
                default,
                [sources[i] for i in uniq],
                index=uniq,
                mode="default-unique",
                load="saturation",
            )
            r.note = (
                f"de-duplicated: {len(uniq)} unique of {len(sources)}; × base against the raw baseline's rate, "
                "Δ against its translations of the same sentences"
            )
    # the machine is noisy: the headline pair again, in alternating order, for medians
    pairs: list[tuple[Result, Result]] = [(baseline, next(x for x in results if x.mode == "default"))]
    for i in range(args.repeats - 1):
        runs = {}
        for mode in ("default", "baseline") if i % 2 == 0 else ("baseline", "default"):
            if mode == "baseline":
                runs[mode] = await record(
                    run_direct, engine, template, sources, salted=False, mode=mode, load="saturation", keep=False
                )
            else:
                runs[mode] = await record(
                    run_gateway, engine, default, sources, mode=mode, load="saturation", keep=False
                )
        pairs.append((runs["baseline"], runs["default"]))
    if not args.only_headline:
        await record(run_direct, engine, template, sources[:low_n], salted=False, mode="baseline", load="low")
        await record(run_gateway, engine, default, sources[:low_n], mode="default", load="low")
    await engine.close()
    fake = [] if args.only_headline else await bench_fake(args.fake_sentences, 512)
    results.extend(fake)
    for r in fake:
        print(
            f"  {r.mode:>10} {r.load:>10}: {r.throughput:8.1f} sent/s  p50 {1000 * r.pct(0.5):.2f} ms  {r.note}",
            flush=True,
        )

    base: dict[str, Result | None] = {r.load: r for r in results if r.mode == "baseline"}
    base["saturation-fake"] = None
    m = machine()
    md = [
        f"# batchmt benchmark — {m['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; commit {m['commit']}.  ",
        f"Model: {base_settings.model_name} ({'eager' if args.eager else 'compiled'}), template {template.ref}; "
        f"data: `{args.data}` first {len(sources)} sentences (low load: first {low_n}); engine start {startup:.0f}s.  ",
        f"Engine max_num_seqs {args.in_flight}; the gateway's prompts in flight {gateway_in_flight}"
        f"{'' if args.gateway_in_flight else ' (the server default)'}; LD_PRELOAD of the engine: "
        f"{engine_preload or 'none'}.  ",
        "Every ratio is against `baseline` (one request per sentence, prefix cache on, all in flight) in the same run.",
        *(
            [f"Template calibration (one sentence per prompt on the calibration set): {template_note}."]
            if template_note
            else []
        ),
        "`copies as ok`: outputs that repeat the English source yet were delivered with status ok; `suspect`: "
        "delivered with status suspect (still a copy or a loop after a sampled second try); `confidence ρ`: "
        "Spearman correlation of each translation's confidence with its sentence chrF.",
        "",
        table([r for r in results if not r.mode.startswith("fake")], base),
        "",
        "Gateway alone (zero-latency fake engine, full app over ASGI, one sentence per request):",
        "",
        *(
            f"- {r.load}, {r.note}: {r.throughput:,.0f} sentences/s, p50 {1000 * r.pct(0.5):.2f} ms, "
            f"p95 {1000 * r.pct(0.95):.2f} ms per request ({r.sentences} sentences)"
            for r in fake
        ),
        "",
    ]
    if len(pairs) > 1:
        ratios = sorted(d.throughput / b.throughput for b, d in pairs)
        p50s = sorted(d.pct(0.5) / b.pct(0.5) for b, d in pairs)
        md += [
            f"Default against baseline at saturation, {len(pairs)} pairs (the first is the table's; later pairs "
            "alternate which runs first):",
            "",
            "| pair | baseline sent./s | default sent./s | × base | p50 × base | p90 s, base / default "
            "| last s, base / default | re-sent among the default's last 10 answers | chrF baseline | chrF default "
            "| frontend CPU s, baseline | frontend CPU s, default | engine's running sequences, mean, base / default |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {k} | {b.throughput:.2f} | {d.throughput:.2f} | {d.throughput / b.throughput:.2f} | "
            f"{d.pct(0.5) / b.pct(0.5):.2f} | {b.pct(0.9):.1f} / {d.pct(0.9):.1f} | "
            f"{b.pct(1.0):.1f} / {d.pct(1.0):.1f} | {d.resent_among_last(10)} | "
            f"{b.chrf:.1f} | {d.chrf:.1f} | {b.frontend_cpu:.1f} | "
            f"{d.frontend_cpu:.1f} | {_fmt1(b.mean_running)} / {_fmt1(d.mean_running)} |"
            for k, (b, d) in enumerate(pairs, 1)
        ]
        md += [
            "",
            f"Median × base: **{ratios[len(ratios) // 2]:.2f}** sentences/s, {p50s[len(p50s) // 2]:.2f} p50 "
            f"(range {ratios[0]:.2f}–{ratios[-1]:.2f}).",
            "",
        ]
    files = plots(results, out)
    md += [f"![{f}]({f})" for f in files]
    if profiled:
        (out / "profiles.md").write_text(profiles_md(profiled) + "\n")
        md += ["", f"py-spy profiles of the frontend process: [profiles.md](profiles.md) ({len(profiled)} runs)."]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.json").write_text(
        json.dumps(
            {
                "machine": m,
                "startup_s": startup,
                "engine_max_num_seqs": args.in_flight,
                "gateway_prompts_in_flight": gateway_in_flight,
                "engine_ld_preload": engine_preload,
                "results": [
                    {
                        **{
                            k: v
                            for k, v in asdict(r).items()
                            if k not in ("latencies", "hyps", "statuses", "confidences", "resent_by_request")
                        },
                        "throughput": r.throughput,
                        "p50": r.pct(0.5),
                        "p95": r.pct(0.95),
                    }
                    for r in results
                ],
            },
            indent=2,
        )
    )
    print("\n".join(md))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data", required=True, help="folder with src.en and ref.de (e.g. ../shared/data/newstest2021_ende)"
    )
    p.add_argument("--out", default="results/latest")
    p.add_argument("--model", default="embedded")
    p.add_argument("--sentences", type=int, default=512, help="sentences at saturation (all in flight)")
    p.add_argument(
        "--naive-sentences",
        type=int,
        default=64,
        help="sentences for the naive mode (uncached prefill is slow; 0: all)",
    )
    p.add_argument("--low-sentences", type=int, default=16, help="sentences at low load (one at a time)")
    p.add_argument("--pack-sizes", default="1,2,4,8,16")
    p.add_argument(
        "--pack-sentences", type=int, default=128, help="sentences for the fixed pack-size modes (default 128; 0: all)"
    )
    p.add_argument("--in-flight", type=int, default=64, help="engine sequences / gateway prompts in flight")
    p.add_argument(
        "--gateway-in-flight",
        type=int,
        default=None,
        help="the gateway's --max-prompts-in-flight (default: the server's, twice the engine's max_num_seqs)",
    )
    p.add_argument("--eager", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--kv-gib", type=int, default=4)
    p.add_argument("--calibration", choices=("auto", "off"), default="auto", help="for the default mode")
    p.add_argument("--calibration-limit", type=int, default=None, help="calibration pairs to use (default: all)")
    p.add_argument("--recalibrate", action="store_true", help="ignore a cached calibration")
    p.add_argument("--dedup", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--fake-sentences", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3, help="baseline/default pairs at saturation (median reported)")
    p.add_argument(
        "--py-spy",
        action="store_true",
        help="sample this (the frontend's) process with py-spy during every run: OUT/profiles/<mode>-<n>.txt "
        "(collapsed stacks) and the top frames per mode in profiles.md; the engine core's processes are not sampled",
    )
    p.add_argument(
        "--only-headline",
        action="store_true",
        help="only baseline and default at saturation (with --repeats): no naive, pack sizes, low load",
    )
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
