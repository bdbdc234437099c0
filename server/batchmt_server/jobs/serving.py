"""Batch jobs, OpenAI-Batch-compatible: the logic behind ``/v1/files`` and ``/v1/batches`` (routes:
:mod:`.api_router`; objects: :mod:`.protocol`), on the durable store.

Upload a JSONL file (``purpose=batch``) whose lines are ``{"custom_id", "method": "POST", "url": "/v1/translate",
"body": {...a translate request...}}``, create a batch on it (``endpoint: "/v1/translate"``), poll it, and read its
output and error files, exactly as with OpenAI's Batch API (the official ``openai`` package works against it).

Each line is parsed once and validated when the batch is created, by the same checks as ``/v1/translate``
(:func:`~..protocol.validation.validate_request`, :func:`~..protocol.validation.prepare_entries`): a line that fails
goes to the error file with its ``custom_id`` and never fails the batch. The worker (:mod:`.worker`) runs the other
lines through the same ``Translator.translate`` as ``/v1/translate`` (same output, same signature), at low priority,
in the capacity that interactive requests leave, from what their validation made (the request, its entries with
their markup parsed: :class:`~.worker.PreparedLines`, up to a bound) rather than parsing them again.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from pydantic import ValidationError

from ..auth.admission import charge_key, charge_units, quality_rounds
from ..auth.keys import KeyRecord, KeyRing
from ..protocol.errors import APIError
from ..protocol.schemas import TranslateRequest, TranslateResponse
from ..protocol.validation import prepare_entries, validate_request
from ..settings import Settings
from ..stores import FileRecord, JobRecord, NewLine, Store, build_store
from .protocol import ENDPOINT, BatchList, BatchObject, CreateBatch, FileDeleted, FileList, FileObject
from .worker import JobWorker, PreparedLine, PreparedLines, WorkerConfig, error_line

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline.gateway import Gateway
    from ..pipeline.memory import TranslationMemory
    from ..text.documents import PreparedEntry

__all__ = [
    "JobsConfig",
    "JobsRuntime",
    "JobsServing",
    "Caller",
    "validate_lines",
    "read_lines",
    "parse_window",
    "jobs_usage",
    "JobsCollector",
]

log = logging.getLogger("batchmt.jobs")

_WINDOW = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class JobsConfig:
    """The jobs' settings (read from :class:`~batchmt_server.settings.Settings` by :meth:`from_settings`)."""

    data_dir: Path
    database_url: str | None = None
    max_file_bytes: int = 100 * 1024 * 1024
    max_requests: int = 50_000
    max_completion_window_s: int = 7 * 86400
    lease_seconds: float = 60.0
    max_lines_in_flight: int = 64
    drain_s: float = 5.0
    poll_seconds: float = 0.5
    workers: bool = True  # run the worker in this process (off: an API-only gateway)
    #: source characters of validated lines kept prepared for their run (past it, a line is parsed again to run)
    max_prepared_chars: int = 2_000_000

    @classmethod
    def from_settings(cls, s: Settings) -> JobsConfig:
        return cls(
            data_dir=Path(s.data_dir or s.cache_dir / "data"),
            database_url=s.database_url,
            max_file_bytes=s.job_max_file_bytes,
            max_requests=s.job_max_requests,
            lease_seconds=s.job_lease_s,
            max_lines_in_flight=s.job_max_lines_in_flight,
            drain_s=s.job_drain_s,
            workers=s.job_worker,
        )

    def worker_config(self) -> WorkerConfig:
        return WorkerConfig(
            lease_seconds=self.lease_seconds,
            max_lines_in_flight=self.max_lines_in_flight,
            drain_s=self.drain_s,
            poll_seconds=self.poll_seconds,
        )


def parse_window(window: str, max_s: int) -> int:
    m = _WINDOW.match(window.strip())
    if not m or int(m.group(1)) <= 0:
        raise APIError(
            422,
            "invalid_completion_window",
            f"completion_window {window[:32]!r} is not a duration like '24h', '30m' or '90s'",
            param="completion_window",
        )
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds > max_s:
        raise APIError(
            422,
            "invalid_completion_window",
            f"completion_window {window!r} is longer than the limit of {max_s}s",
            param="completion_window",
        )
    return seconds


