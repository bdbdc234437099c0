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

import datetime as dt
import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

__all__ = ["KeyRecord", "KeyRing", "KeyStore", "MemoryKeyStore", "LimitExceeded", "TokenBucket", "hash_key",
           "new_key", "read_key_file", "Role", "QUOTA_STATUS"]

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


class LimitExceeded(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = max(1, math.ceil(retry_after))


class KeyStore(Protocol):
    """Durable keys and per-key usage (SQLite by default; see stores/)."""

    def add_key(self, record: KeyRecord) -> None: ...
    def list_keys(self) -> list[KeyRecord]: ...
    def revoke_key(self, key_id_or_name: str) -> bool: ...
    def key_by_hash(self, key_hash: str) -> KeyRecord | None: ...
    def add_usage(self, key_id: str, period: str, characters: int, sentences: int, requests: int) -> None: ...
    def usage(self, key_id: str, period: str) -> dict: ...


class MemoryKeyStore:
    """Keys and usage in memory (tests; keys from the environment or a file when no store is configured)."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyRecord] = {}
        self._usage: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    def add_key(self, record: KeyRecord) -> None:
        with self._lock:
            self._keys[record.id] = record

    def list_keys(self) -> list[KeyRecord]:
        with self._lock:
            return list(self._keys.values())

    def revoke_key(self, key_id_or_name: str) -> bool:
        with self._lock:
            for k, r in self._keys.items():
                if key_id_or_name in (r.id, r.name) and r.revoked_at is None:
                    self._keys[k] = replace(r, revoked_at=time.time())
                    return True
        return False

    def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        with self._lock:
            for r in self._keys.values():
                if hmac.compare_digest(r.key_hash, key_hash):
                    return r
        return None

    def add_usage(self, key_id: str, period: str, characters: int, sentences: int, requests: int) -> None:
        with self._lock:
            u = self._usage.setdefault((key_id, period), {"characters": 0, "sentences": 0, "requests": 0})
            u["characters"] += characters
            u["sentences"] += sentences
            u["requests"] += requests

    def usage(self, key_id: str, period: str) -> dict:
        with self._lock:
            return dict(self._usage.get((key_id, period), {"characters": 0, "sentences": 0, "requests": 0}))


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; may be overdrawn by one take."""

    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst if burst is not None else max(rate, 1.0), clock
        self.tokens, self.stamp = self.burst, clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self) -> float:
        """Seconds until a take is allowed (0: now)."""
        self._refill()
        return 0.0 if self.tokens > 0 else (1e-9 - self.tokens) / self.rate

    def take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens if the bucket is not empty (overdrawing it); else return the seconds to wait."""
        wait = self.wait_time()
        if wait == 0.0:
            self.tokens -= n
        return wait


def periods(now: float | None = None) -> tuple[str, str, float, float]:
    """Today's and this month's period names (UTC) and the seconds until each ends."""
    t = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc)
    day_end = dt.datetime(t.year, t.month, t.day, tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
    month_end = dt.datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return (t.strftime("%Y-%m-%d"), t.strftime("%Y-%m"), (day_end - t).total_seconds(),
            (month_end - t).total_seconds())


def read_key_file(path: Path) -> list[KeyRecord]:
    """``name:key[:role]`` or ``key`` per line; blank lines and ``#`` comments skipped. Role defaults to admin
    (the operator's own keys)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) == 1:
            name, key, role = f"file-{n}", parts[0], "admin"
        elif len(parts) in (2, 3):
            name, key, role = parts[0].strip(), parts[1].strip(), (parts[2].strip() if len(parts) == 3 else "admin")
        else:
            raise ValueError(f"{path}:{n}: expected 'name:key[:role]'")
        if role not in ("admin", "user", "dashboard") or len(key) < 16:
            raise ValueError(f"{path}:{n}: role must be admin/user/dashboard and the key at least 16 characters")
        out.append(KeyRecord(id=f"file-{n}", name=name, key_hash=hash_key(key), role=role, source="file"))  # type: ignore[arg-type]
    return out


class KeyRing:
    """Who is calling, and may they: the keys of a store plus static ones (environment, file)."""

    def __init__(self, store: KeyStore | None = None, static: list[KeyRecord] | None = None) -> None:
        self.store = store
        self.static = list(static or [])
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()
        self._usage_fallback = MemoryKeyStore()  # usage of static keys when there is no store

    @classmethod
    def from_settings(cls, settings, store: KeyStore | None = None) -> "KeyRing":
        static: list[KeyRecord] = []
        if getattr(settings, "api_key", None):
            static.append(KeyRecord(id="env", name="env", key_hash=hash_key(settings.api_key), role="admin",
                                    source="env"))
        if getattr(settings, "dashboard_key", None):
            static.append(KeyRecord(id="dashboard", name="dashboard", key_hash=hash_key(settings.dashboard_key),
                                    role="dashboard", source="env"))
        if getattr(settings, "api_key_file", None):
            static.extend(read_key_file(Path(settings.api_key_file)))
        return cls(store, static)

    @property
    def enabled(self) -> bool:
        """Keys are on once any key exists (static or in the store)."""
        if any(r.role != "dashboard" for r in self.static):
            return True
        return self.store is not None and any(r.revoked_at is None for r in self.store.list_keys())

    def authenticate(self, key: str) -> KeyRecord | None:
        h = hash_key(key)
        found = None
        for r in self.static:  # compare every static key, constant time each
            if hmac.compare_digest(r.key_hash, h):
                found = r
        if found is None and self.store is not None:
            found = self.store.key_by_hash(h)
        if found is None or found.revoked_at is not None:
            return None
        return found

    def _bucket(self, rec: KeyRecord, kind: str, rate: float) -> TokenBucket:
        b = self._buckets.get((rec.id, kind))
        if b is None or b.rate != rate:
            b = self._buckets[(rec.id, kind)] = TokenBucket(rate)
        return b

    def admit_request(self, rec: KeyRecord) -> None:
        """One request against the key's request rate; raises :class:`LimitExceeded`."""
        if rec.rate_requests:
            with self._lock:
                wait = self._bucket(rec, "requests", rec.rate_requests).take(1)
            if wait:
                raise LimitExceeded(429, "rate_limited", f"more than {rec.rate_requests:g} requests/s for this key",
                                    wait)

    def _usage_store(self, rec: KeyRecord) -> KeyStore:
        return self.store if self.store is not None and rec.source == "store" else self._usage_fallback

    def charge(self, rec: KeyRecord, characters: int, sentences: int) -> None:
        """Admit ``characters`` against the key's character rate and quotas and count them; raises
        :class:`LimitExceeded` (and counts nothing) when a limit says no."""
        day, month, day_left, month_left = periods()
        store = self._usage_store(rec)
        if rec.chars_per_day is not None and store.usage(rec.id, day)["characters"] + characters > rec.chars_per_day:
            raise LimitExceeded(QUOTA_STATUS, "quota_exceeded",
                                f"this key's daily quota of {rec.chars_per_day} characters is used up", day_left)
        if rec.chars_per_month is not None and \
                store.usage(rec.id, month)["characters"] + characters > rec.chars_per_month:
            raise LimitExceeded(QUOTA_STATUS, "quota_exceeded",
                                f"this key's monthly quota of {rec.chars_per_month} characters is used up", month_left)
        if rec.rate_chars:
            with self._lock:
                wait = self._bucket(rec, "chars", rec.rate_chars).take(characters)
            if wait:
                raise LimitExceeded(429, "rate_limited", f"more than {rec.rate_chars:g} characters/s for this key",
                                    wait)
        for period in (day, month):
            store.add_usage(rec.id, period, characters, sentences, 1)

    def usage_of(self, rec: KeyRecord) -> dict:
        day, month, _, _ = periods()
        store = self._usage_store(rec)
        return {"key": {k: v for k, v in rec.public().items() if k != "source"},
                "today": store.usage(rec.id, day), "this_month": store.usage(rec.id, month)}

    def all_keys(self) -> list[KeyRecord]:
        return self.static + (self.store.list_keys() if self.store is not None else [])
