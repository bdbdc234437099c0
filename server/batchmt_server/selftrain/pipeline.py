"""``batchmt-server selftrain``: one ReST round, resumable stage by stage, in a work folder.

    grow       the served model's candidates per source (greedy + k sampled), through the gateway's engine path
    roundtrip  each accepted candidate translated back to English by the same model (the round-trip reward)
    improve    rewards, the best candidate per source, the threshold (selected.jsonl, improve.json)
    data       training examples in the forms the gateway sends: zero-shot and packed (train.jsonl)
    train      LoRA adapters on the target tokens (peft), checkpointed
    merge      the adapters merged into a Hugging Face folder with a model card: serve it with --model <folder>

Each stage writes its output next to a ``<stage>.done`` marker; a killed run starts again at the first stage
without one, and ``grow`` / ``roundtrip`` / ``train`` resume inside the stage (per chunk, per checkpoint).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .grow import GrowRecord, read_records

__all__ = ["RoundConfig", "STAGES", "export_adapter", "load_sources", "run_round"]

log = logging.getLogger("batchmt.selftrain")

STAGES = ("grow", "roundtrip", "improve", "data", "train", "merge")


@dataclass
class RoundConfig:
    work: Path  #: the round's folder
    sources: Path  #: a text file, one English source per line
    limit: int | None = 1000  #: the first N usable lines (after shuffling with ``seed``)
    skip: int = 0  #: ... after skipping this many (round 2 takes the lines after round 1's: ``--skip 1000``)
    k: int = 1  #: sampled candidates per source, beside the greedy one
    temperature: float = 0.7
    seed: int = 7
    reward: str = "mbr+logprob+length"  #: reward.BEST_WITHOUT_ROUNDTRIP; reward.BEST costs a second Grow pass
    keep: float = 0.8  #: the share of sources whose best candidate is kept (ReST's threshold, as a quantile)
    #: training: LoRA rank and steps
    lora_rank: int = 16
    lora_alpha: int = 32
    learning_rate: float = 3e-4
    epochs: float = 1.0
    batch_tokens: int = 2048
    max_pack: int = 8
    packed_share: float = 1.0  #: packed examples: this many times each kept source appears in one (0: none)
    zero_template: str = "en-de-zero"
    min_chars: int = 20
    max_chars: int = 300
    base_model: str = "embedded-base"
    #: continue training these LoRA adapters instead of new ones (round 2: round 1's, on the same base model)
    init_adapter: Path | None = None
    output: Path | None = None  #: the merged model's folder (default: <work>/model)
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        (self.work / "config.json").write_text(json.dumps(d, indent=2) + "\n")


def load_sources(
    path: Path, limit: int | None, seed: int, min_chars: int = 20, max_chars: int = 300, skip: int = 0
) -> list[tuple[int, str]]:
    """``(line index, text)`` of a source file's usable lines (length within bounds, no duplicates), shuffled with
    ``seed``, ``limit`` of them after the first ``skip``. Line indices are the file's, so a dev/train split by
    line stays checkable, and rounds with one seed and ``skip`` = the earlier rounds' limits never overlap."""
    seen: set[str] = set()
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        text = " ".join(line.split())
        if min_chars <= len(text) <= max_chars and text not in seen:
            seen.add(text)
            rows.append((i, text))
    random.Random(seed).shuffle(rows)
    return rows[skip : skip + limit] if limit else rows[skip:]


#: ``--sources store``: the server's own traffic (translation memory and finished job lines) instead of a file
STORE = "store"


def _body_texts(body: str) -> list[str]:
    """The English texts of one job line's stored request body (the validated ``/v1/translate`` request: ``texts``
    or the legacy ``sentences``, whichever the caller used)."""
    from pydantic import ValidationError

    from ..protocol.schemas import TranslateRequest

    try:
        return TranslateRequest.model_validate_json(body).entries
    except ValidationError:
        return []


