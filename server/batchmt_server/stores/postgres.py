"""The shared store: PostgreSQL, for several gateway processes on one database (``--database-url postgresql://...``).

psycopg 3 with an asynchronous connection pool. Every method is one transaction (see :mod:`.base` for the
guarantees). What makes several gateways safe on one database:

- **claims** lock the rows they take with ``SELECT ... FOR UPDATE SKIP LOCKED`` inside one ``UPDATE ... RETURNING``:
  two gateways claiming at once never get the same line and never wait on each other;
- **leases** are wall-clock deadlines: the lines of a gateway that died are claimable again once its leases expire,
  and its late :meth:`complete_lines` writes nothing (``WHERE state = 'claimed' AND lease_owner = owner``);
- **migrations** run on :meth:`open` under a transaction-level advisory lock, so gateways starting together apply
  each numbered file once;
- a transaction that loses a deadlock or a serialization conflict is run again (a few times, with jitter).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from .base import (
    _FILE_COLS,
    _GLOSSARY_COLS,
    _JOB_COLS,
    _USAGE_COLS,
    ClaimedLine,
    FileRecord,
    GlossaryRecord,
    JobRecord,
    JobUsage,
    LineResult,
    MemoryEntry,
    MemoryFull,
    MemoryHit,
    Migration,
    NewLine,
    StoreError,
    dump_json,
    migrations,
)

__all__ = ["PostgresKeys", "PostgresStore"]

T = TypeVar("T")
Cur = psycopg.AsyncCursor[dict[str, Any]]

_JOB_INSERT_COLS = tuple(c for c in _JOB_COLS if c != "seq")  # seq is an identity column
_SELECT_JOB = f"SELECT {', '.join(_JOB_COLS)} FROM jobs"
_STATUSES = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")
#: a fixed key for pg_advisory_xact_lock: one migrating gateway at a time
_MIGRATION_LOCK = 0x62_61_74_63_68_6D_74  # "batchmt"
_RETRIES = 5


async def _one(cur: Cur) -> dict[str, Any]:
    """The row a statement must return (an aggregate, an INSERT/UPDATE ... RETURNING of a row that exists)."""
    row = await cur.fetchone()
    if row is None:
        raise StoreError("the database returned no row where one was expected")
    return row


def _job(row: dict[str, Any]) -> JobRecord:
    d = dict(row)
    usage = JobUsage(**{n: type(getattr(JobUsage(), n))(d.pop(f"u_{n}")) for n in JobUsage.names()})
    d["metadata"] = json.loads(d["metadata"]) if d["metadata"] else None
    d["errors"] = json.loads(d["errors"]) if d["errors"] else None
    return JobRecord(usage=usage, **d)


_DROP_UNREFERENCED_LINES = (
    "DELETE FROM job_lines WHERE job_id IN (SELECT id FROM jobs WHERE status IN "
    "('completed', 'failed', 'expired', 'cancelled') AND id NOT IN "
    "(SELECT job_id FROM files WHERE job_id IS NOT NULL))"
)


def _file(row: dict[str, Any]) -> FileRecord:
    return FileRecord(**row)


class PostgresStore:
    dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, connect_timeout: float = 30.0) -> None:
        if url.startswith("postgresql+psycopg://"):
            url = "postgresql://" + url[len("postgresql+psycopg://") :]
        self.url = url
        self.min_size, self.max_size, self.connect_timeout = min_size, max_size, connect_timeout
        self._pool: AsyncConnectionPool | None = None

    # ---------------------------------------------------------------- plumbing
    async def _tx(self, fn: Callable[[Cur], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction; again after a deadlock or serialization failure."""
        if self._pool is None:
            raise StoreError("the store is not open")
        for attempt in range(_RETRIES):
            try:
                async with self._pool.connection() as conn:
                    async with conn.transaction():
                        async with conn.cursor(row_factory=dict_row) as cur:
                            return await fn(cur)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL: {exc}") from exc
        raise AssertionError("unreachable")

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self.url,
            min_size=self.min_size,
            max_size=self.max_size,
            open=False,
            timeout=self.connect_timeout,
            kwargs={"autocommit": True},
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
        except Exception as exc:  # psycopg_pool.PoolTimeout, psycopg.OperationalError
            await pool.close()
            raise StoreError(f"cannot connect to PostgreSQL ({_redact(self.url)}): {exc}") from exc
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async def setup(cur: Cur) -> None:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )

        await self._tx(setup)
        for m in migrations(self.dialect):

            async def apply(cur: Cur, m: Migration = m) -> None:
                await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await cur.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (m.version,))
                if await cur.fetchone():
                    return
                await cur.execute(m.sql.encode("utf-8"))  # several statements, no parameters
                await cur.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)", (m.version, m.name, time.time()))

            await self._tx(apply)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def applied_migrations(self) -> list[int]:
        async def op(cur: Cur) -> list[int]:
            await cur.execute("SELECT version FROM schema_migrations ORDER BY version")
            return [r["version"] for r in await cur.fetchall()]

        return await self._tx(op)

    # ---------------------------------------------------------------- files
    async def put_file(self, rec: FileRecord, content: bytes | None) -> None:
        async def op(cur: Cur) -> None:
            await cur.execute(
                f"INSERT INTO files ({', '.join(_FILE_COLS)}, content) VALUES "
                f"({', '.join(['%s'] * (len(_FILE_COLS) + 1))})",
                (*[getattr(rec, c) for c in _FILE_COLS], content),
            )

        await self._tx(op)

    async def get_file(self, file_id: str) -> FileRecord | None:
        async def op(cur: Cur) -> FileRecord | None:
            await cur.execute(f"SELECT {', '.join(_FILE_COLS)} FROM files WHERE id = %s", (file_id,))
            row = await cur.fetchone()
            return _file(row) if row else None

        return await self._tx(op)

    async def list_files(
        self, *, purpose: str | None = None, after: str | None = None, limit: int = 20, owner: str | None = None
    ) -> list[FileRecord]:
        async def op(cur: Cur) -> list[FileRecord]:
            where, args = _filters(purpose=purpose, owner=owner)
            if after is not None:
                where.append("seq < COALESCE((SELECT seq FROM files WHERE id = %s), 0)")
                args.append(after)
            await cur.execute(
                f"SELECT {', '.join(_FILE_COLS)} FROM files WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT %s",
                (*args, limit),
            )
            return [_file(r) for r in await cur.fetchall()]

        return await self._tx(op)

    async def file_content(self, file_id: str) -> bytes | None:
        async def op(cur: Cur) -> bytes | None:
            await cur.execute("SELECT kind, job_id, content FROM files WHERE id = %s", (file_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            if row["kind"] == "upload":
                return bytes(row["content"] or b"")
            state = "done" if row["kind"] == "output" else "failed"
            await cur.execute(
                "SELECT output FROM job_lines WHERE job_id = %s AND state = %s ORDER BY line_no", (row["job_id"], state)
            )
            return "".join(f"{r['output']}\n" for r in await cur.fetchall()).encode("utf-8")

        return await self._tx(op)

    async def delete_file(self, file_id: str) -> bool:
        async def op(cur: Cur) -> bool:
            await cur.execute("DELETE FROM files WHERE id = %s", (file_id,))
            gone = cur.rowcount > 0
            await cur.execute(_DROP_UNREFERENCED_LINES)
            return gone

        return await self._tx(op)

    async def delete_expired_files(self, now: int) -> int:
        async def op(cur: Cur) -> int:
            await cur.execute("DELETE FROM files WHERE expires_at IS NOT NULL AND expires_at <= %s", (now,))
            n = cur.rowcount
            if n:
                await cur.execute(_DROP_UNREFERENCED_LINES)
            return n

        return await self._tx(op)

    async def stored_bytes(self, owner: str | None) -> int:
        async def op(cur: Cur) -> int:
            where = "owner = %s" if owner is not None else "owner IS NULL"
            await cur.execute(
                f"SELECT COALESCE(SUM(bytes), 0) AS n FROM files WHERE kind = 'upload' AND {where}",
                (owner,) if owner is not None else (),
            )
            return int((await _one(cur))["n"])

        return await self._tx(op)

    async def probe(self) -> None:
        async def op(cur: Cur) -> None:
            await cur.execute("SELECT 1 AS n")

        await self._tx(op)

    # ---------------------------------------------------------------- jobs
    async def create_job(self, job: JobRecord, lines: Sequence[NewLine]) -> JobRecord:
        from dataclasses import replace

        async def op(cur: Cur) -> JobRecord:
            failed = sum(1 for ln in lines if ln.error_output is not None)
            rec = replace(job, total=len(lines), failed=failed, completed=0)
            await cur.execute(
                f"INSERT INTO jobs ({', '.join(_JOB_INSERT_COLS)}) VALUES "
                f"({', '.join(['%s'] * len(_JOB_INSERT_COLS))}) RETURNING seq",
                _job_values(rec),
            )
            seq = (await _one(cur))["seq"]
            async with cur.copy("COPY job_lines (job_id, line_no, custom_id, body, state, output) FROM STDIN") as cp:
                for ln in lines:
                    await cp.write_row(
                        (
                            rec.id,
                            ln.line_no,
                            ln.custom_id,
                            ln.body,
                            "failed" if ln.error_output is not None else "pending",
                            ln.error_output,
                        )
                    )
            return replace(rec, seq=seq)

        return await self._tx(op)

    async def get_job(self, job_id: str) -> JobRecord | None:
        async def op(cur: Cur) -> JobRecord | None:
            await cur.execute(f"{_SELECT_JOB} WHERE id = %s", (job_id,))
            row = await cur.fetchone()
            return _job(row) if row else None

        return await self._tx(op)

    async def list_jobs(
        self, *, after: str | None = None, limit: int = 20, owner: str | None = None
    ) -> list[JobRecord]:
        async def op(cur: Cur) -> list[JobRecord]:
            where, args = _filters(owner=owner)
            if after is not None:
                where.append("seq < COALESCE((SELECT seq FROM jobs WHERE id = %s), 0)")
                args.append(after)
            await cur.execute(f"{_SELECT_JOB} WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT %s", (*args, limit))
            return [_job(r) for r in await cur.fetchall()]

        return await self._tx(op)

    async def jobs_in(self, statuses: Sequence[str]) -> list[JobRecord]:
        async def op(cur: Cur) -> list[JobRecord]:
            await cur.execute(f"{_SELECT_JOB} WHERE status = ANY(%s) ORDER BY seq", (list(statuses),))
            return [_job(r) for r in await cur.fetchall()]

        return await self._tx(op)

    async def set_job_status(self, job_id: str, from_statuses: Sequence[str], to: str, now: int) -> JobRecord | None:
        if to not in _STATUSES:
            raise StoreError(f"unknown job status {to!r}")

        async def op(cur: Cur) -> JobRecord | None:
            await cur.execute(
                f"UPDATE jobs SET status = %s, {to}_at = %s WHERE id = %s AND status = ANY(%s) "
                f"RETURNING {', '.join(_JOB_COLS)}",
                (to, now, job_id, list(from_statuses)),
            )
            row = await cur.fetchone()
            return _job(row) if row else None

        return await self._tx(op)

    async def claim_lines(self, owner: str, limit: int, lease_seconds: float, now: float) -> list[ClaimedLine]:
        async def op(cur: Cur) -> list[ClaimedLine]:
            await cur.execute(
                "WITH picked AS ("
                " SELECT l.job_id, l.line_no, j.seq FROM job_lines l JOIN jobs j ON j.id = l.job_id"
                " WHERE j.status = 'in_progress'"
                "   AND (l.state = 'pending' OR (l.state = 'claimed' AND l.lease_expires < %(now)s))"
                " ORDER BY j.seq, l.line_no LIMIT %(limit)s"
                " FOR UPDATE OF l SKIP LOCKED) "
                "UPDATE job_lines l SET state = 'claimed', lease_owner = %(owner)s, lease_expires = %(until)s,"
                " attempts = l.attempts + 1 "
                "FROM picked WHERE l.job_id = picked.job_id AND l.line_no = picked.line_no "
                "RETURNING l.job_id, l.line_no, l.custom_id, l.body, l.attempts, picked.seq",
                {"now": now, "limit": limit, "owner": owner, "until": now + lease_seconds},
            )
            rows = sorted(await cur.fetchall(), key=lambda r: (r["seq"], r["line_no"]))  # RETURNING has no order
            return [ClaimedLine(r["job_id"], r["line_no"], r["custom_id"], r["body"], r["attempts"]) for r in rows]

        if limit <= 0:
            return []
        return await self._tx(op)

    async def renew_leases(self, owner: str, lease_seconds: float, now: float) -> int:
        async def op(cur: Cur) -> int:
            await cur.execute(
                "UPDATE job_lines SET lease_expires = %s WHERE lease_owner = %s AND state = 'claimed'",
                (now + lease_seconds, owner),
            )
            return cur.rowcount

        return await self._tx(op)

    async def release_lines(
        self, owner: str, keys: Sequence[tuple[str, int]] | None = None, *, undo_attempt: bool = True
    ) -> int:
        async def op(cur: Cur) -> int:
            attempts = "GREATEST(0, attempts - 1)" if undo_attempt else "attempts"
            sql = (
                "UPDATE job_lines SET state = 'pending', lease_owner = NULL, lease_expires = NULL, "
                f"attempts = {attempts} WHERE lease_owner = %s AND state = 'claimed'"
            )
            if keys is None:
                await cur.execute(sql, (owner,))
            else:
                await cur.execute(
                    sql + " AND (job_id, line_no) IN (SELECT * FROM unnest(%s::text[], %s::int[]))",
                    (owner, [k[0] for k in keys], [k[1] for k in keys]),
                )
            return cur.rowcount

        if keys is not None and not keys:
            return 0
        return await self._tx(op)

    async def complete_lines(self, owner: str, results: Sequence[LineResult]) -> int:
        by_key = {(r.job_id, r.line_no): r for r in results}

        async def op(cur: Cur) -> int:
            keys = sorted(by_key)  # one lock order for every writer
            await cur.execute(
                "UPDATE job_lines l SET state = v.state, output = v.output, lease_owner = NULL, lease_expires = NULL "
                "FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[]) AS v(job_id, line_no, state, output) "
                "WHERE l.job_id = v.job_id AND l.line_no = v.line_no AND l.state = 'claimed' AND l.lease_owner = %s "
                "RETURNING l.job_id, l.line_no",
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    ["done" if by_key[k].ok else "failed" for k in keys],
                    [by_key[k].output for k in keys],
                    owner,
                ),
            )
            written = [by_key[(r["job_id"], r["line_no"])] for r in await cur.fetchall()]
            per_job: dict[str, list[Any]] = {}
            for r in written:  # lines no longer ours (lease expired, claimed again) were not written: not counted
                acc = per_job.setdefault(r.job_id, [0, 0, JobUsage()])
                acc[0 if r.ok else 1] += 1
                acc[2] = acc[2] + r.usage
            sets = ", ".join(f"{c} = {c} + %s" for c in _USAGE_COLS)
            for job_id in sorted(per_job):
                ok, bad, usage = per_job[job_id]
                await cur.execute(
                    f"UPDATE jobs SET completed = completed + %s, failed = failed + %s, {sets} WHERE id = %s",
                    (ok, bad, *[getattr(usage, n) for n in JobUsage.names()], job_id),
                )
            return len(written)

        if not results:
            return 0
        return await self._tx(op)

    async def open_lines(self, job_id: str) -> dict[str, int]:
        async def op(cur: Cur) -> dict[str, int]:
            await cur.execute("SELECT state, COUNT(*) AS n FROM job_lines WHERE job_id = %s GROUP BY state", (job_id,))
            return {r["state"]: r["n"] for r in await cur.fetchall()}

        return await self._tx(op)

    async def finish_job(
        self,
        job_id: str,
        from_statuses: Sequence[str],
        to: str,
        now: int,
        *,
        output_file_id: str,
        error_file_id: str,
        expired_output: str | None = None,
    ) -> JobRecord | None:
        if to not in ("completed", "cancelled", "expired", "failed"):
            raise StoreError(f"{to!r} is not a terminal status")

        async def op(cur: Cur) -> JobRecord | None:
            await cur.execute(f"{_SELECT_JOB} WHERE id = %s FOR UPDATE", (job_id,))
            row = await cur.fetchone()
            if row is None or row["status"] not in from_statuses:
                return None
            job = _job(row)
            expired = 0
            if to == "expired":
                await cur.execute(
                    "SELECT line_no, custom_id FROM job_lines WHERE job_id = %s AND state IN "
                    "('pending', 'claimed') ORDER BY line_no FOR UPDATE",
                    (job_id,),
                )
                left = await cur.fetchall()
                template = expired_output or "{{}}"
                outputs = [template.format(custom_id=json.dumps(r["custom_id"]), line_no=r["line_no"]) for r in left]
                await cur.execute(
                    "UPDATE job_lines l SET state = 'failed', output = v.output, lease_owner = NULL, "
                    "lease_expires = NULL FROM unnest(%s::int[], %s::text[]) AS v(line_no, output) "
                    "WHERE l.job_id = %s AND l.line_no = v.line_no",
                    ([r["line_no"] for r in left], outputs, job_id),
                )
                expired = len(left)
            else:
                await cur.execute(
                    "UPDATE job_lines SET state = 'cancelled', lease_owner = NULL, lease_expires = NULL "
                    "WHERE job_id = %s AND state IN ('pending', 'claimed')",
                    (job_id,),
                )
            files: dict[str, str | None] = {"output": None, "error": None}
            for kind, state, fid in (("output", "done", output_file_id), ("error", "failed", error_file_id)):
                await cur.execute(
                    "SELECT COUNT(*) AS n, COALESCE(SUM(octet_length(output) + 1), 0) AS size "
                    "FROM job_lines WHERE job_id = %s AND state = %s",
                    (job_id, state),
                )
                agg = await _one(cur)
                if agg["n"]:
                    expires = now + job.output_expires_after if job.output_expires_after else None
                    await cur.execute(
                        "INSERT INTO files (id, purpose, filename, bytes, created_at, job_id, kind, "
                        "owner, expires_at) VALUES (%s, 'batch_output', %s, %s, %s, %s, %s, %s, %s)",
                        (fid, f"batch_{job_id}_{kind}.jsonl", int(agg["size"]), now, job_id, kind, job.owner, expires),
                    )
                    files[kind] = fid
            final_at = {
                "completed": "completed_at",
                "cancelled": "cancelled_at",
                "expired": "expired_at",
                "failed": "failed_at",
            }[to]
            finalizing = now if to == "completed" and job.finalizing_at is None else job.finalizing_at
            await cur.execute(
                f"UPDATE jobs SET status = %s, {final_at} = %s, finalizing_at = %s, "
                "output_file_id = %s, error_file_id = %s, failed = failed + %s WHERE id = %s "
                f"RETURNING {', '.join(_JOB_COLS)}",
                (to, now, finalizing, files["output"], files["error"], expired, job_id),
            )
            return _job(await _one(cur))

        return await self._tx(op)

    async def jobs_usage(self, *, owner: str | None = None) -> tuple[int, JobUsage]:
        async def op(cur: Cur) -> tuple[int, JobUsage]:
            where, args = ("WHERE owner = %s", (owner,)) if owner is not None else ("", ())
            sums = ", ".join(f"COALESCE(SUM({c}), 0) AS {c}" for c in _USAGE_COLS)
            await cur.execute(f"SELECT COUNT(*) AS n, {sums} FROM jobs {where}", args)
            row = await _one(cur)
            return row["n"], JobUsage(**{n: type(getattr(JobUsage(), n))(row[f"u_{n}"]) for n in JobUsage.names()})

        return await self._tx(op)

    # ---------------------------------------------------------------- translation memory
    async def tm_get(self, scope: str, signature: str, sources: Sequence[str], now: float) -> dict[str, MemoryHit]:
        async def op(cur: Cur) -> dict[str, MemoryHit]:
            await cur.execute(
                "WITH hit AS (SELECT scope, signature, source FROM translation_memory WHERE scope = %s "
                "AND signature IN (%s, '') AND source = ANY(%s) ORDER BY signature, source FOR UPDATE) "
                "UPDATE translation_memory t SET hits = t.hits + 1, last_used = GREATEST(t.last_used, %s) FROM hit "
                "WHERE t.scope = hit.scope AND t.signature = hit.signature AND t.source = hit.source "
                "RETURNING t.source, t.target, t.origin",
                (scope, signature, sorted(set(sources)), now),
            )
            out: dict[str, MemoryHit] = {}
            for r in await cur.fetchall():
                if r["source"] not in out or r["origin"] == "human":  # a human entry wins over the model's
                    out[r["source"]] = MemoryHit(r["target"], r["origin"])
            return out

        if not sources:
            return {}
        return await self._tx(op)

    async def tm_put(
        self, scope: str, signature: str, pairs: Sequence[tuple[str, str]], now: float, max_entries: int
    ) -> None:
        latest = dict(pairs)  # one row per source (the last pair wins), in one lock order

        async def op(cur: Cur) -> None:
            keys = sorted(latest)
            await cur.execute(
                "INSERT INTO translation_memory (scope, signature, source, target, origin, created_at, last_used) "
                "SELECT %s, %s, s, t, 'model', %s, %s FROM unnest(%s::text[], %s::text[]) AS v(s, t) "
                "ON CONFLICT (scope, signature, source) DO UPDATE SET target = excluded.target, "
                "last_used = excluded.last_used RETURNING (xmax = 0) AS inserted",
                (scope, signature, now, now, keys, [latest[k] for k in keys]),
            )
            added = sum(1 for r in await cur.fetchall() if r["inserted"])
            # the size row (model entries) is locked last and briefly: the one point where memory writes queue
            await cur.execute("UPDATE translation_memory_count SET n = n + %s RETURNING n", (added,))
            excess = (await _one(cur))["n"] - max_entries
            if excess > 0:  # model entries, least recently used first (human ones are never evicted); rows another
                # writer holds are left for the next write
                await cur.execute(
                    "DELETE FROM translation_memory WHERE ctid IN (SELECT ctid FROM translation_memory "
                    "WHERE origin = 'model' ORDER BY last_used LIMIT %s FOR UPDATE SKIP LOCKED)",
                    (excess,),
                )
                await cur.execute("UPDATE translation_memory_count SET n = n - %s", (cur.rowcount,))

        if not pairs:
            return
        await self._tx(op)

    async def tm_import(self, scope: str, pairs: Sequence[tuple[str, str]], now: float, max_human: int) -> int:
        latest = dict(pairs)

        async def op(cur: Cur) -> int:
            keys = sorted(latest)
            # one import per scope at a time (two racing imports must not both pass the limit)
            await cur.execute("SELECT pg_advisory_xact_lock(hashtext('batchmt-memory-import:' || %s))", (scope,))
            await cur.execute(
                "SELECT COUNT(*) AS n FROM translation_memory WHERE scope = %s AND origin = 'human'", (scope,)
            )
            have = (await _one(cur))["n"]
            await cur.execute(
                "INSERT INTO translation_memory (scope, signature, source, target, origin, created_at, last_used) "
                "SELECT %s, '', s, t, 'human', %s, %s FROM unnest(%s::text[], %s::text[]) AS v(s, t) "
                "ON CONFLICT (scope, signature, source) DO UPDATE SET target = excluded.target, "
                "created_at = excluded.created_at RETURNING (xmax = 0) AS inserted",
                (scope, now, now, keys, [latest[k] for k in keys]),
            )
            new = sum(1 for r in await cur.fetchall() if r["inserted"])
            if have + new > max_human:
                raise MemoryFull(have, new, max_human)  # the transaction rolls back: nothing stored
            return new

        if not latest:
            return 0
        return await self._tx(op)

    async def tm_entries(
        self, scope: str, origin: str | None = None, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[MemoryEntry]:
        async def op(cur: Cur) -> list[MemoryEntry]:
            where, args = ["scope = %s"], [scope]
            if origin is not None:
                where.append("origin = %s")
                args.append(origin)
            if after is not None:
                where.append("(signature, source) > (%s, %s)")
                args += list(after)
            await cur.execute(
                "SELECT scope, signature, source, target, origin, created_at, last_used, hits FROM translation_memory "
                f"WHERE {' AND '.join(where)} ORDER BY signature, source LIMIT %s",
                (*args, limit),
            )
            return [MemoryEntry(**r) for r in await cur.fetchall()]

        return await self._tx(op)

    async def tm_purge(self, scope: str | None, *, source: str | None = None, origin: str | None = None) -> int:
        where, args = _memory_filter(scope, source, origin)

        async def op(cur: Cur) -> int:
            await cur.execute("SELECT n FROM translation_memory_count FOR UPDATE")
            await cur.execute(f"DELETE FROM translation_memory WHERE {where} RETURNING origin = 'model' AS model", args)
            rows = await cur.fetchall()
            await cur.execute("UPDATE translation_memory_count SET n = n - %s", (sum(1 for r in rows if r["model"]),))
            return len(rows)

        return await self._tx(op)

    async def tm_count(self, scope: str | None = None, origin: str | None = None) -> int:
        where, args = _memory_filter(scope, None, origin)

        async def op(cur: Cur) -> int:
            await cur.execute(f"SELECT COUNT(*) AS n FROM translation_memory WHERE {where}", args)
            return int((await _one(cur))["n"])

        return await self._tx(op)

    async def tm_size(self) -> int:
        async def op(cur: Cur) -> int:
            await cur.execute("SELECT n FROM translation_memory_count")
            return (await _one(cur))["n"]

        return await self._tx(op)

    async def tm_clear(self) -> None:
        async def op(cur: Cur) -> None:
            await cur.execute("SELECT n FROM translation_memory_count FOR UPDATE")
            await cur.execute("DELETE FROM translation_memory")
            await cur.execute("UPDATE translation_memory_count SET n = 0")

        await self._tx(op)

    # ---------------------------------------------------------------- glossaries
    async def glossary_create(
        self, rec: GlossaryRecord, entries: Sequence[tuple[str, str]], max_per_owner: int
    ) -> bool:
        async def op(cur: Cur) -> bool:
            # one creator per owner at a time: the count and the insert cannot interleave with another gateway's
            await cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"glossaries:{rec.owner}",))
            await cur.execute("SELECT COUNT(*) AS n FROM glossaries WHERE owner IS NOT DISTINCT FROM %s", (rec.owner,))
            if (await _one(cur))["n"] >= max_per_owner:
                return False
            await cur.execute(
                f"INSERT INTO glossaries ({', '.join(_GLOSSARY_COLS)}) VALUES ({', '.join(['%s'] * 8)})",
                tuple(getattr(rec, c) for c in _GLOSSARY_COLS),
            )
            async with cur.copy("COPY glossary_entries (glossary_id, source, target) FROM STDIN") as cp:
                for s, t in entries:
                    await cp.write_row((rec.id, s, t))
            return True

        return await self._tx(op)

    async def glossary_get(self, glossary_id: str) -> GlossaryRecord | None:
        async def op(cur: Cur) -> GlossaryRecord | None:
            await cur.execute(f"SELECT {', '.join(_GLOSSARY_COLS)} FROM glossaries WHERE id = %s", (glossary_id,))
            row = await cur.fetchone()
            return GlossaryRecord(**row) if row else None

        return await self._tx(op)

    async def glossary_list(self, owner: str | None, *, every: bool = False) -> list[GlossaryRecord]:
        async def op(cur: Cur) -> list[GlossaryRecord]:
            where, args = ("", ()) if every else ("WHERE owner IS NOT DISTINCT FROM %s", (owner,))
            await cur.execute(f"SELECT {', '.join(_GLOSSARY_COLS)} FROM glossaries {where} ORDER BY seq", args)
            return [GlossaryRecord(**r) for r in await cur.fetchall()]

        return await self._tx(op)

    async def glossary_entries(self, glossary_id: str) -> list[tuple[str, str]]:
        async def op(cur: Cur) -> list[tuple[str, str]]:
            await cur.execute(
                'SELECT source, target FROM glossary_entries WHERE glossary_id = %s ORDER BY source COLLATE "C"',
                (glossary_id,),
            )
            return [(r["source"], r["target"]) for r in await cur.fetchall()]

        return await self._tx(op)

    async def glossary_delete(self, glossary_id: str) -> bool:
        async def op(cur: Cur) -> bool:
            await cur.execute("DELETE FROM glossaries WHERE id = %s", (glossary_id,))
            return cur.rowcount > 0

        return await self._tx(op)

    async def traffic_texts(self, limit: int) -> tuple[list[str], list[str]]:
        async def op(cur: Cur) -> tuple[list[str], list[str]]:
            await cur.execute(
                "SELECT source FROM translation_memory ORDER BY hits DESC, last_used DESC LIMIT %s", (limit,)
            )
            tm = [r["source"] for r in await cur.fetchall()]
            await cur.execute("SELECT body FROM job_lines WHERE state = 'done' AND body IS NOT NULL LIMIT %s", (limit,))
            return tm, [r["body"] for r in await cur.fetchall()]

        return await self._tx(op)


