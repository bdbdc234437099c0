# Generated from async_batches.py by scripts/unasync.py: do not edit. Edit async_batches.py, then run
# `python scripts/unasync.py` (scripts/check fails while this file is stale).
"""``client.batches``: batch jobs on the server (``/v1/files``, ``/v1/batches``; see :mod:`batchmt.batches`)."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ._concurrency import run_blocking
from .batches import (
    ENDPOINT,
    LINES_KEY,
    Batch,
    BatchFailed,
    BatchFile,
    BatchList,
    FileKind,
    _Bar,
    _prepare,
    _write,
    count_texts,
    lines_progress,
)

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Batches"]


class Batches:
    """``client.batches``: batch jobs on the server (see :mod:`batchmt.batches`)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        c = self._client
        if "files" in kwargs:  # a multipart upload: no retries (the body is not replayed)
            return c._upload(method, path, **kwargs)
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
        data, name = run_blocking(
            _prepare,
            path,
            kind,
            sentences_per_request=sentences_per_request,
            source_lang=source_lang,
            target_lang=target_lang,
            quality=quality,
        )
        return self.upload_bytes(data, name)

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
        r = self._send("POST", "/v1/batches", json=body)
        return Batch.from_json(r.json())

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
        data, name = run_blocking(
            _prepare,
            path,
            kind,
            sentences_per_request=sentences_per_request,
            source_lang=source_lang,
            target_lang=target_lang,
            quality=quality,
        )
        f = self.upload_bytes(data, name)
        # the number of lines travels with the batch: progress (wait, status) is counted in lines, not requests
        meta = {**(metadata or {}), LINES_KEY: str(count_texts(data))}
        return self.create(f.id, completion_window=completion_window, metadata=meta)

    def retrieve(self, batch_id: str) -> Batch:
        r = self._send("GET", f"/v1/batches/{batch_id}")
        return Batch.from_json(r.json())

    def cancel(self, batch_id: str) -> Batch:
        r = self._send("POST", f"/v1/batches/{batch_id}/cancel")
        return Batch.from_json(r.json())

    def list(self, *, limit: int = 20, after: str | None = None) -> BatchList:
        path = f"/v1/batches?limit={int(limit)}" + (f"&after={after}" if after else "")
        r = self._send("GET", path)
        d = r.json()
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
        r = self._send("GET", f"/v1/files/{file_id}/content")
        return r.content

    def download(
        self,
        batch: str | Batch,
        dst: str | os.PathLike[str],
        *,
        source: str | os.PathLike[str] | None = None,
        errors: str | os.PathLike[str] | None = None,
        partial: bool = False,
    ) -> builtins.list[int]:
        """Write a finished batch's output to ``dst``: the server's output JSONL, or, with ``source`` (the text
        file given to :meth:`create_from_file`), the translated text, line by line. ``errors``: also write the
        error file there. Returns the 1-based source lines left untranslated (text mode; else []).

        A batch that did not complete (cancelled, expired, failed) raises :class:`BatchFailed` saying so and how
        much was done, instead of writing a file of empty lines; ``partial=True`` writes what was done."""
        b = batch if isinstance(batch, Batch) else self.retrieve(batch)
        if not b.done:
            raise BatchFailed(f"batch {b.id} is still {b.status}: wait for it first")
        if b.status != "completed" and not partial:
            rc = b.request_counts
            lines = lines_progress(b)
            done = f"{lines[0]} of {lines[1]} lines" if lines else f"{rc.completed} of {rc.total} requests"
            raise BatchFailed(
                f"batch {b.id} was {b.status}: {done} were translated; nothing written "
                "(download it with partial=True / --partial for what was done)"
            )
        output = self.content(b.output_file_id) if b.output_file_id else b""
        if errors is not None:
            error_output = self.content(b.error_file_id) if b.error_file_id else b""
            Path(errors).write_bytes(error_output)
        return run_blocking(_write, output, dst, source)
