"""The batch-job worker: claims lines from the store, runs each through the same translate path as
``/v1/translate``, writes the results exactly once, and finishes jobs (completed, cancelled, expired).

Spare capacity only: the worker keeps at most ``cap`` lines in flight, a
:class:`~..pipeline.spare_capacity.SpareCapacity` (the same controller as the batcher's cap on job prompts). The
cap halves whenever interactive sentences are waiting (``pressure() > 0``) and grows back by one line per
``grow_every_s`` while they are not (additive increase, multiplicative decrease, as TCP does), so interactive
callers keep the engine to themselves when they need it and the job fills the rest.

A line validated by this gateway when its batch was created runs from what that validation made
(:class:`PreparedLines`: its request and its entries, markup parsed once); any other line (created by another
gateway or before a restart, or past the bound on what is kept) is parsed from its stored body and checked again.

Crash safety (the store's guarantees do the rest): results are written in small batches (every ``flush_s``); a
line whose worker died is claimed again after its lease expires; a result that arrives after its lease was
taken over is dropped by the store. On a graceful stop the worker stops claiming, waits up to ``drain_s`` for the
lines in flight, writes what finished and gives the rest back (claimable at once after a restart).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from ..pipeline.spare_capacity import SpareCapacity
from ..protocol.errors import APIError
from ..protocol.schemas import TranslateRequest, TranslateResponse
from ..stores import ClaimedLine, JobRecord, JobUsage, LineResult, Store
from ..text.documents import PreparedEntry

__all__ = ["JobWorker", "WorkerConfig", "PreparedLine", "PreparedLines", "output_line", "error_line", "TRANSIENT_CODES"]

log = logging.getLogger("batchmt.jobs")

#: per-sentence failures worth running the line again for (the line is retried up to ``max_line_attempts``)
TRANSIENT_CODES = frozenset({"shutdown", "timeout", "engine_error", "queue_full", "internal_error"})


class Translate(Protocol):
    """Runs one line's request; ``tenant``: the key that owns the batch (its translation memory); ``prepared``: its
    entries as validated at creation (None: checked and prepared again)."""

    def __call__(
        self, req: TranslateRequest, *, tenant: str | None = None, prepared: list[PreparedEntry] | None = None
    ) -> Awaitable[TranslateResponse]: ...


@dataclass(frozen=True)
class PreparedLine:
    """A line as its batch's creation validated it: the request, and its entries prepared for the translator."""

    request: TranslateRequest
    entries: list[PreparedEntry]

    @property
    def characters(self) -> int:
        return sum(map(len, self.request.entries))