def _filters(**equal: str | None) -> tuple[list[str], list[Any]]:
    where, args = ["TRUE"], []
    for column, value in equal.items():
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    return where, args


def _job_values(rec: JobRecord) -> tuple:
    out: list[Any] = []
    for c in _JOB_INSERT_COLS:
        if c.startswith("u_"):
            out.append(getattr(rec.usage, c[2:]))
        elif c in ("metadata", "errors"):
            out.append(dump_json(getattr(rec, c)))
        else:
            out.append(getattr(rec, c))
    return tuple(out)


def _redact(url: str) -> str:
    """The URL without its password (for error messages and logs)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://..."
    return f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"


def _memory_filter(scope: str | None, source: str | None, origin: str | None) -> tuple[str, tuple]:
    """A WHERE clause (and its arguments) for translation memory entries; None: any."""
    where, args = ["TRUE"], []
    for column, value in (("scope", scope), ("source", source), ("origin", origin)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    return " AND ".join(where), tuple(args)


class PostgresKeys:
    """API keys and per-key usage on a :class:`PostgresStore` (tables of migration ``0002_keys.sql``): the
    :class:`batchmt_server.auth.keys.KeyStore` of gateways that share one database, so that every gateway sees the
    same keys and adds its requests to the same per-key, per-period usage rows (quotas hold across gateways)."""

    _COLS = (
        "id",
        "name",
        "key_hash",
        "role",
        "rate_requests",
        "rate_chars",
        "chars_per_day",
        "chars_per_month",
        "created_at",
        "revoked_at",
    )

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    @property
    def path(self) -> str:
        """Where the keys live (printed by ``batchmt-server keys``): the database URL without its password."""
        return _redact(self.store.url)

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def add_key(self, record: Any) -> None:
        async def op(cur: Cur) -> None:
            await cur.execute(
                f"INSERT INTO api_keys ({', '.join(self._COLS)}) VALUES ({', '.join(['%s'] * len(self._COLS))})",
                tuple(getattr(record, c) for c in self._COLS),
            )

        await self.store._tx(op)

    async def list_keys(self) -> list[Any]:
        from ..auth.keys import KeyRecord

        async def op(cur: Cur) -> list[Any]:
            await cur.execute(f"SELECT {', '.join(self._COLS)} FROM api_keys ORDER BY created_at, id")
            return [KeyRecord(**row, source="store") for row in await cur.fetchall()]

        return await self.store._tx(op)

    async def revoke_key(self, key_id_or_name: str, now: float) -> int:
        async def op(cur: Cur) -> int:
            await cur.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE (id = %s OR name = %s) AND revoked_at IS NULL",
                (now, key_id_or_name, key_id_or_name),
            )
            return cur.rowcount

        return await self.store._tx(op)

    async def add_usage(self, key_id: str, periods: list[str], characters: int, sentences: int, requests: int) -> None:
        async def op(cur: Cur) -> None:
            await cur.execute(
                "INSERT INTO api_key_usage (key_id, period, characters, sentences, requests) "
                "SELECT %s, p, %s, %s, %s FROM unnest(%s::text[]) AS p "
                "ON CONFLICT (key_id, period) DO UPDATE SET "
                "characters = api_key_usage.characters + excluded.characters, "
                "sentences = api_key_usage.sentences + excluded.sentences, "
                "requests = api_key_usage.requests + excluded.requests",
                (key_id, characters, sentences, requests, sorted(set(periods))),
            )

        if periods:
            await self.store._tx(op)

    async def usage(self, key_id: str | None, period: str) -> dict[str, dict]:
        async def op(cur: Cur) -> dict[str, dict]:
            sql = "SELECT key_id, characters, sentences, requests FROM api_key_usage WHERE period = %s"
            args: tuple[Any, ...] = (period,)
            if key_id is not None:
                sql, args = sql + " AND key_id = %s", (period, key_id)
            await cur.execute(sql, args)
            return {
                r["key_id"]: {"characters": r["characters"], "sentences": r["sentences"], "requests": r["requests"]}
                for r in await cur.fetchall()
            }

        return await self.store._tx(op)
