"""The PostgreSQL store (stores/postgres.py) on a real PostgreSQL server (Debian's package, started by the test
in a temporary folder on a loopback port): migrations once under concurrent starts, the claim/lease protocol
with several stores (separate connection pools: separate gateways as far as the database can tell), exactly-once
completion, terminal transitions racing, the shared translation memory and usage."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from batchmt_server.stores import JobUsage, LineResult, StoreError, build_store
from batchmt_server.stores.base import migrations
from batchmt_server.stores.postgres import PostgresStore
from helpers import check_claims_complete_exactly_once, check_memory_store, job_record, new_lines

from .pg import PostgresServer

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def pg():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def db_url(pg):
    return pg.database("t_" + uuid.uuid4().hex[:12])


@pytest.fixture
async def store(db_url):
    s = build_store(db_url, data_dir=None)  # type: ignore[arg-type]
    await s.open()
    yield s
    await s.close()


async def test_database_url_selects_postgres_and_migrations_run_once_under_concurrent_starts(db_url):
    stores = [build_store(db_url, data_dir=None) for _ in range(3)]  # type: ignore[arg-type]
    assert all(isinstance(s, PostgresStore) for s in stores)
    await asyncio.gather(*(s.open() for s in stores))  # three gateways starting together
    try:
        want = [m.version for m in migrations("postgresql")]
        assert want == list(range(1, len(want) + 1)) and len(want) >= 2  # 0001_jobs, 0002_keys, ...
        for s in stores:
            assert await s.applied_migrations() == want
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    again = PostgresStore(db_url)
    await again.open()  # nothing re-run (a re-run CREATE TABLE would fail)
    assert await again.applied_migrations() == want
    await again.close()


async def test_unreachable_database_is_a_clear_store_error(pg):
    s = PostgresStore(
        f"postgresql://postgres:secret@127.0.0.1:{pg.port + 1 if pg.port < 65535 else 1}/x", connect_timeout=2
    )
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as info:
        await s.open()
    assert "secret" not in str(info.value)


async def test_claim_complete_exactly_once_under_lease_expiry(store):
    created = await check_claims_complete_exactly_once(store)
    assert created.seq == 1
    assert await store.renew_leases("B", 10, now=112.0) == 2
    assert await store.release_lines("B", [("batch_1", 4)]) == 1
    assert [c.line_no for c in await store.claim_lines("C", 5, lease_seconds=10, now=113.0)] == [4]


async def test_only_in_progress_jobs_are_claimed_oldest_job_first(store):
    await store.create_job(job_record("batch_a"), new_lines(2))
    await store.create_job(job_record("batch_b", status="validating"), new_lines(2))
    await store.create_job(job_record("batch_c"), new_lines(2))
    got = await store.claim_lines("A", 10, lease_seconds=10, now=0.0)
    assert [(c.job_id, c.line_no) for c in got] == [("batch_a", 1), ("batch_a", 2), ("batch_c", 1), ("batch_c", 2)]
    assert [j.id for j in await store.list_jobs(limit=2)] == ["batch_c", "batch_b"]
    assert [j.id for j in await store.list_jobs(after="batch_b")] == ["batch_a"]


async def test_four_gateways_claiming_at_once_never_share_a_line(db_url):
    stores = [PostgresStore(db_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].create_job(job_record(), new_lines(400))

        async def worker(s: PostgresStore, owner: str) -> list[int]:
            mine: list[int] = []
            while True:
                got = await s.claim_lines(owner, 7, lease_seconds=60, now=1.0)
                if not got:
                    return mine
                mine += [c.line_no for c in got]
                n = await s.complete_lines(
                    owner,
                    [
                        LineResult(c.job_id, c.line_no, True, json.dumps(owner), JobUsage(sentences=1, characters=2))
                        for c in got
                    ],
                )
                assert n == len(got)

        per = await asyncio.gather(*(worker(s, f"gw{i}") for i, s in enumerate(stores)))
        everyone = [n for lines in per for n in lines]
        assert sorted(everyone) == list(range(1, 401)), "every line claimed by exactly one gateway"
        assert sum(1 for lines in per if lines) >= 2, "the claims were really concurrent"
        job = await stores[1].get_job("batch_1")
        assert (job.completed, job.usage.sentences, job.usage.characters) == (400, 400, 800)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_two_gateways_finishing_a_job_at_once_one_wins(db_url):
    a, b = PostgresStore(db_url), PostgresStore(db_url)
    await asyncio.gather(a.open(), b.open())
    try:
        await a.create_job(job_record(), new_lines(3, bad=(2,)))
        got = await a.claim_lines("A", 1, lease_seconds=10, now=0.0)
        await a.complete_lines("A", [LineResult("batch_1", got[0].line_no, True, '{"ok":1}')])
        results = await asyncio.gather(
            a.finish_job(
                "batch_1",
                ["in_progress"],
                "expired",
                5,
                output_file_id="fo-a",
                error_file_id="fe-a",
                expired_output='{{"custom_id": {custom_id}, "error": "expired", "line": {line_no}}}',
            ),
            b.finish_job(
                "batch_1",
                ["in_progress"],
                "expired",
                5,
                output_file_id="fo-b",
                error_file_id="fe-b",
                expired_output='{{"custom_id": {custom_id}, "error": "expired", "line": {line_no}}}',
            ),
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        job = winners[0]
        assert job.status == "expired" and (job.completed, job.failed) == (1, 2)
        assert (await b.file_content(job.output_file_id)).decode() == '{"ok":1}\n'
        errors = (await b.file_content(job.error_file_id)).decode().splitlines()
        assert [json.loads(e)["custom_id"] for e in errors] == ["c2", "c3"]
        assert json.loads(errors[1]) == {"custom_id": "c3", "error": "expired", "line": 3}
        f = await a.get_file(job.error_file_id)
        assert f.kind == "error" and f.bytes == len("\n".join(errors)) + 1
        assert await a.claim_lines("A", 10, lease_seconds=10, now=6.0) == []
        assert await a.set_job_status("batch_1", ["in_progress"], "cancelling", 7) is None
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_files_round_trip_and_paginate(store):
    from batchmt_server.stores import FileRecord

    for i in range(3):
        await store.put_file(FileRecord(f"file-{i}", "batch", f"in{i}.jsonl", 3, 100 + i, owner="k1"), b"a\xffb")
    assert await store.file_content("file-1") == b"a\xffb"
    assert [f.id for f in await store.list_files(purpose="batch", limit=2)] == ["file-2", "file-1"]
    assert [f.id for f in await store.list_files(after="file-1", owner="k1")] == ["file-0"]
    assert await store.get_file("nope") is None and await store.file_content("nope") is None


async def test_translation_memory_and_usage_are_shared_between_gateways(db_url):
    a, b = PostgresStore(db_url), PostgresStore(db_url)
    await asyncio.gather(a.open(), b.open())
    try:
        await a.tm_put("", "sig", [("hello world", "Hallo Welt"), ("good night", "Gute Nacht")], now=1.0, max_entries=3)
        got = await b.tm_get("", "sig", ["hello world", "unknown", "hello world"], now=2.0)
        assert {k: v.target for k, v in got.items()} == {"hello world": "Hallo Welt"}
        assert await b.tm_get("", "other-signature", ["hello world"], now=2.0) == {}
        await b.tm_put("", "sig", [("thank you", "Danke"), ("yes", "Ja")], now=3.0, max_entries=3)
        assert await a.tm_size() == 3  # bound kept across gateways: the least recently used ("good night") left
        got = await a.tm_get("", "sig", ["good night", "hello world"], now=4.0)
        assert {k: v.target for k, v in got.items()} == {"hello world": "Hallo Welt"}
        # two gateways writing the same entries at once: no deadlock, one row each
        await asyncio.gather(
            *(
                s.tm_put("", "sig", [(f"s{i}", f"t{i}") for i in range(50)][::step], now=5.0, max_entries=1000)
                for s, step in ((a, 1), (b, -1))
                for _ in range(3)
            )
        )
        assert await b.tm_size() == 53
        await a.create_job(job_record("batch_x", owner="key-1"), new_lines(2))
        await b.create_job(job_record("batch_y", owner="key-2"), new_lines(1))
        for s, owner in ((a, "A"), (b, "B")):
            for c in await s.claim_lines(owner, 1, lease_seconds=10, now=1.0):
                await s.complete_lines(
                    owner,
                    [LineResult(c.job_id, c.line_no, True, "{}", JobUsage(sentences=1, cost=0.25, memory_hits=1))],
                )
        n, usage = await b.jobs_usage()
        assert n == 2 and usage.sentences == 2 and usage.cost == pytest.approx(0.5) and usage.memory_hits == 2
        n1, u1 = await a.jobs_usage(owner="key-1")
        assert n1 == 1 and u1.sentences == 2 and isinstance(u1.sentences, int)
        await a.tm_clear()
        assert await b.tm_size() == 0
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_keys_and_per_key_usage_add_up_across_gateways(db_url):
    from batchmt_server.auth.keys import KeyRecord
    from batchmt_server.stores.postgres import PostgresKeys

    a, b = PostgresKeys(PostgresStore(db_url)), PostgresKeys(PostgresStore(db_url))
    await asyncio.gather(a.open(), b.open())
    try:
        assert "secret" not in a.path and a.path.startswith("postgresql://postgres@127.0.0.1:")
        await a.add_key(KeyRecord("k1", "alice", "hash-1", chars_per_day=1000, created_at=1.0))
        await a.add_key(KeyRecord("k2", "bob", "hash-2", role="admin", created_at=2.0))
        listed = await b.list_keys()
        assert [(k.id, k.role, k.chars_per_day, k.source) for k in listed] == [
            ("k1", "user", 1000, "store"),
            ("k2", "admin", None, "store"),
        ]
        # two gateways adding the same key's usage at once: every add counts (one upsert each)
        await asyncio.gather(
            *(s.add_usage("k1", ["2026-11-27", "2026-11"], 10, 2, 1) for s in (a, b) for _ in range(25))
        )
        assert await a.usage("k1", "2026-11-27") == {"k1": {"characters": 500, "sentences": 100, "requests": 50}}
        assert (await b.usage(None, "2026-11"))["k1"]["requests"] == 50
        assert await b.usage("k2", "2026-11") == {}
        assert await b.revoke_key("alice", now=5.0) == 1 and await a.revoke_key("k1", now=6.0) == 0
        assert [k.revoked_at for k in await a.list_keys()] == [5.0, None]
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_retention_and_storage_accounting(store):
    """Expiry, deletion, per-owner bytes and a finished job's lines going with its last file (issue 24)."""
    from helpers import check_retention

    await check_retention(store)


async def test_translation_memory_scopes_origins_pinning_and_purge(store):
    await check_memory_store(store)


async def test_racing_imports_never_pass_a_keys_limit(db_url):
    from batchmt_server.stores.base import MemoryFull

    a, b = PostgresStore(db_url), PostgresStore(db_url)
    await asyncio.gather(a.open(), b.open())
    try:
        results = await asyncio.gather(
            a.tm_import("k", [(f"a{i}", "x") for i in range(3)], 1.0, 4),
            b.tm_import("k", [(f"b{i}", "x") for i in range(3)], 1.0, 4),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["MemoryFull", "int"]
        assert any(isinstance(r, MemoryFull) for r in results) and await a.tm_count("k", "human") == 3
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_glossaries_are_stored_per_owner_with_their_limit(store):
    from helpers import check_glossary_store

    await check_glossary_store(store)
