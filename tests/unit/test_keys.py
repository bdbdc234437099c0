"""API keys: token buckets, quotas (456), rate limits (429 + Retry-After), the SQLite key tables (issue 13)."""

from __future__ import annotations

import pytest

from batchmt_server.auth.keys import (
    InProcessKeyStore,
    KeyRecord,
    KeyRing,
    LimitExceeded,
    TokenBucket,
    hash_key,
    new_key,
    periods,
)
from batchmt_server.stores.keys import StoreKeys
from batchmt_server.stores.sqlite import SQLiteStore


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_refills_at_its_rate_and_may_be_overdrawn_once():
    clock = Clock()
    b = TokenBucket(2.0, clock=clock)
    assert b.take() == 0 and b.take() == 0
    assert b.take() > 0  # empty: refused
    clock.t += 0.5
    assert b.take() == 0
    big = TokenBucket(10.0, clock=clock)
    assert big.take(100) == 0  # a large request overdraws the bucket ...
    assert big.take(1) == pytest.approx(9.1, abs=0.01)  # ... and the next waits until one token is back
    clock.t += 9.15
    assert big.take(1) == 0


def test_periods_end_at_utc_midnight_and_month_end():
    day, month, day_left, month_left = periods(1795737600.0 + 3600)  # 2026-11-27 01:00 UTC
    assert (day, month) == ("2026-11-27", "2026-11")
    assert day_left == 23 * 3600 and month_left == (3 * 24 + 23) * 3600


async def test_quota_is_456_with_retry_after_and_counts_nothing_when_refused():
    rec = KeyRecord(id="k", name="k", key_hash=hash_key("x" * 20), chars_per_day=100, chars_per_month=150)
    ring = KeyRing(InProcessKeyStore())
    await ring.charge(rec, 60, 2)
    with pytest.raises(LimitExceeded) as exc:
        await ring.charge(rec, 50, 1)
    assert exc.value.status == 456 and exc.value.code == "quota_exceeded" and exc.value.retry_after >= 1
    await ring.charge(rec, 40, 1)  # exactly the day's quota
    u = await ring.usage_of(rec)
    assert u["today"] == {"characters": 100, "sentences": 3, "requests": 2}
    rec2 = KeyRecord(id="k", name="k", key_hash=rec.key_hash, chars_per_month=150)
    with pytest.raises(LimitExceeded, match="monthly"):
        await ring.charge(rec2, 51, 1)


async def test_rate_limits_are_429_with_retry_after():
    rec = KeyRecord(id="r", name="r", key_hash=hash_key("y" * 20), rate_requests=2, rate_chars=10)
    ring = KeyRing()
    ring.admit_request(rec)
    ring.admit_request(rec)
    with pytest.raises(LimitExceeded) as exc:
        ring.admit_request(rec)
    assert exc.value.status == 429 and exc.value.code == "rate_limited" and exc.value.retry_after == 1
    await ring.charge(rec, 500, 1)  # overdraws the character bucket
    with pytest.raises(LimitExceeded) as exc:
        await ring.charge(rec, 1, 1)
    assert exc.value.status == 429 and exc.value.retry_after >= 49


async def test_sqlite_key_tables_store_hashes_usage_and_revocation(tmp_path):
    store = StoreKeys(SQLiteStore(tmp_path / "db.sqlite3"))
    await store.open()
    try:
        key = new_key()
        await store.add_key(KeyRecord(id="key_1", name="dora", key_hash=hash_key(key), chars_per_month=10))
        await store.add_usage("key_1", ["2026-11-27", "2026-11"], 7, 2, 1)
        await store.add_usage("key_1", ["2026-11-27", "2026-11"], 3, 1, 1)
        assert (await store.usage("key_1", "2026-11"))["key_1"] == {"characters": 10, "sentences": 3, "requests": 2}
        assert await store.usage(None, "2026-10") == {}
        ring = KeyRing(store, refresh_s=0)
        assert (await ring.authenticate(key)).name == "dora"
        assert await ring.authenticate(key + "x") is None
        assert await store.revoke_key("dora", 1.0) == 1 and await store.revoke_key("dora", 2.0) == 0
        assert await ring.authenticate(key) is None
        assert (await store.list_keys())[0].revoked_at == 1.0
    finally:
        await store.close()
    assert key.encode() not in (tmp_path / "db.sqlite3").read_bytes()