async def store_sentences(store: Any, limit: int) -> list[str]:
    """Sentences of the server's traffic, for Grow: translation-memory sources, then the sentences of finished job
    lines (cut by the gateway's own segmenter), each once."""
    from ..text.segmenter import split_sentences

    tm, bodies = await store.traffic_texts(limit)
    out = dict.fromkeys(" ".join(t.split()) for t in tm)
    for body in bodies:
        for text in _body_texts(body):
            for a, b in split_sentences(text):
                out.setdefault(" ".join(text[a:b].split()))
    out.pop("", None)
    return list(out)


def write_store_sources(settings: Any, dest: Path, limit: int = 100_000) -> Path:
    """``dest``: the store's traffic (:func:`store_sentences`), one sentence a line: Grow's source file."""
    from ..stores import build_store

    async def read() -> list[str]:
        store = build_store(settings.database_url, Path(settings.data_dir or settings.cache_dir / "data"))
        await store.open()
        try:
            return await store_sentences(store, limit)
        finally:
            await store.close()

    dest.write_text("".join(f"{s}\n" for s in asyncio.run(read())), encoding="utf-8")
    return dest


class Progress:
    """A tqdm bar when tqdm is there (stderr), else log lines every 10%."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n, self._last = total, desc, 0, -1
        try:
            from tqdm import tqdm

            self._bar: Any = tqdm(total=total, desc=desc, unit="src", mininterval=5)
        except ImportError:  # pragma: no cover
            self._bar = None

    def __call__(self, n: int) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.total and (pct := 10 * self.n // self.total) != self._last:
            self._last = pct
            log.info("%s: %d/%d", self.desc, self.n, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _done(work: Path, stage: str) -> bool:
    return (work / f"{stage}.done").exists()


def _mark(work: Path, stage: str, info: dict[str, Any]) -> None:
    (work / f"{stage}.done").write_text(json.dumps(info, indent=2, default=str) + "\n")


async def grow_with_engine(
    settings: Any,
    sources: Sequence[tuple[int, str]],
    out: Path,
    *,
    k: int,
    temperature: float,
    seed: int,
    roundtrip: bool = True,
    template_name: str | None = None,
    engine: Any = None,
) -> dict[str, Any]:
    """Grow (and round-trip) ``sources`` on the engine the settings describe, in one engine session (or on
    ``engine``, started already, which is left running)."""
    from ..engines import build_engine
    from ..pipeline.gateway import default_prompts_in_flight
    from ..pipeline.runner import PromptRunner
    from ..prompting.chat import apply_form, engine_tokenizer
    from ..prompting.template import Template
    from ..telemetry.stats import Stats
    from .grow import grow, reverse_template, round_trip

    owned = engine is None
    if engine is None:
        engine = build_engine(settings)
        await engine.start()
    t0 = time.monotonic()
    info: dict[str, Any] = {}
    try:
        tokenizer = engine_tokenizer(engine, settings)
        name = template_name or settings.template_names[0]
        forward = apply_form(Template.load(name, settings.prompts_dir), settings.template_form, tokenizer)
        in_flight = default_prompts_in_flight(engine)
        runner = PromptRunner(engine, forward, Stats(), max_in_flight=in_flight)
        bar = Progress(len(sources), f"grow {out.name}")
        await grow(runner, sources, out, k=k, temperature=temperature, seed=seed, progress=bar)
        bar.close()
        info["grow_seconds"] = round(time.monotonic() - t0, 1)
        info["template"] = forward.ref
        info["model"] = engine.model_name
        if roundtrip:
            t1 = time.monotonic()
            rt_path = out.with_suffix(".rt.jsonl")
            records = read_records(rt_path if rt_path.exists() else out)
            back = apply_form(reverse_template(forward), settings.template_form, tokenizer)
            back_runner = PromptRunner(engine, back, Stats(), max_in_flight=in_flight)
            n = len({c.text for r in records for c in r.candidates if c.ok and c.back is None})
            bar = Progress(n, f"round-trip {out.name}")
            await round_trip(back_runner, records, progress=bar)
            bar.close()
            tmp = rt_path.with_suffix(".tmp")
            tmp.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
            tmp.replace(rt_path)
            info["roundtrip_seconds"] = round(time.monotonic() - t1, 1)
    finally:
        if owned:
            await engine.close()
    return info


def grow_counts(records: Sequence[GrowRecord]) -> dict[str, Any]:
    """What Grow produced: candidates, accepted ones, and the parser's reasons for the rest."""
    reasons: dict[str, int] = {}
    for r in records:
        for c in r.candidates:
            if not c.ok:
                key = c.reason or "empty"
                reasons[key] = reasons.get(key, 0) + 1
    n = sum(len(r.candidates) for r in records)
    return {
        "sources": len(records),
        "candidates": n,
        "accepted": sum(c.ok for r in records for c in r.candidates),
        "greedy_accepted": sum(c.ok for r in records for c in r.candidates if not c.sampled),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "sources_without_accepted": sum(not any(c.ok for c in r.candidates) for r in records),
    }


