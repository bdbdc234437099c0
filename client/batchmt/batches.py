"""Batch jobs from the SDK: ``client.batches`` (OpenAI-Batch-compatible jobs on the server, ``/v1/batches``).

>>> with batchmt.Client() as client:
...     job = client.batches.create_from_file("news.en")          # one sentence per line, or a batch JSONL
...     job = client.batches.wait(job.id, progress=True)           # a tqdm bar from request_counts
...     client.batches.download(job.id, "news.de", source="news.en")

A job lives on the server (durably: it survives a server restart) and the client only polls it, so a
200,000-line file needs no client loop that stays up for hours. A text file becomes requests of
``sentences_per_request`` lines each; ``download(..., source=...)`` puts the translations back line by line
(blank lines kept). A JSONL file whose lines already are batch requests (``{"custom_id", "method", "url",
"body"}``) is uploaded as it is, and ``download`` without ``source`` writes the server's output file.

This module holds what both clients share: the batch objects, the request files, the output. The methods are
:class:`~batchmt.async_batches.AsyncBatches` (the one hand-written copy) and
:class:`~batchmt.sync_batches.Batches` (generated from it by scripts/unasync.py).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import BatchmtError

__all__ = [
    "Batch",
    "BatchList",
    "BatchFile",
    "RequestCounts",
    "BatchFailed",
    "build_requests",
    "document_requests",
    "document_outputs",
]

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
ENDPOINT = "/v1/translate"
FileKind = Literal["auto", "text", "batch"]


class BatchFailed(BatchmtError):
    """A batch ended without its output (``failed``, ``cancelled`` or ``expired``), or a line could not be
    translated when the output was written as text."""


@dataclass(frozen=True)
class RequestCounts:
    total: int = 0
    completed: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.completed + self.failed


@dataclass(frozen=True)
class Batch:
    """A batch job as the server reports it (OpenAI's batch object; ``raw`` has every field)."""

    id: str
    status: str
    request_counts: RequestCounts
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int | None = None
    expires_at: int | None = None
    completed_at: int | None = None
    metadata: Mapping[str, str] | None = None
    usage: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        """The batch is in a final status (completed, failed, cancelled, expired)."""
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Batch:
        rc = d.get("request_counts") or {}
        return cls(
            id=d["id"],
            status=d["status"],
            request_counts=RequestCounts(
                int(rc.get("total", 0)), int(rc.get("completed", 0)), int(rc.get("failed", 0))
            ),
            input_file_id=d.get("input_file_id"),
            output_file_id=d.get("output_file_id"),
            error_file_id=d.get("error_file_id"),
            created_at=d.get("created_at"),
            expires_at=d.get("expires_at"),
            completed_at=d.get("completed_at"),
            metadata=d.get("metadata"),
            usage=d.get("usage") or {},
            raw=dict(d),
        )


@dataclass(frozen=True)
class BatchList:
    """One page of ``GET /v1/batches`` (newest first); iterate it for its batches."""

    data: list[Batch]
    has_more: bool
    last_id: str | None

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class BatchFile:
    id: str
    bytes: int
    filename: str
    purpose: str
    created_at: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BatchFile:
        return cls(d["id"], int(d["bytes"]), d["filename"], d["purpose"], int(d["created_at"]))


# ------------------------------------------------------------------------------------------ file preparation
def _is_batch_jsonl(head: bytes) -> bool:
    for raw in head.splitlines():
        if raw.strip():
            try:
                obj = json.loads(raw)
            except ValueError:
                return False
            return isinstance(obj, dict) and "custom_id" in obj and "body" in obj
    return False


def build_requests(
    lines: list[str],
    *,
    sentences_per_request: int = 32,
    source_lang: str = "en",
    target_lang: str = "de",
    quality: str | None = None,
) -> bytes:
    """A text file's lines as batch requests: request ``k`` (``custom_id`` ``"lines-<first>-<last>"``, 1-based
    line numbers) carries the non-blank lines of its range, in order."""
    if sentences_per_request < 1:
        raise ValueError("sentences_per_request must be at least 1")
    out = io.StringIO()
    for start in range(0, len(lines), sentences_per_request):
        chunk = [x.strip() for x in lines[start : start + sentences_per_request]]
        sentences = [x for x in chunk if x]
        if not sentences:
            continue
        body: dict[str, Any] = {"sentences": sentences, "source_lang": source_lang, "target_lang": target_lang}
        if quality:
            body["quality"] = quality
        cid = f"lines-{start + 1}-{start + len(chunk)}"
        out.write(
            json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}, ensure_ascii=False) + "\n"
        )
    return out.getvalue().encode("utf-8")


def _prepare(path: str | os.PathLike[str], kind: FileKind, **options: Any) -> tuple[bytes, str]:
    data = Path(path).read_bytes()
    if kind == "batch" or (kind == "auto" and _is_batch_jsonl(data[:65536])):
        return data, Path(path).name
    lines = data.decode("utf-8").splitlines()
    return build_requests(lines, **options), Path(path).name + ".batch.jsonl"


#: the batch's metadata key holding the number of texts (lines) in its requests: progress is counted in lines
LINES_KEY = "batchmt_lines"


def count_texts(data: bytes) -> int:
    """Texts in a JSONL of batch requests (``body.texts``, or the legacy ``body.sentences``)."""
    n = 0
    for raw in data.splitlines():
        try:
            body = json.loads(raw).get("body") or {}
        except (ValueError, AttributeError):
            continue
        texts = body.get("texts", body.get("sentences")) if isinstance(body, dict) else None
        n += len(texts) if isinstance(texts, list) else 0
    return n


