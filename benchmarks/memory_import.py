"""Translation memory import and export at the size limits: a TMX of N generated units (our own sentence pattern,
numbered) imported through ``POST /v1/memory/import`` and exported through ``GET /v1/memory/export``, in process
(fake engine, SQLite store in a temporary folder).

    .venv/bin/python -m benchmarks.memory_import --units 100000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import httpx

from batchmt_server.engines.fake import FakeEngine
from batchmt_server.http.app import create_app
from batchmt_server.settings import Settings


def tmx(n: int) -> bytes:
    units = "".join(
        f'<tu><tuv xml:lang="en"><seg>Harbour notice {i}: pier {i % 7} closes at {i % 24} o\'clock.</seg></tuv>'
        f'<tuv xml:lang="de"><seg>Hafenhinweis {i}: Steg {i % 7} schließt um {i % 24} Uhr.</seg></tuv></tu>\n'
        for i in range(n)
    )
    header = (
        '<header srclang="en" adminlang="en" segtype="sentence" datatype="plaintext" o-tmf="bench" '
        'creationtool="bench" creationtoolversion="1"/>'
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><tmx version="1.4">{header}<body>{units}</body></tmx>'.encode()


async def run(n: int) -> str:
    s = Settings(
        engine="fake", warmup=False, calibration="off", data_dir=tempfile.mkdtemp(), memory_max_human_entries=n
    )
    app = create_app(s, engine=FakeEngine())
    data = tmx(n)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=600) as c:
            t0 = time.perf_counter()
            r = await c.post("/v1/memory/import", files={"file": ("bench.tmx", data)})
            t1 = time.perf_counter()
            r.raise_for_status()
            e = await c.get("/v1/memory/export")
            t2 = time.perf_counter()
            e.raise_for_status()
    return (
        f"{n} units, {len(data) / 1e6:.1f} MB: import {t1 - t0:.2f} s ({r.json()['imported']} stored), "
        f"export {t2 - t1:.2f} s ({len(e.content) / 1e6:.1f} MB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=100_000)
    print(asyncio.run(run(ap.parse_args().units)))


if __name__ == "__main__":
    main()
