"""Store write throughput: job lines claimed and completed per second, and translation-memory writes per second,
with W concurrent workers (each its own store, i.e. its own connection pool: W gateways as far as the database can
tell), on PostgreSQL (a throwaway local server, fsync on) and on SQLite (WAL, synchronous=NORMAL).

    .venv/bin/python -m benchmarks.store_throughput --lines 20000 --workers 4 --batch 16

The numbers size the database side of a fleet (deploy/README.md, "capacity on paper")."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from batchmt_server.stores import JobRecord, JobUsage, LineResult, NewLine, build_store


async def run(url: str | None, data_dir: Path, lines: int, workers: int, batch: int) -> dict[str, float]:
    stores = [build_store(url, data_dir) for _ in range(workers)]
    for s in stores:
        await s.open()
    try:
        job = JobRecord(
            id="batch_bench",
            input_file_id="file-1",
            endpoint="/v1/translate",
            completion_window="24h",
            status="in_progress",
            created_at=0,
            expires_at=86400,
            in_progress_at=0,
        )
        t0 = time.perf_counter()
        await stores[0].create_job(
            job, [NewLine(i, f"c{i}", body=json.dumps({"sentences": [f"s{i}"]})) for i in range(1, lines + 1)]
        )
        create_s = time.perf_counter() - t0

        async def worker(s, owner: str) -> int:
            done = 0
            while got := await s.claim_lines(owner, batch, lease_seconds=60, now=time.time()):
                done += await s.complete_lines(
                    owner, [LineResult(c.job_id, c.line_no, True, '{"ok":true}', JobUsage(sentences=1)) for c in got]
                )
            return done

        t0 = time.perf_counter()
        done = sum(await asyncio.gather(*(worker(s, f"w{i}") for i, s in enumerate(stores))))
        lines_s = time.perf_counter() - t0
        assert done == lines, (done, lines)

        async def tm_writer(s, k: int) -> None:
            for j in range(lines // (workers * batch)):
                await s.tm_put(
                    "",
                    "sig",
                    [(f"src {k} {j} {i}", f"tgt {k} {j} {i}") for i in range(batch)],
                    now=time.time(),
                    max_entries=10_000_000,
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(tm_writer(s, k) for k, s in enumerate(stores)))
        tm_s = time.perf_counter() - t0
        tm_rows = (lines // (workers * batch)) * workers * batch
        return {"create_lines_per_s": lines / create_s, "lines_per_s": lines / lines_s, "tm_rows_per_s": tm_rows / tm_s}
    finally:
        for s in stores:
            await s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16, help="lines per claim / pairs per memory write")
    args = ap.parse_args()
    from tests.deploy.pg import PostgresServer

    pg = PostgresServer(fsync=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, url in (("postgresql", pg.url), ("sqlite", None)):
                r = asyncio.run(run(url, Path(tmp), args.lines, args.workers, args.batch))
                print(
                    f"{name:10s} workers={args.workers} batch={args.batch}: "
                    f"create {r['create_lines_per_s']:,.0f} lines/s, claim+complete {r['lines_per_s']:,.0f} lines/s, "
                    f"memory {r['tm_rows_per_s']:,.0f} rows/s"
                )
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
