"""API keys and tenants: hashed keys, roles, per-key token-bucket rate limits and character quotas.

A key is ``bmt_`` + 43 random URL-safe characters, shown once when created and stored only as its
SHA-256 (a high-entropy secret needs no slow hash; the lookup is by hash, then a constant-time compare).

Roles: ``admin`` (everything, sees every key's usage), ``user`` (the API; its own usage), ``dashboard``
(``/dashboard`` and ``/dashboard/data`` only, read-only).

Limits per key, all optional:

- rate: ``rate_requests`` and ``rate_chars`` per second, token buckets holding one second of tokens.
  A request may overdraw the character bucket (a large request is not refused forever); the next one
  waits until it is paid back. Answer: ``429 rate_limited`` with ``Retry-After``.
- quota: ``chars_per_day`` and ``chars_per_month`` (UTC calendar periods). Answer: ``456 quota_exceeded``
  (as DeepL does), with ``Retry-After`` until the period ends: a generic client that retries 429s does not
  spin on a quota that resets at midnight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import math
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

log = logging.getLogger("batchmt.keys")

__all__ = [
    "KeyStoreUnavailable",
    "KeyRecord",
    "KeyRing",
    "KeyStore",
    "InProcessKeyStore",
    "LimitExceeded",
    "TokenBucket",
    "hash_key",
    "new_key",
    "read_key_file",
    "Role",
    "QUOTA_STATUS",
]

Role = Literal["admin", "user", "dashboard"]
KEY_PREFIX = "bmt_"
#: the status of an exhausted quota (DeepL's "Quota exceeded")
QUOTA_STATUS = 456


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    key_hash: str
    role: Role = "user"
    rate_requests: float | None = None
    rate_chars: float | None = None
    chars_per_day: int | None = None
    chars_per_month: int | None = None
    created_at: float = field(default_factory=time.time)
    revoked_at: float | None = None
    source: Literal["store", "env", "file"] = "store"

    def public(self) -> dict:
        """What ``keys list`` and ``/v1/usage`` show: never the hash."""
        d = asdict(self)
        d.pop("key_hash")
        return d


class KeyStoreUnavailable(RuntimeError):
    """The key store could not be read (the front answers 503 rather than let anyone in)."""


class LimitExceeded(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = max(1, math.ceil(retry_after))


class KeyStore(Protocol):
    """Durable keys and per-key usage (the SQLite store: stores/keys.py, migration 0002_keys.sql)."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def add_key(self, record: KeyRecord) -> None: ...
    async def list_keys(self) -> list[KeyRecord]: ...
    async def revoke_key(self, key_id_or_name: str, now: float) -> int: ...
    async def add_usage(
        self, key_id: str, periods: list[str], characters: int, sentences: int, requests: int
    ) -> None: ...
    async def usage(self, key_id: str | None, period: str) -> dict[str, dict]:
        """``{key_id: {"characters", "sentences", "requests"}}`` for one key (or every key) in a period."""


def _zero() -> dict:
    return {"characters": 0, "sentences": 0, "requests": 0}


class InProcessKeyStore:
    """Keys and usage in this process only, in dicts (tests; static keys' usage when there is no store). (Named
    ``MemoryKeyStore`` before: "memory" now means the translation memory only.)"""

    def __init__(self) -> None:
        self._keys: dict[str, KeyRecord] = {}
        self._usage: dict[tuple[str, str], dict] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def add_key(self, record: KeyRecord) -> None:
        self._keys[record.id] = record

    async def list_keys(self) -> list[KeyRecord]:
        return list(self._keys.values())

    async def revoke_key(self, key_id_or_name: str, now: float) -> int:
        n = 0
        for k, r in list(self._keys.items()):
            if key_id_or_name in (r.id, r.name) and r.revoked_at is None:
                self._keys[k] = replace(r, revoked_at=now)
                n += 1
        return n

    async def add_usage(self, key_id: str, periods: list[str], characters: int, sentences: int, requests: int) -> None:
        for period in periods:
            u = self._usage.setdefault((key_id, period), _zero())
            u["characters"] += characters
            u["sentences"] += sentences
            u["requests"] += requests

    async def usage(self, key_id: str | None, period: str) -> dict[str, dict]:
        return {k: dict(u) for (k, p), u in self._usage.items() if p == period and key_id in (None, k)}