class _BadLine(Exception):
    """A line that cannot run: what its error line says."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


def validate_lines(content: bytes, settings: Settings) -> list[NewLine]:
    """Every line of an input file, parsed once and validated as a translate request (:func:`read_lines`)."""
    return read_lines(content, settings)[0]


def read_lines(
    content: bytes, settings: Settings, prepare_chars: int = 0
) -> tuple[list[NewLine], dict[int, PreparedLine]]:
    """Every line of an input file, parsed once and validated as a translate request: runnable lines get their body
    (and what it carries: characters, texts), the others their error line (with ``custom_id`` when the line has
    one). Blank lines are skipped. Runnable lines are also prepared for their run, by line number, until their
    source characters reach ``prepare_chars`` (the rest only have their markup checked)."""
    try:
        text = content.decode("utf-8-sig")  # a UTF-8 byte-order mark (Windows editors write one) is not line 1's
    except UnicodeDecodeError as exc:
        raise APIError(
            422,
            "invalid_file",
            f"the input file is not UTF-8 ({exc.reason} at byte {exc.start})",
            param="input_file_id",
        ) from None
    out: list[NewLine] = []
    prepared: dict[int, PreparedLine] = {}
    seen: set[str] = set()
    # JSONL lines end at "\n" only (a "\r" before it is JSON whitespace): str.splitlines() also split at U+2028,
    # U+0085, \x1c-\x1e..., which json.dumps(ensure_ascii=False) writes raw inside strings
    for no, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        custom_id: str | None = None
        try:
            obj = _json_object(no, raw)
            custom_id = _custom_id(no, obj)
            if custom_id in seen:
                raise _BadLine(
                    422,
                    "duplicate_custom_id",
                    f"line {no}: custom_id {custom_id[:64]!r} is used by an earlier line; each line needs its own",
                    "custom_id",
                )
            seen.add(custom_id)
            req, entries = _translate_request(no, obj, settings, prepare=prepare_chars > 0)
        except _BadLine as bad:
            error = error_line(custom_id, bad.status, bad.code, bad.message, param=bad.param, line=no)
            out.append(NewLine(no, custom_id, error_output=error))
            continue
        if entries is not None:
            prepared[no] = line = PreparedLine(req, entries)
            prepare_chars -= line.characters
        # charged by the rule of /v1/translate: an ensemble quality's characters once per round
        characters, texts = charge_units(req.entries, quality_rounds(settings, req.quality))
        out.append(NewLine(no, custom_id, body=req.model_dump_json(), characters=characters, texts=texts))
    return out, prepared


def _json_object(no: int, raw: str) -> dict:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _BadLine(400, "invalid_json", f"line {no} is not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise _BadLine(422, "invalid_request", f"line {no} is not a JSON object")
    return obj


def _custom_id(no: int, obj: dict) -> str:
    cid = obj.get("custom_id")
    if not (isinstance(cid, str) and cid and len(cid) <= 512):
        raise _BadLine(
            422, "invalid_custom_id", f"line {no}: custom_id must be a string of 1 to 512 characters", "custom_id"
        )
    return cid


def _translate_request(
    no: int, obj: dict, settings: Settings, *, prepare: bool = False
) -> tuple[TranslateRequest, list[PreparedEntry] | None]:
    """The line's body as a translate request, checked as ``/v1/translate`` checks one; ``prepare``: its entries
    prepared for the run too (their markup parsed there, once), else None (the markup only checked)."""
    if obj.get("method", "POST") != "POST":
        raise _BadLine(422, "invalid_method", f"line {no}: method must be 'POST'", "method")
    if obj.get("url") != ENDPOINT:
        raise _BadLine(422, "invalid_url", f"line {no}: url must be {ENDPOINT!r}, the batch's endpoint", "url")
    try:
        req = TranslateRequest.model_validate(obj.get("body"))
        validate_request(req, settings, markup=not prepare)
        entries = prepare_entries(req, settings) if prepare else None
    except ValidationError as exc:
        errors = exc.errors()
        loc = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        msg = errors[0]["msg"] if errors else "invalid"
        where = f"body.{loc}" if loc else "body"
        raise _BadLine(422, "invalid_request", f"line {no}: {where}: {msg}", where) from None
    except APIError as exc:
        raise _BadLine(exc.status, exc.code, f"line {no}: {exc.message}", exc.param and f"body.{exc.param}") from None
    return req, entries


# ---------------------------------------------------------------------------- runtime
#: the engine priority of batch-job prompts (vLLM: lower runs first; interactive prompts are 0)
JOB_PRIORITY = 1


class JobsRuntime:
    """The store, the worker and the settings of one app (``app.state.jobs``)."""

    def __init__(self, config: JobsConfig, settings: Settings, store: Store | None = None) -> None:
        self.config, self.settings = config, settings
        self.store: Store = store or build_store(config.database_url, config.data_dir)
        self.worker: JobWorker | None = None
        self.memory: TranslationMemory | None = None
        #: lines validated here, kept prepared for the worker (a line is parsed once)
        self.prepared = PreparedLines(config.max_prepared_chars)
        self._starter: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None

    async def open(self) -> None:
        await self.store.open()
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        """The retention sweep: expired files (and a finished batch's lines once its files are gone) deleted."""
        every = float(getattr(self.settings, "retention_sweep_s", 300.0))
        while True:
            try:
                n = await self.store.delete_expired_files(int(time.time()))
                if n:
                    log.info("retention: %d expired files deleted", n)
            except Exception as exc:  # the store may be full or away for a while: try again next time
                log.warning("retention sweep failed: %s", exc)
            await asyncio.sleep(every)

    def translation_memory(self, max_entries: int) -> TranslationMemory | None:
        """The persistent translation memory on this store (written out when the runtime closes); None if off."""
        from ..pipeline.memory import TranslationMemory

        human = getattr(self.settings, "memory_max_human_entries", 100_000)
        self.memory = TranslationMemory(self.store, max_entries, max_human_entries=human) if max_entries > 0 else None
        return self.memory

    @classmethod
    def from_settings(cls, settings: Settings) -> JobsRuntime:
        return cls(JobsConfig.from_settings(settings), settings)

    def start_when_ready(self, gw: Gateway) -> None:
        """Start the worker once the gateway ``gw`` is ready (unless this gateway runs no worker)."""
        if self.config.workers:
            self._starter = asyncio.create_task(_start_when_ready(gw, self))

    async def stop_worker(self) -> None:
        """Graceful: no new lines; lines in flight finish (up to ``drain_s``) or go back to the store."""
        if self._starter is not None:
            self._starter.cancel()
            await asyncio.gather(self._starter, return_exceptions=True)
            self._starter = None
        if self.worker is not None:
            await self.worker.stop()

    def start_worker(self, translate: Callable, pressure: Callable[[], int] | None = None) -> JobWorker:
        self.worker = JobWorker(
            self.store,
            translate,
            self.config.worker_config(),
            pressure=pressure,
            new_file_id=new_file_id,
            prepared=self.prepared,
        )
        self.worker.start()
        return self.worker

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.stop_worker()
        if self.memory is not None:
            try:
                await self.memory.close()
            except Exception:
                log.exception("could not write the translation memory at shutdown")
        await self.store.close()


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def new_batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Caller:
    """Who asks: the key id that files and batches belong to, and whether it sees everyone's (an admin key, or
    keys off)."""

    owner: str | None = None
    admin: bool = True

    @classmethod
    def of(cls, rec: KeyRecord | None) -> Caller:
        return cls() if rec is None else cls(rec.id, rec.role == "admin")

    def sees(self, owner: str | None) -> bool:
        return self.admin or owner == self.owner


def check_key(settings: Settings, request: Request, rec: KeyRecord | None) -> None:
    """The static key (``--api-key``) for a caller the HTTP front did not authenticate by a key record."""
    if rec is not None:  # the HTTP front (middleware.py) authenticated this caller's key
        return
    key = settings.api_key
    if not key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise APIError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'")


async def cancel_batches_of(rt: JobsRuntime, owners: set[str]) -> list[str]:
    """Cancel every running batch of these keys (revoked keys: their work stops consuming capacity); the ids."""
    if not owners:
        return []
    running = ("validating", "in_progress", "finalizing")
    cancelled = []
    for job in await rt.store.jobs_in(running):
        if job.owner in owners and await rt.store.set_job_status(job.id, running, "cancelling", int(time.time())):
            cancelled.append(job.id)
            if rt.worker is not None:
                rt.worker.abandon(job.id)
    if cancelled and rt.worker is not None:
        rt.worker.wake()
    return cancelled


def free_disk_bytes(rt: JobsRuntime) -> int | None:
    """Free bytes on the disk of the store's data directory (None: the store is elsewhere, e.g. PostgreSQL)."""
    if rt.config.database_url and not rt.config.database_url.startswith("sqlite"):
        return None
    path = rt.config.data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


async def check_storage(rt: JobsRuntime, settings: Settings, who: str | None, size: int) -> None:
    """Refuse an upload the key's storage limit or the disk cannot take, before a byte of it is written."""
    limit = settings.max_storage_bytes_per_key
    used = await rt.store.stored_bytes(who)
    if used + size > limit:
        raise APIError(
            413,
            "storage_limit_exceeded",
            f"this key keeps {used} bytes of files; {size} more would pass its limit of {limit}: "
            "delete files (DELETE /v1/files/{id}) or let them expire",
            param="file",
        )
    free = free_disk_bytes(rt)
    if free is not None and free - size < settings.min_free_disk_bytes:
        raise APIError(
            507,
            "storage_full",
            "the gateway's disk is too full to take this file; retry later",
            headers={"Retry-After": "60"},
        )


class JobsServing:
    """What the routes of :mod:`.api_router` do, on one app's :class:`JobsRuntime` (``app.state.jobs_serving``)."""

    def __init__(
        self,
        runtime: JobsRuntime,
        settings: Settings,
        keys: KeyRing | None = None,
        gateway: Gateway | None = None,
    ) -> None:
        self.rt, self.settings, self.keys = runtime, settings, keys
        self.config = runtime.config
        self.gateway = gateway  # names the model a batch object reports (None: the settings' model name)

    def _batch(self, job: JobRecord) -> BatchObject:
        # the engine's own model name (the settings' may not be what runs: a fake engine, a served one)
        model = self.gateway.model_name if self.gateway is not None else self.settings.model_name
        return BatchObject.of(job, self.settings.currency, model)

    async def _own_file(self, caller: Caller, file_id: str, param: str) -> FileRecord:
        f = await self.rt.store.get_file(file_id)
        if f is None or not caller.sees(f.owner):  # another tenant's file does not exist for this caller
            raise APIError(404, "file_not_found", f"no file {file_id[:64]!r}", param=param)
        return f

    async def _own_job(self, caller: Caller, batch_id: str) -> JobRecord:
        job = await self.rt.store.get_job(batch_id)
        if job is None or not caller.sees(job.owner):
            raise APIError(404, "batch_not_found", f"no batch {batch_id[:64]!r}", param="batch_id")
        return job

    # ------------------------------------------------------------------ files
    @staticmethod
    def check_purpose(purpose: Any) -> None:
        if purpose != "batch":
            raise APIError(422, "invalid_purpose", "purpose must be 'batch' (the only purpose served)", param="purpose")

    async def create_file(
        self, caller: Caller, filename: str | None, content: bytes, expires_after: int | None = None
    ) -> FileObject:
        """Store an uploaded file (the router reads at most the limit + 1 bytes of it); it expires after
        ``expires_after`` seconds (None: ``--file-retention-s``; 0: never)."""
        limit = self.config.max_file_bytes
        if len(content) > limit:
            raise APIError(413, "file_too_large", f"the file is over the limit of {limit} bytes", param="file")
        expiry = self.settings.file_retention_s if expires_after is None else expires_after
        now = int(time.time())
        rec = FileRecord(
            id=new_file_id(),
            purpose="batch",
            filename=(filename or "upload.jsonl")[:255],
            bytes=len(content),
            created_at=now,
            owner=caller.owner,
            expires_at=now + expiry if expiry else None,
        )
        await check_storage(self.rt, self.settings, rec.owner, len(content))
        await self.rt.store.put_file(rec, content)
        return FileObject.of(rec)

    async def delete_file(self, caller: Caller, file_id: str) -> FileDeleted:
        """Delete a file (OpenAI's ``files.delete``): an upload's bytes, or a batch's output or error file (its lines
        go too once neither is left). A batch already created on an upload keeps running."""
        await self._own_file(caller, file_id, "file_id")
        if not await self.rt.store.delete_file(file_id):
            raise APIError(404, "file_not_found", f"no file {file_id[:64]!r}", param="file_id")
        return FileDeleted(id=file_id)

    async def list_files(self, caller: Caller, purpose: str | None, after: str | None, limit: int) -> FileList:
        limit = max(1, min(limit, 10_000))
        owner = None if caller.admin else caller.owner
        files = await self.rt.store.list_files(purpose=purpose, after=after, limit=limit + 1, owner=owner)
        return FileList.of([FileObject.of(f) for f in files[:limit]], len(files) > limit)

    async def get_file(self, caller: Caller, file_id: str) -> FileObject:
        return FileObject.of(await self._own_file(caller, file_id, "file_id"))

    async def file_content(self, caller: Caller, file_id: str) -> bytes:
        await self._own_file(caller, file_id, "file_id")
        content = await self.rt.store.file_content(file_id)
        if content is None:
            raise APIError(404, "file_not_found", f"no file {file_id[:64]!r}", param="file_id")
        return content

    # ------------------------------------------------------------------ batches
    async def create_batch(self, caller: Caller, rec: KeyRecord | None, body: CreateBatch) -> BatchObject:
        """Create a batch on an uploaded file; its lines are validated now (bad ones go to the error file), and
        the caller's key is charged once for the runnable ones."""
        window, meta = self._check_create(body)
        f = await self._own_file(caller, body.input_file_id, "input_file_id")
        if f.kind != "upload":
            raise APIError(
                404, "file_not_found", f"no uploaded file {body.input_file_id[:64]!r}", param="input_file_id"
            )
        if f.purpose != "batch":
            raise APIError(422, "invalid_file", "the input file's purpose is not 'batch'", param="input_file_id")
        content = await self.rt.store.file_content(f.id) or b""
        # kept prepared for the run only where this gateway runs lines
        keep = self.rt.prepared.max_chars if self.config.workers else 0
        lines, prepared = await asyncio.to_thread(read_lines, content, self.settings, keep)
        lines = await self._check_glossaries(caller, lines)
        if not lines:
            raise APIError(422, "empty_file", "the input file has no request lines", param="input_file_id")
        if len(lines) > self.config.max_requests:
            raise APIError(
                413,
                "too_many_requests",
                f"the input file has {len(lines)} requests; a batch takes at most {self.config.max_requests}",
                param="input_file_id",
            )
        if rec is not None and self.keys is not None:  # the key's quota and character rate, for the whole batch
            await charge_key(self.keys, rec, sum(ln.characters for ln in lines), sum(ln.texts for ln in lines))
        now = int(time.time())
        job = await self.rt.store.create_job(
            JobRecord(
                id=new_batch_id(),
                input_file_id=f.id,
                endpoint=ENDPOINT,
                completion_window=body.completion_window,
                status="in_progress",
                created_at=now,
                in_progress_at=now,
                expires_at=now + window,
                metadata=meta,
                owner=caller.owner,
                output_expires_after=(
                    body.output_expires_after.seconds
                    if body.output_expires_after
                    else self.settings.file_retention_s or None
                ),
            ),
            lines,
        )
        runnable = {ln.line_no for ln in lines if ln.body is not None}
        self.rt.prepared.put(job.id, {no: line for no, line in prepared.items() if no in runnable})
        log.info("batch %s: %d lines (%d invalid), window %ss", job.id, job.total, job.failed, window)
        if self.rt.worker is not None:
            self.rt.worker.wake()
        return self._batch(job)

    async def _check_glossaries(self, caller: Caller, lines: list[NewLine]) -> list[NewLine]:
        """A line naming a glossary its key does not have fails now, in the error file (404 glossary_not_found, as
        ``/v1/translate`` answers it), not after the batch started."""
        known: dict[str, bool] = {}
        out = []
        for ln in lines:
            gid = None
            if ln.body is not None and '"glossary_id":null' not in ln.body:
                gid = json.loads(ln.body).get("glossary_id")
            if gid is not None:
                if gid not in known:
                    g = await self.rt.store.glossary_get(gid)
                    known[gid] = g is not None and g.owner == caller.owner
                if not known[gid]:
                    message = f"line {ln.line_no}: no glossary {gid[:64]!r} for this key"
                    error = error_line(
                        ln.custom_id, 404, "glossary_not_found", message, param="body.glossary_id", line=ln.line_no
                    )
                    ln = NewLine(ln.line_no, ln.custom_id, error_output=error)
            out.append(ln)
        return out

    def _check_create(self, body: CreateBatch) -> tuple[int, dict[str, str] | None]:
        """The request's own fields: endpoint, completion window (in seconds), metadata."""
        if body.endpoint != ENDPOINT:
            raise APIError(
                422,
                "unsupported_endpoint",
                f"endpoint {body.endpoint[:64]!r} is not served; use {ENDPOINT!r}",
                param="endpoint",
            )
        window = parse_window(body.completion_window, self.config.max_completion_window_s)
        meta = body.metadata or None
        if meta and (len(meta) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in meta.items())):
            raise APIError(
                422,
                "invalid_metadata",
                "metadata: at most 16 pairs, keys up to 64 and values up to 512 characters",
                param="metadata",
            )
        return window, meta

    async def list_batches(self, caller: Caller, after: str | None, limit: int) -> BatchList:
        if not 1 <= limit <= 100:
            raise APIError(422, "invalid_request", "limit must be between 1 and 100", param="limit")
        owner = None if caller.admin else caller.owner
        jobs = await self.rt.store.list_jobs(after=after, limit=limit + 1, owner=owner)
        return BatchList.of([self._batch(j) for j in jobs[:limit]], len(jobs) > limit)

    async def get_batch(self, caller: Caller, batch_id: str) -> BatchObject:
        return self._batch(await self._own_job(caller, batch_id))

    async def cancel_batch(self, caller: Caller, batch_id: str) -> BatchObject:
        """Stop a batch: lines in flight are dropped, what is done stays in the output file."""
        await self._own_job(caller, batch_id)
        job = await self.rt.store.set_job_status(
            batch_id, ["validating", "in_progress", "finalizing"], "cancelling", int(time.time())
        )
        if job is None:
            job = await self.rt.store.get_job(batch_id)
            if job is None:
                raise APIError(404, "batch_not_found", f"no batch {batch_id[:64]!r}", param="batch_id")
            if job.status not in ("cancelling", "cancelled"):
                raise APIError(
                    409, "batch_not_cancellable", f"batch {batch_id} is {job.status}; it cannot be cancelled"
                )
        elif self.rt.worker is not None:
            self.rt.worker.abandon(batch_id)
            self.rt.worker.wake()
        return self._batch(job)


