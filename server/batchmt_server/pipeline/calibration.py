"""Quality calibration: which prompt, and how far may this model pack sentences into one prompt?

1. **Template** (``template = "auto"``): translates the calibration set one sentence per prompt with
   each template variant (the long few-shot prefix, a short one, zero-shot) and keeps the fastest one
   whose chrF stays within ``max_chrf_drop`` points of the best variant and whose copy rate (outputs
   that repeat the English source) stays within ``max_copy_increase`` of the lowest. A long prefix costs
   attention on every decoded token; it only pays where the model needs it.
2. **Pack size**: translates the set one sentence per prompt and packed (2, 4, 8, 16 per prompt) with
   that template through the real batcher, and finds the largest pack size whose chrF stays within
   ``max_chrf_drop`` points of single, whose billed tokens per sentence (uncached prompt tokens plus completion
   tokens, the re-sends of flagged slots included) stay below single's, and whose parse failures (sentences
   re-sent alone after a bad slot) stay under ``max_parse_failure``: a re-send repairs its slot and is paid for
   in the billed tokens, the cap bounds the latency it adds. Each size starts from the same cache state (the
   engine's prefix cache emptied, then the template's prefix warmed).

Both results are cached per model, templates and calibration set.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..engines import Engine
from ..prompting.parsing import is_copy
from ..prompting.template import Template, default_prompts_dir
from ..telemetry.stats import Stats
from .batcher import Batcher
from .runner import PromptRunner

__all__ = [
    "Calibration",
    "SizeResult",
    "TemplateChoice",
    "VariantResult",
    "calibrate",
    "choose_template",
    "load_pairs",
    "cache_path",
    "load_cached",
    "load_cached_choice",
    "translate_fixed",
]

log = logging.getLogger("batchmt.calibration")

SIZES = (1, 2, 4, 8, 16)
#: template calibration: median times within this share of the fastest count as a tie (the shorter prompt wins).
#: Measured: the round-2 model's en-de-list (no echo) took 8.9 s against en-de-zero's 8.3 s on the 64 calibration
#: pairs, yet served 802 dev sentences at 6.26 against 4.63 sentences/s (results/selftrain/round2/)
TIE = 0.1


@dataclass
class SizeResult:
    pack: int
    chrf: float
    bleu: float
    parse_failure_rate: float  # sentences re-sent after a flagged slot, per sentence
    copy_rate: float
    seconds: float
    #: uncached prompt tokens plus completion tokens per sentence, re-sends included (0: not measured)
    billed_tokens: float = 0.0


@dataclass
class Calibration:
    model: str
    template: str
    sentences: int
    pack_limit: int
    max_chrf_drop: float
    max_parse_failure: float
    results: list[SizeResult] = field(default_factory=list)
    created: str = ""

    def summary(self) -> str:
        rows = [
            f"pack {r.pack:>2}: chrF {r.chrf:5.1f}  BLEU {r.bleu:5.1f}  "
            f"parse failures {100 * r.parse_failure_rate:5.1f}%  "
            f"copies {100 * r.copy_rate:5.1f}%  billed {r.billed_tokens:5.1f} tok/sent  {r.seconds:6.1f}s"
            for r in self.results
        ]
        tried = {r.pack for r in self.results}
        verdict = (
            f"calibrated pack limit for {self.model} with {self.template}: {self.pack_limit}"
            + (
                f" (sizes above {max(tried)} not tried: {max(tried)} already failed)"
                if max(tried) > self.pack_limit
                else ""
            )
            + (" (packing costs quality on this model: one sentence per prompt)" if self.pack_limit == 1 else "")
        )
        return "\n".join(rows + [verdict])


def load_pairs(path: Path | None = None, limit: int | None = None) -> list[tuple[str, str]]:
    """``(source, reference)`` pairs: a ``.tsv`` file, or a folder with ``src.en`` and ``ref.de``."""
    path = Path(path) if path else default_prompts_dir() / "calibration" / "en-de.tsv"
    if path.is_dir():
        src = (path / "src.en").read_text(encoding="utf-8").splitlines()
        ref = (path / "ref.de").read_text(encoding="utf-8").splitlines()
        pairs = [(s.strip(), r.strip()) for s, r in zip(src, ref) if s.strip()]
    else:
        rows = [line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
        pairs = [(src, ref) for src, ref in rows]
    return pairs[:limit] if limit else pairs


async def translate_fixed(
    engine: Engine,
    template: Template,
    sources: list[str],
    pack: int,
    in_flight: int = 64,
    max_prompt_tokens: int = 4096,
) -> tuple[list[str], Stats]:
    """Translate through a batcher that always packs ``pack`` sentences (no memory, no adaptivity)."""
    stats = Stats()
    b = Batcher(
        PromptRunner(engine, template, stats, max_in_flight=in_flight),
        stats,
        max_wait_ms=2,
        max_sentences_per_prompt=pack,
        policy="fixed",
        max_prompt_tokens=max_prompt_tokens,
    )
    b.start()
    try:
        futures = b.submit(sources, request_id=0)
        outcomes = await asyncio.gather(*futures)
    finally:
        await b.close()
    return [o.text or "" for o in outcomes], stats


def cache_path(cache_dir: Path, model: str, template: Template, pairs: list[tuple[str, str]]) -> Path:
    """One file per model, template and calibration set (a quick run on fewer pairs is its own entry)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    data = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:8]
    return Path(cache_dir) / "calibration" / f"{safe}--{template.ref.replace('@', '_').replace('+', '_')}--{data}.json"