#: the old name of :class:`InProcessKeyStore` (kept for one release; not in ``__all__``)
MemoryKeyStore = InProcessKeyStore


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (default: one second's worth, at least 1)."""

    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst if burst is not None else max(rate, 1.0), clock
        self.tokens, self.stamp = self.burst, clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, need: float = 1.0) -> float:
        """Seconds until ``need`` tokens are there (0: now)."""
        self._refill()
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens once at least one is there (a large ``n`` overdraws the bucket); else return the
        seconds to wait."""
        wait = self.wait_time(min(n, 1.0))
        if wait == 0.0:
            self.tokens -= n
        return wait


def periods(now: float | None = None) -> tuple[str, str, float, float]:
    """Today's and this month's period names (UTC) and the seconds until each ends."""
    t = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    day_end = dt.datetime(t.year, t.month, t.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    month_end = dt.datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=dt.UTC)
    return (t.strftime("%Y-%m-%d"), t.strftime("%Y-%m"), (day_end - t).total_seconds(), (month_end - t).total_seconds())


def file_key_id(key: str) -> str:
    """A file key's id: from the key itself (its hash), so it stays the same key's when lines are added, removed or
    moved (an id from the line number handed one tenant's files to the next key down)."""
    return "file-" + hashlib.sha256(b"batchmt-file-key:" + key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def read_key_file(path: Path) -> list[KeyRecord]:
    """``name:key[:role]`` or ``key`` per line; blank lines and ``#`` comments skipped. Role defaults to admin
    (the operator's own keys). Ids are :func:`file_key_id` of the key, never the line's position."""
    out = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) == 1:
            name, key, role = file_key_id(parts[0].strip()), parts[0].strip(), "admin"
        elif len(parts) in (2, 3):
            name, key, role = parts[0].strip(), parts[1].strip(), (parts[2].strip() if len(parts) == 3 else "admin")
        else:
            raise ValueError(f"{path}:{n}: expected 'name:key[:role]'")
        if role not in ("admin", "user", "dashboard") or len(key) < 16:
            raise ValueError(f"{path}:{n}: role must be admin/user/dashboard and the key at least 16 characters")
        kid = file_key_id(key)
        if kid in seen:
            raise ValueError(f"{path}:{n}: this key is already on an earlier line")
        seen.add(kid)
        out.append(KeyRecord(id=kid, name=name, key_hash=hash_key(key), role=role, source="file"))  # type: ignore[arg-type]
    return out


class KeyRing:
    """Who is calling, and may they: the keys of a store plus static ones (environment, file).

    Store keys are cached and re-read every ``refresh_s`` seconds (and on an unknown key, at most once a
    second): a new key works within a second, a revoked one stops within ``refresh_s``. Usage is written to the
    store with every charged request; quota checks read this process's counters (loaded from the store at first
    use), so gateways sharing one database may overrun a quota by what the others charged since.
    """

    def __init__(
        self,
        store: KeyStore | None = None,
        static: list[KeyRecord] | None = None,
        refresh_s: float = 2.0,
        *,
        required: bool = False,
    ) -> None:
        self.store = store
        self.static = list(static or [])
        self.refresh_s = refresh_s
        #: keys are required: set by ``require_api_key``, or latched once any API key has existed (never unset)
        self._required = required or any(r.role != "dashboard" for r in self.static)
        self._store_keys: dict[str, KeyRecord] = {}
        #: ids of the store's revoked keys at the last refresh (their running batches are cancelled: http/app.py)
        self.revoked_ids: set[str] = set()
        self._loaded_at = -1e9
        self._missed_at = -1e9
        self._opened = False
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._counts: dict[tuple[str, str], dict] = {}
        self._static_usage = InProcessKeyStore()
        self._refresh_lock: asyncio.Lock | None = None

    @classmethod
    def from_settings(cls, settings: Any, store: KeyStore | None = None) -> KeyRing:
        static: list[KeyRecord] = []
        admin_key = getattr(settings, "admin_key", None) or getattr(settings, "api_key", None)
        if admin_key:
            static.append(KeyRecord(id="env", name="env", key_hash=hash_key(admin_key), role="admin", source="env"))
        if getattr(settings, "dashboard_key", None):
            static.append(
                KeyRecord(
                    id="dashboard",
                    name="dashboard",
                    key_hash=hash_key(settings.dashboard_key),
                    role="dashboard",
                    source="env",
                )
            )
        if getattr(settings, "api_key_file", None):
            static.extend(read_key_file(Path(settings.api_key_file)))
        return cls(store, static, required=bool(getattr(settings, "require_api_key", False)))

    # ------------------------------------------------------------------ keys
    async def refresh(self, force: bool = False) -> None:
        if self.store is None:
            return
        now = time.monotonic()
        if not force and now - self._loaded_at < self.refresh_s:
            return
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            if not force and time.monotonic() - self._loaded_at < self.refresh_s:
                return
            try:
                if not self._opened:
                    await self.store.open()
                    self._opened = True
                keys = await self.store.list_keys()
            except Exception as exc:  # fail closed: a key store that cannot be read admits nobody
                log.error("cannot read the key store: %s", exc)
                raise KeyStoreUnavailable(str(exc)) from exc
            self._store_keys = {r.key_hash: r for r in keys if r.revoked_at is None}
            self.revoked_ids = {r.id for r in keys if r.revoked_at is not None}
            # a revoked key still counts: revoking the last key must not turn authentication off
            if any(r.role != "dashboard" for r in keys):
                self._required = True
            self._loaded_at = time.monotonic()

    @property
    def enabled(self) -> bool:
        """Keys are on when ``require_api_key`` says so, or once any API key has existed (static, or in the store,
        revoked ones included); then they stay on for the life of this process (a latch)."""
        return self._required

    async def authenticate(self, key: str) -> KeyRecord | None:
        h = hash_key(key)
        found = None
        for r in self.static:  # compare every static key, constant time each
            if hmac.compare_digest(r.key_hash, h):
                found = r
        if found is not None:
            return found
        await self.refresh()
        rec = self._store_keys.get(h)
        if rec is None and self.store is not None and time.monotonic() - self._missed_at > 1.0:
            self._missed_at = time.monotonic()  # a key created a moment ago
            await self.refresh(force=True)
            rec = self._store_keys.get(h)
        if rec is None or not hmac.compare_digest(rec.key_hash, h):
            return None
        return rec

    # ------------------------------------------------------------------ limits
    def _bucket(self, rec: KeyRecord, kind: str, rate: float) -> TokenBucket:
        b = self._buckets.get((rec.id, kind))
        if b is None or b.rate != rate:
            b = self._buckets[(rec.id, kind)] = TokenBucket(rate)
        return b

    def admit_request(self, rec: KeyRecord) -> None:
        """One request against the key's request rate; raises :class:`LimitExceeded`."""
        if rec.rate_requests:
            wait = self._bucket(rec, "requests", rec.rate_requests).take(1)
            if wait:
                raise LimitExceeded(
                    429, "rate_limited", f"more than {rec.rate_requests:g} requests/s for this key", wait
                )

    def _usage_store(self, rec: KeyRecord) -> KeyStore:
        return self.store if self.store is not None else self._static_usage

    async def _count(self, rec: KeyRecord, period: str) -> dict:
        c = self._counts.get((rec.id, period))
        if c is None:
            await self.refresh()  # opens the store
            got = await self._usage_store(rec).usage(rec.id, period)
            c = self._counts.setdefault((rec.id, period), got.get(rec.id, _zero()))
        return c

    async def charge(self, rec: KeyRecord, characters: int, sentences: int) -> None:
        """Admit ``characters`` against the key's quotas and character rate, and count them; raises
        :class:`LimitExceeded` (and counts nothing) when a limit says no."""
        day, month, day_left, month_left = periods()
        cday, cmonth = await self._count(rec, day), await self._count(rec, month)
        if rec.chars_per_day is not None and cday["characters"] + characters > rec.chars_per_day:
            raise LimitExceeded(
                QUOTA_STATUS,
                "quota_exceeded",
                f"this key's daily quota of {rec.chars_per_day} "
                f"characters would be exceeded ({cday['characters']} used)",
                day_left,
            )
        if rec.chars_per_month is not None and cmonth["characters"] + characters > rec.chars_per_month:
            raise LimitExceeded(
                QUOTA_STATUS,
                "quota_exceeded",
                f"this key's monthly quota of {rec.chars_per_month} "
                f"characters would be exceeded ({cmonth['characters']} used)",
                month_left,
            )
        if rec.rate_chars:
            wait = self._bucket(rec, "chars", rec.rate_chars).take(characters)
            if wait:
                raise LimitExceeded(
                    429, "rate_limited", f"more than {rec.rate_chars:g} characters/s for this key", wait
                )
        for c in (cday, cmonth):
            c["characters"] += characters
            c["sentences"] += sentences
            c["requests"] += 1
        try:
            await self._usage_store(rec).add_usage(rec.id, [day, month], characters, sentences, 1)
        except BaseException:  # not recorded (a full disk): not charged, and the request is refused (http/app.py)
            for c in (cday, cmonth):
                c["characters"] -= characters
                c["sentences"] -= sentences
                c["requests"] -= 1
            raise

    async def refund(self, rec: KeyRecord, characters: int, sentences: int) -> None:
        """Give back what :meth:`charge` took for work that was refused or failed before the engine ran it (a 429
        ``queue_full`` after the charge, an engine that died): the counters, the store's usage, the character
        bucket."""
        day, month, _, _ = periods()
        for period in (day, month):
            c = self._counts.get((rec.id, period))
            if c is not None:
                c["characters"] = max(0, c["characters"] - characters)
                c["sentences"] = max(0, c["sentences"] - sentences)
                c["requests"] = max(0, c["requests"] - 1)
        if rec.rate_chars:
            b = self._bucket(rec, "chars", rec.rate_chars)
            b.tokens = min(b.burst, b.tokens + characters)
        await self._usage_store(rec).add_usage(rec.id, [day, month], -characters, -sentences, -1)

    # ------------------------------------------------------------------ usage
    async def usage_of(self, rec: KeyRecord) -> dict:
        day, month, _, _ = periods()
        store = self._usage_store(rec)
        return {
            "key": {k: v for k, v in rec.public().items() if k != "source"},
            "today": (await store.usage(rec.id, day)).get(rec.id, _zero()),
            "this_month": (await store.usage(rec.id, month)).get(rec.id, _zero()),
        }

    async def all_keys(self) -> list[KeyRecord]:
        return self.static + (await self.store.list_keys() if self.store is not None else [])

    async def usage_all(self) -> list[dict]:
        return [await self.usage_of(r) for r in await self.all_keys()]

    async def close(self) -> None:
        if self.store is not None and self._opened:
            await self.store.close()
            self._opened = False
