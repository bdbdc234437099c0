"""Which server modules the translate path and the job path touch (issue 23: a thin translate path).

    PYTHONPATH=client:server python scripts/trace_modules.py [--keys] [--list] [--json]

Runs the gateway app in-process on the fake engine (keys off, or with ``--keys`` one user key with a daily quota,
as a multi-tenant gateway runs; the store in a temporary folder), warms it up with
one round of each, then traces (``sys.setprofile``, in every thread) two ``POST /v1/translate`` (a plain text, an
HTML text) and one batch job of two lines (upload, create, wait until it is completed, download), and prints how
many distinct ``batchmt_server`` modules ran code for each. Frames of the background tasks that are no part of
either path (the revoked-key watcher, the store's sweeper) are left out; the translate trace runs on a gateway
without a job worker, so that its idle polling is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

import batchmt_server

#: the package imported (PYTHONPATH decides which checkout is measured)
SERVER = Path(batchmt_server.__file__).resolve().parent
#: background coroutines that run beside the paths, not for them
NOISE = ("_watch_revocations", "_sweep")


def module_of(filename: str) -> str | None:
    """``batchmt_server.pipeline.translator`` for a file under ``server/batchmt_server`` (else None)."""
    try:
        rel = Path(filename).resolve().relative_to(SERVER)
    except ValueError:
        return None
    parts = [*rel.parent.parts, rel.stem] if rel.stem != "__init__" else list(rel.parent.parts)
    return ".".join(["batchmt_server", *parts])


class Tracer:
    def __init__(self) -> None:
        self.on = False
        self.seen: set[str] = set()
        self._files: dict[str, str | None] = {}

    def _noise(self) -> bool:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # a worker thread: no task
            return False
        if task is None:
            return False
        name = getattr(task.get_coro(), "__qualname__", "")
        return any(n in name for n in NOISE)

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on or event != "call":
            return
        filename = frame.f_code.co_filename
        if filename not in self._files:
            self._files[filename] = module_of(filename)
        module = self._files[filename]
        if module is not None and module not in self.seen and not self._noise():
            self.seen.add(module)

    def install(self) -> None:
        sys.setprofile(self)
        threading.setprofile(self)

    def trace(self) -> _Window:
        return _Window(self)


class _Window:
    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def __enter__(self) -> set[str]:
        self.tracer.seen = set()
        self.tracer.on = True
        return self.tracer.seen

    def __exit__(self, *exc: object) -> None:
        self.tracer.on = False


#: ``{n}``: each round its own sentences (a repeat would come from the translation memory, not the engine)
TEXTS = [
    "The museum is closed on Mondays. It opens again on Tuesday at {n}.",
    "<p>Click <b>Save</b> to keep your {n} changes, or <a href='/help'>read the help</a>.</p>",
]


KEY = "trace-key-0123456789abcdef"


async def _with_app(settings: dict, body: Callable[[httpx.AsyncClient], Any], keys: bool = False) -> Any:
    from batchmt_server.auth.keys import KeyRecord, KeyRing, MemoryKeyStore, hash_key
    from batchmt_server.engines.fake import FakeEngine
    from batchmt_server.http.app import create_app
    from batchmt_server.settings import Settings

    ring = None
    if keys:
        store = MemoryKeyStore()
        store._keys["t"] = KeyRecord(id="t", name="t", key_hash=hash_key(KEY), chars_per_day=1_000_000)
        ring = KeyRing(store, [], refresh_s=3600.0)
    app = create_app(
        Settings(engine="fake", max_wait_ms=1, warmup=False, calibration="off", **settings),
        engine=FakeEngine(),
        keys=ring,
    )
    headers = {"authorization": f"Bearer {KEY}"} if keys else {}
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
            return await body(client)


async def translate_once(c: httpx.AsyncClient, n: int) -> None:
    """One plain text, then one HTML text (two requests)."""
    for i, text in enumerate(TEXTS):
        r = await c.post("/v1/translate", json={"texts": [text.format(n=n)], "tag_handling": "html" if i else None})
        r.raise_for_status()


async def job_once(c: httpx.AsyncClient, n: int) -> None:
    lines = [
        {"custom_id": f"l{i}", "method": "POST", "url": "/v1/translate", "body": {"texts": [TEXTS[0].format(n=n + i)]}}
        for i in range(2)
    ]
    content = "".join(json.dumps(x) + "\n" for x in lines).encode()
    f = await c.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content, "application/jsonl")})
    f.raise_for_status()
    b = await c.post(
        "/v1/batches", json={"input_file_id": f.json()["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
    )
    b.raise_for_status()
    deadline = time.monotonic() + 30
    while True:
        got = (await c.get(f"/v1/batches/{b.json()['id']}")).json()
        if got["status"] == "completed":
            break
        if got["status"] in ("failed", "cancelled", "expired") or time.monotonic() > deadline:
            raise RuntimeError(f"the batch did not complete: {got}")
        await asyncio.sleep(0.05)
    out = await c.get(f"/v1/files/{got['output_file_id']}/content")
    out.raise_for_status()


async def measure(tracer: Tracer, keys: bool = False) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:

        async def translate_path(c: httpx.AsyncClient) -> None:
            await translate_once(c, 1)  # warm-up: lazy imports and first-use caches are not the path
            with tracer.trace() as seen:
                await translate_once(c, 2)
            result["translate"] = sorted(seen)

        await _with_app({"data_dir": Path(tmp) / "a", "job_worker": False}, translate_path, keys)

        async def job_path(c: httpx.AsyncClient) -> None:
            await job_once(c, 1)
            with tracer.trace() as seen:
                await job_once(c, 3)
            result["job"] = sorted(seen)

        await _with_app({"data_dir": Path(tmp) / "b"}, job_path, keys)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", action="store_true", help="auth on: one user key with a daily quota")
    ap.add_argument("--list", action="store_true", help="list the modules, not only count them")
    ap.add_argument("--json", action="store_true", help="print the modules per path as JSON")
    a = ap.parse_args(argv)
    tracer = Tracer()
    tracer.install()
    try:
        result = asyncio.run(measure(tracer, a.keys))
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    if a.json:
        print(json.dumps(result, indent=1))
        return 0
    for path, modules in result.items():
        print(f"{path} path: {len(modules)} batchmt_server modules")
        if a.list:
            print("".join(f"  {m}\n" for m in modules), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
