"""Fault injection (issue 13, "every fault contained, nothing lost"). Each test injects one fault and checks that
every accepted sentence is translated or reported failed in its own slot, that the process stays healthy, and that
the metrics count the fault.

- the engine raises mid-batch;  - the engine hangs (engine timeout);  - the in-process engine dies;
- the HTTP engine resets connections, answers 5xx / 429, or answers garbage (a real loopback server);
- the client disconnects during ensemble rounds;  - SIGTERM while busy (a real gateway process).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest

from batchmt_server.engines.base import EngineDead, EngineError
from batchmt_server.engines.fake import FakeEngine
from batchmt_server.engines.openai_http import HTTPEngine
from helpers import GatewayProcess, gateway_env, parse_metrics, running_gateway


def sentences(n: int, tag: str = "S") -> list[str]:
    return [f"{tag} number {i} is here." for i in range(n)]


async def check_in_place(r: httpx.Response, sources: list[str]) -> list[dict]:
    """200, one slot per input, each either its own translation or failed with a code."""
    assert r.status_code == 200, r.text
    slots = r.json()["translations"]
    assert len(slots) == len(sources)
    for src, slot in zip(sources, slots):
        if slot["status"] == "ok":
            assert slot["text"] == f"[de] {src}"
        else:
            assert slot["text"] is None and slot["error"]["code"]
    return slots


async def test_engine_raising_mid_batch_loses_nothing():
    class Flaky(FakeEngine):
        calls = 0

        async def generate(self, prompt, params):
            Flaky.calls += 1
            if Flaky.calls % 3 == 2:  # every third call fails, in the middle of the traffic
                raise EngineError("injected failure")
            return await super().generate(prompt, params)

    eng = Flaky()
    async with running_gateway(
        eng, max_sentences_per_prompt=4, pack_policy="fixed", max_attempts=3, translation_memory_size=0
    ) as (c, _):
        batches = [sentences(8, f"R{k}") for k in range(4)]
        rs = await asyncio.gather(*(c.post("/v1/translate", json={"sentences": b}) for b in batches))
        for r, b in zip(rs, batches):
            slots = await check_in_place(r, b)
            assert all(s["status"] == "ok" for s in slots)  # repaired: re-sent in smaller prompts
        assert (await c.get("/healthz")).status_code == 200 and (await c.get("/readyz")).status_code == 200
        m = parse_metrics((await c.get("/metrics")).text)
    failed_calls = sum(1 for k in range(1, Flaky.calls + 1) if k % 3 == 2)
    assert m['batchmt_engine_prompts_total{outcome="error"}'] == failed_calls > 0
    assert m['batchmt_sentences_total{outcome="translated"}'] == 32


async def test_a_sentence_the_engine_always_fails_fails_alone_in_its_slot():
    class Poisoned(FakeEngine):
        async def generate(self, prompt, params):
            if any("poison" in s for s in self.query_sources(prompt)):
                raise EngineError("injected: this sentence always fails")
            return await super().generate(prompt, params)

    async with running_gateway(Poisoned(), max_sentences_per_prompt=4, pack_policy="fixed", max_attempts=2) as (c, _):
        srcs = ["Fine one.", "The poison pill.", "Fine two.", "Fine three."]
        slots = await check_in_place(await c.post("/v1/translate", json={"sentences": srcs}), srcs)
        assert [s["status"] for s in slots] == ["ok", "failed", "ok", "ok"]
        assert slots[1]["error"]["code"] == "engine_error"
        m = parse_metrics((await c.get("/metrics")).text)
    assert m['batchmt_sentences_total{outcome="failed"}'] == 1


async def test_engine_hanging_is_bounded_by_the_engine_timeout_and_places_come_back():
    class Hangs(FakeEngine):
        hang = True

        async def generate(self, prompt, params):
            if Hangs.hang:
                await asyncio.sleep(3600)
            return await super().generate(prompt, params)

    eng = Hangs()
    async with running_gateway(
        eng, engine_timeout_s=0.2, max_prompts_in_flight=2, max_attempts=2, max_sentences_per_prompt=1
    ) as (c, app):
        srcs = sentences(4, "Hang")
        t0 = time.monotonic()
        slots = await check_in_place(await c.post("/v1/translate", json={"sentences": srcs}), srcs)
        assert all(s["status"] == "failed" and s["error"]["code"] == "engine_error" for s in slots)
        assert "did not answer within 0.2s" in slots[0]["error"]["message"]
        assert time.monotonic() - t0 < 5
        assert app.state.gateway.runner.in_flight == 0  # every place given back
        Hangs.hang = False  # the engine recovers: the gateway serves again at once
        srcs2 = sentences(3, "After")
        slots = await check_in_place(await c.post("/v1/translate", json={"sentences": srcs2}), srcs2)
        assert all(s["status"] == "ok" for s in slots)
        assert (await c.get("/healthz")).status_code == 200
        m = parse_metrics((await c.get("/metrics")).text)
    assert m['batchmt_engine_prompts_total{outcome="error"}'] == 8  # 4 sentences x 2 attempts


async def test_in_process_engine_death_not_ready_and_a_retryable_503():
    class Dies(FakeEngine):
        dead = False

        async def generate(self, prompt, params):
            await asyncio.sleep(0.05)
            if Dies.dead:
                raise EngineDead("injected: the engine core died")
            return await super().generate(prompt, params)

        async def ready(self):
            return not Dies.dead

    eng = Dies()
    async with running_gateway(
        eng, on_engine_death="stay", max_prompts_in_flight=2, max_sentences_per_prompt=1, translation_memory_size=0
    ) as (c, app):
        ok = await c.post("/v1/translate", json={"sentences": ["Before the crash."]})
        assert ok.status_code == 200
        Dies.dead = True
        rs = await asyncio.gather(
            *(c.post("/v1/translate", json={"sentences": sentences(3, f"D{k}")}) for k in range(3))
        )
        for r in rs:  # in flight or queued when it died: retryable, not silently failed slots
            assert r.status_code == 503 and r.json()["error"]["code"] in ("engine_unavailable", "not_ready")
            assert int(r.headers["retry-after"]) >= 1
        assert any(r.json()["error"]["code"] == "engine_unavailable" for r in rs)
        assert (await c.get("/readyz")).status_code == 503
        assert "died" in (await c.get("/readyz")).json()["error"]["message"]
        assert (await c.get("/healthz")).status_code == 200
        r = await c.post("/v1/translate", json={"sentences": ["After the crash."]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        assert app.state.gateway.batcher.fail_queued("x", "y") == 0  # nothing left waiting
        m = parse_metrics((await c.get("/metrics")).text)
    assert m["batchmt_engine_ready"] == 0
    assert m['batchmt_requests_total{outcome="failed"}'] >= 1


class MisbehavingEngine:
    """A real OpenAI-compatible server on loopback that answers the first prompts with ``faults`` (in order), then
    correctly (the fake engine's perfect completion)."""

    def __init__(self, faults: list[str]) -> None:
        self.faults = list(faults)
        self.fake = FakeEngine()
        self.served: list[str] = []
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = json.loads(await reader.readexactly(length)) if length else {}
                fault = self.faults.pop(0) if self.faults else "ok"
                self.served.append(fault)
                if fault == "reset":
                    writer.transport.abort()  # RST, no answer
                    return
                if fault == "500":
                    status, payload = b"500 Internal Server Error", b'{"error": "boom"}'
                elif fault == "429":
                    status, payload = b"429 Too Many Requests", b'{"error": "slow down"}'
                elif fault == "garbage":
                    status, payload = b"200 OK", b"\x00\xffnot json at all{"
                elif fault == "wrong-shape":
                    status, payload = b"200 OK", b'{"choices": []}'
                else:
                    prompt = body["prompt"]
                    srcs = self.fake.query_sources(prompt)
                    text = self.fake.completion_for(prompt, srcs, [f"[de] {s}" for s in srcs])
                    status, payload = (
                        b"200 OK",
                        json.dumps(
                            {
                                "choices": [{"text": text, "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                            }
                        ).encode(),
                    )
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize(
    "faults", [["reset", "reset"], ["500", "429"], ["garbage", "wrong-shape"], ["reset", "500", "429", "garbage"]]
)
async def test_http_engine_faults_are_retried_and_nothing_is_lost(faults):
    async with MisbehavingEngine(faults) as url:
        eng = HTTPEngine(url, model="fake", timeout=5.0)
        await eng.start()
        try:
            async with running_gateway(
                eng, max_sentences_per_prompt=1, max_prompts_in_flight=2, max_attempts=5, translation_memory_size=0
            ) as (c, _):
                srcs = sentences(6, "H")
                slots = await check_in_place(await c.post("/v1/translate", json={"sentences": srcs}), srcs)
                assert all(s["status"] == "ok" for s in slots)
                assert (await c.get("/readyz")).status_code in (200, 503)  # no /v1/models here; the process lives
                assert (await c.get("/healthz")).status_code == 200
                m = parse_metrics((await c.get("/metrics")).text)
        finally:
            await eng.close()
    assert m['batchmt_engine_prompts_total{outcome="error"}'] == len(faults)


async def test_http_engine_that_always_fails_fails_each_sentence_in_its_slot():
    async with MisbehavingEngine(["500"] * 100) as url:
        eng = HTTPEngine(url, model="fake", timeout=5.0)
        await eng.start()
        try:
            async with running_gateway(eng, max_sentences_per_prompt=2, pack_policy="fixed", max_attempts=2) as (c, _):
                srcs = sentences(4, "F")
                slots = await check_in_place(await c.post("/v1/translate", json={"sentences": srcs}), srcs)
                assert all(s["status"] == "failed" and s["error"]["code"] == "engine_error" for s in slots)
                m = parse_metrics((await c.get("/metrics")).text)
        finally:
            await eng.close()
    assert m['batchmt_sentences_total{outcome="failed"}'] == 4


async def test_client_disconnect_during_ensemble_rounds_frees_everything():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with running_gateway(eng, max_prompts_in_flight=2, max_sentences_per_prompt=1) as (c, app):
        body = json.dumps({"sentences": sentences(3, "E"), "quality": "best"}).encode()
        gone = asyncio.Event()
        first = [True]

        async def receive():
            if first[0]:
                first[0] = False
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            pass

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/translate",
            "raw_path": b"/v1/translate",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 9),
            "server": ("t", 80),
            "state": {},
        }
        task = asyncio.create_task(app(scope, receive, send))
        while not eng.prompts:
            await asyncio.sleep(0.005)
        gone.set()
        await asyncio.wait_for(task, 5)
        eng.gate.set()
        gw = app.state.gateway
        for _ in range(300):
            if gw.runner.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert gw.runner.in_flight == 0 and gw.translator._ensemble_load == 0
        srcs = sentences(2, "Next")  # and the gateway serves the next caller
        slots = await check_in_place(await c.post("/v1/translate", json={"sentences": srcs, "quality": "best"}), srcs)
        assert all(s["status"] == "ok" for s in slots)
        m = parse_metrics((await c.get("/metrics")).text)
    assert m['batchmt_requests_total{outcome="cancelled"}'] == 1


def _slow_gateway(tmp_path, delay_ms: int, *extra: str) -> GatewayProcess:
    """A gateway process whose fake engine takes ``delay_ms`` a prompt, two prompts at once of one sentence each, no
    translation memory; its store in ``tmp_path``, its log in ``tmp_path / "server.log"``."""
    flags = f"--fake-engine-delay-ms {delay_ms} --max-prompts-in-flight 2 --max-sentences-per-prompt 1"
    flags += " --translation-memory-size 0"
    env = gateway_env(BATCHMT_DATA_DIR=str(tmp_path))
    return GatewayProcess(*flags.split(), *extra, log=tmp_path / "server.log", env=env)


def test_sigterm_while_busy_drains_readiness_first(tmp_path):
    gw = _slow_gateway(tmp_path, 400, "--shutdown-delay-s", "1")
    proc, url, log = gw.proc, gw.url, gw.log
    try:
        results: list[httpx.Response] = []

        async def busy() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:

                async def one(k: int) -> None:
                    results.append(await c.post("/v1/translate", json={"sentences": sentences(4, f"T{k}")}))

                tasks = [asyncio.create_task(one(k)) for k in range(3)]  # 12 sentences at 2 x 0.4 s: ~2.4 s of work
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.2)
                r = await c.get("/readyz")  # readiness goes false first, while the work goes on
                assert r.status_code == 503 and r.json()["error"]["message"] == "shutting down"
                assert (await c.get("/healthz")).status_code == 200
                await asyncio.gather(*tasks)

        asyncio.run(busy())
        assert proc.wait(30) == 0
        for r in results:
            assert r.status_code == 200
            assert all(t["status"] == "ok" for t in r.json()["translations"])  # drained: nothing lost
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=1)
    finally:
        gw.stop(kill=True)
    text = log.read_text()
    assert "Traceback" not in text and "not ready" in text


