"""ReST's **Grow** step: the served model translates each source several times through the gateway's own engine
path (:class:`~batchmt_server.pipeline.runner.PromptRunner`: the same template and prompt form, stop strings, loop stop
and parser as ``/v1/translate``), greedy first and then ``k`` sampled candidates.

Each source's candidates go to a JSONL file as one line as soon as they are back, so a killed run resumes at the
first source without a line (:func:`done_indices`). A candidate the parser rejects (a copy of the source, a
loop cut short, an echo of another input, ...) is kept with its reason: the reward never picks it, and the
counts say what Grow produced.
"""

from __future__ import annotations

import asyncio
import json
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..engines import EngineError
from ..engines.base import EngineDead
from ..pipeline.consensus import span_confidence
from ..pipeline.runner import PromptRunner

__all__ = ["Candidate", "GrowRecord", "done_indices", "grow", "read_records"]


@dataclass
class Candidate:
    text: str | None  #: the parsed translation (None when the slot had none)
    reason: str | None  #: the parser's flag (None: accepted)
    logprob: float | None  #: mean token log-probability of the translation's span
    tokens: int  #: completion tokens of the prompt
    sampled: bool  #: False for the greedy candidate
    #: filled by the round-trip stage: the candidate translated back to English by the same model
    back: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None and bool(self.text and self.text.strip())


@dataclass
class GrowRecord:
    index: int  #: the source's line number in the source list (0-based)
    source: str
    candidates: list[Candidate] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> GrowRecord:
        d = json.loads(line)
        return cls(d["index"], d["source"], [Candidate(**c) for c in d["candidates"]])


def read_records(path: Path) -> list[GrowRecord]:
    """Every complete line of a Grow file (a line cut by a kill is ignored; it is grown again)."""
    out: list[GrowRecord] = []
    if not path.exists():
        return out
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                out.append(GrowRecord.from_json(line))
            except (ValueError, KeyError, TypeError):
                continue
    return out


def done_indices(path: Path) -> set[int]:
    return {r.index for r in read_records(path)}


def _truncate_partial_line(path: Path) -> None:
    """Drop a last line a kill left without its newline, so appends start on a line of their own."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


async def _one(
    runner: PromptRunner, source: str, tokens: int, temperature: float, seed: int | None
) -> Candidate | None:
    await runner.acquire()
    try:
        call = await runner.call([source], [tokens], temperature=temperature, seed=seed, logprobs=True)
    except EngineDead:
        raise
    except EngineError:
        return None
    finally:
        runner.release()
    slot = call.slots[0]
    c = call.completion
    conf = span_confidence(c.token_logprobs, c.token_offsets, *slot.span) if slot.span else None
    return Candidate(slot.text, slot.reason, conf, c.completion_tokens, sampled=seed is not None)


async def grow(
    runner: PromptRunner,
    sources: Sequence[tuple[int, str]],
    out: Path,
    *,
    k: int = 3,
    temperature: float = 0.7,
    seed: int = 0,
    chunk: int = 64,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Grow candidates for ``sources`` (``(index, text)``) not yet in ``out``; returns how many were grown now.

    Seeds are derived from the source text and ``seed``: the same run grows the same candidates again."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _truncate_partial_line(out)
    done = done_indices(out)
    todo = [(i, s) for i, s in sources if i not in done]
    if progress and len(todo) < len(sources):
        progress(len(sources) - len(todo))
    grown = 0
    window = asyncio.Semaphore(max(1, chunk))  # sources in flight: each written as soon as all its candidates are

    async def one_source(i: int, src: str) -> GrowRecord:
        async with window:
            rng = random.Random(zlib.crc32(src.encode()) ^ seed)
            tokens = runner.engine.count_tokens(src)
            jobs = [_one(runner, src, tokens, 0.0, None)]
            jobs += [_one(runner, src, tokens, temperature, rng.randrange(1 << 30)) for _ in range(k)]
            return GrowRecord(i, src, [c for c in await asyncio.gather(*jobs) if c is not None])

    tasks = [asyncio.ensure_future(one_source(i, s)) for i, s in todo]
    try:
        with out.open("a", encoding="utf-8") as f:
            for next_done in asyncio.as_completed(tasks):
                rec = await next_done
                if rec.candidates:  # none when every engine call failed: no line, a resumed run grows it again
                    f.write(rec.to_json() + "\n")
                    f.flush()
                    grown += 1
                if progress:
                    progress(1)
    finally:
        for t in tasks:
            t.cancel()
    return grown


def reverse_template(forward: Any) -> Any:
    """The forward template with the languages swapped (German → English, the same few-shot pairs reversed):
    the model's own back-translation for the round-trip reward. A chat template is reversed in its base form."""
    from dataclasses import replace

    from ..prompting.template import Template

    base: Template = getattr(forward, "base", forward)
    return replace(
        base,
        id=base.id + "-reverse",
        source_label=base.target_label,
        target_label=base.source_label,
        instruction=base.instruction.replace(base.source_label, "\0")
        .replace(base.target_label, base.source_label)
        .replace("\0", base.target_label),
        examples=tuple(tuple((t, s) for s, t in ex) for ex in base.examples),
    )


async def round_trip(
    runner: PromptRunner, records: list[GrowRecord], *, progress: Callable[[int], Any] | None = None
) -> None:
    """Translate every accepted candidate back with ``runner`` (a :func:`reverse_template` runner), greedy, in
    place (``Candidate.back``). Candidates with a ``back`` already are skipped (a resumed run)."""
    todo = [c for r in records for c in r.candidates if c.ok and c.back is None]
    texts = sorted({c.text for c in todo if c.text})
    backs: dict[str, str | None] = {}

    async def one(text: str) -> None:
        cand = await _one(runner, text, runner.engine.count_tokens(text), 0.0, None)
        backs[text] = cand.text if cand is not None and cand.text else None

    async def counted(text: str) -> None:
        await one(text)
        if progress:
            progress(1)

    await asyncio.gather(*(counted(t) for t in texts))  # the runner's cap keeps the engine full, no more
    for c in todo:
        c.back = backs.get(c.text or "") or ""
