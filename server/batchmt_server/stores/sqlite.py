"""The embedded store: one SQLite file (WAL mode), the default.

One connection, used from one dedicated thread (every call is a short transaction run there, so the event loop
never blocks on disk and the calls of this process are serialised). Writes take the database-wide write lock at
their start (``BEGIN IMMEDIATE``), so a claim is atomic against other processes on the same file too.
``synchronous=NORMAL`` in WAL mode: a committed transaction survives the process being killed at any point (an
OS crash or power loss may lose the last transactions; their lines are then simply run again, never twice into
the output).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
    NewLine,
    StoreError,
    dump_json,
    migrations,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_CHUNK = 400  # host parameters per statement, well under SQLite's limit


def _job(row: sqlite3.Row) -> JobRecord:
    d = dict(row)
    usage = JobUsage(**{n: d.pop(f"u_{n}") for n in JobUsage.names()})
    d["metadata"] = json.loads(d["metadata"]) if d["metadata"] else None
    d["errors"] = json.loads(d["errors"]) if d["errors"] else None
    return JobRecord(usage=usage, **d)


def _file(row: sqlite3.Row) -> FileRecord:
    return FileRecord(**dict(row))


class SQLiteStore:
    dialect = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self._db: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ---------------------------------------------------------------- plumbing
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None or self._db is None:
            raise StoreError("the store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction (taken at once: BEGIN IMMEDIATE)."""
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            out = fn(db)
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls a transaction back by itself on some errors (a full disk): a second ROLLBACK would
            # raise "cannot rollback - no transaction is active" and hide the real error
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return out

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        db.row_factory = sqlite3.Row
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: could not switch SQLite to WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=30000")
        self._db = db
        self._migrate()

    def _migrate(self) -> None:
        db = self._db
        assert db is not None
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at REAL NOT NULL)"
        )
        for m in migrations(self.dialect):

            def apply(db: sqlite3.Connection, m=m) -> None:
                if db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)).fetchone():
                    return
                for stmt in _statements(m.sql):
                    db.execute(stmt)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (m.version, m.name, time.time()))

            self._write(apply)

    async def open(self) -> None:
        if self._db is not None:
            return
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchmt-sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._connect)
        except sqlite3.Error as exc:
            self._pool.shutdown(wait=False)
            self._pool = None
            raise StoreError(f"{self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._pool is None:
            return
        db, pool = self._db, self._pool
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(pool, db.close)
        self._db, self._pool = None, None
        pool.shutdown(wait=True)

    async def applied_migrations(self) -> list[int]:
        return await self._run(
            lambda: [
                r[0]
                for r in self._db.execute(  # type: ignore[union-attr]
                    "SELECT version FROM schema_migrations ORDER BY version"
                )
            ]
        )

    # ---------------------------------------------------------------- files
    async def put_file(self, rec: FileRecord, content: bytes | None) -> None:
        def op(db: sqlite3.Connection) -> None:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM files").fetchone()[0]
            db.execute(
                f"INSERT INTO files ({', '.join(_FILE_COLS)}, content, seq) VALUES "
                f"({', '.join('?' * (len(_FILE_COLS) + 2))})",
                (*[getattr(rec, c) for c in _FILE_COLS], content, seq),
            )

        await self._run(self._write, op)

    async def get_file(self, file_id: str) -> FileRecord | None:
        def op() -> FileRecord | None:
            row = self._db.execute(  # type: ignore[union-attr]
                f"SELECT {', '.join(_FILE_COLS)} FROM files WHERE id = ?",
                (file_id,),
            ).fetchone()
            return _file(row) if row else None

        return await self._run(op)

    async def list_files(
        self, *, purpose: str | None = None, after: str | None = None, limit: int = 20, owner: str | None = None
    ) -> list[FileRecord]:
        def op() -> list[FileRecord]:
            where, args = ["1 = 1"], []
            if purpose is not None:
                where.append("purpose = ?")
                args.append(purpose)
            if owner is not None:
                where.append("owner = ?")
                args.append(owner)
            if after is not None:
                where.append("seq < COALESCE((SELECT seq FROM files WHERE id = ?), 0)")
                args.append(after)
            rows = self._db.execute(  # type: ignore[union-attr]
                f"SELECT {', '.join(_FILE_COLS)} FROM files WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
            return [_file(r) for r in rows]

        return await self._run(op)

    async def file_content(self, file_id: str) -> bytes | None:
        def op() -> bytes | None:
            db = self._db
            assert db is not None
            row = db.execute("SELECT kind, job_id, content FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                return None
            if row["kind"] == "upload":
                return bytes(row["content"] or b"")
            state = "done" if row["kind"] == "output" else "failed"
            lines = [
                r[0]
                for r in db.execute(
                    "SELECT output FROM job_lines WHERE job_id = ? AND state = ? ORDER BY line_no",
                    (row["job_id"], state),
                )
            ]
            return "".join(f"{line}\n" for line in lines).encode("utf-8")

        return await self._run(op)

    async def delete_file(self, file_id: str) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            gone = db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0
            db.execute(_DROP_UNREFERENCED_LINES)
            return gone

        return await self._run(self._write, op)

    async def delete_expired_files(self, now: int) -> int:
        def op(db: sqlite3.Connection) -> int:
            n = db.execute("DELETE FROM files WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)).rowcount
            if n:
                db.execute(_DROP_UNREFERENCED_LINES)
            return n

        return await self._run(self._write, op)

    async def stored_bytes(self, owner: str | None) -> int:
        def op() -> int:
            db = self._db
            assert db is not None
            where = "owner = ?" if owner is not None else "owner IS NULL"
            row = db.execute(
                f"SELECT COALESCE(SUM(bytes), 0) FROM files WHERE kind = 'upload' AND {where}",
                (owner,) if owner is not None else (),
            ).fetchone()
            return int(row[0])

        return await self._run(op)

    async def probe(self) -> None:
        """A small write (the header's user_version): fails while the disk is full or the file unwritable."""

        def op(db: sqlite3.Connection) -> None:
            v = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute(f"PRAGMA user_version = {(int(v) + 1) % 1_000_000}")

        await self._run(self._write, op)

    # ---------------------------------------------------------------- jobs
    async def create_job(self, job: JobRecord, lines: Sequence[NewLine]) -> JobRecord:
        def op(db: sqlite3.Connection) -> JobRecord:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            failed = sum(1 for ln in lines if ln.error_output is not None)
            rec = _replace(job, seq=seq, total=len(lines), failed=failed, completed=0)
            values = _job_values(rec)
            db.execute(f"INSERT INTO jobs ({', '.join(_JOB_COLS)}) VALUES ({', '.join('?' * len(_JOB_COLS))})", values)
            db.executemany(
                "INSERT INTO job_lines (job_id, line_no, custom_id, body, state, output) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (
                        rec.id,
                        ln.line_no,
                        ln.custom_id,
                        ln.body,
                        "failed" if ln.error_output is not None else "pending",
                        ln.error_output,
                    )
                    for ln in lines
                ),
            )
            return rec

        return await self._run(self._write, op)

    async def get_job(self, job_id: str) -> JobRecord | None:
        def op() -> JobRecord | None:
            row = self._db.execute(  # type: ignore[union-attr]
                f"SELECT {', '.join(_JOB_COLS)} FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
            return _job(row) if row else None

        return await self._run(op)

    async def list_jobs(
        self, *, after: str | None = None, limit: int = 20, owner: str | None = None
    ) -> list[JobRecord]:
        def op() -> list[JobRecord]:
            where, args = ["1 = 1"], []
            if owner is not None:
                where.append("owner = ?")
                args.append(owner)
            if after is not None:
                where.append("seq < COALESCE((SELECT seq FROM jobs WHERE id = ?), 0)")
                args.append(after)
            rows = self._db.execute(  # type: ignore[union-attr]
                f"SELECT {', '.join(_JOB_COLS)} FROM jobs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
            return [_job(r) for r in rows]

        return await self._run(op)

    async def jobs_in(self, statuses: Sequence[str]) -> list[JobRecord]:
        def op() -> list[JobRecord]:
            rows = self._db.execute(  # type: ignore[union-attr]
                f"SELECT {', '.join(_JOB_COLS)} FROM jobs WHERE status IN "
                f"({', '.join('?' * len(statuses))}) ORDER BY seq",
                tuple(statuses),
            ).fetchall()
            return [_job(r) for r in rows]

        return await self._run(op)

    async def set_job_status(self, job_id: str, from_statuses: Sequence[str], to: str, now: int) -> JobRecord | None:
        def op(db: sqlite3.Connection) -> JobRecord | None:
            cur = db.execute(
                f"UPDATE jobs SET status = ?, {to}_at = ? WHERE id = ? AND status IN "
                f"({', '.join('?' * len(from_statuses))})",
                (to, now, job_id, *from_statuses),
            )
            if cur.rowcount != 1:
                return None
            return _job(db.execute(f"SELECT {', '.join(_JOB_COLS)} FROM jobs WHERE id = ?", (job_id,)).fetchone())

        if to not in ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"):
            raise StoreError(f"unknown job status {to!r}")
        return await self._run(self._write, op)

    async def claim_lines(self, owner: str, limit: int, lease_seconds: float, now: float) -> list[ClaimedLine]:
        def op(db: sqlite3.Connection) -> list[ClaimedLine]:
            keys = db.execute(
                "SELECT l.job_id, l.line_no FROM jobs j JOIN job_lines l ON l.job_id = j.id "
                "WHERE j.status = 'in_progress' AND l.state = 'claimed' AND l.lease_expires < ? "
                "ORDER BY j.seq, l.line_no LIMIT ?",
                (now, limit),
            ).fetchall()
            if len(keys) < limit:
                keys += db.execute(
                    "SELECT l.job_id, l.line_no FROM jobs j JOIN job_lines l ON l.job_id = j.id "
                    "WHERE j.status = 'in_progress' AND l.state = 'pending' "
                    "ORDER BY j.seq, l.line_no LIMIT ?",
                    (limit - len(keys),),
                ).fetchall()
            out: list[ClaimedLine] = []
            for i in range(0, len(keys), _CHUNK // 2):
                chunk = keys[i : i + _CHUNK // 2]
                rows = db.execute(
                    "UPDATE job_lines SET state = 'claimed', lease_owner = ?, lease_expires = ?, "
                    f"attempts = attempts + 1 WHERE (job_id, line_no) IN (VALUES {', '.join(['(?, ?)'] * len(chunk))}) "
                    "RETURNING job_id, line_no, custom_id, body, attempts",
                    (owner, now + lease_seconds, *[v for k in chunk for v in k]),
                ).fetchall()
                out += [ClaimedLine(r[0], r[1], r[2], r[3], r[4]) for r in rows]
            order = {(k[0], k[1]): i for i, k in enumerate(keys)}
            out.sort(key=lambda c: order[(c.job_id, c.line_no)])  # RETURNING has no defined order
            return out

        return await self._run(self._write, op)

    async def renew_leases(self, owner: str, lease_seconds: float, now: float) -> int:
        def op(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE job_lines SET lease_expires = ? WHERE lease_owner = ? AND state = 'claimed'",
                (now + lease_seconds, owner),
            ).rowcount

        return await self._run(self._write, op)

    async def release_lines(
        self, owner: str, keys: Sequence[tuple[str, int]] | None = None, *, undo_attempt: bool = True
    ) -> int:
        def op(db: sqlite3.Connection) -> int:
            attempts = "MAX(0, attempts - 1)" if undo_attempt else "attempts"
            sql = (
                "UPDATE job_lines SET state = 'pending', lease_owner = NULL, lease_expires = NULL, "
                f"attempts = {attempts} WHERE lease_owner = ? AND state = 'claimed'"
            )
            if keys is None:
                return db.execute(sql, (owner,)).rowcount
            n = 0
            for k in keys:
                n += db.execute(sql + " AND job_id = ? AND line_no = ?", (owner, *k)).rowcount
            return n

        return await self._run(self._write, op)

    async def complete_lines(self, owner: str, results: Sequence[LineResult]) -> int:
        def op(db: sqlite3.Connection) -> int:
            per_job: dict[str, list[Any]] = {}
            written = 0
            for r in results:
                cur = db.execute(
                    "UPDATE job_lines SET state = ?, output = ?, lease_owner = NULL, lease_expires = NULL "
                    "WHERE job_id = ? AND line_no = ? AND state = 'claimed' AND lease_owner = ?",
                    ("done" if r.ok else "failed", r.output, r.job_id, r.line_no, owner),
                )
                if cur.rowcount != 1:
                    continue  # no longer ours: the lease expired and the line went to someone else
                written += 1
                acc = per_job.setdefault(r.job_id, [0, 0, JobUsage()])
                acc[0 if r.ok else 1] += 1
                acc[2] = acc[2] + r.usage
            for job_id, (ok, bad, usage) in per_job.items():
                sets = ", ".join(f"{c} = {c} + ?" for c in _USAGE_COLS)
                db.execute(
                    f"UPDATE jobs SET completed = completed + ?, failed = failed + ?, {sets} WHERE id = ?",
                    (ok, bad, *[getattr(usage, n) for n in JobUsage.names()], job_id),
                )
            return written

        if not results:
            return 0
        return await self._run(self._write, op)

    async def open_lines(self, job_id: str) -> dict[str, int]:
        def op() -> dict[str, int]:
            return {
                r[0]: r[1]
                for r in self._db.execute(  # type: ignore[union-attr]
                    "SELECT state, COUNT(*) FROM job_lines WHERE job_id = ? GROUP BY state", (job_id,)
                )
            }

        return await self._run(op)

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
        def op(db: sqlite3.Connection) -> JobRecord | None:
            row = db.execute(f"SELECT {', '.join(_JOB_COLS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] not in from_statuses:
                return None
            job = _job(row)
            expired = 0
            if to == "expired":
                left = db.execute(
                    "SELECT line_no, custom_id FROM job_lines WHERE job_id = ? AND state IN ('pending', 'claimed')",
                    (job_id,),
                ).fetchall()
                template = expired_output or "{{}}"
                db.executemany(
                    "UPDATE job_lines SET state = 'failed', output = ?, lease_owner = NULL, "
                    "lease_expires = NULL WHERE job_id = ? AND line_no = ?",
                    ((template.format(custom_id=json.dumps(r[1]), line_no=r[0]), job_id, r[0]) for r in left),
                )
                expired = len(left)
            else:
                db.execute(
                    "UPDATE job_lines SET state = 'cancelled', lease_owner = NULL, lease_expires = NULL "
                    "WHERE job_id = ? AND state IN ('pending', 'claimed')",
                    (job_id,),
                )
            files: dict[str, str | None] = {"output": None, "error": None}
            for kind, state, fid in (("output", "done", output_file_id), ("error", "failed", error_file_id)):
                n, size = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(output AS BLOB)) + 1), 0) "
                    "FROM job_lines WHERE job_id = ? AND state = ?",
                    (job_id, state),
                ).fetchone()
                if n:
                    seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM files").fetchone()[0]
                    expires = now + job.output_expires_after if job.output_expires_after else None
                    db.execute(
                        "INSERT INTO files (id, purpose, filename, bytes, created_at, job_id, kind, owner, seq, "
                        "expires_at) VALUES (?, 'batch_output', ?, ?, ?, ?, ?, ?, ?, ?)",
                        (fid, f"batch_{job_id}_{kind}.jsonl", size, now, job_id, kind, job.owner, seq, expires),
                    )
                    files[kind] = fid
            final_at = {
                "completed": "completed_at",
                "cancelled": "cancelled_at",
                "expired": "expired_at",
                "failed": "failed_at",
            }[to]
            finalizing = now if to == "completed" and job.finalizing_at is None else job.finalizing_at
            db.execute(
                f"UPDATE jobs SET status = ?, {final_at} = ?, finalizing_at = ?, output_file_id = ?, "
                "error_file_id = ?, failed = failed + ? WHERE id = ?",
                (to, now, finalizing, files["output"], files["error"], expired, job_id),
            )
            return _job(db.execute(f"SELECT {', '.join(_JOB_COLS)} FROM jobs WHERE id = ?", (job_id,)).fetchone())

        if to not in ("completed", "cancelled", "expired", "failed"):
            raise StoreError(f"{to!r} is not a terminal status")
        return await self._run(self._write, op)

    async def jobs_usage(self, *, owner: str | None = None) -> tuple[int, JobUsage]:
        def op() -> tuple[int, JobUsage]:
            where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
            row = self._db.execute(  # type: ignore[union-attr]
                f"SELECT COUNT(*), {', '.join(f'COALESCE(SUM({c}), 0)' for c in _USAGE_COLS)} FROM jobs {where}",
                args,
            ).fetchone()
            return row[0], JobUsage(*row[1:])

        return await self._run(op)

    # ---------------------------------------------------------------- translation memory
    async def tm_get(self, scope: str, signature: str, sources: Sequence[str], now: float) -> dict[str, MemoryHit]:
        def op() -> dict[str, MemoryHit]:
            db = self._db
            assert db is not None
            out: dict[str, MemoryHit] = {}
            uniq = list(dict.fromkeys(sources))
            for i in range(0, len(uniq), _CHUNK):
                chunk = uniq[i : i + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = db.execute(
                    "SELECT source, target, origin FROM translation_memory WHERE scope = ? "
                    f"AND signature IN (?, '') AND source IN ({marks})",
                    (scope, signature, *chunk),
                )
                for src, target, origin in rows:
                    if src not in out or origin == "human":  # a human entry wins over the model's
                        out[src] = MemoryHit(target, origin)
            used = [("" if hit.origin == "human" else signature, src) for src, hit in out.items()]
            if used:  # mark the hits used (a miss, the common case for fresh text, takes no write lock)

                def touch(db: sqlite3.Connection) -> None:
                    db.executemany(
                        "UPDATE translation_memory SET hits = hits + 1, last_used = ? "
                        "WHERE scope = ? AND signature = ? AND source = ?",
                        ((now, scope, sig, src) for sig, src in used),
                    )

                self._write(touch)
            return out

        if not sources:
            return {}
        return await self._run(op)

    async def tm_put(
        self, scope: str, signature: str, pairs: Sequence[tuple[str, str]], now: float, max_entries: int
    ) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO translation_memory (scope, signature, source, target, origin, created_at, last_used) "
                "VALUES (?, ?, ?, ?, 'model', ?, ?) ON CONFLICT (scope, signature, source) DO UPDATE SET "
                "target = excluded.target, last_used = excluded.last_used",
                ((scope, signature, s, t, now, now) for s, t in pairs),
            )
            excess = (
                db.execute("SELECT COUNT(*) FROM translation_memory WHERE origin = 'model'").fetchone()[0] - max_entries
            )
            if excess > 0:  # human entries are never evicted
                db.execute(
                    "DELETE FROM translation_memory WHERE rowid IN (SELECT rowid FROM translation_memory "
                    "WHERE origin = 'model' ORDER BY last_used LIMIT ?)",
                    (excess,),
                )

        if not pairs:
            return
        await self._run(self._write, op)

    async def tm_import(self, scope: str, pairs: Sequence[tuple[str, str]], now: float, max_human: int) -> int:
        latest = dict(pairs)

        def op(db: sqlite3.Connection) -> int:
            have = db.execute(
                "SELECT COUNT(*) FROM translation_memory WHERE scope = ? AND origin = 'human'", (scope,)
            ).fetchone()[0]
            keys = list(latest)
            known = 0
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                known += db.execute(
                    "SELECT COUNT(*) FROM translation_memory WHERE scope = ? AND signature = '' "
                    f"AND source IN ({', '.join('?' * len(chunk))})",
                    (scope, *chunk),
                ).fetchone()[0]
            new = len(keys) - known
            if have + new > max_human:
                raise MemoryFull(have, new, max_human)
            db.executemany(
                "INSERT INTO translation_memory (scope, signature, source, target, origin, created_at, last_used) "
                "VALUES (?, '', ?, ?, 'human', ?, ?) ON CONFLICT (scope, signature, source) DO UPDATE SET "
                "target = excluded.target, created_at = excluded.created_at",
                ((scope, s, t, now, now) for s, t in latest.items()),
            )
            return new

        if not latest:
            return 0
        return await self._run(self._write, op)

    async def tm_entries(
        self, scope: str, origin: str | None = None, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[MemoryEntry]:
        def op() -> list[MemoryEntry]:
            where, args = ["scope = ?"], [scope]
            if origin is not None:
                where.append("origin = ?")
                args.append(origin)
            if after is not None:
                where.append("(signature, source) > (?, ?)")
                args += list(after)
            rows = self._db.execute(  # type: ignore[union-attr]
                "SELECT scope, signature, source, target, origin, created_at, last_used, hits FROM translation_memory "
                f"WHERE {' AND '.join(where)} ORDER BY signature, source LIMIT ?",
                (*args, limit),
            ).fetchall()
            return [MemoryEntry(*r) for r in rows]

        return await self._run(op)

    async def tm_purge(self, scope: str | None, *, source: str | None = None, origin: str | None = None) -> int:
        where, args = _memory_filter(scope, source, origin)
        return await self._run(
            self._write, lambda db: db.execute(f"DELETE FROM translation_memory WHERE {where}", args).rowcount
        )

    async def tm_count(self, scope: str | None = None, origin: str | None = None) -> int:
        where, args = _memory_filter(scope, None, origin)
        return await self._run(
            lambda: self._db.execute(  # type: ignore[union-attr]
                f"SELECT COUNT(*) FROM translation_memory WHERE {where}", args
            ).fetchone()[0]
        )

    async def tm_size(self) -> int:
        return await self.tm_count(origin="model")

    async def tm_clear(self) -> None:
        await self._run(self._write, lambda db: db.execute("DELETE FROM translation_memory"))

    # ---------------------------------------------------------------- glossaries
    async def glossary_create(
        self, rec: GlossaryRecord, entries: Sequence[tuple[str, str]], max_per_owner: int
    ) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            where = "owner = ?" if rec.owner is not None else "owner IS NULL"
            args = (rec.owner,) if rec.owner is not None else ()
            if db.execute(f"SELECT COUNT(*) FROM glossaries WHERE {where}", args).fetchone()[0] >= max_per_owner:
                return False
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM glossaries").fetchone()[0]
            db.execute(
                f"INSERT INTO glossaries ({', '.join(_GLOSSARY_COLS)}, seq) VALUES ({', '.join('?' * 9)})",
                (*[getattr(rec, c) for c in _GLOSSARY_COLS], seq),
            )
            db.executemany(
                "INSERT INTO glossary_entries (glossary_id, source, target) VALUES (?, ?, ?)",
                ((rec.id, s, t) for s, t in entries),
            )
            return True

        return await self._run(self._write, op)

    async def glossary_get(self, glossary_id: str) -> GlossaryRecord | None:
        def op() -> GlossaryRecord | None:
            row = self._db.execute(  # type: ignore[union-attr]
                f"SELECT {', '.join(_GLOSSARY_COLS)} FROM glossaries WHERE id = ?", (glossary_id,)
            ).fetchone()
            return GlossaryRecord(**dict(row)) if row else None

        return await self._run(op)

    async def glossary_list(self, owner: str | None, *, every: bool = False) -> list[GlossaryRecord]:
        def op() -> list[GlossaryRecord]:
            where, args = (
                ("", ()) if every else (("WHERE owner = ?", (owner,)) if owner else ("WHERE owner IS NULL", ()))
            )
            rows = self._db.execute(  # type: ignore[union-attr]
                f"SELECT {', '.join(_GLOSSARY_COLS)} FROM glossaries {where} ORDER BY seq", args
            ).fetchall()
            return [GlossaryRecord(**dict(r)) for r in rows]

        return await self._run(op)

    async def glossary_entries(self, glossary_id: str) -> list[tuple[str, str]]:
        def op() -> list[tuple[str, str]]:
            rows = self._db.execute(  # type: ignore[union-attr]
                "SELECT source, target FROM glossary_entries WHERE glossary_id = ? ORDER BY source", (glossary_id,)
            ).fetchall()
            return [(r[0], r[1]) for r in rows]

        return await self._run(op)

    async def glossary_delete(self, glossary_id: str) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM glossary_entries WHERE glossary_id = ?", (glossary_id,))
            return db.execute("DELETE FROM glossaries WHERE id = ?", (glossary_id,)).rowcount > 0

        return await self._run(self._write, op)

    async def traffic_texts(self, limit: int) -> tuple[list[str], list[str]]:
        def op() -> tuple[list[str], list[str]]:
            db = self._db
            assert db is not None
            tm = db.execute(
                "SELECT source FROM translation_memory ORDER BY hits DESC, last_used DESC LIMIT ?", (limit,)
            ).fetchall()
            bodies = db.execute(
                "SELECT body FROM job_lines WHERE state = 'done' AND body IS NOT NULL LIMIT ?", (limit,)
            ).fetchall()
            return [r[0] for r in tm], [r[0] for r in bodies]

        return await self._run(op)


def _memory_filter(scope: str | None, source: str | None, origin: str | None) -> tuple[str, tuple]:
    """A WHERE clause (and its arguments) for translation memory entries; None: any."""
    where, args = ["1 = 1"], []
    for column, value in (("scope", scope), ("source", source), ("origin", origin)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    return " AND ".join(where), tuple(args)


def _replace(rec: JobRecord, **changes: Any) -> JobRecord:
    from dataclasses import replace

    return replace(rec, **changes)


#: a finished job's lines are the content of its output and error files: once neither file exists, they go too
_DROP_UNREFERENCED_LINES = (
    "DELETE FROM job_lines WHERE job_id IN (SELECT id FROM jobs WHERE status IN "
    "('completed', 'failed', 'expired', 'cancelled') AND id NOT IN "
    "(SELECT job_id FROM files WHERE job_id IS NOT NULL))"
)


def _job_values(rec: JobRecord) -> tuple:
    out: list[Any] = []
    for c in _JOB_COLS:
        if c.startswith("u_"):
            out.append(getattr(rec.usage, c[2:]))
        elif c == "metadata":
            out.append(dump_json(rec.metadata))
        elif c == "errors":
            out.append(dump_json(rec.errors))
        else:
            out.append(getattr(rec, c))
    return tuple(out)


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside our statements; comments dropped)."""
    body = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return [s.strip() for s in body.split(";") if s.strip()]
