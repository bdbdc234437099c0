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
"""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from .errors import BatchmtError

if TYPE_CHECKING:  # pragma: no cover
    from .async_client import AsyncClient
    from .client import Client

__all__ = [
    "Batch",
    "BatchList",
    "BatchFile",
    "Batches",
    "AsyncBatches",
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


def text_from_output(output: bytes, source: str | os.PathLike[str]) -> tuple[list[str], list[int]]:
    """The source file's lines, translated, from a batch's output (made by :func:`build_requests`): blank lines
    stay blank; a line whose request or sentence failed is ``""`` and its 1-based number is in the second list."""
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    out = ["" for _ in lines]
    filled = [not x.strip() for x in lines]
    for raw in output.decode("utf-8").splitlines():
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
    for raw in output.decode("utf-8").splitlines():
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


class _Bar:
    """A tqdm bar over request_counts (done = completed + failed)."""

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
                unit="req",
                disable=None if self.enabled is None else not self.enabled,
            )
        self.bar.total = b.request_counts.total
        self.bar.n = b.request_counts.done
        self.bar.set_postfix_str(f"{b.status}, {b.request_counts.failed} failed", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------ sync
class Batches:
    """``client.batches``: batch jobs on the server (see the module docstring)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        c = self._client
        if "files" in kwargs:  # a multipart upload: no retries (the body is not replayed)
            request = c._client.build_request(method, c._url(path), headers=c.headers, timeout=c.timeout, **kwargs)
            try:
                response = c._client.send(request)
            except httpx.TransportError as exc:
                raise c._connection_error(exc, request) from exc
            if not response.is_success:
                raise c._status_error(response)
            return response
        return c._request(method, path, body=kwargs.get("json"))

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        kind: FileKind = "auto",
        sentences_per_request: int = 32,
        source_lang: str = "en",
        target_lang: str = "de",
        quality: str | None = None,
    ) -> BatchFile:
        """Upload a file for a batch (``purpose=batch``); a text file is turned into requests first."""
        data, name = _prepare(
            path,
            kind,
            sentences_per_request=sentences_per_request,
            source_lang=source_lang,
            target_lang=target_lang,
            quality=quality,
        )
        r = self._send(
            "POST", "/v1/files", files={"file": (name, data, "application/jsonl")}, data={"purpose": "batch"}
        )
        return BatchFile.from_json(r.json())

    def upload_bytes(self, data: bytes, filename: str) -> BatchFile:
        """Upload a JSONL of batch requests already in memory."""
        r = self._send(
            "POST", "/v1/files", files={"file": (filename, data, "application/jsonl")}, data={"purpose": "batch"}
        )
        return BatchFile.from_json(r.json())

    def create(
        self, input_file_id: str, *, completion_window: str = "24h", metadata: Mapping[str, str] | None = None
    ) -> Batch:
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": ENDPOINT,
            "completion_window": completion_window,
        }
        if metadata:
            body["metadata"] = dict(metadata)
        return Batch.from_json(self._send("POST", "/v1/batches", json=body).json())

    def create_from_file(
        self,
        path: str | os.PathLike[str],
        *,
        kind: FileKind = "auto",
        sentences_per_request: int = 32,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        source_lang: str = "en",
        target_lang: str = "de",
        quality: str | None = None,
    ) -> Batch:
        """Upload ``path`` and start a batch on it. ``kind``: ``text`` (one sentence per line, blank lines kept
        when downloaded with ``source=path``), ``batch`` (JSONL of batch requests, as for OpenAI) or ``auto``."""
        f = self.upload(
            path,
            kind=kind,
            sentences_per_request=sentences_per_request,
            source_lang=source_lang,
            target_lang=target_lang,
            quality=quality,
        )
        return self.create(f.id, completion_window=completion_window, metadata=metadata)

    def retrieve(self, batch_id: str) -> Batch:
        return Batch.from_json(self._send("GET", f"/v1/batches/{batch_id}").json())

    def cancel(self, batch_id: str) -> Batch:
        return Batch.from_json(self._send("POST", f"/v1/batches/{batch_id}/cancel").json())

    def list(self, *, limit: int = 20, after: str | None = None) -> BatchList:
        path = f"/v1/batches?limit={int(limit)}" + (f"&after={after}" if after else "")
        d = self._send("GET", path).json()
        return BatchList([Batch.from_json(x) for x in d.get("data", [])], bool(d.get("has_more")), d.get("last_id"))

    def wait(
        self, batch_id: str, *, progress: bool | None = False, poll_interval: float = 1.0, timeout: float | None = None
    ) -> Batch:
        """Poll until the batch is in a final status; ``progress``: a tqdm bar (None: only on a terminal)."""
        bar = _Bar(progress, batch_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                b = self.retrieve(batch_id)
                bar.update(b)
                if b.done:
                    return b
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"batch {batch_id} is still {b.status} after {timeout:g}s")
                self._client._sleep(poll_interval)
        finally:
            bar.close()

    def content(self, file_id: str) -> bytes:
        return self._send("GET", f"/v1/files/{file_id}/content").content

    def download(
        self,
        batch: str | Batch,
        dst: str | os.PathLike[str],
        *,
        source: str | os.PathLike[str] | None = None,
        errors: str | os.PathLike[str] | None = None,
    ) -> builtins.list[int]:
        """Write a finished batch's output to ``dst``: the server's output JSONL, or, with ``source`` (the text
        file given to :meth:`create_from_file`), the translated text, line by line. ``errors``: also write the
        error file there. Returns the 1-based source lines left untranslated (text mode; else [])."""
        b = batch if isinstance(batch, Batch) else self.retrieve(batch)
        if not b.done:
            raise BatchFailed(f"batch {b.id} is still {b.status}: wait for it first")
        output = self.content(b.output_file_id) if b.output_file_id else b""
        if errors is not None:
            Path(errors).write_bytes(self.content(b.error_file_id) if b.error_file_id else b"")
        return _write(output, dst, source)


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


