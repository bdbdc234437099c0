"""The SQLite store: migrations, the claim/lease protocol, exactly-once completion, terminal transitions, the
translation memory's bound. Real SQLite files in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from batchmt_server.stores import LineResult, build_store
from batchmt_server.stores.base import migrations
from batchmt_server.stores.sqlite import SQLiteStore
from helpers import check_claims_complete_exactly_once, job_record, new_lines


@pytest.fixture
async def store(tmp_path):
    s = build_store(None, tmp_path)
    await s.open()
    yield s
    await s.close()


async def test_migrations_recorded_once_and_wal(tmp_path):
    s = SQLiteStore(tmp_path / "db.sqlite3")
    await s.open()
    assert await s.applied_migrations() == [m.version for m in migrations("sqlite")]
    await s.close()
    await s.open()  # again: nothing re-run (a re-run CREATE TABLE would fail)
    assert await s.applied_migrations() == [m.version for m in migrations("sqlite")]
    await s.close()
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_claim_complete_exactly_once_under_lease_expiry(store):
    await check_claims_complete_exactly_once(store)


async def test_release_and_renew(store):
    await store.create_job(job_record(), new_lines(3))
    got = await store.claim_lines("A", 3, lease_seconds=10, now=0.0)
    assert len(got) == 3
    assert await store.renew_leases("A", 10, now=8.0) == 3
    assert await store.claim_lines("B", 3, lease_seconds=10, now=15.0) == []  # renewed until 18
    assert await store.release_lines("A", [("batch_1", 2)]) == 1
    again = await store.claim_lines("B", 3, lease_seconds=10, now=15.0)
    assert [(c.line_no, c.attempts) for c in again] == [(2, 1)]  # a release is not an attempt
    assert await store.release_lines("A") == 2


async def test_only_in_progress_jobs_are_claimed_oldest_first(store):
    await store.create_job(job_record("batch_a"), new_lines(2))
    await store.create_job(job_record("batch_b"), new_lines(2))
    await store.set_job_status("batch_a", ["in_progress"], "cancelling", 5)
    got = await store.claim_lines("A", 10, lease_seconds=10, now=0.0)
    assert {c.job_id for c in got} == {"batch_b"}


async def test_finish_expired_writes_error_lines_and_files(store):
    await store.create_job(job_record(), new_lines(4))
    (c1,) = await store.claim_lines("A", 1, 10, now=0.0)
    await store.complete_lines("A", [LineResult("batch_1", c1.line_no, True, '{"custom_id":"c1","ok":1}')])
    await store.claim_lines("A", 1, 10, now=0.0)  # line 2 is in flight when the job expires
    tmpl = '{{"custom_id":{custom_id},"error":{{"code":"batch_expired","line":{line_no}}}}}'
    job = await store.finish_job(
        "batch_1",
        ["in_progress"],
        "expired",
        2000,
        output_file_id="file-o",
        error_file_id="file-e",
        expired_output=tmpl,
    )
    assert job.status == "expired" and job.expired_at == 2000
    assert (job.completed, job.failed, job.output_file_id, job.error_file_id) == (1, 3, "file-o", "file-e")
    errors = [json.loads(x) for x in (await store.file_content("file-e")).decode().splitlines()]
    assert [e["custom_id"] for e in errors] == ["c2", "c3", "c4"]
    assert (await store.get_file("file-e")).bytes == len(await store.file_content("file-e"))
    # the late result of line 2 is ignored, and a second finish loses the race
    assert await store.complete_lines("A", [LineResult("batch_1", 2, True, "{}")]) == 0
    assert (
        await store.finish_job("batch_1", ["in_progress"], "completed", 2001, output_file_id="x", error_file_id="y")
        is None
    )


async def test_finish_cancelled_without_errors_has_no_error_file(store):
    await store.create_job(job_record(), new_lines(3))
    await store.set_job_status("batch_1", ["in_progress"], "cancelling", 10)
    job = await store.finish_job("batch_1", ["cancelling"], "cancelled", 11, output_file_id="o", error_file_id="e")
    assert (job.status, job.output_file_id, job.error_file_id, job.cancelling_at) == ("cancelled", None, None, 10)
    assert await store.open_lines("batch_1") == {"cancelled": 3}


async def test_list_jobs_paginates_newest_first(store):
    for i in range(5):
        await store.create_job(job_record(f"batch_{i}"), [])
    page1 = await store.list_jobs(limit=2)
    page2 = await store.list_jobs(after=page1[-1].id, limit=2)
    page3 = await store.list_jobs(after=page2[-1].id, limit=2)
    assert [j.id for j in page1 + page2 + page3] == [f"batch_{i}" for i in (4, 3, 2, 1, 0)]


async def test_concurrent_claimers_on_one_file_never_share_a_line(tmp_path):
    """Two stores (two connections, as two gateway processes would have) claim from one file at once."""
    one, two = SQLiteStore(tmp_path / "db"), SQLiteStore(tmp_path / "db")
    await one.open()
    await two.open()
    try:
        await one.create_job(job_record(), new_lines(400))

        async def drain(s: SQLiteStore, name: str) -> list[int]:
            got = []
            while batch := await s.claim_lines(name, 7, 60, now=0.0):
                got += [c.line_no for c in batch]
                await s.complete_lines(name, [LineResult(c.job_id, c.line_no, True, "{}") for c in batch])
            return got

        a, b = await asyncio.gather(drain(one, "A"), drain(two, "B"))
        assert sorted(a + b) == list(range(1, 401)) and not set(a) & set(b)
        assert (await one.get_job("batch_1")).completed == 400
    finally:
        await one.close()
        await two.close()


async def test_translation_memory_bound_and_lru(store):
    await store.tm_put("", "sig", [(f"s{i}", f"t{i}") for i in range(10)], now=1.0, max_entries=10)
    got = await store.tm_get("", "sig", ["s0", "s5", "nope"], now=2.0)
    assert {k: v.target for k, v in got.items()} == {"s0": "t0", "s5": "t5"}
    await store.tm_put("", "sig", [("s10", "t10"), ("s11", "t11")], now=3.0, max_entries=10)
    assert await store.tm_size() == 10
    got = await store.tm_get("", "sig", [f"s{i}" for i in range(12)], now=4.0)
    assert set(got) == {"s0", "s5", "s10", "s11", "s3", "s4", "s6", "s7", "s8", "s9"}  # s1, s2 were least recent
    assert await store.tm_get("", "other-signature", ["s0"], now=5.0) == {}
    assert await store.tm_get("another-key", "sig", ["s0"], now=5.0) == {}  # another scope: nothing


async def test_unknown_database_url_is_refused(tmp_path):
    from batchmt_server.stores import StoreError

    with pytest.raises(StoreError, match="unsupported database URL"):
        build_store("mysql://x", tmp_path)
    s = build_store(f"sqlite:///{tmp_path}/x/y.db", tmp_path)
    await s.open()
    assert (tmp_path / "x" / "y.db").exists()
    await s.close()


async def test_translation_memory_reads_a_burst_of_lookups_in_one_query(store):
    import asyncio

    from batchmt_server.pipeline.memory import TranslationMemory

    await store.tm_put("", "sig", [(f"Sentence {i}.", f"Satz {i}.") for i in range(0, 40, 2)], 1.0, 1000)
    calls: list[int] = []
    real_get = store.tm_get

    async def counted(scope, signature, sources, now):
        calls.append(len(sources))
        return await real_get(scope, signature, sources, now)

    store.tm_get = counted
    memory = TranslationMemory(store, 1000, hot_entries=0)  # no hot cache: every lookup asks the store
    results = await asyncio.gather(
        *(memory.lookup("", "sig", [f"Sentence {i}.", f"Sentence {i + 1}."]) for i in range(20))
    )
    assert calls == [21]  # twenty requests' lookups: one query with all 21 distinct sources
    for i, found in enumerate(results):  # each caller gets its own hits only
        got = {k: v.target for k, v in found.items()}
        assert got == ({f"Sentence {i}.": f"Satz {i}."} if i % 2 == 0 else {f"Sentence {i + 1}.": f"Satz {i + 1}."})
    assert await memory.lookup("", "other", ["Sentence 0."]) == {} and calls == [21, 1]  # another signature: its own


async def test_a_caller_that_goes_away_does_not_cancel_the_others_read(store):
    import asyncio

    from batchmt_server.pipeline.memory import TranslationMemory

    await store.tm_put("", "sig", [("Hello.", "Hallo.")], 1.0, 1000)
    memory = TranslationMemory(store, 1000, hot_entries=0)
    gone = asyncio.create_task(memory.lookup("", "sig", ["Hello."]))
    stays = asyncio.create_task(memory.lookup("", "sig", ["Hello."]))
    await asyncio.sleep(0)  # both joined the read
    gone.cancel()
    assert {k: v.target for k, v in (await stays).items()} == {"Hello.": "Hallo."}


async def test_glossaries_are_stored_per_owner_with_their_limit(store):
    from helpers import check_glossary_store

    await check_glossary_store(store)
