"""The synchronous client is generated from the asynchronous one (scripts/unasync.py): the generated files are
fresh, the two have the same methods with the same parameters, and they send the same requests and give the
same results, against the SDK's fake server and, for batch jobs, against a real ``batchmt-server`` process on
the fake engine."""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from sdk_fakes import FakeServer

import batchmt
from batchmt.async_batches import AsyncBatches
from batchmt.sync_batches import Batches

REPO = Path(__file__).resolve().parents[2]
PAIRS = [(batchmt.Client, batchmt.AsyncClient), (Batches, AsyncBatches)]


def _unasync() -> Any:
    spec = importlib.util.spec_from_file_location("unasync_script", REPO / "scripts" / "unasync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_sync_files_are_fresh():
    unasync = _unasync()
    for source, target in unasync.FILES.items():
        generated = (REPO / "client" / "batchmt" / target).read_text(encoding="utf-8")
        assert generated.startswith(f"# Generated from {source} by scripts/unasync.py")
        assert unasync.generate(source) == generated, f"{target} is stale: run python scripts/unasync.py"


def test_the_generator_drops_async_only_lines_and_applies_sync_lines():
    text = "a = 1  # async-only\n# async-only: begin\nb = 2\n# async-only: end\nc = 3  # sync: c = 4\nd = 5\n"
    assert _unasync()._lines_for_sync(text, "x.py") == "c = 4\nd = 5\n"
    with pytest.raises(SystemExit):
        _unasync()._lines_for_sync("# async-only: begin\nx = 1\n", "x.py")


def _public(cls: type) -> dict[str, Any]:
    return {n: m for n, m in vars(cls).items() if callable(m) and (not n.startswith("_") or n == "__init__")}


def _shape(p: inspect.Parameter) -> tuple[str, Any, Any]:
    """A parameter without its annotation (``httpx.Client`` there is ``httpx.AsyncClient`` here)."""
    return p.name, p.kind, p.default


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_same_methods_and_parameters(sync_cls, async_cls):
    sync_methods, async_methods = _public(sync_cls), _public(async_cls)
    assert sync_methods.keys() == async_methods.keys()
    for name, method in async_methods.items():
        want = [_shape(p) for p in inspect.signature(method).parameters.values() if p.name != "max_concurrency"]
        assert [_shape(p) for p in inspect.signature(sync_methods[name]).parameters.values()] == want, name
        if name != "__init__":
            assert inspect.iscoroutinefunction(method) and not inspect.iscoroutinefunction(sync_methods[name]), name


def _wire(server: FakeServer) -> list[tuple[str, str, Any]]:
    return [(r.method, str(r.url), json.loads(r.content) if r.content else None) for r in server.requests]


TEXTS = ["The museum is closed on Mondays.", "Tickets cost FAIL euros.", "See you tomorrow.\nBring a coat."]
OPTIONS = {"quality": "fast", "split_sentences": "newlines", "confidence": True}


async def test_translate_info_health_the_same_requests_and_results():
    sync_server, async_server = FakeServer(max_sentences=2), FakeServer(max_sentences=2)
    with batchmt.Client(base_url="http://test", transport=sync_server.transport()) as client:
        sync_out = (client.translate(TEXTS, **OPTIONS), client.info(), client.health())
    async with batchmt.AsyncClient(
        base_url="http://test", transport=async_server.async_transport(), max_concurrency=1
    ) as aclient:
        async_out = (await aclient.translate(TEXTS, **OPTIONS), await aclient.info(), await aclient.health())
    assert len(sync_server.translate_bodies()) == 2  # two chunks of at most 2 texts
    assert _wire(sync_server) == _wire(async_server)
    assert sync_out == async_out
    assert not sync_out[0].ok and sync_out[0].failures  # the FAIL segment is reported the same way by both


async def test_errors_are_the_same():
    sync_server, async_server = FakeServer(), FakeServer()
    for server in (sync_server, async_server):
        server.script("/v1/translate", lambda request: httpx_error(422))
    with batchmt.Client(base_url="http://test", transport=sync_server.transport()) as client:
        with pytest.raises(batchmt.UnprocessableEntityError) as sync_err:
            client.translate(["One sentence."])
    async with batchmt.AsyncClient(base_url="http://test", transport=async_server.async_transport()) as aclient:
        with pytest.raises(batchmt.UnprocessableEntityError) as async_err:
            await aclient.translate(["One sentence."])
    assert (sync_err.value.status, sync_err.value.code, str(sync_err.value)) == (
        async_err.value.status,
        async_err.value.code,
        str(async_err.value),
    )
    assert sync_err.value.status == 422 and sync_err.value.code == "invalid_request"


def httpx_error(status: int) -> Any:
    from sdk_fakes import error_response

    return error_response(status, "invalid_request", "texts: must not be empty")


async def test_batch_jobs_the_same_through_both_clients(fake_gateway, tmp_path):
    src = tmp_path / "news.en"
    src.write_text("The first line is here.\n\nThe third line follows.\nAnd a fourth.\n", encoding="utf-8")
    outputs = {}
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        job = client.batches.create_from_file(src, sentences_per_request=2)
        done = client.batches.wait(job.id, poll_interval=0.05, timeout=60)
        missing = client.batches.download(done, tmp_path / "sync.de", source=src)
        listed = client.batches.list(limit=5)
        outputs["sync"] = (done.status, done.request_counts, missing, job.id in [b.id for b in listed])
    async with batchmt.AsyncClient(base_url=fake_gateway, timeout=60) as aclient:
        job = await aclient.batches.create_from_file(src, sentences_per_request=2)
        done = await aclient.batches.wait(job.id, poll_interval=0.05, timeout=60)
        missing = await aclient.batches.download(done, tmp_path / "async.de", source=src)
        listed = await aclient.batches.list(limit=5)
        outputs["async"] = (done.status, done.request_counts, missing, job.id in [b.id for b in listed])
    assert outputs["sync"] == outputs["async"]
    assert outputs["sync"][0] == "completed" and outputs["sync"][2] == [] and outputs["sync"][3]
    sync_text = (tmp_path / "sync.de").read_text(encoding="utf-8")
    assert sync_text == (tmp_path / "async.de").read_text(encoding="utf-8")
    assert sync_text.splitlines()[1] == "" and sync_text.count("[de] ") == 3  # the blank line kept in place