# ------------------------------------------------------------------------------------------ async
class AsyncBatches:
    """``async_client.batches``: the same methods as :class:`Batches`, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        c = self._client
        if "files" in kwargs:
            request = c._client.build_request(method, c._url(path), headers=c.headers, timeout=c.timeout, **kwargs)
            try:
                response = await c._client.send(request)
            except httpx.TransportError as exc:
                raise c._connection_error(exc, request) from exc
            if not response.is_success:
                raise c._status_error(response)
            return response
        return await c._request(method, path, body=kwargs.get("json"))

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        kind: FileKind = "auto",
        sentences_per_request: int = 32,
        source_lang: str = "en",
        target_lang: str = "de",
        quality: str | None = None,
    ) -> BatchFile:
        data, name = await asyncio.to_thread(
            _prepare,
            path,
            kind,
            sentences_per_request=sentences_per_request,
            source_lang=source_lang,
            target_lang=target_lang,
            quality=quality,
        )
        r = await self._send(
            "POST", "/v1/files", files={"file": (name, data, "application/jsonl")}, data={"purpose": "batch"}
        )
        return BatchFile.from_json(r.json())

    async def create(
        self, input_file_id: str, *, completion_window: str = "24h", metadata: Mapping[str, str] | None = None
    ) -> Batch:
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": ENDPOINT,
            "completion_window": completion_window,
        }
        if metadata:
            body["metadata"] = dict(metadata)
        return Batch.from_json((await self._send("POST", "/v1/batches", json=body)).json())

    async def create_from_file(
        self,
        path: str | os.PathLike[str],
        *,
        kind: FileKind = "auto",
        sentences_per_request: int = 32,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        source_lang: str = "en",
        target_lang: str = "de",
        quality: str | None = None,
    ) -> Batch:
        f = await self.upload(
            path,
            kind=kind,
            sentences_per_request=sentences_per_request,
            source_lang=source_lang,
            target_lang=target_lang,
            quality=quality,
        )
        return await self.create(f.id, completion_window=completion_window, metadata=metadata)

    async def retrieve(self, batch_id: str) -> Batch:
        return Batch.from_json((await self._send("GET", f"/v1/batches/{batch_id}")).json())

    async def cancel(self, batch_id: str) -> Batch:
        return Batch.from_json((await self._send("POST", f"/v1/batches/{batch_id}/cancel")).json())

    async def list(self, *, limit: int = 20, after: str | None = None) -> BatchList:
        path = f"/v1/batches?limit={int(limit)}" + (f"&after={after}" if after else "")
        d = (await self._send("GET", path)).json()
        return BatchList([Batch.from_json(x) for x in d.get("data", [])], bool(d.get("has_more")), d.get("last_id"))

    async def wait(
        self, batch_id: str, *, progress: bool | None = False, poll_interval: float = 1.0, timeout: float | None = None
    ) -> Batch:
        bar = _Bar(progress, batch_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                b = await self.retrieve(batch_id)
                bar.update(b)
                if b.done:
                    return b
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"batch {batch_id} is still {b.status} after {timeout:g}s")
                await self._client._sleep(poll_interval)
        finally:
            bar.close()

    async def content(self, file_id: str) -> bytes:
        return (await self._send("GET", f"/v1/files/{file_id}/content")).content

    async def download(
        self,
        batch: str | Batch,
        dst: str | os.PathLike[str],
        *,
        source: str | os.PathLike[str] | None = None,
        errors: str | os.PathLike[str] | None = None,
    ) -> builtins.list[int]:
        b = batch if isinstance(batch, Batch) else await self.retrieve(batch)
        if not b.done:
            raise BatchFailed(f"batch {b.id} is still {b.status}: wait for it first")
        output = await self.content(b.output_file_id) if b.output_file_id else b""
        if errors is not None:
            Path(errors).write_bytes(await self.content(b.error_file_id) if b.error_file_id else b"")
        return await asyncio.to_thread(_write, output, dst, source)
