"""The in-process vLLM engine dies under load (issue 13): its engine-core process is SIGKILLed while requests are
in flight. The gateway stops being ready, answers the waiting requests with a retryable 503 (no sentence is
silently lost or half-answered), and exits with status 70 for its supervisor to restart it. And the other way
round: the gateway SIGKILLed leaves none of the engine's processes running.

Real engine (the embedded model, eager mode) in its own gateway process: run under
``flock /tmp/batchmt-engine.lock``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.isolated]


def _serve(tmp_path) -> tuple[subprocess.Popen, str, Path]:
    """A gateway process with the embedded engine (small settings), ready; its URL and log file."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHMT_")}
    log = tmp_path / "gateway.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchmt_server",
            "serve",
            "--port",
            str(port),
            "--enforce-eager",
            "--calibration",
            "off",
            "--max-num-seqs",
            "8",
            "--cpu-kvcache-gib",
            "1",
            "--max-prompts-in-flight",
            "4",
            "--translation-memory-size",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return proc, url, log
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError("the gateway did not get ready in 900 s")
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigkilled_gateway_leaves_no_engine_process_behind(tmp_path):
    """kill -9 on the gateway: vLLM's engine core and worker (gigabytes) do not outlive it (engines/reaper.py)."""
    proc, _, log = _serve(tmp_path)
    engine = psutil.Process(proc.pid).children(recursive=True)
    try:
        assert len(engine) >= 2, engine  # vLLM's engine core and the reaper at least
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 60
        while not all(_gone(p) for p in engine) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [(p.pid, p.name()) for p in engine if not _gone(p)]
        assert not left, left
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in engine:  # whatever the reaper missed must not outlive the test
            if not _gone(p):
                p.kill()
    assert "stopped by reaper" in log.read_text()


def test_engine_core_killed_mid_traffic_gives_503s_not_ready_and_exit_70(tmp_path):
    proc, url, log = _serve(tmp_path)
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "expected vLLM's engine core in a child process"

        async def traffic() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=120) as c:
                tasks = [
                    asyncio.create_task(
                        c.post(
                            "/v1/translate",
                            json={
                                "sentences": [
                                    f"Request {k} asks for sentence {i}, which is long enough to keep the engine busy "
                                    "for a while."
                                    for i in range(4)
                                ]
                            },
                        )
                    )
                    for k in range(4)
                ]
                await asyncio.sleep(1.0)
                for child in children:  # the engine core dies
                    try:
                        child.send_signal(signal.SIGKILL)
                    except psutil.NoSuchProcess:
                        pass
                return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(traffic())
        answered = [r for r in results if isinstance(r, httpx.Response)]
        for r in answered:
            if r.status_code == 200:  # finished before the kill: whole and in order
                assert all(t["status"] == "ok" for t in r.json()["translations"])
            else:
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] in ("engine_unavailable", "not_ready")
                assert int(r.headers["retry-after"]) >= 1
        assert any(r.status_code == 503 for r in answered), [r.status_code for r in answered]
        assert proc.wait(120) == 70
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "the engine died" in text and "not ready" in text