def load_cached(cache_dir: Path, model: str, template: Template, pairs: list[tuple[str, str]]) -> Calibration | None:
    path = cache_path(cache_dir, model, template, pairs)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data["results"] = [SizeResult(**r) for r in data["results"]]
    return Calibration(**data)


async def measure(
    engine: Engine,
    template: Template,
    pairs: list[tuple[str, str]],
    pack: int,
    clock: Callable[[], float] = time.monotonic,
) -> SizeResult:
    """Translate the calibration set at ``pack`` sentences per prompt (prefix warmed first) and score it."""
    import sacrebleu

    sources = [s for s, _ in pairs]
    refs = [r for _, r in pairs]
    reset = getattr(engine, "reset_prefix_cache", None)
    if reset is not None:  # the same cache state for every size and pass: no query cached by an earlier one
        await reset()
    await PromptRunner(engine, template, Stats()).warmup()  # every variant starts from a cached prefix
    t0 = clock()
    hyps, stats = await translate_fixed(engine, template, sources, pack)
    snap = stats.snapshot()
    return SizeResult(
        pack=pack,
        chrf=sacrebleu.corpus_chrf(hyps, [refs]).score,
        bleu=sacrebleu.corpus_bleu(hyps, [refs]).score,
        parse_failure_rate=sum(snap.resent_sentences.values()) / len(sources),
        copy_rate=sum(is_copy(s, h) for s, h in zip(sources, hyps)) / len(sources),
        seconds=clock() - t0,
        billed_tokens=(snap.prompt_tokens - snap.cached_prompt_tokens + snap.completion_tokens) / len(sources),
    )


def packs_well(r: SizeResult, single: SizeResult, max_chrf_drop: float, max_parse_failure: float) -> bool:
    """May the batcher pack ``r.pack`` sentences? Quality within ``max_chrf_drop`` of one per prompt, re-sends
    under ``max_parse_failure``, and (where measured) fewer billed tokens per sentence than one per prompt."""
    cheaper = not (r.billed_tokens and single.billed_tokens) or r.billed_tokens < single.billed_tokens
    return r.chrf >= single.chrf - max_chrf_drop and r.parse_failure_rate < max_parse_failure and cheaper


@dataclass
class VariantResult:
    name: str  # the template's file name in prompts/
    template: str  # its ref (id@version+hash)
    prefix_chars: int
    single: SizeResult  # the calibration set at one sentence per prompt
    qualifies: bool = False
    #: seconds of every timed pass (a qualifying variant is timed ``retime`` more times; ``single.seconds`` is the
    #: median)
    timings: list[float] = field(default_factory=list)
    #: mean characters of a one-sentence prompt over the calibration set (prefix, instruction, echo ...)
    prompt_chars: float = 0.0


@dataclass
class TemplateChoice:
    model: str
    chosen: str  # template name
    sentences: int
    max_chrf_drop: float
    max_copy_increase: float
    results: list[VariantResult] = field(default_factory=list)
    created: str = ""

    def summary(self) -> str:
        rows = [
            f"template {r.name:<14} prefix {r.prefix_chars:>5} chars: chrF {r.single.chrf:5.1f}  copies "
            f"{100 * r.single.copy_rate:5.1f}%  {r.single.seconds:6.1f}s"
            f"{'  qualifies' if r.qualifies else ''}"
            for r in self.results
        ]
        return "\n".join(rows + [f"chosen template for {self.model}: {self.chosen} (the fastest that keeps quality)"])

    def result(self, name: str) -> VariantResult:
        return next(r for r in self.results if r.name == name)


