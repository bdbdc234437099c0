"""API keys and per-key usage in the durable store (tables of migration ``0002_keys.sql``).

:class:`StoreKeys` implements :class:`batchmt_server.auth.keys.KeyStore` on a :class:`~.sqlite.SQLiteStore` (its own
connection to the same file: the keys are read by the HTTP front before any job code runs). Every method is one
transaction on the store's thread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..auth.keys import KeyRecord
from . import build_store
from .sqlite import SQLiteStore

__all__ = ["StoreKeys", "open_key_store"]

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


def _rec(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(**{c: row[c] for c in _COLS}, source="store")


class StoreKeys:
    def __init__(self, store: SQLiteStore) -> None:
        if not isinstance(store, SQLiteStore):
            raise TypeError("keys are kept in the SQLite store only so far")
        self.store = store

    @property
    def path(self) -> Path:
        return self.store.path

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def add_key(self, record: KeyRecord) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO api_keys ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})",
                tuple(getattr(record, c) for c in _COLS),
            )

        await self.store._run(self.store._write, op)

    async def list_keys(self) -> list[KeyRecord]:
        def op() -> list[KeyRecord]:
            return [
                _rec(r)
                for r in self.store._db.execute(  # type: ignore[union-attr]
                    "SELECT * FROM api_keys ORDER BY created_at, id"
                )
            ]

        return await self.store._run(op)

    async def revoke_key(self, key_id_or_name: str, now: float) -> int:
        def op(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE (id = ? OR name = ?) AND revoked_at IS NULL",
                (now, key_id_or_name, key_id_or_name),
            ).rowcount

        return await self.store._run(self.store._write, op)

    async def add_usage(self, key_id: str, periods: list[str], characters: int, sentences: int, requests: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO api_key_usage (key_id, period, characters, sentences, requests) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key_id, period) DO UPDATE SET characters = characters + excluded.characters, "
                "sentences = sentences + excluded.sentences, requests = requests + excluded.requests",
                [(key_id, p, characters, sentences, requests) for p in periods],
            )

        await self.store._run(self.store._write, op)

    async def usage(self, key_id: str | None, period: str) -> dict[str, dict]:
        def op() -> dict[str, dict]:
            sql = "SELECT key_id, characters, sentences, requests FROM api_key_usage WHERE period = ?"
            args: tuple[Any, ...] = (period,)
            if key_id is not None:
                sql, args = sql + " AND key_id = ?", (period, key_id)
            return {
                r["key_id"]: {"characters": r["characters"], "sentences": r["sentences"], "requests": r["requests"]}
                for r in self.store._db.execute(sql, args)  # type: ignore[union-attr]
            }

        return await self.store._run(op)


def open_key_store(settings: Any) -> StoreKeys:
    """The key store of the settings' database (not opened yet)."""
    cache = Path(getattr(settings, "cache_dir", Path.home() / ".cache" / "batchmt"))
    data_dir = getattr(settings, "data_dir", None) or cache / "data"
    store = build_store(getattr(settings, "database_url", None), Path(data_dir))
    if getattr(store, "dialect", "") == "postgresql":  # gateways sharing one PostgreSQL share keys and usage
        from .postgres import PostgresKeys

        return PostgresKeys(store)  # type: ignore[arg-type,return-value]
    return StoreKeys(store)  # type: ignore[arg-type]