class PreparedLines:
    """The lines this gateway validated and has not run yet, by (job id, line number), so that a line is parsed
    once (issue 23), at creation. Bounded: past ``max_chars`` characters the oldest go, and their lines are parsed
    again when they run, as are lines another gateway created."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._lines: OrderedDict[tuple[str, int], PreparedLine] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._lines)

    def put(self, job_id: str, lines: dict[int, PreparedLine]) -> None:
        for line_no, line in lines.items():
            self._lines[(job_id, line_no)] = line
            self._chars += line.characters
        while self._chars > self.max_chars and self._lines:
            _, old = self._lines.popitem(last=False)
            self._chars -= old.characters

    def take(self, job_id: str, line_no: int) -> PreparedLine | None:
        line = self._lines.pop((job_id, line_no), None)
        if line is not None:
            self._chars -= line.characters
        return line

    def drop(self, job_id: str) -> None:
        """A job that will not run on (cancelled, expired, finished): its lines go."""
        for key in [k for k in self._lines if k[0] == job_id]:
            self._chars -= self._lines.pop(key).characters


@dataclass(frozen=True)
class WorkerConfig:
    lease_seconds: float = 60.0
    max_lines_in_flight: int = 64
    #: texts of the lines in flight at most (lines may carry up to 128 each): the job's queue stays short
    max_texts_in_flight: int = 1024
    min_lines_in_flight: int = 1
    grow_every_s: float = 0.5
    poll_seconds: float = 0.5
    flush_s: float = 0.2
    drain_s: float = 5.0
    max_line_attempts: int = 3
    busy_backoff_s: float = 1.0


def _req_id() -> str:
    return f"batch_req_{secrets.token_hex(12)}"


def output_line(custom_id: str, resp: TranslateResponse) -> str:
    """A line of the output file (OpenAI's batch output shape)."""
    return json.dumps(
        {
            "id": _req_id(),
            "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": resp.id, "body": resp.model_dump(mode="json")},
            "error": None,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def error_line(
    custom_id: str | None,
    status: int | None,
    code: str,
    message: str,
    *,
    param: str | None = None,
    line: int | None = None,
) -> str:
    """A line of the error file: the HTTP answer the request would have had (``response``) and ``error``."""
    body = {"error": {"code": code, "message": message, "param": param}}
    return json.dumps(
        {
            "id": _req_id(),
            "custom_id": custom_id,
            "response": None if status is None else {"status_code": status, "request_id": None, "body": body},
            "error": {"code": code, "message": message, "param": param, "line": line},
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _texts_in(body: str) -> int:
    """Texts a line's request carries (``texts`` or ``sentences``); 1 if it cannot tell."""
    try:
        d = json.loads(body)
        return max(1, len(d.get("texts") or d.get("sentences") or []))
    except (ValueError, AttributeError, TypeError):
        return 1


def _usage(resp: TranslateResponse) -> JobUsage:
    u = resp.usage
    return JobUsage(
        sentences=u.sentences,
        characters=u.characters,
        prompt_tokens=u.prompt_tokens,
        cached_prompt_tokens=u.cached_prompt_tokens,
        completion_tokens=u.completion_tokens,
        engine_prompts=u.engine_prompts,
        cost=u.cost,
        baseline_cost=u.baseline_cost,
        memory_hits=getattr(u, "memory_hits", 0) or 0,
    )


class JobWorker:
    def __init__(
        self,
        store: Store,
        translate: Translate,
        config: WorkerConfig = WorkerConfig(),
        *,
        pressure: Callable[[], int] | None = None,
        new_file_id: Callable[[], str] | None = None,
        owner: str | None = None,
        prepared: PreparedLines | None = None,
    ) -> None:
        self.store, self.translate, self.config = store, translate, config
        self.prepared = prepared if prepared is not None else PreparedLines(0)
        self.pressure = pressure or (lambda: 0)
        self.new_file_id = new_file_id or (lambda: f"file-{secrets.token_hex(12)}")
        self.owner = owner or f"gw-{uuid.uuid4().hex[:12]}"
        self._owners: dict[str, str | None] = {}  # job id -> the key that owns it
        self.capacity = SpareCapacity(
            config.max_lines_in_flight,
            minimum=config.min_lines_in_flight,
            pressure=self.pressure,
            grow_every_s=config.grow_every_s,
        )
        self._inflight: dict[tuple[str, int], asyncio.Task] = {}
        self._results: list[LineResult] = []
        self._release: list[tuple[str, int]] = []  # given back, not an attempt (saturated, shutting down)
        self._retries: list[tuple[str, int]] = []  # given back after a transient failure: an attempt
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._check = asyncio.Event()  # the supervisor: results were written
        self._tasks: list[asyncio.Task] = []
        self._texts_in_flight = 0
        self.lines_done = 0  # results this worker wrote (tests, metrics)
        self.lines_written = {"completed": 0, "failed": 0}  # by outcome (metrics)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._claim_loop(), name="batchmt-jobs-claim"),
                asyncio.create_task(self._flush_loop(), name="batchmt-jobs-flush"),
                asyncio.create_task(self._lease_loop(), name="batchmt-jobs-lease"),
                asyncio.create_task(self._supervise_loop(), name="batchmt-jobs-supervise"),
            ]
            log.info(
                "job worker %s started (cap %d lines, lease %.0fs)", self.owner, self.cap, self.config.lease_seconds
            )

    def wake(self) -> None:
        """A job was created or changed: look for work now."""
        self._wake.set()

    async def stop(self) -> None:
        """Graceful: stop claiming, let the lines in flight finish for up to ``drain_s``, write what finished,
        give the rest back."""
        if not self._tasks:
            return
        self._stopping.set()
        self._wake.set()
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=self.config.drain_s)
        for t in list(self._inflight.values()):
            t.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self._flush()
            released = await self.store.release_lines(self.owner)
            log.info("job worker %s stopped: %d lines given back", self.owner, released)
        except Exception:  # the store may be gone already; the leases expire on their own
            log.exception("job worker %s: could not write its last results", self.owner)

    # ------------------------------------------------------------------ capacity
    @property
    def cap(self) -> int:
        """The cap on lines in flight now (read by /metrics)."""
        return self.capacity.value

    # ------------------------------------------------------------------ loops
    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def _claim_loop(self) -> None:
        cfg = self.config
        while not self._stopping.is_set():
            try:
                free = self.capacity.current() - len(self._inflight)
                if free <= 0 or self._texts_in_flight >= cfg.max_texts_in_flight:
                    await self._sleep(0.05)
                    continue
                lines = await self.store.claim_lines(self.owner, min(free, 8), cfg.lease_seconds, time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job worker: claiming lines failed")
                await self._sleep(cfg.poll_seconds)
                continue
            for line in lines:
                key = (line.job_id, line.line_no)
                task = asyncio.create_task(self._run_line(line))
                self._inflight[key] = task
                task.add_done_callback(functools.partial(self._done_task, key))
            if not lines:
                await self._sleep(cfg.poll_seconds)

    def _done(self, key: tuple[str, int]) -> None:
        self._inflight.pop(key, None)
        self._wake.set()

    def _done_task(self, key: tuple[str, int], _task: asyncio.Task) -> None:
        self._done(key)

    async def _run_line(self, line: ClaimedLine) -> None:
        prepared = self.prepared.take(line.job_id, line.line_no)
        n = len(prepared.request.entries) if prepared is not None else _texts_in(line.body)
        self._texts_in_flight += n
        try:
            await self._run_line_body(line, prepared)
        finally:
            self._texts_in_flight -= n

    async def _tenant(self, job_id: str) -> str | None:
        """The key that owns a job (its lines use that key's translation memory only); cached per job."""
        if job_id not in self._owners:
            job = await self.store.get_job(job_id)
            if len(self._owners) > 1024:
                self._owners.clear()
            self._owners[job_id] = job.owner if job is not None else None
        return self._owners[job_id]

    async def _run_line_body(self, line: ClaimedLine, prepared: PreparedLine | None = None) -> None:
        cfg = self.config
        try:
            req = prepared.request if prepared is not None else TranslateRequest.model_validate_json(line.body)
        except ValidationError as exc:  # validated at creation; a later change of the schema lands here
            self._fail(line, 422, "invalid_request", str(exc)[:500])
            return
        try:
            entries = prepared.entries if prepared is not None else None
            resp = await self.translate(req, tenant=await self._tenant(line.job_id), prepared=entries)
        except APIError as exc:
            if exc.status in (429, 503):  # saturated or not ready: give the line back, without an attempt
                self.capacity.back_off()
                self._release.append((line.job_id, line.line_no))
                await asyncio.sleep(cfg.busy_backoff_s)
                return
            self._fail(line, exc.status, exc.code, exc.message, exc.param)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not lose the line: it fails in the error file, with its custom_id
            log.exception("job %s line %d failed", line.job_id, line.line_no)
            if line.attempts < cfg.max_line_attempts:
                self._release.append((line.job_id, line.line_no))
                return
            self._fail(line, 500, "internal_error", f"internal error: {type(exc).__name__}")
            return
        transient = [t for t in resp.translations if t.error is not None and t.error.code in TRANSIENT_CODES]
        if transient and (self._stopping.is_set() or line.attempts < cfg.max_line_attempts):
            if any(t.error is not None and t.error.code == "shutdown" for t in transient) or self._stopping.is_set():
                self._release.append((line.job_id, line.line_no))  # the gateway is going down: not an attempt
            else:
                self._retries.append((line.job_id, line.line_no))
            return
        self._results.append(
            LineResult(line.job_id, line.line_no, True, output_line(line.custom_id, resp), _usage(resp))
        )

    def _fail(self, line: ClaimedLine, status: int, code: str, message: str, param: str | None = None) -> None:
        """The line's result is an error line (the error file)."""
        error = error_line(line.custom_id, status, code, message, param=param, line=line.line_no)
        self._results.append(LineResult(line.job_id, line.line_no, False, error))

    async def _flush(self) -> None:
        results, self._results = self._results, []
        release, self._release = self._release, []
        retries, self._retries = self._retries, []
        if results:
            written = await self.store.complete_lines(self.owner, results)
            self.lines_done += written
            if written == len(results):
                ok = sum(r.ok for r in results)
                self.lines_written["completed"] += ok
                self.lines_written["failed"] += written - ok
            if written < len(results):
                log.info(
                    "job worker %s: %d results dropped (their leases had passed to another worker)",
                    self.owner,
                    len(results) - written,
                )
        if release:
            await self.store.release_lines(self.owner, release)
        if retries:
            await self.store.release_lines(self.owner, retries, undo_attempt=False)
        if results or release or retries:
            self._wake.set()
        if results:
            self._check.set()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_s)
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job worker: writing results failed (kept for the next try)")

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease_seconds / 3)
            try:
                await self.store.renew_leases(self.owner, self.config.lease_seconds, time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job worker: renewing leases failed")

    # ------------------------------------------------------------------ finishing jobs
    def abandon(self, job_id: str) -> None:
        """Stop working on a job (cancelled or expired): its lines in flight are dropped."""
        self.prepared.drop(job_id)
        for key, task in list(self._inflight.items()):
            if key[0] == job_id:
                task.cancel()
                self._release.append(key)  # written with the next flush; a result that made it first wins

    async def supervise_once(self, now: float | None = None) -> list[JobRecord]:
        """Finish what is finished: expired jobs, jobs with no line left, cancelled jobs with nothing in flight.
        Safe to run in several gateways at once (every transition is a compare-and-set)."""
        now = time.time() if now is None else now
        finished: list[JobRecord] = []
        for job in await self.store.jobs_in(["in_progress", "finalizing", "cancelling"]):
            done = None
            if job.status in ("in_progress", "finalizing") and now >= job.expires_at:
                self.abandon(job.id)
                done = await self.store.finish_job(
                    job.id,
                    ["in_progress", "finalizing"],
                    "expired",
                    int(now),
                    output_file_id=self.new_file_id(),
                    error_file_id=self.new_file_id(),
                    expired_output=_EXPIRED,
                )
            elif job.status in ("in_progress", "finalizing"):
                lines = await self.store.open_lines(job.id)
                if not lines.get("pending") and not lines.get("claimed"):
                    if job.status == "in_progress":
                        await self.store.set_job_status(job.id, ["in_progress"], "finalizing", int(now))
                    done = await self.store.finish_job(
                        job.id,
                        ["finalizing"],
                        "completed",
                        int(now),
                        output_file_id=self.new_file_id(),
                        error_file_id=self.new_file_id(),
                    )
            else:  # cancelling: drop our lines in flight; wait for other gateways' leases to end
                self.abandon(job.id)
                await self._flush()
                lines = await self.store.open_lines(job.id)
                ours = any(jid == job.id for jid, _ in self._inflight)
                lease_over = job.cancelling_at is not None and now - job.cancelling_at > self.config.lease_seconds
                if not ours and (not lines.get("claimed") or lease_over):
                    done = await self.store.finish_job(
                        job.id,
                        ["cancelling"],
                        "cancelled",
                        int(now),
                        output_file_id=self.new_file_id(),
                        error_file_id=self.new_file_id(),
                    )
            if done is not None:
                self.prepared.drop(done.id)
                log.info(
                    "job %s %s: %d completed, %d failed of %d",
                    done.id,
                    done.status,
                    done.completed,
                    done.failed,
                    done.total,
                )
                finished.append(done)
        return finished

    async def _supervise_loop(self) -> None:
        while True:
            try:
                await self.supervise_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job worker: supervising jobs failed")
            self._check.clear()
            try:  # results written may have finished a job: look at once
                await asyncio.wait_for(self._check.wait(), self.config.poll_seconds)
            except TimeoutError:
                pass


#: the error line of a line that was still open when its job expired (a str.format template; see Store.finish_job)
_EXPIRED = (
    '{{"id":"batch_req_expired_{line_no}","custom_id":{custom_id},"response":null,'
    '"error":{{"code":"batch_expired","message":"This request could not be executed before the completion '
    'window expired.","param":null,"line":{line_no}}}}}'
)