async def jobs_usage(request: Request) -> dict:
    """The jobs' part of ``GET /v1/usage``: how many jobs and their summed usage."""
    rt: JobsRuntime | None = getattr(request.app.state, "jobs", None)
    if rt is None:
        return {}
    count, u = await rt.store.jobs_usage()
    return {
        "jobs": count,
        "sentences": u.sentences,
        "characters": u.characters,
        "prompt_tokens": round(u.prompt_tokens),
        "cached_prompt_tokens": round(u.cached_prompt_tokens),
        "completion_tokens": round(u.completion_tokens),
        "engine_prompts": round(u.engine_prompts, 3),
        "memory_hits": u.memory_hits,
        "cost": u.cost,
        "baseline_cost": u.baseline_cost,
        "saving": u.baseline_cost - u.cost,
    }


class JobsCollector:
    """Prometheus numbers of this gateway's job worker (read at scrape time): lines written by outcome, lines in
    flight, the worker's line cap and the batcher's cap on job prompts."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def describe(self) -> list:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        rt: JobsRuntime | None = getattr(self._app.state, "jobs", None)
        worker = rt.worker if rt is not None else None
        if worker is None:
            return
        lines = CounterMetricFamily(
            "batchmt_job_lines",
            "Batch-job lines this gateway wrote to the store, by outcome (completed: output file; failed: error file)",
            labels=["outcome"],
        )
        for outcome, n in worker.lines_written.items():
            lines.add_metric([outcome], n)
        yield lines
        yield GaugeMetricFamily(
            "batchmt_job_lines_in_flight", "Batch-job lines this gateway is running", value=len(worker._inflight)
        )
        yield GaugeMetricFamily(
            "batchmt_job_lines_cap",
            "The worker's cap on batch-job lines in flight (halves while interactive sentences wait)",
            value=worker.cap,
        )
        gw = getattr(self._app.state, "gateway", None)
        if gw is not None and gw.batcher is not None:
            yield GaugeMetricFamily(
                "batchmt_job_prompts_cap",
                "The batcher's cap on batch-job prompts in flight",
                value=gw.batcher.job_capacity.value,
            )


async def _start_when_ready(gw: Gateway, rt: JobsRuntime) -> None:
    await gw.ready.wait()
    translator, batcher = gw.translator, gw.batcher
    assert translator is not None and batcher is not None  # both exist once the gateway is ready

    async def translate(
        req: TranslateRequest, *, tenant: str | None = None, prepared: list[PreparedEntry] | None = None
    ) -> TranslateResponse:
        return await translator.translate(req, priority=JOB_PRIORITY, tenant=tenant, prepared=prepared)

    rt.start_worker(translate, pressure=lambda: batcher.interactive_active)
