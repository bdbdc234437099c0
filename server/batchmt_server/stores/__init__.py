"""Durable stores: the interface (:mod:`.base`) and its backends (:mod:`.sqlite`, the embedded default).

:func:`open_store` picks the backend from a database URL: none or ``sqlite:///path`` is SQLite (by default
``<data_dir>/batchmt.sqlite3``), ``postgresql://...`` is PostgreSQL (its backend module is
``batchmt_server.stores.postgres``, with the ``postgres`` extra installed).
"""

from __future__ import annotations

from pathlib import Path

from .base import TERMINAL, ClaimedLine, FileRecord, JobRecord, JobUsage, LineResult, NewLine, Store, StoreError

__all__ = [
    "Store",
    "StoreError",
    "FileRecord",
    "JobRecord",
    "JobUsage",
    "NewLine",
    "ClaimedLine",
    "LineResult",
    "TERMINAL",
    "build_store",
    "DB_FILENAME",
]

DB_FILENAME = "batchmt.sqlite3"


def build_store(database_url: str | None, data_dir: Path) -> Store:
    """The store a URL names (not opened yet: ``await store.open()``)."""
    if not database_url:
        from .sqlite import SQLiteStore

        return SQLiteStore(Path(data_dir) / DB_FILENAME)
    if database_url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(Path(database_url[len("sqlite:///") :]))
    if database_url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(f"the PostgreSQL store is not available: {exc}") from exc
        return PostgresStore(database_url)
    raise StoreError(f"unsupported database URL {database_url.split(':', 1)[0]!r}: use sqlite:///path or postgresql://")