def _choice_path(cache_dir: Path, model: str, templates: list[Template], pairs: list[tuple[str, str]]) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    key = hashlib.sha256(json.dumps([[t.ref for t in templates], pairs]).encode()).hexdigest()[:10]
    return Path(cache_dir) / "calibration" / f"{safe}--templates--{key}.json"


def load_cached_choice(
    cache_dir: Path, model: str, templates: list[Template], pairs: list[tuple[str, str]]
) -> TemplateChoice | None:
    path = _choice_path(cache_dir, model, templates, pairs)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data["results"] = [VariantResult(**{**r, "single": SizeResult(**r["single"])}) for r in data["results"]]
    return TemplateChoice(**data)


async def choose_template(
    engine: Engine,
    templates: dict[str, Template],
    pairs: list[tuple[str, str]],
    *,
    max_chrf_drop: float = 1.0,
    max_copy_increase: float = 0.05,
    cache_dir: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
    retime: int = 2,
) -> TemplateChoice:
    """The fastest template (at one sentence per prompt) whose chrF is within ``max_chrf_drop`` of the best
    variant's and whose copy rate is within ``max_copy_increase`` of the lowest. When several qualify, each is
    timed ``retime`` more times, in turns, and compared by its median time: one pass on a shared machine is noise.
    Variants within ``TIE`` of the fastest median count as equally fast; of those the shortest prompt wins."""
    results = []
    for name, tpl in templates.items():
        single = await measure(engine, tpl, pairs, 1, clock)
        log.info("calibration template %s: %s", name, single)
        chars = sum(len(tpl.render([s])) for s, _ in pairs) / max(1, len(pairs))
        results.append(
            VariantResult(name, tpl.ref, len(tpl.prefix), single, timings=[single.seconds], prompt_chars=chars)
        )
    best_chrf = max(r.single.chrf for r in results)
    least_copies = min(r.single.copy_rate for r in results)
    for r in results:
        r.qualifies = (
            r.single.chrf >= best_chrf - max_chrf_drop and r.single.copy_rate <= least_copies + max_copy_increase
        )
    qualifying = [r for r in results if r.qualifies]
    if len(qualifying) > 1:
        for _ in range(retime):
            for r in qualifying:
                r.timings.append((await measure(engine, templates[r.name], pairs, 1, clock)).seconds)
        for r in qualifying:
            r.single.seconds = statistics.median(r.timings)
    fastest = min(r.single.seconds for r in qualifying)
    # within TIE of the fastest, the shortest prompt: a small set's time cannot separate them, and at full load
    # the prompt's length is the difference (prefill)
    chosen = min((r for r in qualifying if r.single.seconds <= fastest * (1 + TIE)), key=lambda r: r.prompt_chars)
    choice = TemplateChoice(
        model=engine.model_name,
        chosen=chosen.name,
        sentences=len(pairs),
        max_chrf_drop=max_chrf_drop,
        max_copy_increase=max_copy_increase,
        results=results,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if cache_dir is not None:
        path = _choice_path(cache_dir, engine.model_name, list(templates.values()), pairs)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(choice), indent=2))
    return choice


async def calibrate(
    engine: Engine,
    template: Template,
    pairs: list[tuple[str, str]],
    *,
    sizes=SIZES,
    max_chrf_drop: float = 1.0,
    max_parse_failure: float = 0.25,
    cache_dir: Path | None = None,
    single: SizeResult | None = None,
) -> Calibration:
    """The pack size limit with ``template``. ``single``: the pack-1 result when it was measured already
    (template calibration did)."""
    sources = [s for s, _ in pairs]
    results: list[SizeResult] = []
    for pack in sizes:
        if pack > 1 and pack > len(sources):
            break
        results.append(single if pack == 1 and single is not None else await measure(engine, template, pairs, pack))
        log.info("calibration pack %d: %s", pack, results[-1])
        r = results[-1]
        if pack > 1 and not packs_well(r, results[0], max_chrf_drop, max_parse_failure):
            break  # the limit is the largest size such that it and every smaller size qualify: stop here
    limit = 1
    for r in results[1:]:
        if packs_well(r, results[0], max_chrf_drop, max_parse_failure):
            limit = r.pack
    cal = Calibration(
        model=engine.model_name,
        template=template.ref,
        sentences=len(sources),
        pack_limit=limit,
        max_chrf_drop=max_chrf_drop,
        max_parse_failure=max_parse_failure,
        results=results,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if cache_dir is not None:
        path = cache_path(cache_dir, engine.model_name, template, pairs)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(cal), indent=2))
    return cal
