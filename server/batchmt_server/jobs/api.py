"""Batch jobs, OpenAI-Batch-compatible: ``/v1/files`` and ``/v1/batches``, on the durable store.

Upload a JSONL file (``purpose=batch``) whose lines are ``{"custom_id", "method": "POST", "url": "/v1/translate",
"body": {...a translate request...}}``, create a batch on it (``endpoint: "/v1/translate"``), poll it, and read its
output and error files, exactly as with OpenAI's Batch API (the official ``openai`` package works against it).

Each line is validated when the batch is created: a line that fails goes to the error file with its ``custom_id``
and never fails the batch. The worker (:mod:`.worker`) runs the other lines through the same
``Translator.translate`` as ``/v1/translate`` (same output, same signature), at low priority, in the capacity
that interactive requests leave.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..protocol.errors import APIError
from ..protocol.schemas import TranslateRequest
from ..stores import FileRecord, JobRecord, NewLine, Store, build_store
from .worker import JobWorker, WorkerConfig, error_line

__all__ = ["JobsConfig", "JobsRuntime", "install_jobs", "batch_object", "file_object", "validate_lines", "parse_window"]

log = logging.getLogger("batchmt.jobs")

ENDPOINT = "/v1/translate"
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

    @classmethod
    def from_settings(cls, s: Any) -> JobsConfig:
        cache = Path(getattr(s, "cache_dir", Path.home() / ".cache" / "batchmt"))
        data_dir = getattr(s, "data_dir", None) or cache / "data"
        kw: dict[str, Any] = {"data_dir": Path(data_dir)}
        for f in fields(cls):
            name = {
                "max_file_bytes": "job_max_file_bytes",
                "max_requests": "job_max_requests",
                "lease_seconds": "job_lease_s",
                "max_lines_in_flight": "job_max_lines_in_flight",
                "drain_s": "job_drain_s",
                "poll_seconds": "job_poll_s",
                "workers": "job_worker",
                "max_completion_window_s": "job_max_completion_window_s",
            }.get(f.name, f.name)
            if f.name != "data_dir" and getattr(s, name, None) is not None:
                kw[f.name] = getattr(s, name)
        return cls(**kw)

    def worker_config(self) -> WorkerConfig:
        return WorkerConfig(
            lease_seconds=self.lease_seconds,
            max_lines_in_flight=self.max_lines_in_flight,
            drain_s=self.drain_s,
            poll_seconds=self.poll_seconds,
        )


# ---------------------------------------------------------------------------- wire shapes (OpenAI's)
class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=128)
    endpoint: str = Field(description=f"only {ENDPOINT!r} is served")
    completion_window: str = Field(
        "24h",
        description="'24h' (OpenAI's only value), or any of e.g. '90s', '30m', "
        "'2h', '7d'; lines not done by then are written to the error file as expired",
    )
    metadata: dict[str, str] | None = Field(None, description="up to 16 pairs; keys <= 64, values <= 512 characters")
    output_expires_after: dict | None = None  # accepted for compatibility, not applied


def file_object(f: FileRecord) -> dict:
    return {
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def batch_object(j: JobRecord, currency: str = "USD", model: str | None = None) -> dict:
    u = j.usage
    return {
        "id": j.id,
        "object": "batch",
        "endpoint": j.endpoint,
        "model": model,
        "errors": ({"object": "list", "data": j.errors} if j.errors else None),
        "input_file_id": j.input_file_id,
        "completion_window": j.completion_window,
        "status": j.status,
        "output_file_id": j.output_file_id,
        "error_file_id": j.error_file_id,
        "created_at": j.created_at,
        "in_progress_at": j.in_progress_at,
        "expires_at": j.expires_at,
        "finalizing_at": j.finalizing_at,
        "completed_at": j.completed_at,
        "failed_at": j.failed_at,
        "expired_at": j.expired_at,
        "cancelling_at": j.cancelling_at,
        "cancelled_at": j.cancelled_at,
        "request_counts": {"total": j.total, "completed": j.completed, "failed": j.failed},
        "metadata": j.metadata,
        # OpenAI's usage fields, and batchmt's (the same quantities as a translate response's usage)
        "usage": {
            "input_tokens": round(u.prompt_tokens),
            "input_tokens_details": {"cached_tokens": round(u.cached_prompt_tokens)},
            "output_tokens": round(u.completion_tokens),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": round(u.prompt_tokens + u.completion_tokens),
            "sentences": u.sentences,
            "characters": u.characters,
            "engine_prompts": round(u.engine_prompts, 3),
            "memory_hits": u.memory_hits,
            "cost": u.cost,
            "baseline_cost": u.baseline_cost,
            "saving": u.baseline_cost - u.cost,
            "currency": currency,
        },
    }


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


def _bad(no: int, custom_id: str | None, status: int, code: str, message: str, param: str | None = None) -> NewLine:
    return NewLine(no, custom_id, error_output=error_line(custom_id, status, code, message, param=param, line=no))


def validate_lines(content: bytes, settings: Any) -> list[NewLine]:
    """Every line of an input file, validated as a translate request: runnable lines get their body, the others
    their error line (with ``custom_id`` when the line has one). Blank lines are skipped."""
    from ..pipeline.translator import Translator  # its request checks, without an engine

    checker = SimpleNamespace(settings=settings)
    out: list[NewLine] = []
    seen: set[str] = set()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(
            422,
            "invalid_file",
            f"the input file is not UTF-8 ({exc.reason} at byte {exc.start})",
            param="input_file_id",
        ) from None
    for no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        custom_id: str | None = None
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            out.append(_bad(no, custom_id, 400, "invalid_json", f"line {no} is not valid JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            out.append(_bad(no, custom_id, 422, "invalid_request", f"line {no} is not a JSON object"))
            continue
        cid = obj.get("custom_id")
        if isinstance(cid, str) and cid and len(cid) <= 512:
            custom_id = cid
        if custom_id is None:
            out.append(
                _bad(
                    no,
                    custom_id,
                    422,
                    "invalid_custom_id",
                    f"line {no}: custom_id must be a string of 1 to 512 characters",
                    "custom_id",
                )
            )
            continue
        if custom_id in seen:
            out.append(
                _bad(
                    no,
                    custom_id,
                    422,
                    "duplicate_custom_id",
                    f"line {no}: custom_id {custom_id[:64]!r} is used by an earlier line; each line needs its own",
                    "custom_id",
                )
            )
            continue
        seen.add(custom_id)
        if obj.get("method", "POST") != "POST":
            out.append(_bad(no, custom_id, 422, "invalid_method", f"line {no}: method must be 'POST'", "method"))
            continue
        if obj.get("url") != ENDPOINT:
            out.append(
                _bad(
                    no,
                    custom_id,
                    422,
                    "invalid_url",
                    f"line {no}: url must be {ENDPOINT!r}, the batch's endpoint",
                    "url",
                )
            )
            continue
        try:
            req = TranslateRequest.model_validate(obj.get("body"))
            Translator.validate(checker, req)  # type: ignore[arg-type]
        except ValidationError as exc:
            errors = exc.errors()
            loc = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
            msg = errors[0]["msg"] if errors else "invalid"
            out.append(
                _bad(
                    no,
                    custom_id,
                    422,
                    "invalid_request",
                    f"line {no}: body{'.' + loc if loc else ''}: {msg}",
                    f"body.{loc}" if loc else "body",
                )
            )
            continue
        except APIError as exc:
            out.append(
                _bad(
                    no, custom_id, exc.status, exc.code, f"line {no}: {exc.message}", exc.param and f"body.{exc.param}"
                )
            )
            continue
        out.append(NewLine(no, custom_id, body=req.model_dump_json()))
    return out


# ---------------------------------------------------------------------------- runtime
#: the engine priority of batch-job prompts (vLLM: lower runs first; interactive prompts are 0)
JOB_PRIORITY = 1


class JobsRuntime:
    """The store, the worker and the settings of one app (``app.state.jobs``)."""

    def __init__(self, config: JobsConfig, settings: Any, store: Store | None = None) -> None:
        self.config, self.settings = config, settings
        self.store: Store = store or build_store(config.database_url, config.data_dir)
        self.worker: JobWorker | None = None
        self.memory: Any = None
        self._starter: asyncio.Task | None = None

    async def open(self) -> None:
        await self.store.open()

    def translation_memory(self, max_entries: int) -> Any:
        """The persistent translation memory on this store (written out when the runtime closes); None if off."""
        from ..pipeline.memory import TranslationMemory

        self.memory = TranslationMemory(self.store, max_entries) if max_entries > 0 else None
        return self.memory

    @classmethod
    def from_settings(cls, settings: Any) -> JobsRuntime:
        return cls(JobsConfig.from_settings(settings), settings)

    def start_when_ready(self, gw: Any) -> None:
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
            self.store, translate, self.config.worker_config(), pressure=pressure, new_file_id=new_file_id
        )
        self.worker.start()
        return self.worker

    async def close(self) -> None:
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


def _check_key(settings: Any, request: Request) -> None:
    from ..http.middleware import principal_of

    if principal_of(request) is not None:  # the HTTP front (middleware.py) authenticated this caller's key
        return
    key = getattr(settings, "api_key", None)
    if not key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise APIError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'")


def _volume(lines: list[NewLine]) -> tuple[int, int]:
    """Characters and texts of the runnable lines (what a key's quota is charged when the batch is created)."""
    chars = texts = 0
    for ln in lines:
        if ln.body is not None:
            d = json.loads(ln.body)
            items = d.get("texts") or d.get("sentences") or []
            chars += sum(len(t) for t in items)
            texts += len(items)
    return chars, texts


def build_router(settings: Any, keys: Any = None) -> APIRouter:
    router = APIRouter(tags=["batch"])

    def runtime(request: Request) -> JobsRuntime:
        _check_key(settings, request)
        return request.app.state.jobs

    def owner(request: Request) -> tuple[str | None, bool]:
        """The caller's key id (files and batches belong to it) and whether it sees everyone's (an admin key, or
        keys off)."""
        from ..http.middleware import principal_of

        rec = principal_of(request)
        return (None, True) if rec is None else (rec.id, rec.role == "admin")

    def visible(request: Request, rec_owner: str | None) -> bool:
        who, admin = owner(request)
        return admin or rec_owner == who

    async def own_file(rt: JobsRuntime, request: Request, file_id: str, param: str) -> FileRecord:
        f = await rt.store.get_file(file_id)
        if f is None or not visible(request, f.owner):  # another tenant's file does not exist for this caller
            raise APIError(404, "file_not_found", f"no file {file_id[:64]!r}", param=param)
        return f

    async def own_job(rt: JobsRuntime, request: Request, batch_id: str) -> JobRecord:
        job = await rt.store.get_job(batch_id)
        if job is None or not visible(request, job.owner):
            raise APIError(404, "batch_not_found", f"no batch {batch_id[:64]!r}", param="batch_id")
        return job

    def currency() -> str:
        return getattr(settings, "currency", "USD")

    def model() -> str | None:
        return getattr(settings, "model_name", None)

    @router.post("/v1/files", responses={400: {}, 401: {}, 413: {}, 415: {}, 422: {}})
    async def create_file(request: Request) -> JSONResponse:
        """Upload a JSONL file of requests (multipart form: ``file``, ``purpose=batch``)."""
        rt = runtime(request)
        limit = rt.config.max_file_bytes
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise APIError(
                415,
                "unsupported_media_type",
                "upload the file as multipart/form-data with the fields 'file' and 'purpose'",
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise APIError(
                413,
                "file_too_large",
                f"the upload is {int(declared)} bytes; files are limited to {limit} bytes",
                param="file",
            )
        form = await request.form(max_files=1, max_fields=8)
        try:
            purpose, upload = form.get("purpose"), form.get("file")
            if purpose != "batch":
                raise APIError(
                    422, "invalid_purpose", "purpose must be 'batch' (the only purpose served)", param="purpose"
                )
            if upload is None or isinstance(upload, str):
                raise APIError(422, "invalid_request", "the form has no file in the field 'file'", param="file")
            content = await upload.read(limit + 1)
            if len(content) > limit:
                raise APIError(413, "file_too_large", f"the file is over the limit of {limit} bytes", param="file")
            rec = FileRecord(
                id=new_file_id(),
                purpose="batch",
                filename=(upload.filename or "upload.jsonl")[:255],
                bytes=len(content),
                created_at=int(time.time()),
                owner=owner(request)[0],
            )
        finally:
            await form.close()
        await rt.store.put_file(rec, content)
        return JSONResponse(file_object(rec))

    @router.get("/v1/files")
    async def list_files(
        request: Request, purpose: str | None = None, after: str | None = None, limit: int = 20
    ) -> dict:
        rt = runtime(request)
        limit = max(1, min(limit, 10_000))
        who, admin = owner(request)
        files = await rt.store.list_files(purpose=purpose, after=after, limit=limit + 1, owner=None if admin else who)
        return _page([file_object(f) for f in files[:limit]], len(files) > limit)

    @router.get("/v1/files/{file_id}")
    async def get_file(file_id: str, request: Request) -> dict:
        rt = runtime(request)
        return file_object(await own_file(rt, request, file_id, "file_id"))

    @router.get("/v1/files/{file_id}/content")
    async def file_content(file_id: str, request: Request) -> Response:
        rt = runtime(request)
        await own_file(rt, request, file_id, "file_id")
        content = await rt.store.file_content(file_id)
        if content is None:
            raise APIError(404, "file_not_found", f"no file {file_id[:64]!r}", param="file_id")
        return Response(content, media_type="application/jsonl")

    @router.post("/v1/batches", responses={401: {}, 404: {}, 413: {}, 422: {}})
    async def create_batch(body: CreateBatch, request: Request) -> dict:
        """Create a batch on an uploaded file; its lines are validated now (bad ones go to the error file)."""
        rt = runtime(request)
        if body.endpoint != ENDPOINT:
            raise APIError(
                422,
                "unsupported_endpoint",
                f"endpoint {body.endpoint[:64]!r} is not served; use {ENDPOINT!r}",
                param="endpoint",
            )
        window = parse_window(body.completion_window, rt.config.max_completion_window_s)
        meta = body.metadata or None
        if meta and (len(meta) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in meta.items())):
            raise APIError(
                422,
                "invalid_metadata",
                "metadata: at most 16 pairs, keys up to 64 and values up to 512 characters",
                param="metadata",
            )
        f = await own_file(rt, request, body.input_file_id, "input_file_id")
        if f.kind != "upload":
            raise APIError(
                404, "file_not_found", f"no uploaded file {body.input_file_id[:64]!r}", param="input_file_id"
            )
        if f.purpose != "batch":
            raise APIError(422, "invalid_file", "the input file's purpose is not 'batch'", param="input_file_id")
        content = await rt.store.file_content(f.id) or b""
        lines = await asyncio.to_thread(validate_lines, content, settings)
        if not lines:
            raise APIError(422, "empty_file", "the input file has no request lines", param="input_file_id")
        if len(lines) > rt.config.max_requests:
            raise APIError(
                413,
                "too_many_requests",
                f"the input file has {len(lines)} requests; a batch takes at most {rt.config.max_requests}",
                param="input_file_id",
            )
        from ..http.middleware import principal_of

        rec = principal_of(request)
        if rec is not None and keys is not None:  # the key's quota and character rate, charged for the whole batch
            from ..auth.keys import LimitExceeded

            chars, texts = await asyncio.to_thread(_volume, lines)
            try:
                await keys.charge(rec, chars, texts)
            except LimitExceeded as exc:
                raise APIError(
                    exc.status, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)}
                ) from None
        now = int(time.time())
        job = await rt.store.create_job(
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
                owner=owner(request)[0],
            ),
            lines,
        )
        log.info("batch %s: %d lines (%d invalid), window %ss", job.id, job.total, job.failed, window)
        if rt.worker is not None:
            rt.worker.wake()
        return batch_object(job, currency(), model())

    @router.get("/v1/batches")
    async def list_batches(request: Request, after: str | None = None, limit: int = 20) -> dict:
        rt = runtime(request)
        if not 1 <= limit <= 100:
            raise APIError(422, "invalid_request", "limit must be between 1 and 100", param="limit")
        who, admin = owner(request)
        jobs = await rt.store.list_jobs(after=after, limit=limit + 1, owner=None if admin else who)
        return _page([batch_object(j, currency(), model()) for j in jobs[:limit]], len(jobs) > limit)

    @router.get("/v1/batches/{batch_id}")
    async def get_batch(batch_id: str, request: Request) -> dict:
        rt = runtime(request)
        return batch_object(await own_job(rt, request, batch_id), currency(), model())

    @router.post("/v1/batches/{batch_id}/cancel", responses={404: {}, 409: {}})
    async def cancel_batch(batch_id: str, request: Request) -> dict:
        """Stop a batch: lines in flight are dropped, what is done stays in the output file."""
        rt = runtime(request)
        await own_job(rt, request, batch_id)
        job = await rt.store.set_job_status(
            batch_id, ["validating", "in_progress", "finalizing"], "cancelling", int(time.time())
        )
        if job is None:
            job = await rt.store.get_job(batch_id)
            if job is None:
                raise APIError(404, "batch_not_found", f"no batch {batch_id[:64]!r}", param="batch_id")
            if job.status not in ("cancelling", "cancelled"):
                raise APIError(
                    409, "batch_not_cancellable", f"batch {batch_id} is {job.status}; it cannot be cancelled"
                )
        elif rt.worker is not None:
            rt.worker.abandon(batch_id)
            rt.worker.wake()
        return batch_object(job, currency(), model())

    return router


def _page(data: list[dict], has_more: bool) -> dict:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


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
                "batchmt_job_prompts_cap", "The batcher's cap on batch-job prompts in flight", value=gw.batcher.low_cap
            )


def install_jobs(app: FastAPI, settings: Any, keys: Any = None) -> None:
    """Add the jobs API (``/v1/files``, ``/v1/batches``) to a gateway app. The app's lifespan owns the
    :class:`JobsRuntime` (``app.state.jobs``): it opens the store before the gateway boots, starts the worker once
    the gateway is ready, and stops it (gracefully) before the gateway closes its batcher."""
    app.include_router(build_router(settings, keys))


async def _start_when_ready(gw: Any, rt: JobsRuntime) -> None:
    await gw.ready.wait()
    translator, batcher = gw.translator, gw.batcher

    async def translate(req: TranslateRequest) -> Any:
        return await translator.translate(req, priority=JOB_PRIORITY)

    rt.start_worker(translate, pressure=lambda: batcher.interactive_active)
