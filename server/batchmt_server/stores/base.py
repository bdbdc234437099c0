"""The store interface: what the gateway keeps across restarts (batch jobs, files, the translation memory).

One small asynchronous interface, :class:`Store`, with pluggable backends (as httpx has transports):

- :mod:`batchmt_server.stores.sqlite`: the embedded default, one file under ``--data-dir``;
- a PostgreSQL backend (``--database-url postgresql://...``) for several gateways on one database.

Backends speak in the plain records defined here (no ORM objects leave a backend). Every method is one
transaction: a caller never has to compose two calls to keep the data consistent.

What every backend must guarantee
=================================

**Schema.** :meth:`Store.open` runs the numbered SQL files of ``stores/migrations/<dialect>/`` that are not yet
recorded in the table ``schema_migrations(version, name, applied_at)``, in version order, each in its own
transaction together with the row that records it. Versions are unique across the folder (``0001_jobs.sql``,
``0002_keys.sql``, ...); each backend has the same versions in its own dialect. A version that is recorded is never
run again, so a migration file is never edited once committed: add the next number instead.

**Jobs and their lines.** :meth:`create_job` stores a job and all its lines in one transaction (a crash leaves the
job whole or absent). A line is ``pending``, ``claimed`` (by one worker, under a lease), ``done`` (its output line
written), ``failed`` (its error line written) or ``cancelled`` (never run: the job was cancelled first).

**Claims and leases.** :meth:`claim_lines` hands each pending line to exactly one caller at a time, and also hands
out lines whose lease has expired (their worker died or hung). It must be atomic against concurrent claimers in
other processes: ``SELECT ... FOR UPDATE SKIP LOCKED`` in an ``UPDATE ... RETURNING`` on PostgreSQL; on SQLite a
single ``UPDATE ... RETURNING`` inside ``BEGIN IMMEDIATE`` (the database-wide write lock). Only lines of jobs whose
status is ``in_progress`` are claimed, oldest job first, then in line order. A worker keeps its leases alive with
:meth:`renew_leases` and gives lines back with :meth:`release_lines` (graceful shutdown, or the engine was
saturated): they are claimable again at once.

**Exactly-once output.** :meth:`complete_lines` writes a line's result only if that line is still ``claimed`` by
the caller (``WHERE state = 'claimed' AND lease_owner = :owner``), and in the same transaction moves it to
``done``/``failed`` and adds its usage and counts to the job. A worker whose lease expired and whose line was
claimed again writes nothing (0 rows): the line's work may be done twice after a crash, but its output is written
once. Output and error files are the ``done``/``failed`` lines of a job in line order, so each ``custom_id`` appears
in them exactly once, whatever crashed when. Durability: a completed call survives the process being killed
(SQLite in WAL mode with ``synchronous=NORMAL`` survives any process crash; only an OS crash or power loss may lose
the last transactions, which then are simply run again).

**Lease expiry.** A lease is a wall-clock deadline (``now + lease_seconds``, seconds since the epoch, given by the
caller so tests can move time). After it, the line is claimable by anyone; the old owner's later
:meth:`complete_lines` for it is ignored. Clocks of gateways sharing a database must agree to well within a lease.

**Terminal transitions.** :meth:`finish_job` moves a job to ``completed``, ``cancelled``, ``expired`` or ``failed``
once, with a compare-and-set on its current status: in one transaction it marks the lines still open (expired:
``failed`` with a ``batch_expired`` error line; cancelled: ``cancelled``), creates the output and error file records
(only for a kind that has lines) and sets the job's fields. Two gateways racing to finish a job: one wins, the other
gets ``None``.

**Translation memory.** Entries are keyed by ``(scope, signature, source)``: ``scope`` is the API key id whose
memory it is (``''`` with keys off: one shared memory), ``source`` is already normalised by the caller
(:func:`batchmt_server.pipeline.memory.normalise`). An entry's ``origin`` is ``model`` (written by :meth:`tm_put`:
delivered, unflagged translations only, the caller decides) or ``human`` (imported by :meth:`tm_import`, kept under
the signature ``''``: it answers whatever model runs). :meth:`tm_get` prefers a human entry to a model one and marks
hits as used. :meth:`tm_put` never leaves more than ``max_entries`` model entries (least recently used go first);
human entries are never evicted (:meth:`tm_import` refuses, whole, an import that would take a scope beyond its
limit of human entries) and leave only when purged (:meth:`tm_purge`).

**Keys and per-key usage (hook).** Jobs and files carry an ``owner`` (an API key id, or ``None`` when keys are off).
The keys feature adds its own tables with its own migration (``0002_keys.sql`` in each dialect) and its own methods
on the backends; :meth:`list_jobs` and :meth:`jobs_usage` already filter by ``owner``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Literal, Protocol

__all__ = [
    "Store",
    "StoreError",
    "MemoryEntry",
    "MemoryFull",
    "MemoryHit",
    "FileRecord",
    "JobRecord",
    "JobUsage",
    "NewLine",
    "ClaimedLine",
    "LineResult",
    "JobStatus",
    "TERMINAL",
    "Migration",
    "migrations",
    "GlossaryRecord",
]

JobStatus = Literal[
    "validating", "in_progress", "finalizing", "completed", "failed", "cancelling", "cancelled", "expired"
]
#: statuses a job never leaves
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled", "expired"})


class StoreError(RuntimeError):
    """The store failed (unreachable database, a constraint the caller broke, ...)."""


@dataclass(frozen=True)
class JobUsage:
    """What a job's lines used, summed (the same quantities as a translate response's ``usage``)."""

    sentences: int = 0
    characters: int = 0
    prompt_tokens: float = 0.0
    cached_prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    engine_prompts: float = 0.0
    cost: float = 0.0
    baseline_cost: float = 0.0
    memory_hits: int = 0

    def __add__(self, other: JobUsage) -> JobUsage:
        return JobUsage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class FileRecord:
    """A file: an uploaded input (``purpose='batch'``, its bytes stored) or a job's output or error file
    (``purpose='batch_output'``, its content the job's done or failed lines, generated when read)."""

    id: str
    purpose: str
    filename: str
    bytes: int
    created_at: int
    job_id: str | None = None
    kind: Literal["upload", "output", "error"] = "upload"
    owner: str | None = None
    #: when the retention sweep deletes it (None: kept until deleted)
    expires_at: int | None = None


@dataclass(frozen=True)
class JobRecord:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    #: batch-level errors (OpenAI's ``errors.data``): [{"code", "message", "param", "line"}]
    errors: list[dict] | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    usage: JobUsage = field(default_factory=JobUsage)
    owner: str | None = None
    #: the output and error files expire this many seconds after they are created (None: kept)
    output_expires_after: int | None = None
    #: creation order, for listing (assigned by the store)
    seq: int = 0


@dataclass(frozen=True)
class NewLine:
    """A line of an input file, as validated: either a request to run (``body``, JSON text) or an error line
    already decided (``error_output``, the error file's JSON line)."""

    line_no: int
    custom_id: str | None
    body: str | None = None
    error_output: str | None = None
    #: what the request carries (source characters, texts): charged to the caller's key when the batch is created,
    #: counted while the line is parsed (not stored)
    characters: int = 0
    texts: int = 0


@dataclass(frozen=True)
class ClaimedLine:
    job_id: str
    line_no: int
    custom_id: str
    body: str
    attempts: int  # claims so far, this one included


@dataclass(frozen=True)
class LineResult:
    """A claimed line's result: ``output`` is the line of the output file (``ok``) or of the error file."""

    job_id: str
    line_no: int
    ok: bool
    output: str
    usage: JobUsage = field(default_factory=JobUsage)


@dataclass(frozen=True)
class GlossaryRecord:
    """A glossary's metadata (its entries are read apart: :meth:`Store.glossary_entries`). Immutable once stored;
    ``digest`` names its entries' content (the signature and the memory key carry ``id@digest``)."""

    id: str
    owner: str | None
    name: str
    source_lang: str
    target_lang: str
    entry_count: int
    digest: str
    created_at: int


_GLOSSARY_COLS = ("id", "owner", "name", "source_lang", "target_lang", "entry_count", "digest", "created_at")


class Store(Protocol):
    """What the gateway needs from a durable store (see the module docstring for the guarantees)."""

    #: ``sqlite`` | ``postgresql``: picks the migrations folder
    dialect: str

    async def open(self) -> None:
        """Connect and run pending migrations."""

    async def close(self) -> None:
        """Release connections (idempotent)."""

    # ---------------------------------------------------------------- files
    async def put_file(self, rec: FileRecord, content: bytes | None) -> None:
        """Store an uploaded file (``content``) or a generated file's record (``None``)."""

    async def get_file(self, file_id: str) -> FileRecord | None: ...

    async def list_files(
        self, *, purpose: str | None = None, after: str | None = None, limit: int = 20, owner: str | None = None
    ) -> list[FileRecord]:
        """Newest first; ``after`` is the id of the last file of the previous page."""

    async def file_content(self, file_id: str) -> bytes | None:
        """An upload's bytes, or a generated file's JSONL (its job's lines in line order); ``None`` if unknown."""

    async def delete_file(self, file_id: str) -> bool:
        """Delete a file (False: no such file). A finished job's lines go once neither of its files is left."""

    async def delete_expired_files(self, now: int) -> int:
        """The retention sweep: delete every file whose ``expires_at`` has passed; how many."""

    async def stored_bytes(self, owner: str | None) -> int:
        """Bytes of the uploads a key (``None``: keys off) keeps in the store (its storage limit)."""

    async def probe(self) -> None:
        """A small write or round trip: raises while the store cannot take writes (``/readyz``)."""

    # ---------------------------------------------------------------- jobs
    async def create_job(self, job: JobRecord, lines: Sequence[NewLine]) -> JobRecord:
        """Store the job (status ``in_progress`` unless told otherwise) and its lines in one transaction. Lines
        with ``error_output`` are stored ``failed`` and counted in ``job.failed``. Returns it with ``seq`` set."""

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def list_jobs(
        self, *, after: str | None = None, limit: int = 20, owner: str | None = None
    ) -> list[JobRecord]:
        """Newest first; ``after`` is the id of the last job of the previous page (OpenAI's cursor)."""

    async def set_job_status(self, job_id: str, from_statuses: Sequence[str], to: str, now: int) -> JobRecord | None:
        """Compare-and-set the status (and its ``<status>_at`` timestamp); ``None`` if the job was not in
        ``from_statuses``."""

    async def claim_lines(self, owner: str, limit: int, lease_seconds: float, now: float) -> list[ClaimedLine]:
        """Claim up to ``limit`` runnable lines (pending, or claimed under an expired lease) of ``in_progress``
        jobs, oldest job first, for ``lease_seconds``."""

    async def renew_leases(self, owner: str, lease_seconds: float, now: float) -> int:
        """Extend every lease ``owner`` holds; returns how many."""

    async def release_lines(
        self, owner: str, keys: Sequence[tuple[str, int]] | None = None, *, undo_attempt: bool = True
    ) -> int:
        """Give claimed lines back (all of ``owner``'s when ``keys`` is None). With ``undo_attempt`` the claim does
        not count as an attempt (graceful stop, saturation); without it, it does (a transient failure). Returns
        how many."""

    async def complete_lines(self, owner: str, results: Sequence[LineResult]) -> int:
        """Write results of lines ``owner`` still holds, exactly once (see the module docstring); returns how many
        were written. Lines no longer held are ignored."""

    async def open_lines(self, job_id: str) -> dict[str, int]:
        """Counts of the job's lines by state (``pending``, ``claimed``, ...)."""

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
        """The terminal transition (see the module docstring). ``expired_output`` is the error line template for
        lines left open when ``to == 'expired'``: a ``str.format`` string with ``{custom_id}`` and ``{line_no}``
        (JSON-escaped already). Returns the finished job, or ``None`` if another caller finished it first."""

    async def jobs_in(self, statuses: Sequence[str]) -> list[JobRecord]:
        """Jobs whose status is one of ``statuses`` (the supervisor's scan)."""

    async def jobs_usage(self, *, owner: str | None = None) -> tuple[int, JobUsage]:
        """How many jobs there are and the sum of their usage."""

    # ---------------------------------------------------------------- translation memory
    async def tm_get(self, scope: str, signature: str, sources: Sequence[str], now: float) -> dict[str, MemoryHit]:
        """What is stored for these (normalised) sources in ``scope``: a human entry, else a model entry under
        ``signature``; marks them used."""

    async def tm_put(
        self, scope: str, signature: str, pairs: Sequence[tuple[str, str]], now: float, max_entries: int
    ) -> None:
        """Store (normalised source, translation) pairs of the model, then evict the least recently used model
        entries beyond ``max_entries`` (across all scopes and signatures)."""

    async def tm_import(self, scope: str, pairs: Sequence[tuple[str, str]], now: float, max_human: int) -> int:
        """Store (normalised source, translation) pairs as human entries of ``scope`` (replacing human entries of
        the same source); raises :class:`MemoryFull` (and stores nothing) if the scope would then hold more than
        ``max_human`` human entries. Returns how many sources were new."""

    async def tm_entries(
        self, scope: str, origin: str | None = None, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[MemoryEntry]:
        """A page of ``scope``'s entries (``origin``: ``human``/``model``, None: both), ordered by
        ``(signature, source)``; ``after``: the last entry's ``(signature, source)`` of the previous page."""

    async def tm_purge(self, scope: str | None, *, source: str | None = None, origin: str | None = None) -> int:
        """Delete entries: of ``scope`` (None: every scope), only those of the normalised ``source`` and/or of
        ``origin`` when given. Returns how many."""

    async def tm_count(self, scope: str | None = None, origin: str | None = None) -> int:
        """Entries of ``scope`` (None: all) and ``origin`` (None: both)."""

    async def tm_size(self) -> int:
        """Model entries (what ``max_entries`` bounds)."""

    async def tm_clear(self) -> None: ...

    # ---------------------------------------------------------------- glossaries (0005_glossaries.sql)
    async def glossary_create(
        self, rec: GlossaryRecord, entries: Sequence[tuple[str, str]], max_per_owner: int
    ) -> bool:
        """Store a glossary and its entries in one transaction, unless its owner already has ``max_per_owner``
        glossaries (then nothing is stored and the answer is False)."""

    async def glossary_get(self, glossary_id: str) -> GlossaryRecord | None: ...

    async def glossary_list(self, owner: str | None, *, every: bool = False) -> list[GlossaryRecord]:
        """A key's glossaries, oldest first (``every``: all of them, an admin's view)."""

    async def glossary_entries(self, glossary_id: str) -> list[tuple[str, str]]:
        """(source term, target term) pairs, sorted by source term."""

    async def glossary_delete(self, glossary_id: str) -> bool: ...

    async def traffic_texts(self, limit: int) -> tuple[list[str], list[str]]:
        """What the server has translated, for self-training's Grow: up to ``limit`` translation-memory sources
        (most used first) and up to ``limit`` request bodies (JSON) of finished job lines."""


@dataclass(frozen=True)
class MemoryHit:
    """A translation memory entry found for a source: its translation and who made it."""

    target: str
    origin: Literal["model", "human"] = "model"


@dataclass(frozen=True)
class MemoryEntry:
    """One translation memory entry (export, listing)."""

    scope: str
    signature: str  # '' for human entries
    source: str  # normalised
    target: str
    origin: Literal["model", "human"]
    created_at: float
    last_used: float
    hits: int = 0


class MemoryFull(Exception):
    """An import would take a scope beyond its limit of human entries (nothing was stored)."""

    def __init__(self, have: int, adding: int, limit: int) -> None:
        super().__init__(f"the memory holds {have} human entries; {adding} new ones would pass its limit of {limit}")
        self.have, self.adding, self.limit = have, adding, limit


# -------------------------------------------------------------------- migrations (shared by the backends)
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations(dialect: str) -> list[Migration]:
    """The numbered SQL files of ``stores/migrations/<dialect>/``, in version order."""
    root = resources.files("batchmt_server.stores") / "migrations" / dialect
    out = []
    for entry in root.iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise StoreError(f"duplicate migration versions in migrations/{dialect}: {versions}")
    return out


def dump_json(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# The tables' columns, as both backends' migrations create them (stores/migrations/*/0001_jobs.sql).
_USAGE_COLS = tuple(f"u_{n}" for n in JobUsage.names())
_JOB_COLS = (
    "id",
    "seq",
    "input_file_id",
    "endpoint",
    "completion_window",
    "status",
    "created_at",
    "expires_at",
    "metadata",
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "output_file_id",
    "error_file_id",
    "errors",
    "total",
    "completed",
    "failed",
    "owner",
    "output_expires_after",
    *_USAGE_COLS,
)
_FILE_COLS = ("id", "purpose", "filename", "bytes", "created_at", "job_id", "kind", "owner", "expires_at")