def test_engine_death_in_a_real_process_answers_503_and_exits_70(tmp_path):
    from batchmt_server.engines.fake import DIE

    gw = _slow_gateway(tmp_path, 300)
    proc, url, log = gw.proc, gw.url, gw.log
    try:

        async def traffic() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                waiting = [
                    asyncio.create_task(c.post("/v1/translate", json={"sentences": sentences(3, f"W{k}")}))
                    for k in range(2)
                ]
                await asyncio.sleep(0.1)
                dying = await c.post("/v1/translate", json={"sentences": [f"This one kills it {DIE}."]})
                ready = await c.get("/readyz")
                # not ready, saying why: the engine died, or (a moment later) the process is already draining
                why = ready.json()["error"]["message"]
                assert ready.status_code == 503 and ("died" in why or "shutting down" in why), why
                return [dying, *await asyncio.gather(*waiting)]

        answers = asyncio.run(traffic())
        for r in answers:  # every request either whole, or a retryable 503: nothing half-answered
            if r.status_code == 200:
                assert all(t["status"] == "ok" for t in r.json()["translations"])
            else:
                assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
                assert r.json()["error"]["code"] in ("engine_unavailable", "not_ready")
        assert answers[0].status_code == 503
        assert proc.wait(20) == 70
    finally:
        gw.stop(kill=True)
    text = log.read_text()
    assert "the engine died" in text and "Traceback" not in text