def needs_roundtrip(reward: str) -> bool:
    """Whether the reward reads the round trip (Grow then translates every accepted candidate back)."""
    from .reward import parts

    return "roundtrip" in parts(reward)


def run_round(settings: Any, cfg: RoundConfig, *, stages: Sequence[str] = STAGES, say: Callable = print) -> Path:
    """Run (or resume) one round; returns the merged model's folder."""
    cfg.work.mkdir(parents=True, exist_ok=True)
    cfg.save()
    grow_path = cfg.work / "grow.jsonl"
    rt_path = grow_path.with_suffix(".rt.jsonl")
    roundtrip = needs_roundtrip(cfg.reward)
    if "grow" in stages and not (_done(cfg.work, "grow") and (_done(cfg.work, "roundtrip") or not roundtrip)):
        sources = load_sources(cfg.sources, cfg.limit, cfg.seed, cfg.min_chars, cfg.max_chars, cfg.skip)
        say(f"grow: {len(sources)} sources from {cfg.sources}, greedy + {cfg.k} sampled each")
        info = asyncio.run(
            grow_with_engine(
                settings, sources, grow_path, k=cfg.k, temperature=cfg.temperature, seed=cfg.seed, roundtrip=roundtrip
            )
        )
        info.update(grow_counts(read_records(rt_path if roundtrip else grow_path)))
        _mark(cfg.work, "grow", info)
        if roundtrip:
            _mark(cfg.work, "roundtrip", info)
        say(f"grow: {json.dumps(info)}")
    records_path = rt_path if rt_path.exists() else grow_path
    from .improve import build_data, improve

    selected = cfg.work / "selected.jsonl"
    if "improve" in stages and not _done(cfg.work, "improve"):
        info = improve(read_records(records_path), cfg.reward, cfg.keep, selected)
        _mark(cfg.work, "improve", info)
        say(f"improve: {json.dumps(info)}")
    train_file = cfg.work / "train.jsonl"
    if "data" in stages and not _done(cfg.work, "data"):
        info = build_data(selected, train_file, settings, cfg)
        _mark(cfg.work, "data", info)
        say(f"data: {json.dumps(info)}")
    from .train import merge, train

    adapter = cfg.work / "adapter"
    if "train" in stages and not _done(cfg.work, "train"):
        info = train(settings, cfg, train_file, adapter, say=say)
        _mark(cfg.work, "train", info)
        say(f"train: {json.dumps(info)}")
    output = cfg.output or cfg.work / "model"
    if "merge" in stages and not _done(cfg.work, "merge"):
        info = merge(settings, cfg, adapter, output)
        _mark(cfg.work, "merge", info)
        say(f"merge: {output}")
    return output


def export_adapter(cfg: RoundConfig, dest: Path, extra: dict[str, Any] | None = None) -> Path:
    """Copy the round's adapter (weights + config) to ``dest`` with its model card: what the repository ships for
    the embedded model (``models/adapters/``); ``extra`` (e.g. measured scores) goes into the card."""
    import shutil

    from .train import _card_from_work, write_card

    src = cfg.work / "adapter"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "adapter_model.safetensors", dest / "adapter_model.safetensors")
    config = json.loads((src / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = cfg.base_model  # the embedded model's name, not this machine's cache path
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    card = _card_from_work(cfg, cfg.base_model, src)
    card.pop("adapter", None)
    card.update(extra or {})
    write_card(dest, card)
    return dest
