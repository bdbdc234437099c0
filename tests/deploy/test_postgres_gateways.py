"""Two real gateway processes (uvicorn on loopback, the fake engine) on one real PostgreSQL database
(``--database-url postgresql://...``): both work on one batch job at once, one is killed with SIGKILL mid-job,
the other finishes it, and every request line is in the output exactly once with its own translations. The
translation memory and the jobs' usage are shared: a sentence translated through one gateway is a memory hit
on the other, and both report the same job."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from helpers import GatewayProcess, batch_jsonl, gateway_env

from .pg import PostgresServer

pytestmark = [pytest.mark.system, pytest.mark.slow]


class Gateway(GatewayProcess):
    """A ``batchmt-server`` process on the fake engine whose store is the PostgreSQL database ``url``."""

    def __init__(self, name: str, url: str, log_dir: Path, *args: str) -> None:
        # the URL names the store; never a flag (a password would show in ps)
        env = gateway_env(drop=("BATCHMT_DATA_DIR",), BATCHMT_DATABASE_URL=url)
        unused, log = log_dir / f"unused-{name}", log_dir / f"gateway-{name}.log"
        super().__init__("--data-dir", str(unused), "--max-wait-ms", "1", *args, log=log, env=env, append_log=True)

    def stop(self, kill: bool = True, timeout: float = 10.0) -> None:
        super().stop(kill, timeout)


@pytest.fixture(scope="module")
def pg():
    server = PostgresServer().start()
    yield server
    server.stop()


def _jsonl(n: int) -> bytes:
    return batch_jsonl(n, "Line {i} of the shared job.", "Its second sentence {i}.")


def test_two_gateways_share_one_job_one_killed_mid_job_the_job_completes_exactly_once(pg, tmp_path):
    url = pg.database("two_gateways")
    n = 2400
    args = ("--job-lease-s", "3", "--job-max-lines-in-flight", "4")
    a = Gateway("a", url, tmp_path, *args)
    b = Gateway("b", url, tmp_path, *args)
    try:
        # the translation memory is shared: a sentence translated through a is answered from memory by b
        first = httpx.post(a.url + "/v1/translate", json={"sentences": ["The shared memory remembers this."]}).json()
        time.sleep(0.5)  # the memory writes its new entries in batches, within 50 ms of the answer (docs/api.md)
        again = httpx.post(b.url + "/v1/translate", json={"sentences": ["The shared memory remembers this."]}).json()
        assert [t["text"] for t in again["translations"]] == [t["text"] for t in first["translations"]] and again[
            "usage"
        ]["prompt_tokens"] == 0
        assert 'batchmt_reused_sentences_total{kind="memory"} 1.0' in httpx.get(b.url + "/metrics").text

        f = httpx.post(a.url + "/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", _jsonl(n))}).json()
        job = httpx.post(
            b.url + "/v1/batches",
            json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"},
        ).json()
        # both gateways claim lines of the one job (their worker ids show in the leases)
        owners: set[str] = set()
        with psycopg.connect(url, autocommit=True) as db:
            deadline = time.monotonic() + 60
            while len(owners) < 2 or a.batch(job["id"])["request_counts"]["completed"] < 300:
                assert time.monotonic() < deadline, (owners, a.batch(job["id"])["request_counts"])
                owners |= {
                    r[0]
                    for r in db.execute(
                        "SELECT DISTINCT lease_owner FROM job_lines WHERE state = 'claimed' AND lease_owner IS NOT NULL"
                    )
                }
                time.sleep(0.01)
            a.proc.send_signal(signal.SIGKILL)  # a dies holding leases
            a.proc.wait(10)
            at_kill = b.batch(job["id"])
            assert at_kill["status"] == "in_progress" and at_kill["request_counts"]["completed"] < n, at_kill
            deadline = time.monotonic() + 120
            while (final := b.batch(job["id"]))["status"] != "completed":
                assert time.monotonic() < deadline, final
                time.sleep(0.1)
            assert final["request_counts"] == {"total": n, "completed": n, "failed": 0}
            dead_owner_lines = db.execute("SELECT COUNT(*) FROM job_lines WHERE state = 'claimed'").fetchone()[0]
            assert dead_owner_lines == 0
        out = [
            json.loads(x)
            for x in httpx.get(f"{b.url}/v1/files/{final['output_file_id']}/content", timeout=30).text.splitlines()
        ]
        ids = [o["custom_id"] for o in out]
        assert len(ids) == n and sorted(ids) == sorted(f"req-{i}" for i in range(n)), "each line exactly once"
        for o in out:
            i = int(o["custom_id"].split("-")[1])
            assert [t["text"] for t in o["response"]["body"]["translations"]] == [
                f"[de] Line {i} of the shared job.",
                f"[de] Its second sentence {i}.",
            ]
        # usage adds up across gateways: the job's usage counts every sentence once, whoever ran it
        usage = httpx.get(b.url + "/v1/usage").json()["jobs"]
        assert usage["jobs"] == 1 and usage["sentences"] == 2 * n
        assert final["error_file_id"] is None

        # a gateway that joins later sees the same job and memory
        c = Gateway("c", url, tmp_path, *args)
        try:
            assert c.batch(job["id"])["request_counts"] == final["request_counts"]
            third = httpx.post(c.url + "/v1/translate", json={"sentences": ["The shared memory remembers this."]})
            assert third.json()["usage"]["prompt_tokens"] == 0
        finally:
            c.stop()
    finally:
        a.stop()
        b.stop()