def text_from_output(output: bytes, source: str | os.PathLike[str]) -> tuple[list[str], list[int]]:
    """The source file's lines, translated, from a batch's output (made by :func:`build_requests`): blank lines
    stay blank; a line whose request or sentence failed is ``""`` and its 1-based number is in the second list."""
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    out = ["" for _ in lines]
    filled = [not x.strip() for x in lines]
    for raw in output.decode("utf-8").split("\n"):  # JSONL: lines end at \n only
        if not raw.strip():
            continue
        row = json.loads(raw)
        cid = str(row.get("custom_id", ""))
        try:
            _, first, last = cid.split("-")
            lo, hi = int(first) - 1, int(last)
        except ValueError:
            raise BatchFailed(f"custom_id {cid!r} was not made by create_from_file: download without source=") from None
        body = (row.get("response") or {}).get("body") or {}
        translations = body.get("translations") or []
        targets = [k for k in range(lo, min(hi, len(lines))) if lines[k].strip()]
        for k, t in zip(targets, translations):
            if t.get("status") == "ok" and t.get("text") is not None:
                out[k] = t["text"]
                filled[k] = True
    return out, [k + 1 for k, ok in enumerate(filled) if not ok]


def document_requests(
    doc: Any,
    *,
    texts_per_request: int = 32,
    max_request_chars: int = 50_000,
    source_lang: str = "en",
    target_lang: str = "de",
    options: Mapping[str, Any] | None = None,
) -> bytes:
    """A parsed document's units (:func:`batchmt.formats.parse_document`) as batch requests of ``texts``: request
    ``custom_id`` ``"units-<first>-<last>"`` (0-based unit indices) carries the units to send in that range, in
    order; a unit with its own ``tag_handling`` (markup formats) starts a request of its own kind."""
    out = io.StringIO()
    group: list[int] = []

    def flush() -> None:
        if not group:
            return
        body: dict[str, Any] = {
            "texts": [doc.units[i].text for i in group],
            "source_lang": source_lang,
            "target_lang": target_lang,
            **dict(options or {}),
        }
        tag = doc.units[group[0]].tag_handling
        if tag:
            body["tag_handling"] = tag
        out.write(
            json.dumps(
                {"custom_id": f"units-{group[0]}-{group[-1]}", "method": "POST", "url": ENDPOINT, "body": body},
                ensure_ascii=False,
            )
            + "\n"
        )
        group.clear()

    chars = 0
    for i, u in enumerate(doc.units):
        if not u.send:
            continue
        if group and (
            len(group) >= texts_per_request
            or chars + len(u.text) > max_request_chars
            or doc.units[group[0]].tag_handling != u.tag_handling
        ):
            flush()
            chars = 0
        group.append(i)
        chars += len(u.text)
    flush()
    return out.getvalue().encode("utf-8")


def document_outputs(doc: Any, output: bytes) -> tuple[list[str | None], list[bool]]:
    """Each unit's translation from a batch's output made by :func:`document_requests` (``None``: not translated)
    and whether it is complete (status ``ok``); units not sent keep ``None``/``False`` (the format keeps them)."""
    n = len(doc.units)
    outputs: list[str | None] = [None] * n
    complete = [False] * n
    for raw in output.decode("utf-8").split("\n"):  # JSONL: lines end at \n only
        if not raw.strip():
            continue
        row = json.loads(raw)
        try:
            _, first, last = str(row.get("custom_id", "")).split("-")
            lo, hi = int(first), int(last)
        except ValueError:
            raise BatchFailed(f"custom_id {row.get('custom_id')!r} was not made from this document") from None
        sent = [i for i in range(lo, min(hi + 1, n)) if doc.units[i].send]
        translations = (((row.get("response") or {}).get("body") or {}).get("translations")) or []
        for i, t in zip(sent, translations):
            if t.get("text") is not None:
                outputs[i] = t["text"]
                complete[i] = t.get("status") == "ok"
    return outputs, complete


def lines_progress(b: Batch) -> tuple[int, int] | None:
    """(lines translated, lines in all) of a batch made by ``create_from_file`` (its metadata says how many), or
    None: then progress is counted in requests."""
    try:
        total = int((b.metadata or {}).get(LINES_KEY, ""))
    except ValueError:
        return None
    done = b.usage.get("sentences") if isinstance(b.usage, Mapping) else None
    return (int(done) if isinstance(done, (int, float)) else 0, total)


class _Bar:
    """A tqdm bar over the batch's lines (``create_from_file``), else its request_counts (completed + failed)."""

    def __init__(self, enabled: bool | None, desc: str) -> None:
        self.bar: Any = None  # a tqdm bar once the first status arrives
        self.enabled, self.desc = enabled, desc

    def update(self, b: Batch) -> None:
        if self.enabled is False:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=b.request_counts.total,
                desc=self.desc,
                unit="line" if lines_progress(b) else "req",
                disable=None if self.enabled is None else not self.enabled,
            )
        lines = lines_progress(b)
        self.bar.total, self.bar.n = (lines[1], lines[0]) if lines else (b.request_counts.total, b.request_counts.done)
        self.bar.set_postfix_str(f"{b.status}, {b.request_counts.failed} failed", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _write(output: bytes, dst: str | os.PathLike[str], source: str | os.PathLike[str] | None) -> list[int]:
    target = Path(dst)
    tmp = target.with_name(target.name + ".part")
    if source is None:
        tmp.write_bytes(output)
        missing: list[int] = []
    else:
        lines, missing = text_from_output(output, source)
        tmp.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    os.replace(tmp, target)
    return missing


def __getattr__(name: str) -> Any:
    """``batchmt.batches.Batches`` / ``AsyncBatches``, where they were before they moved to their own modules."""
    if name == "Batches":
        from .sync_batches import Batches

        return Batches
    if name == "AsyncBatches":
        from .async_batches import AsyncBatches

        return AsyncBatches
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
